//! Building and running the application: storage, policies, keys, HTTP server.

use std::net::TcpListener;
use std::path::PathBuf;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use anyhow::{Context, bail};
use arc_swap::ArcSwap;

use crate::audit::{AuditWriter, Spool, SpoolPolicy};
use crate::broker::{Broker, Lifetimes};
use crate::config::Config;
use crate::dev::DevIdp;
use crate::http::client_addr::TrustedProxies;
use crate::inbound::{IssuerKeys, Validator};
use crate::metrics::Metrics;
use crate::mint::sealing::Kek;
use crate::mint::{KeyManager, KeyPolicy};
use crate::policy::load::Bundle;
use crate::policy::{Kind, Limits, PolicySet};
use crate::ratelimit::RateLimits;
use crate::revocation::Revocations;
use crate::storage::{self, DocumentChange};
use crate::tls::CertificateSlot;
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
    server: Server,
}

impl Application {
    /// Binds the listener, opens the database, applies policy files and loads keys.
    pub async fn build(config: Config, options: Options) -> anyhow::Result<Self> {
        Self::build_inner(config, options, None).await
    }

    /// Like [`Application::build`], over a storage the caller opened (`database_url` is not
    /// read). For measurements that wrap the store, e.g. the benchmark's comparison with
    /// audit records discarded; `serve` always uses [`Application::build`].
    pub async fn build_with_store(
        config: Config,
        options: Options,
        store: std::sync::Arc<dyn storage::Storage>,
    ) -> anyhow::Result<Self> {
        Self::build_inner(config, options, Some(store)).await
    }

    async fn build_inner(
        mut config: Config,
        options: Options,
        store: Option<std::sync::Arc<dyn storage::Storage>>,
    ) -> anyhow::Result<Self> {
        crate::memory::purge_freed_memory_promptly();
        apply_dev_mode(&mut config, options)?;
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local = listener.local_addr()?;
        let tls = certificate_slot(&config)?;
        if config.issuer_url.is_none() {
            let scheme = if tls.is_some() { "https" } else { "http" };
            config.issuer_url = Some(format!("{scheme}://{local}"));
        }
        let issuer_url = config.issuer_url();

        let kek = kek(&config, options)?;
        let store = match store {
            Some(store) => store,
            None => storage::connect(config.database_url.expose())
                .await
                .context("opening the database")?,
        };
        // Listen before loading anything, so no change made meanwhile is missed.
        let changes = store
            .subscribe()
            .await
            .context("listening for other replicas' changes")?;
        // Keys before policies: a wrong KEK must stop start-up before anything is written.
        let key_manager = KeyManager::new(kek, key_policy(&config));
        let keys = key_manager
            .load(&*store, crate::jose::unix_now())
            .await
            .context("loading signing keys")?;
        let dev = match options.dev {
            true => Some(web::Data::new(DevIdp::new(&issuer_url)?)),
            false => None,
        };
        let limits = Limits {
            max_ttl: config.max_ttl.0,
            allow_insecure_loopback_issuers: config.allow_insecure_loopback_issuers,
        };
        let policy_set =
            load_policies(&*store, &config, dev.as_ref().map(|d| d.get_ref()), &limits).await?;
        tracing::info!(
            issuers = policy_set.issuers().count(),
            policies = policy_set.policies().count(),
            "policies loaded"
        );

        let revocations = Revocations::load(&*store, crate::jose::unix_now())
            .await
            .context("loading revocations")?;
        let fetcher = Fetcher::new(
            config.upstream_timeout.0,
            concat!("sts-broker/", env!("CARGO_PKG_VERSION")),
        )?;
        let metrics = std::sync::Arc::new(Metrics::new());
        // Third-party issuers may move their keys: discovery runs with every fetch. No
        // exchange waits on a refresh while usable keys are cached.
        let cache = IssuerKeys::new(
            fetcher,
            CachePolicy {
                default_ttl: config.jwks_cache_ttl.0,
                cooldown: config.jwks_refetch_cooldown.0,
                deadline: config.upstream_timeout.0,
                refresh: Refresh::Background,
                discovery: Discovery::EveryFetch,
            },
            metrics.clone(),
        );
        let broker = web::Data::new(Broker {
            issuer_url: issuer_url.clone(),
            policies: ArcSwap::from_pointee(policy_set),
            validator: Validator::new(cache, config.clock_leeway.0),
            keys: ArcSwap::from_pointee(keys),
            key_manager,
            revocations,
            jwks_max_age: config.jwks_max_age.0,
            audit: AuditWriter::spawn(store.clone(), metrics.clone(), spool_policy(&config)?)
                .context("starting the audit committer thread")?,
            metrics,
            store,
            lifetimes: Lifetimes {
                default_ttl: config.default_ttl.0,
                max_ttl: config.max_ttl.0,
            },
            rate_limits: RateLimits::from_config(
                &config.rate_limit_per_client,
                &config.rate_limit_per_subject,
            )
            .map_err(anyhow::Error::msg)?,
            trusted_proxies: TrustedProxies::parse(&config.trusted_proxies)
                .map_err(anyhow::Error::msg)?,
            limits,
            overlay: dev_documents(dev.as_ref().map(|d| d.get_ref())),
            admin_token: config.admin_token.clone(),
            admin_writes: tokio::sync::Mutex::new(()),
            key_refreshes: tokio::sync::Mutex::new(()),
        });
        spawn_jti_purge(broker.clone().into_inner());
        spawn_key_rotation(broker.clone().into_inner());
        crate::sync::spawn(broker.clone().into_inner(), changes);

        // Loading and storing the policies freed far more than the compiled set keeps.
        crate::memory::release_freed_memory();
        let server = http_server(broker, dev, listener, tls.as_ref())?;
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

/// The HTTP(S) server over the shared broker state.
fn http_server(
    broker: web::Data<Broker>,
    dev: Option<web::Data<DevIdp>>,
    listener: TcpListener,
    tls: Option<&std::sync::Arc<CertificateSlot>>,
) -> anyhow::Result<Server> {
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(broker.clone())
            .app_data(web::PayloadConfig::new(crate::http::body::MAX_BODY_BYTES))
            .wrap(middleware::from_fn(crate::http::request_id::assign))
            .configure(crate::http::routes);
        if let Some(dev) = &dev {
            app = app.app_data(dev.clone()).configure(crate::dev::routes);
        }
        app.default_service(web::to(crate::http::not_found))
    });
    let server = match tls {
        Some(slot) => {
            slot.spawn_watch();
            server.listen_rustls_0_23(listener, slot.server_config()?)?
        }
        None => server.listen(listener)?,
    };
    // SIGTERM/SIGINT: stop accepting, let in-flight requests (and their audit records)
    // finish for up to this long.
    Ok(server.shutdown_timeout(10).run())
}

