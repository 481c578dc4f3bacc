//! The principal of a connection: the Subject common name of the certificate its peer presented
//! (verified by the handshake), read with a minimal DER walk.

use rustls::pki_types::CertificateDer;

use super::TlsError;

/// The principal of an established connection: the Subject CN of the certificate the peer
/// presented, which the handshake verified against the CA.
pub fn principal_of(connection: &quinn::Connection) -> Result<String, TlsError> {
    let identity = connection.peer_identity().ok_or(TlsError::NoPeerCertificate)?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().map_err(|_| TlsError::NoPeerCertificate)?;
    let leaf = chain.first().ok_or(TlsError::NoPeerCertificate)?;
    principal_of_certificate(leaf)
}

/// The Subject CN of a DER certificate (UTF8String, PrintableString or IA5String), non-empty
/// and present exactly once. Parses only the path to the subject; it does not verify anything.
pub fn principal_of_certificate(der: &[u8]) -> Result<String, TlsError> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const CN: &[u8] = &[0x55, 0x04, 0x03]; // 2.5.4.3
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2; // [0] version
    }
    rest = tlv(rest)?.2; // serialNumber
    rest = expect(rest, SEQUENCE)?.1; // signature algorithm
    rest = expect(rest, SEQUENCE)?.1; // issuer
    rest = expect(rest, SEQUENCE)?.1; // validity
    let (mut subject, _) = expect(rest, SEQUENCE)?;

    let mut found: Option<String> = None;
    while !subject.is_empty() {
        let (mut rdn, after) = expect(subject, SET)?;
        subject = after;
        while !rdn.is_empty() {
            let (attribute, after) = expect(rdn, SEQUENCE)?;
            rdn = after;
            let (oid, value) = expect(attribute, OID)?;
            if oid != CN {
                continue;
            }
            let (tag, text, trailing) = tlv(value)?;
            if !trailing.is_empty() {
                return Err(TlsError::BadCertificate("trailing bytes after a name attribute"));
            }
            let text = match tag {
                0x0c | 0x13 | 0x16 => {
                    std::str::from_utf8(text).map_err(|_| TlsError::BadCertificate("the common name is not UTF-8"))?
                }
                _ => return Err(TlsError::BadCertificate("unsupported string type for the common name")),
            };
            if found.replace(text.to_string()).is_some() {
                return Err(TlsError::AmbiguousCommonName);
            }
        }
    }
    match found {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(TlsError::NoCommonName),
    }
}

/// One DER tag-length-value: (tag, contents, what follows). Single-byte tags, definite lengths.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), TlsError> {
    let truncated = TlsError::BadCertificate("truncated DER");
    let (&tag, input) = input.split_first().ok_or(truncated)?;
    if tag & 0x1f == 0x1f {
        return Err(TlsError::BadCertificate("multi-byte DER tag"));
    }
    let (&first, mut input) = input.split_first().ok_or(TlsError::BadCertificate("truncated DER"))?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let octets = (first & 0x7f) as usize;
        if octets == 0 || octets > 4 || input.len() < octets {
            return Err(TlsError::BadCertificate("bad DER length"));
        }
        let len = input[..octets].iter().fold(0usize, |n, &b| (n << 8) | b as usize);
        input = &input[octets..];
        len
    };
    if input.len() < len {
        return Err(TlsError::BadCertificate("truncated DER"));
    }
    let (contents, rest) = input.split_at(len);
    Ok((tag, contents, rest))
}

fn expect(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), TlsError> {
    match tlv(input)? {
        (t, contents, rest) if t == tag => Ok((contents, rest)),
        _ => Err(TlsError::BadCertificate("unexpected DER tag")),
    }
}
