//! A small client for the admin API, used by the `policy` verbs.

use std::process::ExitCode;

use serde_json::Value;

use super::BrokerArgs;

/// Calls `POST /admin/v1/{path}` with a JSON body; the JSON answer, or an exit code after
/// printing what went wrong.
pub async fn post(args: &BrokerArgs, path: &str, body: &Value) -> Result<(u16, Value), ExitCode> {
    call(args, reqwest::Method::POST, path, Some(body)).await
}

/// Calls `GET /admin/v1/{path}`.
pub async fn get(args: &BrokerArgs, path: &str) -> Result<(u16, Value), ExitCode> {
    call(args, reqwest::Method::GET, path, None).await
}

async fn call(
    args: &BrokerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ExitCode> {
    let token = admin_token(args)?;
    let url = format!("{}/admin/v1/{path}", args.broker.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.map_err(|e| {
        eprintln!("error: cannot reach {url}: {e}");
        ExitCode::from(2)
    })?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.map_err(|_| {
        eprintln!("error: {url} answered {status} without JSON");
        ExitCode::from(2)
    })?;
    match status {
        401 | 403 => {
            eprintln!(
                "error: {}",
                answer["error_description"]
                    .as_str()
                    .unwrap_or("not authorised")
            );
            Err(ExitCode::from(2))
        }
        _ => Ok((status, answer)),
    }
}

fn admin_token(args: &BrokerArgs) -> Result<String, ExitCode> {
    if let Some(file) = &args.admin_token_file {
        return std::fs::read_to_string(file)
            .map(|t| t.trim().to_owned())
            .map_err(|e| {
                eprintln!("error: cannot read {}: {e}", file.display());
                ExitCode::from(2)
            });
    }
    std::env::var("STS_BROKER_ADMIN_TOKEN").map_err(|_| {
        eprintln!(
            "error: no admin credential: set STS_BROKER_ADMIN_TOKEN or pass --admin-token-file"
        );
        ExitCode::from(2)
    })
}
