//! `bench`: how fast is one token exchange, and how close is the broker to the least any
//! exchange must cost?
//!
//! ```sh
//! cargo build --release --workspace --bins && cargo run --release -p sts-bench -- --seconds 10
//! cargo run --release -p sts-bench -- --smoke      # every phase about a second (CI)
//! ```
//!
//! One run starts a fake OIDC issuer (in this process), then, one after another, each
//! variant as its own process: the real `sts-broker serve` (ES256, RS256, EdDSA signing;
//! 10 and 10,000 policies; `fsync` and `os` audit durability), and an "ideal" handler
//! (verify RS256, sign ES256, nothing else; with the broker's durable audit trail; and with
//! bare group commits that bound that trail's cost from below). A
//! keep-alive HTTP/1.1 load generator in this process drives `POST /token` against each;
//! server CPU and RSS come from `/proc`. The result is a Markdown table on stdout.
#![forbid(unsafe_code)]

mod child;
mod crash;
mod disk;
mod floor;
mod ideal;
mod issuer;
mod load;
mod phases;
mod policies;
mod procfs;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Benchmark POST /token against an ideal handler"
)]
pub struct Args {
    /// CI mode: each phase about a second, small policy sets, the whole table still printed.
    #[arg(long)]
    pub smoke: bool,
    /// Seconds of measured load per phase (default 10; 1 with --smoke).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Concurrent keep-alive connections of the closed-loop (peak) phases.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Distinct inbound tokens minted per policy set (default 2048; 128 with --smoke).
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Run only the broker variants whose name contains this text (the ideal handler always
    /// runs), e.g. `--only "broker ES256"` to profile or compare one configuration.
    #[arg(long)]
    pub only: Option<String>,
    /// The `sts-broker` binary (default: beside this one, built first when run by cargo).
    #[arg(long)]
    pub broker_bin: Option<PathBuf>,
    /// A PostgreSQL server (URL of any database on it; default `TEST_DATABASE_URL`) for the
    /// PostgreSQL rows; the bench makes and drops databases of its own there.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Internal: serve the ideal handler on this port.
    #[arg(long, hide = true)]
    pub ideal_server: Option<u16>,
    /// Internal, with --ideal-server: also make one audit record per exchange durable in
    /// this folder, through the broker's audit trail (journal and index).
    #[arg(long, hide = true)]
    pub ideal_audit_dir: Option<PathBuf>,
    /// Internal, with --ideal-audit-dir: a bare group commit there instead of the audit trail.
    #[arg(long, hide = true, value_enum)]
    pub ideal_floor: Option<floor::Floor>,
}

impl Args {
    /// Measured seconds per phase.
    pub fn phase(&self) -> Duration {
        let default = if self.smoke { 1.0 } else { 10.0 };
        Duration::from_secs_f64(self.seconds.unwrap_or(default).max(0.1))
    }

    /// Unmeasured warm-up before each measured phase.
    pub fn warmup(&self) -> Duration {
        if self.smoke {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(2)
        }
    }

    /// Tokens per policy set.
    pub fn tokens(&self) -> usize {
        self.tokens
            .unwrap_or(if self.smoke { 128 } else { 2048 })
            .max(1)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(port) = args.ideal_server {
        return child_exit(server_runtime().block_on(ideal::serve(
            port,
            args.ideal_audit_dir.as_deref(),
            args.ideal_floor,
        )));
    }
    // The load generator and the fake issuer's control live on one thread: the servers under
    // test get the rest of the machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(phases::run(&args)) {
        Ok(table) if table.errors() == 0 && table.crash.as_ref().is_none_or(|c| c.held()) => {
            ExitCode::SUCCESS
        }
        Ok(table) if table.errors() == 0 => {
            eprintln!("bench: FLAGGED: an acknowledged exchange lost its record, or has two");
            ExitCode::from(3)
        }
        Ok(table) => {
            eprintln!(
                "bench: FLAGGED: {} failed exchanges (see the errors column)",
                table.errors()
            );
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The servers run like `sts-broker serve` does: a multi-threaded tokio runtime.
fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn child_exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench child: {e:#}");
            ExitCode::from(2)
        }
    }
}
