//! The `sts-broker` binary.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    sts_broker::cli::run(sts_broker::cli::Cli::parse()).await
}
