//! Base64url without padding, the only encoding JOSE compact serialisation uses.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes `bytes`.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends `bytes` to `out`, encoded.
pub fn b64url_into(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// Decodes `text`. Padding, the other alphabet and non-canonical trailing bits are refused,
/// so one token has exactly one encoding.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_encoding_per_value() {
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), b"\xfb\xff");
        assert!(b64url_decode("-_8=").is_none(), "padding");
        assert!(b64url_decode("+/8").is_none(), "standard alphabet");
        assert!(b64url_decode("-_9").is_none(), "trailing bits set");
        let mut out = String::from("x.");
        b64url_into(b"{}", &mut out);
        assert_eq!(out, "x.e30");
    }
}
