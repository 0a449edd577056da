//! `sts-broker exchange`: the CI side. Finds the job's OIDC token, exchanges it at the
//! broker's `POST /token`, and prints the broker token (masked in GitHub Actions).
//!
//! Transient failures (connection errors, 429, 502–504) are retried with exponential backoff
//! and full jitter, honouring `Retry-After`; a 4xx answer is final, because asking again with
//! the same token gets the same answer.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use super::subject_token::Sources;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// First backoff; doubles per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A `Retry-After` beyond this is not waited for: the job would rather fail and say so.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What to ask for and how to answer.
#[derive(Debug, Clone)]
pub struct ExchangeArgs {
    /// The broker's base URL.
    pub broker: String,
    /// `audience`.
    pub audience: Option<String>,
    /// `scope` (space-joined).
    pub scopes: Vec<String>,
    /// `policy`.
    pub policy: Option<String>,
    /// Where the subject token comes from.
    pub sources: Sources,
    /// Print JSON (`access_token`, `expires_in`, `expires_at`, `scope`) instead of the token.
    pub json: bool,
    /// Write `NAME=<token>` to `$GITHUB_OUTPUT`.
    pub github_output: Option<String>,
    /// Attempts in all (at least one).
    pub attempts: u32,
}

/// Runs the exchange. Exit 0 with a token, 1 when the broker refused, 2 for usage or
/// environment problems (no token source, broker unreachable).
pub async fn run(args: ExchangeArgs) -> ExitCode {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(2, &format!("cannot build an HTTP client: {e}")),
    };
    let subject = match args.sources.find(&client).await {
        Ok(s) => s,
        Err(e) => return fail(2, &e.to_string()),
    };
    let form = form(&args, &subject.token);
    let url = format!("{}/token", args.broker.trim_end_matches('/'));
    let (status, body) = match send_with_retries(&client, &url, &form, args.attempts).await {
        Ok(answer) => answer,
        Err(why) => return fail(2, &why),
    };
    if status != 200 {
        return refused(status, &body, &args, &subject.origin);
    }
    let Some(token) = body["access_token"].as_str() else {
        return fail(2, &format!("{url} answered 200 without access_token"));
    };
    emit(&args, token, &body)
}

fn form(args: &ExchangeArgs, token: &str) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", GRANT_TYPE)
        .append_pair("subject_token", token)
        .append_pair("subject_token_type", ID_TOKEN);
    if let Some(a) = &args.audience {
        form.append_pair("audience", a);
    }
    if !args.scopes.is_empty() {
        form.append_pair("scope", &args.scopes.join(" "));
    }
    if let Some(p) = &args.policy {
        form.append_pair("policy", p);
    }
    form.finish()
}

/// Posts the form until an answer is final: the status and JSON body, or why none came.
async fn send_with_retries(
    client: &reqwest::Client,
    url: &str,
    form: &str,
    attempts: u32,
) -> Result<(u16, Value), String> {
    let attempts = attempts.max(1);
    let mut last = String::new();
    for attempt in 0..attempts {
        let result = client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form.to_owned())
            .send()
            .await;
        let wait = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = retry_after(&response);
                if !is_transient(status) || attempt + 1 == attempts {
                    let body = response.json::<Value>().await.unwrap_or(Value::Null);
                    return Ok((status, body));
                }
                last = format!("{url} answered {status}");
                retry_after.unwrap_or_else(|| backoff(attempt))
            }
            Err(e) => {
                last = format!("cannot reach {url}: {e}");
                backoff(attempt)
            }
        };
        if attempt + 1 < attempts {
            eprintln!("{last}; retrying in {} ms", wait.as_millis());
            tokio::time::sleep(wait).await;
        }
    }
    Err(format!("{last} (gave up after {attempts} attempts)"))
}

fn is_transient(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base · 2^attempt)].
fn backoff(attempt: u32) -> Duration {
    let ceiling = BASE_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    let mut bytes = [0u8; 4];
    let fraction = match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    ceiling.mul_f64(fraction)
}

/// Explains a refusal in terms of what to change.
fn refused(status: u16, body: &Value, args: &ExchangeArgs, origin: &str) -> ExitCode {
    let error = body["error"].as_str().unwrap_or("error");
    let description = body["error_description"]
        .as_str()
        .unwrap_or("(no description)");
    let request_id = body["request_id"].as_str().unwrap_or("unknown");
    let hint = match error {
        "invalid_target" => format!(
            "no policy that admits this token grants audience {:?}; check --audience, or give \
             the request id {request_id} to a broker admin (`sts-broker policy explain`)",
            args.audience.as_deref().unwrap_or("(none)")
        ),
        "invalid_scope" => "a requested scope is not granted; check --scope".into(),
        "invalid_request" if description.contains("aud") => format!(
            "the token from {origin} carries an audience the broker does not accept for its \
             issuer; ask for the right one with --id-token-audience (GitHub Actions) or the \
             job's id_tokens aud (GitLab CI)"
        ),
        "invalid_request" if description.contains("admits") => format!(
            "no trust policy admits this token; give the request id {request_id} to a broker \
             admin, who can see why with `sts-broker policy explain` or GET \
             /admin/v1/audit/{request_id}"
        ),
        "slow_down" => "rate limited; retry later".into(),
        _ => format!("request id {request_id}"),
    };
    eprintln!("error: the broker refused the exchange ({status} {error}): {description}");
    eprintln!("hint: {hint}");
    if in_github_actions() {
        println!(
            "::error title=sts-broker exchange refused::{error}: {description} (request id {request_id})"
        );
    }
    ExitCode::from(if status >= 500 { 2 } else { 1 })
}

fn emit(args: &ExchangeArgs, token: &str, body: &Value) -> ExitCode {
    let mut out = std::io::stdout().lock();
    // Workflow commands are read from stdout: mask before the token can appear anywhere.
    if in_github_actions() {
        let _ = writeln!(out, "::add-mask::{token}");
    }
    if let Some(name) = &args.github_output
        && let Err(e) = write_github_output(name, token)
    {
        return fail(2, &e);
    }
    let printed = if args.json {
        let expires_in = body["expires_in"].as_i64().unwrap_or(0);
        json!({
            "access_token": token,
            "token_type": body["token_type"],
            "expires_in": expires_in,
            "expires_at": crate::time::rfc3339(crate::jose::unix_now() + expires_in),
            "scope": body["scope"],
        })
        .to_string()
    } else {
        token.to_owned()
    };
    match writeln!(out, "{printed}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(2, &format!("cannot write the token: {e}")),
    }
}

fn write_github_output(name: &str, token: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(format!(
            "--github-output {name:?} is not a valid output name"
        ));
    }
    let path = std::env::var("GITHUB_OUTPUT")
        .map_err(|_| "--github-output needs $GITHUB_OUTPUT (set by GitHub Actions)".to_owned())?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| format!("cannot open $GITHUB_OUTPUT ({path}): {e}"))?;
    writeln!(file, "{name}={token}").map_err(|e| format!("cannot write $GITHUB_OUTPUT: {e}"))
}

fn in_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("error: {message}");
    if in_github_actions() {
        println!("::error title=sts-broker exchange::{message}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 0..40 {
            let ceiling = BASE_BACKOFF
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            assert!(backoff(attempt) <= ceiling);
        }
        assert!(transient_all());
    }

    fn transient_all() -> bool {
        [429, 502, 503, 504].iter().all(|s| is_transient(*s))
            && ![400, 401, 403, 404, 500].iter().any(|s| is_transient(*s))
    }
}
