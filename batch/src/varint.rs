//! Zigzag varints as `RecordBatch` v2 records use them (protobuf-style, 7 bits per byte).
//!
//! Pure functions; any thread.

use bytes::BufMut;

/// Bytes needed to encode `value` as a zigzag varlong.
#[inline]
pub(crate) fn size_i64(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    // Bits needed (at least 1), 7 per byte: ceil(bits / 7).
    let bits = 64 - (zigzag | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `value` as a zigzag varlong.
#[inline]
pub(crate) fn put_i64<B: BufMut>(buffer: &mut B, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut scratch = [0u8; 10];
    let mut length = 0;
    while zigzag >= 0x80 {
        scratch[length] = (zigzag as u8) | 0x80;
        zigzag >>= 7;
        length += 1;
    }
    scratch[length] = zigzag as u8;
    buffer.put_slice(&scratch[..=length]);
}

/// Reads a zigzag varlong at `*position`, advancing it; `None` when truncated or longer than 10
/// bytes.
#[inline]
pub(crate) fn get_i64(bytes: &[u8], position: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for index in 0..10 {
        let byte = *bytes.get(*position + index)?;
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *position += index + 1;
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings_match_the_kafka_spec() {
        let cases: [(i64, &[u8]); 6] =
            [(0, &[0x00]), (-1, &[0x01]), (1, &[0x02]), (63, &[0x7e]), (64, &[0x80, 0x01]), (-65, &[0x81, 0x01])];
        for (value, expected) in cases {
            let mut out = Vec::new();
            put_i64(&mut out, value);
            assert_eq!(out, expected, "value {value}");
            assert_eq!(size_i64(value), expected.len());
        }
    }

    proptest::proptest! {
        #[test]
        fn round_trip(value in proptest::num::i64::ANY) {
            let mut out = Vec::new();
            put_i64(&mut out, value);
            proptest::prop_assert_eq!(out.len(), size_i64(value));
            let mut position = 0;
            proptest::prop_assert_eq!(get_i64(&out, &mut position), Some(value));
            proptest::prop_assert_eq!(position, out.len());
        }

        #[test]
        fn get_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..16)) {
            let mut position = 0;
            let _ = get_i64(&bytes, &mut position);
        }
    }
}
