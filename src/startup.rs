//! Building and running the application: storage, policies, keys, HTTP server.

use std::net::TcpListener;
use std::path::PathBuf;

use actix_web::{App, HttpServer, middleware, web};
use anyhow::{Context, bail};

use std::sync::Arc;

use crate::admin::{Authenticator, Documents};
use crate::config::Config;
use crate::dev::DevIdp;
use crate::exchange::{ExchangeParts, Lifetimes, TokenExchange};
use crate::http::connection_limits::ConnectionLimits;
use crate::http::connections::Connections;
use crate::http::metrics_access::{MetricsAccess, Place};
use crate::http::shutdown::{FINAL_GRACE, Serving};
use crate::inbound::{IssuerKeys, Validator};
use crate::metadata::Metadata;
use crate::metrics::Metrics;
use crate::mint::sealing::Kek;
use crate::mint::{KeyManager, KeyPolicy, SigningKeys};
use crate::policy::load::Bundle;
use crate::policy::{CurrentPolicies, Kind, Limits, PolicySet};
use crate::preview::Previews;
use crate::ratelimit::ClientLimit;
use crate::readiness::ReadinessProbe;
use crate::revocation::Revocations;
use crate::storage::{self, DocumentChange};
use crate::sync::ReplicaSync;
use crate::tls::CertificateSlot;
use crate::trail::{AuditTrail, DurableWrite, TrailOptions};
use sts_jose::cache::{CachePolicy, Discovery, Refresh};
use sts_jose::fetch::Fetcher;

/// How to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Start the built-in development identity provider and example policies.
    pub dev: bool,
}

/// A built, bound, not yet running broker.
pub struct Application {
    port: u16,
    issuer_url: String,
    server: Serving,
}

impl Application {
    /// Binds the listener, opens the database, applies policy files and loads keys.
    pub async fn build(mut config: Config, options: Options) -> anyhow::Result<Self> {
        crate::memory::purge_freed_memory_promptly();
        apply_dev_mode(&mut config, options)?;
        let listener = crate::http::listener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local = listener.local_addr()?;
        let tls = certificate_slot(&config)?;
        if config.issuer_url.is_none() {
            let scheme = if tls.is_some() { "https" } else { "http" };
            config.issuer_url = Some(
                crate::config::PublicUrl::parse(&format!("{scheme}://{local}"))
                    .map_err(anyhow::Error::msg)?,
            );
        }
        let issuer_url = config.issuer_url();

        let kek = kek(&config, options)?;
        let store = storage::connect(config.database_url.expose())
            .await
            .context("opening the database")?;
        // Listen before loading anything, so no change made meanwhile is missed.
        let changes = store
            .subscribe()
            .await
            .context("listening for other replicas' changes")?;
        let metrics = Arc::new(Metrics::new());
        let (audit, trail) =
            crate::trail::start(trail_options(&config), store.clone(), metrics.clone())
                .await
                .context("opening the audit trail")?;
        let trail = Arc::new(trail);
        // Keys before policies: a wrong KEK must stop start-up before anything is written.
        let keys = Arc::new(
            SigningKeys::load(
                KeyManager::new(kek, key_policy(&config)),
                store.clone(),
                audit.clone(),
            )
            .await
            .context("loading signing keys")?,
        );
        let dev = match options.dev {
            true => Some(web::Data::new(DevIdp::new(&issuer_url)?)),
            false => None,
        };
        let limits = Limits {
            max_ttl: config.max_ttl.0,
            allow_insecure_loopback_issuers: config.allow_insecure_loopback_issuers,
            read_app_keys: true,
        };
        let policy_set =
            load_policies(&*store, &config, dev.as_ref().map(|d| d.get_ref()), &limits).await?;
        tracing::info!(
            issuers = policy_set.issuers().count(),
            policies = policy_set.policies().count(),
            "policies loaded"
        );
        let policies = Arc::new(CurrentPolicies::new(policy_set));
        let revocations = Arc::new(
            Revocations::load(
                store.clone(),
                audit.clone(),
                config.max_ttl.0,
                crate::jose::unix_now(),
            )
            .await
            .context("loading revocations")?,
        );
        let documents = Arc::new(Documents::new(
            store.clone(),
            policies.clone(),
            audit.clone(),
            limits,
            dev_documents(dev.as_ref().map(|d| d.get_ref())),
        ));
        let exchange = TokenExchange::new(ExchangeParts {
            issuer_url: issuer_url.clone(),
            policies,
            validator: validator(&config, metrics.clone())?,
            keys: keys.clone(),
            audit: audit.clone(),
            metrics: metrics.clone(),
            replay_store: store.clone(),
            lifetimes: Lifetimes {
                default_ttl: config.default_ttl.0,
                max_ttl: config.max_ttl.0,
            },
            per_subject: config.rate_limit_per_subject.limiter(),
            github: Arc::new(crate::github::GitHubClient::new(
                config.upstream_timeout.0,
                metrics.clone(),
            )?),
        });
        let services = Services {
            authenticator: web::Data::new(Authenticator::new(
                &issuer_url,
                config.admin_token.clone(),
                keys.clone(),
                revocations.clone(),
            )),
            metadata: web::Data::new(Metadata::new(
                &issuer_url,
                keys.clone(),
                config.jwks_max_age.0,
            )),
            readiness: web::Data::new(ReadinessProbe::new(store.clone(), audit, keys.clone())),
            previews: web::Data::new(Previews::new(trail.clone())),
            trail: web::Data::from(trail),
            client_limit: web::Data::new(ClientLimit::new(
                config.rate_limit_per_client,
                metrics.clone(),
            )),
            proxies: web::Data::new(config.trusted_proxies.clone()),
            exchange: web::Data::new(exchange),
            documents: web::Data::from(documents.clone()),
            revocations: web::Data::from(revocations.clone()),
            keys: web::Data::from(keys.clone()),
            metrics: web::Data::from(metrics),
            dev,
        };
        spawn_jti_purge(store);
        spawn_key_rotation(keys.clone());
        ReplicaSync::new(documents, revocations, keys).spawn(changes);

        // Loading and storing the policies freed far more than the compiled set keeps.
        crate::memory::release_freed_memory();
        let server = http_server(&config, services, listener, tls.as_ref())?;
        tracing::info!(%local, issuer = %issuer_url, dev = options.dev, "sts-broker listening");
        Ok(Self {
            port: local.port(),
            issuer_url,
            server,
        })
    }

