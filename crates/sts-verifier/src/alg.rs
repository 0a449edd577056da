//! The signature algorithms the broker signs with, and nothing else.

/// A JOSE `alg` this crate verifies. `none` and the HMAC family are absent on purpose: the
/// broker never uses them, and an HMAC keyed with a public key proves nothing
/// (CVE-2017-11424, CVE-2022-29217).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256 (the broker's default).
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, the default allow-list.
    pub const ALL: [Algorithm; 3] = [Self::ES256, Self::RS256, Self::EdDSA];

    /// Parses a JOSE `alg` name (case-sensitive, as RFC 7515 says).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The same algorithm in the JOSE core.
    pub(crate) fn jose(self) -> sts_jose::Algorithm {
        match self {
            Self::ES256 => sts_jose::Algorithm::ES256,
            Self::RS256 => sts_jose::Algorithm::RS256,
            Self::EdDSA => sts_jose::Algorithm::EdDSA,
        }
    }

    /// The algorithm of the core's name, if this crate verifies it.
    pub(crate) fn of(alg: sts_jose::Algorithm) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.jose() == alg)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
