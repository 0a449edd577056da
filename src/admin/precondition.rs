//! Conditional writes of documents (`If-Match`, RFC 9110 §13.1.1), in terms of stored
//! versions: the HTTP layer reads the header, this decides.

/// Which stored version a write may replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No condition (no `If-Match`).
    Always,
    /// The document must exist, whatever its version (`If-Match: *`).
    Exists,
    /// The stored version must be one of these (strong entity tags this API gave). Empty when
    /// every tag given was weak or not one of ours: nothing matches then, and the write is
    /// refused with 412 rather than 400 (RFC 9110: a tag that matches nothing is a failed
    /// condition, not a malformed request).
    OneOf(Vec<i64>),
}

impl Precondition {
    /// Does the stored version (`None`: no such document) satisfy the condition?
    pub fn admits(&self, stored: Option<i64>) -> bool {
        match (self, stored) {
            (Precondition::Always, _) => true,
            (Precondition::Exists, stored) => stored.is_some(),
            (Precondition::OneOf(versions), Some(v)) => versions.contains(&v),
            (Precondition::OneOf(_), None) => false,
        }
    }

    /// Whether the write depends on the stored version at all.
    pub fn is_conditional(&self) -> bool {
        *self != Precondition::Always
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compared_exactly() {
        assert!(Precondition::Always.admits(None));
        assert!(Precondition::Always.admits(Some(3)));
        assert!(Precondition::Exists.admits(Some(3)));
        assert!(!Precondition::Exists.admits(None));
        assert!(Precondition::OneOf(vec![2, 3]).admits(Some(3)));
        assert!(!Precondition::OneOf(vec![2]).admits(Some(3)));
        assert!(!Precondition::OneOf(vec![2]).admits(None));
        assert!(!Precondition::OneOf(vec![]).admits(Some(1)));
    }
}