    /// The bound port (useful when `listen` asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's `iss`.
    pub fn issuer_url(&self) -> &str {
        &self.issuer_url
    }

    /// Serves until the process is told to stop.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// `--dev`: only on SQLite and loopback (it serves a token minter), and loopback issuers
/// are allowed (the development provider is one).
fn apply_dev_mode(config: &mut Config, options: Options) -> anyhow::Result<()> {
    if !options.dev {
        return Ok(());
    }
    if !config.is_sqlite() {
        bail!(
            "--dev runs on the embedded SQLite database only; unset database_url or use sqlite://"
        );
    }
    if !config.listen.ip().is_loopback() {
        bail!("--dev is refused unless listen is a loopback address (it serves a token minter)");
    }
    config.allow_insecure_loopback_issuers = true;
    Ok(())
}

/// Everything the routes are given, each route taking only what it needs.
#[derive(Clone)]
struct Services {
    exchange: web::Data<TokenExchange>,
    documents: web::Data<Documents>,
    keys: web::Data<SigningKeys>,
    revocations: web::Data<Revocations>,
    trail: web::Data<AuditTrail>,
    previews: web::Data<Previews>,
    authenticator: web::Data<Authenticator>,
    metadata: web::Data<Metadata>,
    readiness: web::Data<ReadinessProbe>,
    client_limit: web::Data<ClientLimit>,
    proxies: web::Data<crate::trusted_proxies::TrustedProxies>,
    metrics: web::Data<Metrics>,
    dev: Option<web::Data<DevIdp>>,
}

/// The HTTP(S) server over the services, with its connection caps and its own handling of
/// SIGTERM/SIGINT (see `http::shutdown`), and the `/metrics` server when `metrics_listen` is
/// set.
fn http_server(
    config: &Config,
    services: Services,
    listener: TcpListener,
    tls: Option<&std::sync::Arc<CertificateSlot>>,
) -> anyhow::Result<Serving> {
    let (limits, file_limit, open_files) = ConnectionLimits::for_this_process(
        config.max_connections,
        config.max_connections_per_client,
    )
    .map_err(anyhow::Error::msg)?;
    tracing::info!(
        file_limit,
        open_files,
        max_connections = limits.total,
        max_connections_per_client = limits.per_client,
        "connection limits"
    );
    let connections = Arc::new(Connections::new(
        limits,
        config.trusted_proxies.clone(),
        services.metrics.clone().into_inner(),
    ));
    let metrics_access = |place| {
        let admins = services.authenticator.clone().into_inner();
        web::Data::new(MetricsAccess::new(
            config.metrics_token.clone(),
            admins,
            place,
        ))
    };
    let public_metrics = match config.metrics_listen {
        Some(_) => metrics_access(Place::Elsewhere),
        None => metrics_access(Place::Public),
    };
    let internal_metrics = metrics_access(Place::Internal);
    let metrics = services.metrics.clone();
    let readiness = services.readiness.clone();
    // actix counts connections per worker; the workers together hold at most the cap.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let on_connect = connections.clone();
    let server = HttpServer::new(move || {
        let s = services.clone();
        let mut app = App::new()
            .app_data(s.exchange)
            .app_data(s.documents)
            .app_data(s.keys)
            .app_data(s.revocations)
            .app_data(s.trail)
            .app_data(s.previews)
            .app_data(s.authenticator)
            .app_data(s.metadata)
            .app_data(s.readiness)
            .app_data(s.client_limit)
            .app_data(s.proxies)
            .app_data(s.metrics)
            .app_data(public_metrics.clone())
            .app_data(web::PayloadConfig::new(crate::http::body::MAX_BODY_BYTES))
            .wrap(middleware::from_fn(crate::http::connections::guard))
            .wrap(middleware::from_fn(crate::http::request_id::assign))
            .configure(crate::http::routes);
        if let Some(dev) = s.dev {
            app = app.app_data(dev).configure(crate::dev::routes);
        }
        app.default_service(web::to(crate::http::not_found))
    })
    .workers(workers)
    .max_connections(limits.total.div_ceil(workers))
    .on_connect(move |io, ext| on_connect.on_connect(io, ext))
    .disable_signals()
    .shutdown_timeout(FINAL_GRACE.as_secs());
    let mut listeners = vec![listener.try_clone()?];
    let server = match tls {
        Some(slot) => {
            slot.spawn_watch();
            server.listen_rustls_0_23(listener, slot.server_config()?)?
        }
        None => server.listen(listener)?,
    };
    let mut servers = vec![server.run()];
    if let Some(addr) = config.metrics_listen {
        let metrics_listener = crate::http::listener::bind(addr)
            .with_context(|| format!("cannot listen on metrics_listen {addr}"))?;
        let local = metrics_listener.local_addr()?;
        listeners.push(metrics_listener.try_clone()?);
        let metrics_server = HttpServer::new(move || {
            App::new()
                .app_data(metrics.clone())
                .app_data(readiness.clone())
                .app_data(internal_metrics.clone())
                .wrap(middleware::from_fn(crate::http::request_id::assign))
                .configure(crate::http::metrics_access::routes)
        })
        .workers(1)
        .max_connections(64)
        .disable_signals()
        .shutdown_timeout(FINAL_GRACE.as_secs())
        .listen(metrics_listener)?;
        servers.push(metrics_server.run());
        tracing::info!(%local, "serving /metrics");
    }
    Ok(Serving::new(servers, listeners, connections)?)
}

/// Where the audit trail's durable write goes, and how long records are kept.
fn trail_options(config: &Config) -> TrailOptions {
    if config.audit_spool_dir.is_some() {
        tracing::warn!(
            "audit_spool_dir is deprecated: the audit journal replaced the spool; read as audit_journal_dir"
        );
    }
    if config.database_outage_grace.is_some() {
        tracing::warn!(
            "database_outage_grace is deprecated and ignored: the audit journal covers database outages"
        );
    }
    let durable_write = match config.audit_journal_dir() {
        Some(dir) => DurableWrite::Journal(crate::journal::JournalOptions {
            dir,
            segment_bytes: config.audit_journal_segment_size,
            durability: config.audit_durability,
        }),
        None => DurableWrite::Database(config.audit_durability),
    };
    TrailOptions {
        durable_write,
        retention: config.audit_retention.0,
    }
}

/// The TLS certificate, when both files are configured.
fn certificate_slot(config: &Config) -> anyhow::Result<Option<std::sync::Arc<CertificateSlot>>> {
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Ok(Some(CertificateSlot::load(cert, key)?)),
        (None, None) => Ok(None),
        _ => bail!("tls_cert_file and tls_key_file must be set together"),
    }
}

