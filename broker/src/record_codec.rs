//! Kafka's message encoding for the records of its internal topics (`__consumer_offsets`,
//! `__transaction_state`): the primitives their keys and values are made of, in both the classic
//! encoding and the flexible one (KIP-482: compact lengths as unsigned varints, tagged fields).
//! Each record module (`groups::records`, `groups::consumer::codec`, `transactions::records`)
//! lays out its schemas with these.
//!
//! Writers append to a `Vec<u8>`; [`Reader`] is a bounds-checked cursor whose every read is an
//! error rather than a panic on malformed bytes, and whose array lengths are checked against
//! the bytes left, so a decoder allocates at most in proportion to its input.

use thiserror::Error;

/// The longest string either encoding carries, in bytes: Kafka refuses longer strings on both
/// the classic (i16 length) and the flexible encoding.
pub(crate) const STRING_SIZE_BYTES_MAX: usize = i16::MAX as usize;

/// Why a stored key or value did not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub(crate) enum RecordError {
    /// The bytes end inside a field.
    #[error("record truncated at byte {position}")]
    Truncated {
        /// Where the missing field starts.
        position: usize,
    },
    /// A version this broker does not read.
    #[error("unknown {kind} version {version}")]
    UnknownVersion {
        /// Key or value kind.
        kind: &'static str,
        /// The version found.
        version: i16,
    },
    /// A string is not UTF-8.
    #[error("string at byte {position} is not UTF-8")]
    NotUtf8 {
        /// Where the string starts.
        position: usize,
    },
    /// A length or count is null where the schema forbids null, longer than Kafka allows, or a
    /// varint runs past 5 bytes.
    #[error("invalid length at byte {position}")]
    InvalidLength {
        /// Where the length starts.
        position: usize,
    },
    /// An enumerated field with a value Kafka does not define.
    #[error("unknown {kind} {value}")]
    UnknownEnum {
        /// The field.
        kind: &'static str,
        /// The value found.
        value: i32,
    },
    /// A known tagged field whose size does not match its type.
    #[error("tagged field {tag} has size {size_bytes}")]
    TaggedFieldSize {
        /// The field's tag.
        tag: u32,
        /// The size found.
        size_bytes: usize,
    },
}

/// Appends `value` as an unsigned varint (7 bits per byte, low groups first), as Kafka's
/// flexible versions write lengths and tags.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A string: i16 length, or uvarint length+1 when `flexible`. Callers refuse strings longer
/// than [`STRING_SIZE_BYTES_MAX`] first (group and transactional ids); one that gets here anyway
/// is cut there (at a character boundary) rather than bringing the coordinator down.
pub(crate) fn put_string(out: &mut Vec<u8>, text: &str, flexible: bool) {
    let mut length = text.len().min(STRING_SIZE_BYTES_MAX);
    while !text.is_char_boundary(length) {
        length -= 1;
    }
    let text = &text[..length];
    if flexible {
        put_uvarint(out, text.len() as u32 + 1);
    } else {
        out.extend_from_slice(&(text.len() as i16).to_be_bytes());
    }
    out.extend_from_slice(text.as_bytes());
}

/// A nullable string: as [`put_string`], null as length -1 (classic) or 0 (flexible).
pub(crate) fn put_nullable_string(out: &mut Vec<u8>, text: Option<&str>, flexible: bool) {
    match text {
        Some(text) => put_string(out, text, flexible),
        None if flexible => put_uvarint(out, 0),
        None => out.extend_from_slice(&(-1i16).to_be_bytes()),
    }
}

