//! A certificate's subject as Kafka names a TLS client: Java's `X500Principal.getName()`, the
//! RFC 2253 string, which Kafka's default `ssl.principal.mapping.rules` keep unchanged
//! (`User:CN=client,OU=eng,O=acme`).
//!
//! The format, step by step, as Java writes it:
//! 1. The relative distinguished names in reverse order of the certificate's sequence (the
//!    last one first), joined with `,`; the values of a multi-valued one joined with `+`.
//! 2. Each value `TYPE=VALUE`: TYPE is RFC 2253's keyword (CN, C, L, ST, O, OU, STREET, DC,
//!    UID) or else the dotted OID.
//! 3. A keyword's value held in a string type is the string, with `,=+<>#;"\` escaped by a
//!    backslash, and each space of a leading or trailing run escaped too. Any other value (an OID
//!    type such as emailAddress, or a non-string) is `#` and the hex of its DER encoding.
//!
//! The certificate bytes come from the client: the DER walk checks every length against the
//! bytes there and gives up (`None`) on anything malformed, never panicking and allocating no
//! more than the input's size. Runs on the connection's shard, once per TLS handshake.

use std::fmt::Write as _;

/// DER tags used here.
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_VERSION: u8 = 0xa0;

/// The subject of the DER certificate `certificate` in RFC 2253 form, or `None` when the bytes
/// are not a certificate.
pub(crate) fn subject_name(certificate: &[u8]) -> Option<String> {
    let (certificate, _) = expect(TAG_SEQUENCE, certificate)?;
    let (mut tbs, _) = expect(TAG_SEQUENCE, certificate)?;
    if tbs.first() == Some(&TAG_VERSION) {
        tbs = element(tbs)?.2;
    }
    // serial number, signature algorithm, issuer, validity, then the subject.
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (subject, _) = expect(TAG_SEQUENCE, tbs)?;
    format_name(subject)
}

/// Formats the contents of a DER `Name` (a sequence of RDN sets).
fn format_name(mut name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (set, rest) = expect(TAG_SET, name)?;
        rdns.push(set);
        name = rest;
    }
    let mut text = String::new();
    for (index, mut set) in rdns.into_iter().rev().enumerate() {
        if index > 0 {
            text.push(',');
        }
        let mut first = true;
        while !set.is_empty() {
            let (attribute, rest) = expect(TAG_SEQUENCE, set)?;
            set = rest;
            if !first {
                text.push('+');
            }
            first = false;
            format_attribute(attribute, &mut text)?;
        }
    }
    Some(text)
}

/// Appends one `TYPE=VALUE` from the contents of an AttributeTypeAndValue.
fn format_attribute(attribute: &[u8], text: &mut String) -> Option<()> {
    let (oid, rest) = expect(TAG_OID, attribute)?;
    let (tag, value, rest) = element(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let oid = dotted(oid)?;
    let keyword = keyword(&oid);
    if let (Some(keyword), Some(value)) = (keyword, decode_string(tag, value)) {
        text.push_str(keyword);
        text.push('=');
        escape_into(&value, text);
        return Some(());
    }
    text.push_str(keyword.unwrap_or(&oid));
    text.push_str("=#");
    let encoded_size = attribute.len() - oid_element_size(attribute)?;
    for byte in &attribute[attribute.len() - encoded_size..] {
        write!(text, "{byte:02x}").ok()?;
    }
    Some(())
}

/// Bytes of the OID element at the start of `attribute` (its tag, length and contents).
fn oid_element_size(attribute: &[u8]) -> Option<usize> {
    let (_, _, rest) = element(attribute)?;
    Some(attribute.len() - rest.len())
}

/// RFC 2253's keywords, the only ones Java prints by name.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The text of a DER string value, for the string types Java's `AVA` prints as text.
fn decode_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, GeneralString.
        0x0c | 0x13 | 0x16 | 0x1b => std::str::from_utf8(value).ok().map(str::to_owned),
        // TeletexString, read as ISO-8859-1 as Java does.
        0x14 => Some(value.iter().map(|byte| char::from(*byte)).collect()),
        // BMPString: UTF-16, big-endian.
        0x1e => {
            let units: Vec<u16> = value.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect();
            value.len().is_multiple_of(2).then(|| String::from_utf16(&units).ok()).flatten()
        }
        // UniversalString: UTF-32, big-endian.
        0x1c => {
            let chars = value
                .chunks_exact(4)
                .map(|quad| char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]])));
            value.len().is_multiple_of(4).then(|| chars.collect::<Option<String>>()).flatten()
        }
        _ => None,
    }
}

/// Appends `value` with RFC 2253's escapes, as Java writes them.
fn escape_into(value: &str, text: &mut String) {
    let leading = value.len() - value.trim_start_matches(' ').len();
    let trailing = value.trim_end_matches(' ').len();
    for (index, character) in value.char_indices() {
        let edge_space = character == ' ' && (index < leading || index >= trailing);
        if edge_space || ",=+<>#;\"\\".contains(character) {
            text.push('\\');
        }
        text.push(character);
    }
}

