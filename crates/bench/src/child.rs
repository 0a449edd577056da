//! The processes under test: `sts-broker serve` and the ideal handler; each in its own
//! working folder, killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;

use crate::floor::Floor;
use crate::load;

/// How long a process may take to answer its readiness probe.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A temporary folder, removed when dropped.
pub struct Workdir(PathBuf);

impl Workdir {
    /// A fresh folder under the system temp dir.
    pub fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!("sts-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which broker to start: `sts-broker serve --config FILE` with this binary and these extra
/// configuration lines.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `sts-broker` binary.
    pub bin: PathBuf,
    /// Lines added to its configuration file.
    pub extra_config: String,
    /// Its database (default: SQLite in its folder).
    pub database_url: Option<String>,
}

/// CPU time, memory and disk writes of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Bytes written to storage so far.
    pub write_bytes: u64,
    /// Resident KiB.
    pub rss_kib: u64,
    /// Peak resident KiB.
    pub peak_kib: u64,
}

/// A started, ready process.
pub struct Child {
    process: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// From spawn to the first successful readiness probe.
    pub ready_after: Duration,
    log: PathBuf,
}

impl Child {
    /// Its CPU and memory now.
    pub fn usage(&self) -> Usage {
        let pid = self.process.id();
        let (rss_kib, peak_kib) = crate::procfs::rss_kib(pid).unwrap_or_default();
        Usage {
            cpu: crate::procfs::cpu_time(pid).unwrap_or_default(),
            write_bytes: crate::procfs::write_bytes(pid).unwrap_or_default(),
            rss_kib,
            peak_kib,
        }
    }

    /// Group commits of audit records so far and the records in them, from its metrics.
    pub async fn audit_commits(&self) -> Option<(f64, f64)> {
        let (status, body) = load::get_with_bearer(self.addr, "/metrics", BENCH_TOKEN).await?;
        if status != 200 {
            return None;
        }
        let value = |name: &str| -> Option<f64> {
            let line = body.lines().find(|l| l.starts_with(name))?;
            line.rsplit(' ').next()?.parse().ok()
        };
        Some((
            value("sts_audit_batch_size_count")?,
            value("sts_audit_batch_size_sum")?,
        ))
    }

    /// The last lines of its log, to explain a failure.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The bearer the bench's brokers take for `/metrics` and the admin API.
pub const BENCH_TOKEN: &str = "bench-admin-token-0123456789";

/// Writes the broker's config and policies under `dir/name` and starts it.
pub async fn start_broker(
    dir: &Path,
    name: &str,
    launch: &Launch,
    alg: &str,
    policy_files: &[(String, String)],
) -> anyhow::Result<Child> {
    let home = dir.join(name);
    let policies = home.join("policies");
    std::fs::create_dir_all(&policies)?;
    for (name, yaml) in policy_files {
        std::fs::write(policies.join(name), yaml)?;
    }
    let port = free_port()?;
    let config = home.join("sts-broker.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n\
             database_url = \"{db}\"\n\
             policies_dir = \"{policies}\"\n\
             signing_algorithm = \"{alg}\"\n\
             key_encryption_key = \"{kek}\"\n\
             allow_insecure_loopback_issuers = true\n\
             rate_limit_per_client = \"0\"\n\
             rate_limit_per_subject = \"0\"\n\
             max_connections_per_client = 0\n\
             admin_token = \"{token}\"\n\
             log_format = \"json\"\n{extra}",
            db = launch
                .database_url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", home.join("broker.db").display())),
            policies = policies.display(),
            kek = random_kek(),
            token = BENCH_TOKEN,
            extra = launch.extra_config,
        ),
    )?;
    serve(launch, &home, port, "broker.log").await
}

/// Starts the broker that [`start_broker`] started under `dir/name` again, on the same
/// files and port (after a `kill -9`, say); its log goes to `log` in that folder.
pub async fn restart_broker(
    dir: &Path,
    name: &str,
    launch: &Launch,
    log: &str,
) -> anyhow::Result<Child> {
    let home = dir.join(name);
    let config = std::fs::read_to_string(home.join("sts-broker.toml"))?;
    let port = config
        .lines()
        .find_map(|l| {
            l.strip_prefix("listen = \"127.0.0.1:")?
                .strip_suffix('"')?
                .parse()
                .ok()
        })
        .context("no listen port in the broker's config")?;
    serve(launch, &home, port, log).await
}

