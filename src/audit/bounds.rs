//! Bounds on what a record holds. Records are written for requests anyone can make (a
//! denial needs only a token of a registered issuer), so no field may grow with the
//! request, the token or the policy set.

use std::borrow::Cow;

/// Longest inbound `sub` kept; longer ones are cut with a marker (queries by subject match
/// the cut form).
pub const SUBJECT_BYTES: usize = 1024;
/// Longest inbound `iss` or `jti` kept.
pub const IDENTIFIER_BYTES: usize = 256;
/// Longest requested audience kept.
pub const AUDIENCE_BYTES: usize = 1024;
/// Requested scopes kept, and the longest one.
pub const SCOPES: usize = 32;
/// See [`SCOPES`].
pub const SCOPE_BYTES: usize = 128;

/// `text` cut to at most `max` bytes at a character boundary, followed by a marker that
/// says how many bytes were cut: a reader must never take a cut value for the whole one.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}…[truncated {} bytes]",
        &text[..end],
        text.len() - end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_at_character_boundaries_with_a_marker() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 3), "abc…[truncated 3 bytes]");
        // 'é' is two bytes: the cut falls before it, not inside it.
        assert_eq!(clip("aé", 2), "a…[truncated 2 bytes]");
    }
}
