//! Broker configuration: defaults, then `sts-broker.toml`, then `STS_BROKER_*` variables.
//!
//! Unknown keys are refused so that a typo (`max_tll`) cannot silently leave a default in
//! force. Secrets are wrapped in [`Secret`], whose `Debug` never shows the value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::duration::HumanDuration;
pub use crate::journal::Durability;
pub use crate::mint::SigningAlgorithm;
pub use crate::mint::sealing::Kek;
pub use crate::ratelimit::RateSetting;
pub use crate::secret::Secret;
pub use crate::trusted_proxies::TrustedProxies;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_PATH_ENV: &str = "STS_BROKER_CONFIG";
/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "STS_BROKER_";

/// The largest `clock_leeway`. Replay protection keeps a `jti` an hour past the token's
/// `exp`; a leeway within this bound keeps every token it still accepts inside that window.
pub const MAX_CLOCK_LEEWAY: Duration = Duration::from_secs(300);

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration. Every field is documented in the README's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address and port to serve on.
    pub listen: SocketAddr,
    /// The broker's own `iss` and the public base URL of its discovery documents.
    /// Defaults to `http://<listen>`.
    pub issuer_url: Option<PublicUrl>,
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
    pub key_encryption_key: Option<Kek>,
    /// File holding the key-encryption key.
    pub key_encryption_key_file: Option<PathBuf>,
    /// `fsync` (a record is on stable storage before its answer) or `os` (handed to the
    /// operating system: survives a crash of the broker, not of the machine).
    pub audit_durability: Durability,
    /// Folder of the audit journal. Default on SQLite: `audit-journal` beside the database
    /// file; on PostgreSQL unset (the database commit is the durable write).
    pub audit_journal_dir: Option<PathBuf>,
    /// Size of each journal segment file, in bytes.
    pub audit_journal_segment_size: u64,
    /// How long audit records are kept, in the index and in the journal.
    pub audit_retention: HumanDuration,
    /// Deprecated: the audit journal replaced the outage spool; read as `audit_journal_dir`.
    pub audit_spool_dir: Option<PathBuf>,
    /// Deprecated and ignored: the journal covers database outages for as long as the disk
    /// has room.
    pub database_outage_grace: Option<HumanDuration>,
    /// How often the signing key rotates.
    pub key_rotation_period: HumanDuration,
    /// How long relying parties may cache the broker's JWKS and discovery (`Cache-Control:
    /// max-age`); a new key is published at least this long before it signs.
    pub jwks_max_age: HumanDuration,
    /// Per client address, e.g. `100/s`; `0` turns it off.
    pub rate_limit_per_client: RateSetting,
    /// Per (issuer, subject), e.g. `600/m`; `0` turns it off.
    pub rate_limit_per_subject: RateSetting,
    /// Reverse proxies (IP addresses or CIDR blocks) whose `X-Forwarded-For` names the
    /// client; empty: the TCP peer is the client.
    pub trusted_proxies: TrustedProxies,
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
    /// Most client connections open at once. Unset: derived from the process's file limit
    /// at start (see `http::connections`); a value above that is lowered to it.
    pub max_connections: Option<usize>,
    /// Most connections one client (an IPv4 address or an IPv6 /64) may hold open, and
    /// behind trusted proxies most requests in flight per forwarded client. Unset: an eighth
    /// of the connection cap; `0`: no per-client cap.
    pub max_connections_per_client: Option<usize>,
    /// Serve `/metrics` on this address (plain HTTP) and not on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token that reads `/metrics` (admin credentials also do, on `listen`).
    pub metrics_token: Option<Secret>,
    /// File holding the metrics bearer token.
    pub metrics_token_file: Option<PathBuf>,
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
            audit_durability: Durability::Fsync,
            audit_journal_dir: None,
            audit_journal_segment_size: crate::journal::DEFAULT_SEGMENT_BYTES,
            audit_retention: HumanDuration(Duration::from_secs(90 * 86400)),
            audit_spool_dir: None,
            database_outage_grace: None,
            key_rotation_period: HumanDuration(Duration::from_secs(30 * 86400)),
            jwks_max_age: HumanDuration(Duration::from_secs(300)),
            rate_limit_per_client: RateSetting::OFF,
            rate_limit_per_subject: RateSetting::OFF,
            trusted_proxies: TrustedProxies::default(),
            log_format: LogFormat::Text,
            allow_insecure_loopback_issuers: false,
            clock_leeway: HumanDuration(Duration::from_secs(60)),
            jwks_refetch_cooldown: HumanDuration(Duration::from_secs(30)),
            jwks_cache_ttl: HumanDuration(Duration::from_secs(600)),
            upstream_timeout: HumanDuration(Duration::from_secs(5)),
            max_connections: None,
            max_connections_per_client: None,
            metrics_listen: None,
            metrics_token: None,
            metrics_token_file: None,
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
            // Keys arrive as written (`URL`): compared without case, as figment maps them.
            .filter(|key| !(key == "config" || key == "url"));
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
            let text = read_secret_file(file, "key_encryption_key_file")?;
            let kek = Kek::parse(&text).map_err(|e| {
                ConfigError::Invalid(format!("key_encryption_key_file {}: {e}", file.display()))
            })?;
            self.key_encryption_key = Some(kek);
        }
        if self.metrics_token.is_none()
            && let Some(file) = &self.metrics_token_file
        {
            self.metrics_token = Some(read_secret_file(file, "metrics_token_file")?);
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
        let segment = self.audit_journal_segment_size;
        if !(crate::journal::MIN_SEGMENT_BYTES..=crate::journal::MAX_SEGMENT_BYTES)
            .contains(&segment)
        {
            return bad(format!(
                "audit_journal_segment_size ({segment}) must be between {} and {} bytes",
                crate::journal::MIN_SEGMENT_BYTES,
                crate::journal::MAX_SEGMENT_BYTES
            ));
        }
        if self.audit_retention.0 < Duration::from_secs(86400) {
            return bad("audit_retention must be at least a day".into());
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
        if let Some(token) = &self.admin_token
            && token.expose().len() < 16
        {
            return bad("admin_token must be at least 16 characters".into());
        }
        if let Some(token) = &self.metrics_token
            && token.expose().len() < 16
        {
            return bad("metrics_token must be at least 16 characters".into());
        }
        if self.max_connections == Some(0) {
            return bad("max_connections must be at least 1".into());
        }
        if let Some(metrics) = self.metrics_listen
            && metrics.port() != 0
            && metrics == self.listen
        {
            return bad(format!(
                "metrics_listen ({metrics}) must differ from listen: /metrics is served on it \
                 instead of the public listener"
            ));
        }
        Ok(())
    }

    /// The broker's `iss`: `issuer_url`, or `http://<listen>` when unset.
    pub fn issuer_url(&self) -> String {
        match &self.issuer_url {
            Some(url) => url.as_str().to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The audit journal's folder: configured (`audit_journal_dir`, or the deprecated
    /// `audit_spool_dir`), else beside an SQLite database file; `None` on PostgreSQL without one.
    pub fn audit_journal_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = self
            .audit_journal_dir
            .as_ref()
            .or(self.audit_spool_dir.as_ref())
        {
            return Some(dir.clone());
        }
        crate::storage::sqlite_file(self.database_url.expose())
            .map(|file| file.with_file_name("audit-journal"))
    }

    /// True when the configured database is the embedded SQLite one.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose().starts_with("sqlite:")
    }
}

