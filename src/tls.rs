//! HTTPS with rustls, and certificates that are replaced without a restart.
//!
//! Certificates are short-lived these days (ACME renews them every few weeks), so the
//! server's certificate is looked up per handshake from a slot that is refilled on SIGHUP and
//! whenever either file's modification time changes. A reload that fails (half-written file,
//! mismatched key) keeps the current certificate and logs why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files' modification times are checked.
const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The certificate in force, and where it comes from.
#[derive(Debug)]
pub struct CertificateSlot {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    loaded: std::sync::Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for CertificateSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertificateSlot {
    /// Loads the pair once; an error here stops start-up.
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let stamps = (modified(cert_file), modified(key_file));
        let key = read_pair(cert_file, key_file, &provider)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: ArcSwap::from_pointee(key),
            loaded: std::sync::Mutex::new(stamps),
        }))
    }

    /// A rustls server configuration serving from this slot (TLS 1.2 and 1.3).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(config)
    }

    /// Re-reads the files; on failure the current certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let stamps = (modified(&self.cert_file), modified(&self.key_file));
        let key = read_pair(&self.cert_file, &self.key_file, &self.provider)?;
        self.current.store(Arc::new(key));
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
        tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
        Ok(())
    }

    fn changed_on_disk(&self) -> bool {
        let now = (modified(&self.cert_file), modified(&self.key_file));
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// Reloads on SIGHUP and when a file changes.
    pub fn spawn_watch(self: &Arc<Self>) {
        let slot = self.clone();
        // Registered before returning, so a SIGHUP sent right after start-up is handled
        // rather than terminating the process (SIGHUP's default action).
        let mut hangup = hangup_signal();
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(POLL_INTERVAL);
            poll.tick().await;
            loop {
                let why = tokio::select! {
                    _ = poll.tick() => {
                        if !slot.changed_on_disk() {
                            continue;
                        }
                        "file change"
                    }
                    _ = recv(&mut hangup) => "SIGHUP",
                };
                if let Err(e) = slot.reload() {
                    tracing::error!(error = %format!("{e:#}"), trigger = why, "TLS certificate reload failed; keeping the current one");
                }
            }
        });
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

#[cfg(unix)]
async fn recv(signal: &mut Hangup) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn recv(_: &mut Hangup) {
    std::future::pending().await
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect())
        .with_context(|| {
            format!(
                "tls_cert_file {}: no readable PEM certificates",
                cert_file.display()
            )
        })?;
    if chain.is_empty() {
        bail!("tls_cert_file {} holds no certificate", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file).with_context(|| {
        format!(
            "tls_key_file {}: no readable PEM private key",
            key_file.display()
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "tls_key_file {} does not match tls_cert_file {}",
            key_file.display(),
            cert_file.display()
        )
    })
}
