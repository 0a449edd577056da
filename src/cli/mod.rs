//! The command line. Exit codes: 0 success, 1 the check failed, 2 usage or environment.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Map, Value, json};

mod client;
mod exchange;
mod keys;
mod policy;
mod policy_test;
mod subject_token;

use crate::config::Config;
use crate::startup::{Application, Options};

/// sts-broker: exchange OIDC tokens from CI and workloads for short-lived, scoped tokens.
#[derive(Debug, Parser)]
#[command(name = "sts-broker", version, about)]
pub struct Cli {
    /// Configuration file (default: $STS_BROKER_CONFIG, else ./sts-broker.toml if present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// Start a built-in development identity provider and example policies.
        #[arg(long)]
        dev: bool,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Exchange this job's OIDC token for a broker token (the CI client).
    Exchange(ExchangeCommand),
    /// The broker's signing keys (through the admin API).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Inspect tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Development helpers (talk to a broker started with `serve --dev`).
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

/// Where the admin API is and how to authenticate to it.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// The broker's base URL.
    #[arg(long, env = "STS_BROKER_URL", default_value = "http://127.0.0.1:8080")]
    pub broker: String,
    /// File holding an admin bearer token (the bootstrap admin_token or a broker token with
    /// admin scope); else $STS_BROKER_ADMIN_TOKEN.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check every document in DIR offline; errors (and warnings) name file:line.
    Lint {
        /// Folder of YAML documents.
        dir: PathBuf,
        /// Fail on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Show what `apply` would change on a running broker.
    Diff {
        /// Folder of YAML documents.
        dir: PathBuf,
        /// Also list stored documents that are not in DIR as deletions.
        #[arg(long)]
        prune: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Apply every document in DIR to a running broker, all or nothing.
    Apply {
        /// Folder of YAML documents.
        dir: PathBuf,
        /// Delete stored documents that are not in DIR.
        #[arg(long)]
        prune: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Run the PolicyTest cases of DIR and of each PATH offline against the policies of DIR.
    Test {
        /// Folder of YAML documents: the policies, and maybe tests.
        dir: PathBuf,
        /// More PolicyTest files, or folders of them (`*.yaml`, `*.yml`; not recursive).
        paths: Vec<PathBuf>,
        /// Also write a JUnit XML report to this file.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Ask a running broker how it would decide an exchange, check by check.
    Explain {
        /// File holding the subject token (`-`: stdin).
        #[arg(long)]
        token: String,
        /// Requested audience.
        #[arg(long)]
        audience: Option<String>,
        /// Requested scopes (space-separated).
        #[arg(long)]
        scope: Option<String>,
        /// Evaluate only this policy.
        #[arg(long)]
        policy: Option<String>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

/// `exchange`: where the token comes from, what to ask for, how to answer.
#[derive(Debug, clap::Args)]
struct ExchangeCommand {
    /// The broker's base URL.
    #[arg(long, env = "STS_BROKER_URL")]
    broker: String,
    /// The audience of the broker token (`audience`).
    #[arg(long)]
    audience: Option<String>,
    /// A scope to request (repeatable, or space-separated).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Evaluate only this trust policy.
    #[arg(long)]
    policy: Option<String>,
    /// Read the OIDC token from this file (`-`: stdin).
    #[arg(long)]
    token_file: Option<String>,
    /// Read the OIDC token from this environment variable (GitLab CI `id_tokens:`).
    #[arg(long)]
    token_env: Option<String>,
    /// The audience to request from GitHub Actions (default: the broker URL).
    #[arg(long)]
    id_token_audience: Option<String>,
    /// A Kubernetes projected service-account token, used when present.
    #[arg(long, default_value = subject_token::KUBERNETES_TOKEN_PATH)]
    kubernetes_token_path: PathBuf,
    /// `token` (just the token) or `json` (with its expiry and scope).
    #[arg(long, value_parser = ["token", "json"], default_value = "token")]
    output: String,
    /// In GitHub Actions, also write `NAME=<token>` to $GITHUB_OUTPUT.
    #[arg(long, value_name = "NAME")]
    github_output: Option<String>,
    /// Attempts in all for transient failures (connection errors, 429, 502-504).
    #[arg(long, default_value_t = 5)]
    attempts: u32,
}

impl ExchangeCommand {
    fn into_args(self) -> exchange::ExchangeArgs {
        let broker = self.broker.trim_end_matches('/').to_owned();
        exchange::ExchangeArgs {
            sources: subject_token::Sources {
                file: self.token_file,
                env: self.token_env,
                id_token_audience: self.id_token_audience.unwrap_or_else(|| broker.clone()),
                kubernetes_path: self.kubernetes_token_path,
            },
            broker,
            audience: self.audience,
            scopes: self
                .scopes
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned)
                .collect(),
            policy: self.policy,
            json: self.output == "json",
            github_output: self.github_output,
            attempts: self.attempts,
        }
    }
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Every key with its state (next, active, retired) and dates.
    List {
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Promote the published next key to signing, retire the active one.
    Rotate {
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// After a key compromise: forget every key and sign with a new one at once. Tokens
    /// issued so far stop verifying; new ones verify once relying parties refetch the JWKS.
    Replace {
        /// Required: says the keys are compromised and that outage is accepted.
        #[arg(long, required = true)]
        compromised: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a JWT's header and claims (no verification). `-` reads stdin.
    Decode {
        /// The token, or `-`.
        token: String,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Mint a token from the development identity provider.
    Token {
        /// The broker started with `serve --dev`.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        broker: String,
        /// The token's `sub`.
        #[arg(long)]
        sub: Option<String>,
        /// The token's `aud` (default: the broker).
        #[arg(long)]
        aud: Option<String>,
        /// An extra claim, `name=value` (repeatable); the value is JSON if it parses as JSON.
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long)]
        ttl: Option<i64>,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { dev } => serve(cli.config, dev).await,
        Command::Policy { command } => match command {
            PolicyCommand::Lint { dir, strict } => policy::lint(cli.config, &dir, strict),
            PolicyCommand::Diff { dir, prune, broker } => {
                policy::apply(&dir, prune, true, &broker).await
            }
            PolicyCommand::Apply { dir, prune, broker } => {
                policy::apply(&dir, prune, false, &broker).await
            }
            PolicyCommand::Test { dir, paths, junit } => {
                policy_test::run(cli.config, &policy_test::TestArgs { dir, paths, junit })
            }
            PolicyCommand::Explain {
                token,
                audience,
                scope,
                policy,
                broker,
            } => policy::explain(&token, audience, scope, policy, &broker).await,
        },
        Command::Exchange(command) => exchange::run(command.into_args()).await,
        Command::Keys { command } => match command {
            KeysCommand::List { broker } => keys::list(&broker).await,
            KeysCommand::Rotate { broker } => keys::rotate(&broker).await,
            KeysCommand::Replace { broker, .. } => keys::replace(&broker).await,
        },
        Command::Token {
            command: TokenCommand::Decode { token },
        } => decode(&token),
        Command::Dev {
            command:
                DevCommand::Token {
                    broker,
                    sub,
                    aud,
                    claims,
                    ttl,
                },
        } => dev_token(&broker, sub, aud, &claims, ttl).await,
    }
}

pub(crate) fn load_config(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::load(path.as_deref()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

async fn serve(path: Option<PathBuf>, dev: bool) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::telemetry::init(config.log_format);
    let app = match Application::build(config, Options { dev }).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if dev {
        eprintln!(
            "development mode: mint a token with `sts-broker dev token --broker {}`",
            app.issuer_url()
        );
    }
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// A token from an argument, or from stdin when it is `-`.
pub(crate) fn read_token_arg(arg: &str) -> Option<String> {
    if arg != "-" {
        return Some(arg.trim().to_owned());
    }
    let mut token = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut token)
        .ok()?;
    Some(token.trim().to_owned())
}

fn decode(arg: &str) -> ExitCode {
    let Some(token) = read_token_arg(arg) else {
        eprintln!("error: cannot read stdin");
        return ExitCode::from(2);
    };
    let token = token.as_str();
    let part = |i: usize| -> Option<Value> {
        let bytes = crate::jose::b64url_decode(token.split('.').nth(i)?)?;
        serde_json::from_slice(&bytes).ok()
    };
    match (part(0), part(1)) {
        (Some(header), Some(claims)) => {
            let out = json!({"header": header, "claims": claims, "verified": false});
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("error: not a JWT (expected header.payload.signature in base64url JSON)");
            ExitCode::from(1)
        }
    }
}

async fn dev_token(
    broker: &str,
    sub: Option<String>,
    aud: Option<String>,
    claims: &[String],
    ttl: Option<i64>,
) -> ExitCode {
    let mut extra = Map::new();
    for claim in claims {
        let Some((name, value)) = claim.split_once('=') else {
            eprintln!("error: --claim takes NAME=VALUE, got {claim:?}");
            return ExitCode::from(2);
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        extra.insert(name.to_owned(), value);
    }
    let body = json!({"sub": sub, "aud": aud, "claims": extra, "ttl_seconds": ttl});
    let url = format!("{}{}/token", broker.trim_end_matches('/'), crate::dev::PATH);
    let response = reqwest::Client::new().post(&url).json(&body).send().await;
    let answer: Result<Value, String> = match response {
        Ok(r) if r.status().is_success() => r.json().await.map_err(|e| e.to_string()),
        Ok(r) => Err(format!(
            "{} answered {}: is it running with `serve --dev`?",
            url,
            r.status()
        )),
        Err(e) => Err(format!("cannot reach {url}: {e}")),
    };
    match answer.as_ref().ok().and_then(|v| v["token"].as_str()) {
        Some(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "error: {}",
                answer
                    .err()
                    .unwrap_or_else(|| "no token in the answer".into())
            );
            ExitCode::from(2)
        }
    }
}
