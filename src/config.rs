//! Broker configuration: defaults, then `sts-broker.toml`, then `STS_BROKER_*` variables.
//!
//! Unknown keys are refused so that a typo (`max_tll`) cannot silently leave a default in
//! force. Secrets are wrapped in [`Secret`], whose `Debug` never shows the value.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_PATH_ENV: &str = "STS_BROKER_CONFIG";
/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "STS_BROKER_";

/// The largest `clock_leeway`. Replay protection keeps a `jti` an hour past the token's
/// `exp`; a leeway within this bound keeps every token it still accepts inside that window.
pub const MAX_CLOCK_LEEWAY: Duration = Duration::from_secs(300);

/// A secret value: printed as `***` by `Debug` so it cannot reach a log by accident.
#[derive(Clone, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar_string(d).map(Secret)
    }
}

/// Environment values arrive typed (`0` is a number, `true` a boolean): text settings take
/// any scalar as its text, so `STS_BROKER_RATE_LIMIT_PER_CLIENT=0` means `"0"`.
fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Str(String),
        Int(i64),
        UInt(u64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Str(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::UInt(u) => u.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Algorithm the broker signs its own tokens with.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256 (default: small, fast).
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    RS256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// A duration written as humans do (`15m`, `30d`, `1h 30m`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

/// The whole configuration. Every field is documented in the README's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address and port to serve on.
    pub listen: SocketAddr,
    /// The broker's own `iss` and the public base URL of its discovery documents.
    /// Defaults to `http://<listen>`.
    pub issuer_url: Option<String>,
    /// `sqlite://…` (embedded default).
    pub database_url: Secret,
    /// Folder of YAML policy documents applied at start.
    pub policies_dir: Option<PathBuf>,
    /// Algorithm of issued tokens.
    pub signing_algorithm: SigningAlgorithm,
    /// Lifetime of an issued token when its policy sets none.
    pub default_ttl: HumanDuration,
    /// Hard ceiling on any issued token's lifetime.
    pub max_ttl: HumanDuration,
    /// Bootstrap admin secret.
    pub admin_token: Option<Secret>,
    /// File holding the bootstrap admin secret.
    pub admin_token_file: Option<PathBuf>,
    /// PEM certificate chain for HTTPS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for HTTPS.
    pub tls_key_file: Option<PathBuf>,
    /// 32 random bytes, base64: encrypts signing keys at rest.
    pub key_encryption_key: Option<Secret>,
    /// File holding the key-encryption key.
    pub key_encryption_key_file: Option<PathBuf>,
    /// Folder for a local audit spool used while the database is unreachable (unset: fail
    /// closed at once).
    pub audit_spool_dir: Option<PathBuf>,
    /// Longest database outage the audit spool covers; then exchanges fail closed.
    pub database_outage_grace: HumanDuration,
    /// How often the signing key rotates.
    pub key_rotation_period: HumanDuration,
    /// How long relying parties may cache the broker's JWKS and discovery (`Cache-Control:
    /// max-age`); a new key is published at least this long before it signs.
    pub jwks_max_age: HumanDuration,
    /// Per client address, e.g. `100/s`; `0` turns it off.
    #[serde(deserialize_with = "scalar_string")]
    pub rate_limit_per_client: String,
    /// Per (issuer, subject), e.g. `600/m`; `0` turns it off.
    #[serde(deserialize_with = "scalar_string")]
    pub rate_limit_per_subject: String,
    /// Reverse proxies (IP addresses or CIDR blocks) whose `X-Forwarded-For` names the
    /// client; empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Accept `http://127.0.0.1…` / `http://localhost…` issuer URLs (tests, dev).
    pub allow_insecure_loopback_issuers: bool,
    /// Clock-skew leeway for inbound `exp`/`nbf`/`iat`, at most [`MAX_CLOCK_LEEWAY`].
    pub clock_leeway: HumanDuration,
    /// Least time from the end of one fetch of an issuer's keys to the start of the next
    /// (an unknown `kid`, a refresh); longer than `upstream_timeout`.
    pub jwks_refetch_cooldown: HumanDuration,
    /// How long fetched issuer keys are used before they are fetched again.
    pub jwks_cache_ttl: HumanDuration,
    /// Deadline of one fetch of an issuer's keys, discovery and JWKS together.
    pub upstream_timeout: HumanDuration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            issuer_url: None,
            database_url: Secret::new("sqlite://data/sts-broker.db"),
            policies_dir: None,
            signing_algorithm: SigningAlgorithm::ES256,
            default_ttl: HumanDuration(Duration::from_secs(15 * 60)),
            max_ttl: HumanDuration(Duration::from_secs(3600)),
            admin_token: None,
            admin_token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            key_encryption_key: None,
            key_encryption_key_file: None,
            audit_spool_dir: None,
            database_outage_grace: HumanDuration(Duration::from_secs(300)),
            key_rotation_period: HumanDuration(Duration::from_secs(30 * 86400)),
            jwks_max_age: HumanDuration(Duration::from_secs(300)),
            rate_limit_per_client: "0".into(),
            rate_limit_per_subject: "0".into(),
            trusted_proxies: Vec::new(),
            log_format: LogFormat::Text,
            allow_insecure_loopback_issuers: false,
            clock_leeway: HumanDuration(Duration::from_secs(60)),
            jwks_refetch_cooldown: HumanDuration(Duration::from_secs(30)),
            jwks_cache_ttl: HumanDuration(Duration::from_secs(600)),
            upstream_timeout: HumanDuration(Duration::from_secs(5)),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, a variable or a value is wrong; the message names it.
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then the TOML file (if any), then `STS_BROKER_*` variables.
    ///
    /// `path` comes from `--config`; without it `STS_BROKER_CONFIG` is read, and without that
    /// `sts-broker.toml` in the working directory is used when it exists.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_PATH_ENV).map(PathBuf::from));
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match explicit {
            Some(file) if !file.exists() => {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            Some(file) => figment = figment.merge(Toml::file_exact(file)),
            None if Path::new("sts-broker.toml").exists() => {
                figment = figment.merge(Toml::file_exact("sts-broker.toml"))
            }
            None => {}
        }
        // `CONFIG` names the file itself, not a key; `URL` is the client commands' broker
        // address (`--broker`), so one shell can run both `serve` and the clients.
        let env = Env::prefixed(ENV_PREFIX)
            .split("__")
            .filter(|key| !matches!(key.as_str(), "config" | "url"));
        let mut config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.resolve_files()?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the `*_file` variants of secrets, so secrets can come from mounted files.
    fn resolve_files(&mut self) -> Result<(), ConfigError> {
        if self.admin_token.is_none()
            && let Some(file) = &self.admin_token_file
        {
            self.admin_token = Some(read_secret_file(file, "admin_token_file")?);
        }
        if self.key_encryption_key.is_none()
            && let Some(file) = &self.key_encryption_key_file
        {
            self.key_encryption_key = Some(read_secret_file(file, "key_encryption_key_file")?);
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.max_ttl.0.is_zero() || self.default_ttl.0.is_zero() {
            return bad("default_ttl and max_ttl must be positive".into());
        }
        if self.default_ttl > self.max_ttl {
            return bad(format!(
                "default_ttl ({:?}) exceeds max_ttl ({:?})",
                self.default_ttl, self.max_ttl
            ));
        }
        if self.clock_leeway.0 > MAX_CLOCK_LEEWAY {
            return bad(format!(
                "clock_leeway ({}) exceeds {}: a token accepted that long after its exp could \
                 be replayed once its jti is forgotten",
                humantime::format_duration(self.clock_leeway.0),
                humantime::format_duration(MAX_CLOCK_LEEWAY)
            ));
        }
        let issuer = self.issuer_url();
        match url::Url::parse(&issuer) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => return bad(format!("issuer_url {issuer:?} is not an http(s) URL")),
        }
        if issuer.ends_with('/') {
            return bad(format!("issuer_url {issuer:?} must not end with '/'"));
        }
        crate::ratelimit::RateLimits::from_config(
            &self.rate_limit_per_client,
            &self.rate_limit_per_subject,
        )
        .map_err(ConfigError::Invalid)?;
        crate::http::client_addr::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(ConfigError::Invalid)?;
        if self.jwks_max_age.0.is_zero() || self.jwks_max_age.0 > Duration::from_secs(86400) {
            return bad("jwks_max_age must be between 1s and 24h".into());
        }
        if self.key_rotation_period.0 <= self.jwks_max_age.0 {
            return bad(format!(
                "key_rotation_period ({:?}) must exceed jwks_max_age ({:?}): a key is published \
                 that long before it signs",
                self.key_rotation_period, self.jwks_max_age
            ));
        }
        // A fetch may take up to `upstream_timeout`; a cooldown no longer than that would
        // let fetches of one issuer follow each other back to back while it hangs.
        if self.jwks_refetch_cooldown.0 <= self.upstream_timeout.0 {
            return bad(format!(
                "jwks_refetch_cooldown ({}) must be longer than upstream_timeout ({}): an \
                 issuer that hangs would otherwise be fetched again as soon as a fetch gives up",
                humantime::format_duration(self.jwks_refetch_cooldown.0),
                humantime::format_duration(self.upstream_timeout.0)
            ));
        }
        if let Some(kek) = &self.key_encryption_key {
            crate::mint::sealing::Kek::parse(kek)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if let Some(token) = &self.admin_token
            && token.expose().len() < 16
        {
            return bad("admin_token must be at least 16 characters".into());
        }
        Ok(())
    }

    /// The broker's `iss`: `issuer_url`, or `http://<listen>` when unset.
    pub fn issuer_url(&self) -> String {
        self.issuer_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// True when the configured database is the embedded SQLite one.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose().starts_with("sqlite:")
    }
}

fn read_secret_file(path: &Path, key: &str) -> Result<Secret, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| Secret::new(s.trim()))
        .map_err(|e| ConfigError::Invalid(format!("{key}: cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_leeway_is_bounded() {
        let with = |secs| Config {
            clock_leeway: HumanDuration(Duration::from_secs(secs)),
            ..Config::default()
        };
        assert!(with(300).validate().is_ok());
        let err = with(301).validate().unwrap_err().to_string();
        assert!(err.contains("clock_leeway"), "{err}");
        assert!(with(7200).validate().is_err());
    }

    #[test]
    fn the_refetch_cooldown_outlasts_the_upstream_timeout() {
        let with = |cooldown_ms, timeout_ms| Config {
            jwks_refetch_cooldown: HumanDuration(Duration::from_millis(cooldown_ms)),
            upstream_timeout: HumanDuration(Duration::from_millis(timeout_ms)),
            ..Config::default()
        };
        assert!(with(30_000, 5_000).validate().is_ok());
        assert!(with(1_000, 800).validate().is_ok());
        for (cooldown, timeout) in [(5_000, 5_000), (1_000, 5_000)] {
            let err = with(cooldown, timeout).validate().unwrap_err().to_string();
            assert!(err.contains("jwks_refetch_cooldown"), "{err}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let config = Config {
            admin_token: Some(Secret::new("super-secret-admin-token")),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
    }

    #[test]
    fn durations_parse_as_humans_write_them() {
        let d: HumanDuration = serde_json::from_str("\"30d\"").unwrap();
        assert_eq!(d.0, Duration::from_secs(30 * 86400));
        assert!(serde_json::from_str::<HumanDuration>("\"soon\"").is_err());
    }

    #[test]
    fn numeric_environment_values_are_text() {
        let figment = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(
            "rate_limit_per_client = 0\nadmin_token = 1234567890123456789",
        ));
        let config: Config = figment.extract().unwrap();
        assert_eq!(config.rate_limit_per_client, "0");
        assert_eq!(config.admin_token.unwrap().expose(), "1234567890123456789");
    }

    #[test]
    fn trusted_proxies_are_checked_blocks() {
        let load = |toml: &str| {
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .extract::<Config>()
                .unwrap()
        };
        let config = load("trusted_proxies = [\"10.0.0.0/8\", \"2001:db8::1\"]");
        assert_eq!(config.trusted_proxies, ["10.0.0.0/8", "2001:db8::1"]);
        assert!(config.validate().is_ok());
        let err = load("trusted_proxies = [\"10.0.0.0/40\"]")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trusted_proxies") && err.contains("10.0.0.0/40"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("max_tll = \"2h\""));
        let err = figment.extract::<Config>().unwrap_err().to_string();
        assert!(err.contains("max_tll"), "{err}");
    }
}