/// The local audit spool, when configured.
fn spool_policy(config: &Config) -> anyhow::Result<Option<SpoolPolicy>> {
    let Some(dir) = &config.audit_spool_dir else {
        return Ok(None);
    };
    let spool = Spool::open(dir)
        .with_context(|| format!("audit_spool_dir {} is not usable", dir.display()))?;
    Ok(Some(SpoolPolicy {
        spool,
        grace: config.database_outage_grace.0,
    }))
}

/// The TLS certificate, when both files are configured.
fn certificate_slot(config: &Config) -> anyhow::Result<Option<std::sync::Arc<CertificateSlot>>> {
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Ok(Some(CertificateSlot::load(cert, key)?)),
        (None, None) => Ok(None),
        _ => bail!("tls_cert_file and tls_key_file must be set together"),
    }
}

/// The key-encryption key: configured, or the fixed development one under `--dev` only.
fn kek(config: &Config, options: Options) -> anyhow::Result<Kek> {
    match &config.key_encryption_key {
        Some(secret) => Ok(Kek::parse(secret)?),
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
    let bundle = Bundle::load_dir(&dir).map_err(|errs| policy_errors(&dir, &errs))?;
    // By set, not by scanning the bundle for each stored document: 10,000 × 10,000.
    let bundled: std::collections::HashSet<(Kind, &str)> = (bundle.issuers.iter())
        .map(|(d, _)| (Kind::Issuer, d.name.as_str()))
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
    if let Some(dev) = dev {
        let (issuer, policy) = dev.documents();
        base.issuers.push(issuer);
        base.policies.push(policy);
    }
    let set = bundle
        .compile_over(&base.issuers, &base.policies, limits)
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
    PolicySet::compile(&base.issuers, &base.policies, limits).map_err(|errs| {
        let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "stored policy documents are invalid:\n  {}",
            list.join("\n  ")
        )
    })
}

/// Rotates the signing key when it is due and reloads the ring (which also drops retired keys
/// past their window). Ticks often enough that neither a rotation nor an unpublication is late
/// by more than half a JWKS cache period (and at least every minute).
fn spawn_key_rotation(broker: std::sync::Arc<Broker>) {
    let policy = *broker.key_manager.policy();
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
            if let Err(e) = broker.refresh_keys().await {
                tracing::error!(error = %e, "signing-key rotation failed; the current key keeps signing");
            }
        }
    });
}

/// Forgets consumed subject-token jtis once they expire, every ten minutes.
fn spawn_jti_purge(broker: std::sync::Arc<Broker>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            match broker.store.purge_jtis(crate::jose::unix_now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "forgot expired subject-token jtis"),
                Err(e) => tracing::warn!(error = %e, "purging expired jtis failed"),
            }
        }
    });
}