/// Inbound token validation, with the issuers' key cache.
fn validator(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Validator> {
    let fetcher = Fetcher::new(
        config.upstream_timeout.0,
        concat!("sts-broker/", env!("CARGO_PKG_VERSION")),
    )?;
    // Third-party issuers may move their keys: discovery runs with every fetch. No exchange
    // waits on a refresh while usable keys are cached.
    let cache = IssuerKeys::new(
        fetcher,
        CachePolicy {
            default_ttl: config.jwks_cache_ttl.0,
            cooldown: config.jwks_refetch_cooldown.0,
            deadline: config.upstream_timeout.0,
            refresh: Refresh::Background,
            discovery: Discovery::EveryFetch,
        },
        metrics,
    );
    Ok(Validator::new(cache, config.clock_leeway.0))
}

/// The key-encryption key: configured, or the fixed development one under `--dev` only.
fn kek(config: &Config, options: Options) -> anyhow::Result<Kek> {
    match &config.key_encryption_key {
        Some(kek) => Ok(kek.clone()),
        None if options.dev => Ok(Kek::development()),
        None => bail!(
            "no key_encryption_key: signing keys are encrypted at rest and serve refuses to start \
             without one.\n  Make one with `openssl rand -base64 32` and pass it as \
             STS_BROKER_KEY_ENCRYPTION_KEY, or put it in a file named by key_encryption_key_file.\n  \
             Keep it: without it the stored signing keys cannot be opened."
        ),
    }
}

fn key_policy(config: &Config) -> KeyPolicy {
    KeyPolicy {
        alg: config.signing_algorithm,
        max_ttl: config.max_ttl.0,
        publish_lead: config.jwks_max_age.0,
        rotation_period: config.key_rotation_period.0,
    }
}

/// The configured folder; the default `policies/` only when it exists.
fn policies_dir(config: &Config) -> Option<PathBuf> {
    match &config.policies_dir {
        Some(dir) => Some(dir.clone()),
        None => Some(PathBuf::from("policies")).filter(|d| d.is_dir()),
    }
}

fn policy_errors(dir: &std::path::Path, errs: &[crate::policy::load::LoadError]) -> anyhow::Error {
    let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
    anyhow::anyhow!(
        "policies in {} are invalid; nothing was applied:\n  {}",
        dir.display(),
        list.join("\n  ")
    )
}

/// Reads the policies folder over the stored documents, checks the whole result, and only
/// then stores it (one transaction): all files apply, or none do. Documents that came from
/// files whose documents are gone are removed, so deleting a file revokes its policies.
async fn load_policies(
    store: &dyn storage::Storage,
    config: &Config,
    dev: Option<&DevIdp>,
    limits: &Limits,
) -> anyhow::Result<PolicySet> {
    let mut base = store.documents().await?;
    let Some(dir) = policies_dir(config) else {
        return compile_base(base, dev, limits);
    };
    // Read errors and validation errors of every file are reported together.
    let loaded = Bundle::read_dir(&dir);
    let bundle = &loaded.bundle;
    // By set, not by scanning the bundle for each stored document: 10,000 × 10,000.
    let bundled: std::collections::HashSet<(Kind, &str)> = (bundle.issuers.iter())
        .map(|(d, _)| (Kind::Issuer, d.name.as_str()))
        .chain((bundle.apps.iter()).map(|(d, _)| (Kind::GitHubApp, d.name.as_str())))
        .chain((bundle.policies.iter()).map(|(d, _)| (Kind::TrustPolicy, d.name.as_str())))
        .collect();
    let in_bundle = |kind: Kind, name: &str| bundled.contains(&(kind, name));
    let gone: Vec<(Kind, String)> = std::mem::take(&mut base.from_files)
        .into_iter()
        .filter(|(kind, name)| !in_bundle(*kind, name))
        .collect();
    base.issuers
        .retain(|d| !gone.contains(&(Kind::Issuer, d.name.clone())));
    base.policies
        .retain(|d| !gone.contains(&(Kind::TrustPolicy, d.name.clone())));
    base.apps
        .retain(|d| !gone.contains(&(Kind::GitHubApp, d.name.clone())));
    if let Some(dev) = dev {
        let (issuer, policy) = dev.documents();
        base.issuers.push(issuer);
        base.policies.push(policy);
    }
    let set = loaded
        .compile_over_all((&base.apps, &base.issuers, &base.policies), limits)
        .map_err(|errs| policy_errors(&dir, &errs))?;
    let mut changes: Vec<DocumentChange> = gone
        .into_iter()
        .map(|(kind, name)| DocumentChange {
            kind,
            name,
            body: None,
            expected_version: None,
        })
        .collect();
    for (doc, _) in &bundle.apps {
        changes.push(DocumentChange {
            kind: Kind::GitHubApp,
            name: doc.name.clone(),
            body: Some(serde_json::to_string(doc)?),
            expected_version: None,
        });
    }
    for (doc, _) in &bundle.issuers {
        changes.push(DocumentChange {
            kind: Kind::Issuer,
            name: doc.name.clone(),
            body: Some(serde_json::to_string(doc)?),
            expected_version: None,
        });
    }
    for (doc, _) in &bundle.policies {
        changes.push(DocumentChange {
            kind: Kind::TrustPolicy,
            name: doc.name.clone(),
            body: Some(serde_json::to_string(doc)?),
            expected_version: None,
        });
    }
    let changed = store
        .apply_documents(&changes, storage::FILES_ACTOR, crate::jose::unix_now())
        .await?;
    if changed > 0 {
        tracing::info!(changed, dir = %dir.display(), "applied policy files");
    }
    Ok(set)
}

/// The documents `--dev` adds in memory.
fn dev_documents(dev: Option<&DevIdp>) -> storage::StoredDocuments {
    let mut docs = storage::StoredDocuments::default();
    if let Some(dev) = dev {
        let (issuer, policy) = dev.documents();
        docs.issuers.push(issuer);
        docs.policies.push(policy);
    }
    docs
}

fn compile_base(
    mut base: storage::StoredDocuments,
    dev: Option<&DevIdp>,
    limits: &Limits,
) -> anyhow::Result<PolicySet> {
    if let Some(dev) = dev {
        let (issuer, policy) = dev.documents();
        base.issuers.push(issuer);
        base.policies.push(policy);
    }
    PolicySet::compile_with_apps(&base.apps, &base.issuers, &base.policies, limits).map_err(
        |errs| {
            let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "stored policy documents are invalid:\n  {}",
                list.join("\n  ")
            )
        },
    )
}

/// Rotates the signing key when it is due and reloads the ring (which also drops retired keys
/// past their window). Ticks often enough that neither a rotation nor an unpublication is late
/// by more than half a JWKS cache period (and at least every minute).
fn spawn_key_rotation(keys: Arc<SigningKeys>) {
    let policy = *keys.policy();
    let period = (policy.publish_lead.min(policy.rotation_period) / 2).clamp(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(60),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = keys.refresh().await {
                tracing::error!(error = %e, "signing-key rotation failed; the current key keeps signing");
            }
        }
    });
}

/// Forgets consumed subject-token jtis once they expire, every ten minutes.
fn spawn_jti_purge(store: Arc<dyn storage::Storage>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            match store.purge_jtis(crate::jose::unix_now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "forgot expired subject-token jtis"),
                Err(e) => tracing::warn!(error = %e, "purging expired jtis failed"),
            }
        }
    });
}