/// The broker's public base URL (`issuer_url`): http(s), without query, fragment, userinfo
/// or a trailing `/` (the `iss` of every issued token is exactly this text, and relying
/// parties compare it exactly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// Checks `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("issuer_url {text:?} {why}"));
        match url::Url::parse(text) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => bad("is not an http(s) URL"),
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                bad("must not have a query or fragment")
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                bad("must not hold a user or password")
            }
            Ok(_) if text.ends_with('/') => bad("must not end with '/'"),
            Ok(_) => Ok(Self(text.to_owned())),
            Err(_) => bad("is not an http(s) URL"),
        }
    }

    /// The URL as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
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
    fn connection_and_metrics_settings_are_checked() {
        let short = Config {
            metrics_token: Some(Secret::new("short")),
            ..Config::default()
        };
        let err = short.validate().unwrap_err().to_string();
        assert!(err.contains("metrics_token"), "{err}");
        let same = Config {
            metrics_listen: Some(Config::default().listen),
            ..Config::default()
        };
        let err = same.validate().unwrap_err().to_string();
        assert!(err.contains("metrics_listen"), "{err}");
        let none = Config {
            max_connections: Some(0),
            ..Config::default()
        };
        assert!(none.validate().is_err());
        let fine = Config {
            metrics_listen: Some("127.0.0.1:9090".parse().unwrap()),
            metrics_token: Some(Secret::new("metrics-token-0123456789")),
            max_connections: Some(100),
            max_connections_per_client: Some(0),
            ..Config::default()
        };
        assert!(fine.validate().is_ok());
        assert!(!format!("{fine:?}").contains("metrics-token-0123"));
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
    fn numeric_environment_values_are_text() {
        let figment = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(
            "rate_limit_per_client = 0\nadmin_token = 1234567890123456789",
        ));
        let config: Config = figment.extract().unwrap();
        assert_eq!(config.rate_limit_per_client, RateSetting::OFF);
        assert_eq!(config.admin_token.unwrap().expose(), "1234567890123456789");
    }

    #[test]
    fn trusted_proxies_are_checked_blocks() {
        let load = |toml: &str| {
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .extract::<Config>()
                .map_err(|e| e.to_string())
        };
        let config = load("trusted_proxies = [\"10.0.0.0/8\", \"2001:db8::1\"]").unwrap();
        assert_eq!(
            config.trusted_proxies,
            TrustedProxies::parse(&["10.0.0.0/8", "2001:db8::1"]).unwrap()
        );
        let err = load("trusted_proxies = [\"10.0.0.0/40\"]").unwrap_err();
        assert!(
            err.contains("trusted_proxies") && err.contains("10.0.0.0/40"),
            "{err}"
        );
    }

    #[test]
    fn settings_are_typed_once_and_a_bad_one_names_its_key() {
        let load = |toml: &str| {
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .extract::<Config>()
                .map_err(|e| e.to_string())
        };
        for (toml, key) in [
            ("rate_limit_per_client = \"fast\"", "rate_limit_per_client"),
            ("key_encryption_key = \"c2hvcnQ=\"", "key_encryption_key"),
            ("issuer_url = \"https://sts.example/\"", "issuer_url"),
            ("issuer_url = \"https://u:p@sts.example\"", "issuer_url"),
            ("issuer_url = \"ftp://sts.example\"", "issuer_url"),
        ] {
            let err = load(toml).unwrap_err();
            assert!(err.contains(key), "{toml}: {err}");
        }
        let config =
            load("rate_limit_per_subject = \"600/m\"\nissuer_url = \"https://sts.example\"")
                .unwrap();
        assert_eq!(config.rate_limit_per_subject.to_string(), "600/m");
        assert_eq!(config.issuer_url(), "https://sts.example");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("max_tll = \"2h\""));
        let err = figment.extract::<Config>().unwrap_err().to_string();
        assert!(err.contains("max_tll"), "{err}");
    }
}