/// An OID's dotted form.
fn dotted(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut arc: u64 = 0;
    for (index, byte) in oid.iter().enumerate() {
        arc = arc.checked_mul(128)?.checked_add(u64::from(byte & 0x7f))?;
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (arc / 40).min(2);
                arcs.push(first);
                arcs.push(arc - first * 40);
            } else {
                arcs.push(arc);
            }
            arc = 0;
        } else if index + 1 == oid.len() {
            return None;
        }
    }
    if arcs.is_empty() {
        return None;
    }
    Some(arcs.iter().map(u64::to_string).collect::<Vec<_>>().join("."))
}

/// The contents of the element at the start of `input`, which must have tag `tag`, and the
/// bytes after it.
fn expect(tag: u8, input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = element(input)?;
    (found == tag).then_some((contents, rest))
}

/// The tag, contents and following bytes of the DER element at the start of `input` (single
/// byte tags; definite lengths of up to four bytes).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let size = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let size = input[..count].iter().fold(0usize, |size, byte| (size << 8) | usize::from(*byte));
        input = &input[count..];
        size
    };
    if input.len() < size {
        return None;
    }
    let (contents, rest) = input.split_at(size);
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if contents.len() < 0x80 {
            out.push(contents.len() as u8);
        } else {
            let size = u16::try_from(contents.len()).expect("test sizes fit two bytes");
            out.push(0x82);
            out.extend_from_slice(&size.to_be_bytes());
        }
        out.extend_from_slice(contents);
        out
    }

    /// An AttributeTypeAndValue with the OID given by its encoded bytes.
    fn attribute(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        tlv(TAG_SEQUENCE, &[tlv(TAG_OID, oid), tlv(tag, value)].concat())
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const C: &[u8] = &[0x55, 0x04, 0x06];
    const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];

    /// A certificate whose tbsCertificate holds the fields before the subject as placeholders.
    fn certificate(rdns: &[Vec<u8>]) -> Vec<u8> {
        let name = tlv(TAG_SEQUENCE, &rdns.iter().map(|rdn| tlv(TAG_SET, rdn)).collect::<Vec<_>>().concat());
        let tbs = [
            tlv(TAG_VERSION, &tlv(0x02, &[2])),
            tlv(0x02, &[1, 2, 3]),
            tlv(TAG_SEQUENCE, &tlv(TAG_OID, &[0x2a, 0x03])),
            tlv(TAG_SEQUENCE, &[]),
            tlv(TAG_SEQUENCE, &[0x17, 0x00]),
            name,
            tlv(TAG_SEQUENCE, &[0u8; 200]),
        ]
        .concat();
        tlv(TAG_SEQUENCE, &[tlv(TAG_SEQUENCE, &tbs), tlv(TAG_SEQUENCE, &[])].concat())
    }

    /// Java prints `/C=US/O=acme, inc/OU=eng/CN=client ` (plus an email) as
    /// `1.2.840.113549.1.9.1=#16056140622e63,CN=client\ ,OU=eng,O=acme\, inc,C=US`.
    #[test]
    fn subject_prints_last_rdn_first_with_java_escapes() {
        let der = certificate(&[
            attribute(C, 0x13, b"US"),
            attribute(O, 0x0c, b"acme, inc"),
            attribute(OU, 0x0c, b"eng"),
            attribute(CN, 0x0c, b"client "),
            attribute(EMAIL, 0x16, b"a@b.c"),
        ]);
        assert_eq!(
            subject_name(&der).as_deref(),
            Some("1.2.840.113549.1.9.1=#16056140622e63,CN=client\\ ,OU=eng,O=acme\\, inc,C=US")
        );
    }

    #[test]
    fn multi_valued_rdns_join_with_plus_and_specials_are_escaped() {
        let rdn = [attribute(CN, 0x0c, b"#a=b+c;\"d\"<e>\\"), attribute(OU, 0x1e, &[0, b'x', 0, b'y'])].concat();
        let der = certificate(&[attribute(O, 0x13, b"acme"), rdn, attribute(CN, 0x0c, b"  y  z#  ")]);
        assert_eq!(
            subject_name(&der).as_deref(),
            Some("CN=\\ \\ y  z\\#\\ \\ ,CN=\\#a\\=b\\+c\\;\\\"d\\\"\\<e\\>\\\\+OU=xy,O=acme")
        );
    }

    #[test]
    fn a_keyword_with_a_non_string_value_is_hex() {
        let der = certificate(&[attribute(CN, 0x04, &[0xde, 0xad])]);
        assert_eq!(subject_name(&der).as_deref(), Some("CN=#0402dead"));
    }

    #[test]
    fn truncated_or_garbage_bytes_give_none() {
        let der = certificate(&[attribute(CN, 0x0c, b"client")]);
        for cut in 0..der.len() {
            assert_eq!(subject_name(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(subject_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject_name(&[]), None);
    }

    #[test]
    fn oids_print_dotted() {
        assert_eq!(dotted(EMAIL).as_deref(), Some("1.2.840.113549.1.9.1"));
        assert_eq!(
            dotted(&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19]).as_deref(),
            Some("0.9.2342.19200300.100.1.25")
        );
        assert_eq!(dotted(&[0x86]), None, "an unterminated arc");
    }
}
