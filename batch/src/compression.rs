//! The compression codecs of RecordBatch v2, framed as Kafka frames them: gzip, snappy in the
//! Xerial block framing (raw snappy is accepted too, as the Java client accepts it), the LZ4
//! frame format, and zstd.
//!
//! A batch's records section is compressed as one unit; the header stays uncompressed and its
//! CRC covers the compressed bytes. Decompression is bounded: the caller gives the most bytes it
//! will accept, so a small hostile input cannot make a large allocation. Pure functions; any
//! thread.

use std::io::{Read, Write};

use thiserror::Error;

/// A compression codec, by its id in the batch attributes (bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Id 0.
    #[default]
    None = 0,
    /// Id 1.
    Gzip = 1,
    /// Id 2, Xerial-framed.
    Snappy = 2,
    /// Id 3, LZ4 frame format.
    Lz4 = 3,
    /// Id 4.
    Zstd = 4,
}

impl Compression {
    /// The codec of attribute id `id`, `None` for ids above 4.
    pub fn from_id(id: i16) -> Option<Self> {
        match id {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The attribute id.
    pub fn id(self) -> i16 {
        self as i16
    }
}

/// Why a codec failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The compressed bytes are malformed for the codec.
    #[error("{codec:?} data is malformed")]
    Malformed {
        /// The codec.
        codec: Compression,
        /// The codec library's reason.
        #[source]
        source: std::io::Error,
    },
    /// Decompressing would produce more bytes than the caller accepts.
    #[error("{codec:?} data inflates past {size_bytes_max} bytes")]
    TooLarge {
        /// The codec.
        codec: Compression,
        /// The limit given.
        size_bytes_max: usize,
    },
}

/// The Xerial snappy stream header: a magic, then a version and a minimum compatible version.
const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Uncompressed bytes per Xerial block, as the Java client writes them.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// Level of the gzip, LZ4 and zstd encoders: each library's default speed/ratio balance.
const GZIP_LEVEL: u32 = 6;
const LZ4_LEVEL: u32 = 4;
const ZSTD_LEVEL: i32 = 3;

fn malformed(codec: Compression) -> impl Fn(std::io::Error) -> CodecError {
    move |source| CodecError::Malformed { codec, source }
}

/// Decompresses `compressed` with `codec`, refusing to produce more than `size_bytes_max` bytes.
///
/// # Errors
/// [`CodecError::Malformed`] for bytes the codec cannot read, [`CodecError::TooLarge`] past the
/// limit.
pub fn decompress(codec: Compression, compressed: &[u8], size_bytes_max: usize) -> Result<Vec<u8>, CodecError> {
    match codec {
        Compression::None => {
            if compressed.len() > size_bytes_max {
                return Err(CodecError::TooLarge { codec, size_bytes_max });
            }
            Ok(compressed.to_vec())
        }
        Compression::Gzip => read_bounded(codec, flate2::read::GzDecoder::new(compressed), size_bytes_max),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(compressed).map_err(malformed(codec))?;
            read_bounded(codec, decoder, size_bytes_max)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(compressed).map_err(malformed(codec))?;
            read_bounded(codec, decoder, size_bytes_max)
        }
        Compression::Snappy => decompress_snappy(compressed, size_bytes_max),
    }
}

/// Reads a decoder to its end, failing once it yields more than `size_bytes_max` bytes.
fn read_bounded(codec: Compression, decoder: impl Read, size_bytes_max: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let limit = u64::try_from(size_bytes_max).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(limit).read_to_end(&mut out).map_err(malformed(codec))?;
    if out.len() > size_bytes_max {
        return Err(CodecError::TooLarge { codec, size_bytes_max });
    }
    Ok(out)
}

fn snappy_error(error: snap::Error) -> CodecError {
    CodecError::Malformed { codec: Compression::Snappy, source: std::io::Error::other(error) }
}