/// Bytes: i32 length, or uvarint length+1 when `flexible`.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8], flexible: bool) {
    assert!(bytes.len() < i32::MAX as usize, "{} bytes are more than Kafka allows", bytes.len());
    if flexible {
        put_uvarint(out, bytes.len() as u32 + 1);
    } else {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// An array's length: i32 in the classic encoding, uvarint length+1 in the flexible one.
pub(crate) fn put_array_length(out: &mut Vec<u8>, length: usize, flexible: bool) {
    assert!(length < i32::MAX as usize, "an array of {length} entries is longer than Kafka allows");
    if flexible {
        put_uvarint(out, length as u32 + 1);
    } else {
        out.extend_from_slice(&(length as i32).to_be_bytes());
    }
}

/// A null array: i32 -1, or uvarint 0 when `flexible`.
pub(crate) fn put_null_array(out: &mut Vec<u8>, flexible: bool) {
    if flexible {
        put_uvarint(out, 0);
    } else {
        out.extend_from_slice(&(-1i32).to_be_bytes());
    }
}

/// A bounds-checked cursor over big-endian fields and unsigned varints.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub(crate) fn remaining_bytes(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(crate) fn take(&mut self, size: usize) -> Result<&'a [u8], RecordError> {
        let end = self.position.checked_add(size).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(RecordError::Truncated { position: self.position })?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    pub(crate) fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A UUID: 16 bytes, most significant first.
    pub(crate) fn uuid(&mut self) -> Result<[u8; 16], RecordError> {
        self.array()
    }

    /// An unsigned varint of at most 5 bytes whose value fits a u32 (Kafka reads them as int).
    pub(crate) fn uvarint(&mut self) -> Result<u32, RecordError> {
        let start = self.position;
        let mut value: u64 = 0;
        for index in 0..5 {
            let [byte] = self.array()?;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return u32::try_from(value).map_err(|_too_large| RecordError::InvalidLength { position: start });
            }
        }
        Err(RecordError::InvalidLength { position: start })
    }

    /// A nullable string: i16 length (-1 = null), or uvarint length+1 (0 = null) when
    /// `flexible`.
    pub(crate) fn nullable_string(&mut self, flexible: bool) -> Result<Option<String>, RecordError> {
        let start = self.position;
        let length = if flexible {
            match self.uvarint()? {
                0 => return Ok(None),
                length => (length - 1) as usize,
            }
        } else {
            match self.i16()? {
                -1 => return Ok(None),
                length => {
                    usize::try_from(length).map_err(|_negative| RecordError::InvalidLength { position: start })?
                }
            }
        };
        if length > STRING_SIZE_BYTES_MAX {
            return Err(RecordError::InvalidLength { position: start });
        }
        let text = self.take(length)?;
        std::str::from_utf8(text)
            .map(|text| Some(text.to_owned()))
            .map_err(|_not_utf8| RecordError::NotUtf8 { position: start })
    }

    /// A string the schema does not allow to be null.
    pub(crate) fn string(&mut self, flexible: bool) -> Result<String, RecordError> {
        let start = self.position;
        self.nullable_string(flexible)?.ok_or(RecordError::InvalidLength { position: start })
    }

    /// Bytes: i32 length, or uvarint length+1 when `flexible`; null reads as empty.
    pub(crate) fn bytes(&mut self, flexible: bool) -> Result<&'a [u8], RecordError> {
        let start = self.position;
        let length = if flexible {
            match self.uvarint()? {
                0 => return Ok(&[]),
                length => (length - 1) as usize,
            }
        } else {
            match self.i32()? {
                -1 => return Ok(&[]),
                length => {
                    usize::try_from(length).map_err(|_negative| RecordError::InvalidLength { position: start })?
                }
            }
        };
        self.take(length)
    }

    /// An array length: i32 (-1 = null), or uvarint length+1 (0 = null) when `flexible`.
    /// `None` is null. A length larger than the bytes left, given each element's smallest size,
    /// is truncation, so no caller allocates more than the input holds (as Kafka checks too).
    pub(crate) fn array_length(
        &mut self,
        flexible: bool,
        element_size_bytes_min: usize,
    ) -> Result<Option<usize>, RecordError> {
        let start = self.position;
        let length = if flexible {
            self.uvarint()?.checked_sub(1).map(|length| length as usize)
        } else {
            match self.i32()? {
                -1 => None,
                length => {
                    Some(usize::try_from(length).map_err(|_negative| RecordError::InvalidLength { position: start })?)
                }
            }
        };
        match length {
            Some(length) if length.saturating_mul(element_size_bytes_min) > self.remaining_bytes() => {
                Err(RecordError::Truncated { position: self.position })
            }
            length => Ok(length),
        }
    }

    /// An array length the schema does not allow to be null.
    pub(crate) fn array_length_not_null(
        &mut self,
        flexible: bool,
        element_size_bytes_min: usize,
    ) -> Result<usize, RecordError> {
        let start = self.position;
        self.array_length(flexible, element_size_bytes_min)?.ok_or(RecordError::InvalidLength { position: start })
    }

    /// Reads one tagged-field section, handing each field's tag and bytes to `field`.
    pub(crate) fn tagged_fields(
        &mut self,
        mut field: impl FnMut(u32, &'a [u8]) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            field(tag, self.take(size)?)?;
        }
        Ok(())
    }

    /// Skips a tagged-field section: fields from a newer Kafka exist so that readers may skip
    /// them.
    pub(crate) fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        self.tagged_fields(|_tag, _bytes| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_strings_round_trip_in_both_encodings() {
        for flexible in [false, true] {
            let mut out = Vec::new();
            put_string(&mut out, "orders", flexible);
            put_nullable_string(&mut out, None, flexible);
            put_bytes(&mut out, b"abc", flexible);
            put_array_length(&mut out, 300, flexible);
            put_null_array(&mut out, flexible);
            put_uvarint(&mut out, 1 << 20);
            let mut reader = Reader::new(&out);
            assert_eq!(reader.string(flexible), Ok("orders".to_owned()));
            assert_eq!(reader.nullable_string(flexible), Ok(None));
            assert_eq!(reader.bytes(flexible), Ok(&b"abc"[..]));
            assert!(matches!(reader.array_length(flexible, 1), Err(RecordError::Truncated { .. })));
        }
        let mut out = Vec::new();
        put_uvarint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(Reader::new(&out).uvarint(), Ok(300));
        assert!(matches!(Reader::new(&[0xff; 6]).uvarint(), Err(RecordError::InvalidLength { .. })));
    }

    #[test]
    fn a_null_where_the_schema_forbids_it_is_an_error() {
        assert!(matches!(Reader::new(&[0xff, 0xff]).string(false), Err(RecordError::InvalidLength { .. })));
        assert!(matches!(Reader::new(&[0]).string(true), Err(RecordError::InvalidLength { .. })));
        assert!(matches!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff]).array_length_not_null(false, 4),
            Err(RecordError::InvalidLength { .. })
        ));
    }
}
