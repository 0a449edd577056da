//! Prometheus metrics (`GET /metrics`, text format), with the official client.
//!
//! Label values are bounded by configuration, never by callers: result and reason codes are
//! fixed sets, policies and issuers are the registered ones (requests naming an unknown issuer
//! are counted under `unknown`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one exchange outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    /// `allow` or `deny`.
    pub result: &'static str,
    /// Stable reason code (`issued`, `not_admitted`, …).
    pub reason: String,
    /// The policy that issued the token, or that admitted it but could not grant what was
    /// asked (empty when no policy admitted it).
    pub policy: String,
}

/// Labels naming an issuer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    /// The registered issuer's name.
    pub issuer: String,
}

/// Labels of an issuer key fetch.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// The registered issuer's name.
    pub issuer: String,
    /// `ok` or `error`.
    pub outcome: &'static str,
}

/// Labels of a rate-limit or connection-limit rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `client` or `subject` (rate limits); `client` (connection limits).
    pub limit: &'static str,
}

/// Labels of a call to GitHub's API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitHubLabels {
    /// `installation` or `access_token`.
    pub call: &'static str,
    /// `ok`, `refused`, `rate_limited`, `unavailable`.
    pub outcome: &'static str,
}

/// Every metric the broker exports.
pub struct Metrics {
    registry: Registry,
    /// Exchanges by result, reason and policy.
    exchanges: Family<ExchangeLabels, Counter>,
    /// Time to answer an exchange, seconds (audit commit included).
    exchange_seconds: Histogram,
    /// Discovery + JWKS fetches per issuer and outcome.
    key_fetches: Family<FetchLabels, Counter>,
    /// Tokens verified with cached issuer keys, per issuer.
    key_cache_hits: Family<IssuerLabels, Counter>,
    /// Audit records per committed batch.
    audit_batch_size: Histogram,
    /// Time to commit one audit batch, seconds.
    audit_commit_seconds: Histogram,
    /// Audit records durable in the journal and not yet in the database's index.
    audit_index_behind: Gauge,
    /// Index batches the database did not take (retried; the journal keeps the records).
    audit_index_failures: Counter,
    /// Requests refused by a rate limit.
    rate_limited: Family<LimitLabels, Counter>,
    /// Client connections open now.
    open_connections: Gauge,
    /// Connections (or, behind a trusted proxy, requests) refused by a connection limit.
    connections_refused: Family<LimitLabels, Counter>,
    /// Requests whose body did not arrive within the deadline.
    body_timeouts: Counter,
    /// Calls to GitHub's API by call and outcome (installation lookups from the cache are
    /// not calls).
    github_calls: Family<GitHubLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sts");
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        let exchange_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let key_fetches = Family::<FetchLabels, Counter>::default();
        let key_cache_hits = Family::<IssuerLabels, Counter>::default();
        let audit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let audit_commit_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let audit_index_behind = Gauge::default();
        let audit_index_failures = Counter::default();
        let rate_limited = Family::<LimitLabels, Counter>::default();
        let open_connections = Gauge::default();
        let connections_refused = Family::<LimitLabels, Counter>::default();
        let body_timeouts = Counter::default();
        let github_calls = Family::<GitHubLabels, Counter>::default();
        registry.register(
            "github_calls",
            "Calls to GitHub's API by call and outcome",
            github_calls.clone(),
        );
        registry.register(
            "exchanges",
            "Token exchanges by result, reason code and policy",
            exchanges.clone(),
        );
        registry.register(
            "exchange_duration_seconds",
            "Time to answer a token exchange, audit commit included",
            exchange_seconds.clone(),
        );
        registry.register(
            "issuer_key_fetches",
            "Discovery and JWKS fetches per issuer and outcome",
            key_fetches.clone(),
        );
        registry.register(
            "issuer_key_cache_hits",
            "Inbound tokens verified with cached issuer keys",
            key_cache_hits.clone(),
        );
        registry.register(
            "audit_batch_size",
            "Audit records committed per transaction",
            audit_batch_size.clone(),
        );
        registry.register(
            "audit_commit_duration_seconds",
            "Time to commit one audit batch",
            audit_commit_seconds.clone(),
        );
        registry.register(
            "audit_index_behind",
            "Audit records durable in the journal and not yet indexed: lists and filters lag by them",
            audit_index_behind.clone(),
        );
        registry.register(
            "audit_index_failures",
            "Audit index batches the database did not take (retried; the journal keeps every record)",
            audit_index_failures.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused by the per-client connection limit",
            connections_refused.clone(),
        );
        registry.register(
            "request_body_timeouts",
            "Requests whose body did not arrive within the deadline",
            body_timeouts.clone(),
        );
        Self {
            registry,
            exchanges,
            exchange_seconds,
            key_fetches,
            key_cache_hits,
            audit_batch_size,
            audit_commit_seconds,
            audit_index_behind,
            audit_index_failures,
            rate_limited,
            open_connections,
            connections_refused,
            body_timeouts,
            github_calls,
        }
    }

    /// One exchange answered, with how long it took (audit commit included).
    pub fn exchange(&self, labels: &ExchangeLabels, seconds: f64) {
        self.exchanges.get_or_create(labels).inc();
        self.exchange_seconds.observe(seconds);
    }

    /// Where the audit index stands after a try to index: how many durable records it
    /// lacks, and whether the try failed.
    pub fn audit_index(&self, behind: u64, failed: bool) {
        self.audit_index_behind
            .set(i64::try_from(behind).unwrap_or(i64::MAX));
        if failed {
            self.audit_index_failures.inc();
        }
    }

    /// A token verified with an issuer's cached keys.
    pub fn key_cache_hit(&self, issuer: &str) {
        let labels = IssuerLabels {
            issuer: issuer.to_owned(),
        };
        self.key_cache_hits.get_or_create(&labels).inc();
    }

    /// A discovery + JWKS fetch for an issuer, and whether it worked.
    pub fn key_fetch(&self, issuer: &str, ok: bool) {
        let labels = FetchLabels {
            issuer: issuer.to_owned(),
            outcome: if ok { "ok" } else { "error" },
        };
        self.key_fetches.get_or_create(&labels).inc();
    }

    /// One audit group commit: its records and how long it took.
    pub fn audit_batch(&self, records: usize, seconds: f64) {
        self.audit_commit_seconds.observe(seconds);
        self.audit_batch_size.observe(records as f64);
    }

    /// A request refused by the rate limit of `limit` (`client` or `subject`).
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// A connection (or request, behind a trusted proxy) refused by the per-client limit.
    pub fn connection_refused(&self) {
        self.connections_refused
            .get_or_create(&LimitLabels { limit: "client" })
            .inc();
    }

    /// A client connection opened.
    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    /// A client connection closed.
    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// A request whose body did not arrive within the deadline.
    pub fn body_timeout(&self) {
        self.body_timeouts.inc();
    }

    /// A call to GitHub's API and its outcome.
    pub fn github_call(&self, call: &'static str, outcome: &'static str) {
        self.github_calls
            .get_or_create(&GitHubLabels { call, outcome })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
