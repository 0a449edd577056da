//! The one DER structure JWKs need: an RSA public key from its modulus and exponent.

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017), the
/// form aws-lc-rs parses.
pub(crate) fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    let body = [integer(n), integer(e)].concat();
    [vec![0x30], length(body.len()), body].concat()
}

/// A positive INTEGER: leading zeros trimmed, one added back when the high bit is set.
fn integer(bytes: &[u8]) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let trimmed = &bytes[zeros.min(bytes.len().saturating_sub(1))..];
    let pad = trimmed.first().is_some_and(|&b| b & 0x80 != 0);
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if pad {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    [vec![0x02], length(content.len()), content].concat()
}

fn length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    [
        vec![0x80 | (bytes.len() - skip) as u8],
        bytes[skip..].to_vec(),
    ]
    .concat()
}

/// How many bits `n` (big-endian) really has.
pub(crate) fn significant_bits(n: &[u8]) -> usize {
    let skip = n.iter().take_while(|&&b| b == 0).count();
    match n.get(skip) {
        Some(&first) => (n.len() - skip - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(integer(&[0x01, 0x00, 0x01]), [0x02, 0x03, 0x01, 0x00, 0x01]);
        assert_eq!(integer(&[0x00, 0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[0x00, 0x00]), [0x02, 0x01, 0x00]);
        assert_eq!(length(300), [0x82, 0x01, 0x2c]);
        assert_eq!(significant_bits(&[0x00, 0x01, 0xff]), 9);
        assert_eq!(significant_bits(&[0x00]), 0);
    }
}