/// `sts-broker serve` on the config in `home`, ready.
async fn serve(launch: &Launch, home: &Path, port: u16, log: &str) -> anyhow::Result<Child> {
    let mut command = Command::new(&launch.bin);
    command
        .arg("serve")
        .arg("--config")
        .arg(home.join("sts-broker.toml"));
    command.current_dir(home);
    spawn(command, &home.join(log), port, "/readyz").await
}

/// Starts the ideal handler (this binary with `--ideal-server PORT`), waiting for `durable`.
pub async fn start_ideal(dir: &Path, durable: IdealDurable) -> anyhow::Result<Child> {
    let port = free_port()?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("--ideal-server").arg(port.to_string());
    let floor = match durable {
        IdealDurable::Floor(floor) => floor.to_possible_value().map(|v| v.get_name().to_owned()),
        _ => None,
    };
    let name = match (durable, &floor) {
        (IdealDurable::None, _) => "ideal".to_owned(),
        (_, Some(floor)) => format!("ideal-{floor}"),
        (_, None) => "ideal-audit".to_owned(),
    };
    if durable != IdealDurable::None {
        let home = dir.join(&name);
        std::fs::create_dir_all(&home)?;
        command.arg("--ideal-audit-dir").arg(home);
    }
    if let Some(floor) = &floor {
        command.arg("--ideal-floor").arg(floor);
    }
    spawn(command, &dir.join(format!("{name}.log")), port, "/healthz").await
}

/// What the ideal handler waits for before it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdealDurable {
    /// Nothing.
    None,
    /// Its audit record, through the broker's journal and index.
    Journal,
    /// A bare group commit (see [`crate::floor`]).
    Floor(Floor),
}

async fn spawn(mut command: Command, log: &Path, port: u16, probe: &str) -> anyhow::Result<Child> {
    // The process reads only its config file: no stray STS_BROKER_* from this shell.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STS_BROKER_") {
            command.env_remove(key);
        }
    }
    command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    let started = Instant::now();
    let process = command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let mut child = Child {
        process,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        ready_after: Duration::ZERO,
        log: log.to_path_buf(),
    };
    loop {
        if load::get_status(child.addr, probe).await == Some(200) {
            child.ready_after = started.elapsed();
            return Ok(child);
        }
        if let Some(status) = child.process.try_wait()? {
            bail!(
                "{:?} exited ({status}):\n{}",
                command.get_program(),
                child.log_tail()
            );
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!("not ready after {READY_TIMEOUT:?}:\n{}", child.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL database of the bench's own on the server at `server` (a URL naming any
/// database there), dropped when this is.
pub struct PostgresDb {
    server: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl PostgresDb {
    /// Creates `sts_bench_<pid>_<n>` with `psql`; `None` (said on stderr) when that fails.
    pub fn create(server: &str, n: usize) -> Option<Self> {
        let name = format!("sts_bench_{}_{n}", std::process::id());
        let made = Command::new("psql")
            .args(["-X", "-q", server, "-c", &format!("CREATE DATABASE {name}")])
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            eprintln!(
                "bench: cannot create a PostgreSQL database on {server}; PostgreSQL rows skipped"
            );
            return None;
        }
        let mut url = url_with_database(server, &name);
        url.push_str(if url.contains('?') { "&" } else { "?" });
        url.push_str("sslmode=disable");
        Some(Self {
            server: server.to_owned(),
            name,
            url,
        })
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-X",
                "-q",
                &self.server,
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .status();
    }
}

/// `server` with its database (the URL's path) replaced by `name`.
fn url_with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_at = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    let mut url = format!("{}/{name}", &base[..path_at]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// 32 random bytes, base64: a key-encryption key for this run only.
fn random_kek() -> String {
    use base64::Engine;
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("system randomness");
    base64::engine::general_purpose::STANDARD.encode(key)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
