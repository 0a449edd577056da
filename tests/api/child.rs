//! `sts-broker serve` as a child process with a chosen configuration and file limit, its
//! stderr kept.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::end_to_end::Running;
use crate::helpers::{FakeIdp, KEK, POLICIES};

const BIN: &str = env!("CARGO_BIN_EXE_sts-broker");

/// A broker process.
pub struct Child {
    /// Held for its `Drop`: the process is killed when the test ends.
    #[allow(dead_code)]
    pub process: Running,
    pub url: String,
    pub stderr: PathBuf,
}

impl Child {
    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a broker in `dir` with the test policies plus `more_policies`, `extra` lines of
/// configuration, and at most `file_limit` open files. `{IDP}` and `{BROKER}` in the
/// policies are the fake issuer's and the broker's URLs.
pub async fn start(
    idp: &FakeIdp,
    dir: &Path,
    more_policies: &str,
    extra: &str,
    file_limit: Option<u32>,
) -> Child {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let policies = dir.join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.yaml"),
        format!("{POLICIES}{more_policies}")
            .replace("{IDP}", &idp.url)
            .replace("{BROKER}", &url),
    )
    .unwrap();
    let config = dir.join("sts-broker.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n\
             database_url = \"sqlite://{}\"\n\
             policies_dir = \"{}\"\n\
             key_encryption_key = \"{KEK}\"\n\
             allow_insecure_loopback_issuers = true\n{extra}\n",
            dir.join("b.db").display(),
            policies.display()
        ),
    )
    .unwrap();
    let stderr = dir.join("stderr.log");
    // The shell sets the limit and then becomes the broker (same pid, for signals).
    let limit = file_limit.map_or(String::new(), |n| format!("ulimit -n {n} && "));
    let process = Running(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{limit}exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("STS_BROKER_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap(),
    );
    let child = Child {
        process,
        url: url.clone(),
        stderr,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the broker did not come up:\n{}",
            child.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}