/// Xerial framing: the 16-byte header, then blocks of a big-endian u32 length and that many
/// bytes of raw snappy. Without the header, the whole input is one raw snappy block.
fn decompress_snappy(compressed: &[u8], size_bytes_max: usize) -> Result<Vec<u8>, CodecError> {
    let too_large = CodecError::TooLarge { codec: Compression::Snappy, size_bytes_max };
    let Some(mut rest) = compressed.strip_prefix(XERIAL_MAGIC.as_slice()) else {
        let length = snap::raw::decompress_len(compressed).map_err(snappy_error)?;
        if length > size_bytes_max {
            return Err(too_large);
        }
        return snap::raw::Decoder::new().decompress_vec(compressed).map_err(snappy_error);
    };
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    while !rest.is_empty() {
        let Some((length, tail)) = rest.split_first_chunk::<4>() else {
            return Err(snappy_error(snap::Error::HeaderMismatch { expected_len: 4, got_len: rest.len() as u64 }));
        };
        let length = u32::from_be_bytes(*length) as usize;
        let Some(block) = tail.get(..length) else {
            return Err(snappy_error(snap::Error::HeaderMismatch {
                expected_len: length as u64,
                got_len: tail.len() as u64,
            }));
        };
        let block_size = snap::raw::decompress_len(block).map_err(snappy_error)?;
        let start = out.len();
        if start.saturating_add(block_size) > size_bytes_max {
            return Err(too_large);
        }
        out.resize(start + block_size, 0);
        let written = decoder.decompress(block, &mut out[start..]).map_err(snappy_error)?;
        out.truncate(start + written);
        rest = &tail[length..];
    }
    Ok(out)
}

/// Compresses `bytes` with `codec` into `out` (appended).
///
/// # Errors
/// The codec library's I/O error (writing to a vector does not fail; the libraries report
/// internal failures this way).
pub fn compress_into(codec: Compression, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let failed = malformed(codec);
    match codec {
        Compression::None => out.extend_from_slice(bytes),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            encoder.write_all(bytes).map_err(&failed)?;
            encoder.finish().map_err(&failed)?;
        }
        Compression::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(LZ4_LEVEL)
                .block_mode(lz4::BlockMode::Independent)
                .build(out)
                .map_err(&failed)?;
            encoder.write_all(bytes).map_err(&failed)?;
            let (_, finished) = encoder.finish();
            finished.map_err(&failed)?;
        }
        Compression::Zstd => zstd::stream::copy_encode(bytes, out, ZSTD_LEVEL).map_err(&failed)?,
        Compression::Snappy => {
            out.extend_from_slice(XERIAL_MAGIC);
            let mut encoder = snap::raw::Encoder::new();
            for block in bytes.chunks(XERIAL_BLOCK_BYTES) {
                let length_position = out.len();
                out.extend_from_slice(&[0; 4]);
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(block.len()), 0);
                let written = encoder.compress(block, &mut out[start..]).map_err(snappy_error)?;
                out.truncate(start + written);
                out[length_position..start].copy_from_slice(&(written as u32).to_be_bytes());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    fn sample() -> Vec<u8> {
        (0..100_000u32).flat_map(|value| (value % 251).to_be_bytes()).collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let bytes = sample();
        for codec in CODECS {
            let mut compressed = Vec::new();
            compress_into(codec, &bytes, &mut compressed).expect("compresses");
            assert_eq!(decompress(codec, &compressed, bytes.len()).expect("decompresses"), bytes, "{codec:?}");
        }
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        let bytes = sample();
        for codec in CODECS {
            let mut compressed = Vec::new();
            compress_into(codec, &bytes, &mut compressed).expect("compresses");
            let refused = decompress(codec, &compressed, bytes.len() - 1);
            assert!(matches!(refused, Err(CodecError::TooLarge { .. })), "{codec:?}: {refused:?}");
        }
    }

    #[test]
    fn raw_snappy_without_xerial_framing_is_read() {
        let bytes = sample();
        let raw = snap::raw::Encoder::new().compress_vec(&bytes).expect("compresses");
        assert_eq!(decompress(Compression::Snappy, &raw, bytes.len()).expect("raw snappy"), bytes);
    }

    #[test]
    fn codec_ids_round_trip() {
        for codec in CODECS {
            assert_eq!(Compression::from_id(codec.id()), Some(codec));
        }
        assert_eq!(Compression::from_id(5), None);
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            for codec in CODECS {
                let _ = decompress(codec, &bytes, 1 << 16);
            }
        }
    }
}
