//! `keys list|rotate|replace`: the broker's signing keys, through the admin API.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::{BrokerArgs, client};

/// Prints every key with its state and dates.
pub async fn list(args: &BrokerArgs) -> ExitCode {
    match client::get(args, "keys").await {
        Ok((200, answer)) => {
            print_keys(&answer);
            ExitCode::SUCCESS
        }
        Ok((status, answer)) => failed(status, &answer),
        Err(code) => code,
    }
}

/// Promotes the published next key and publishes a new one.
pub async fn rotate(args: &BrokerArgs) -> ExitCode {
    match client::post(args, "keys/rotate", &json!({})).await {
        Ok((200, answer)) => {
            println!("rotated");
            print_keys(&answer);
            ExitCode::SUCCESS
        }
        Ok((status, answer)) => failed(status, &answer),
        Err(code) => code,
    }
}

/// Replaces every key (after a compromise).
pub async fn replace(args: &BrokerArgs) -> ExitCode {
    match client::post(args, "keys/replace", &json!({})).await {
        Ok((200, answer)) => {
            println!("replaced every signing key; tokens issued before no longer verify");
            print_keys(&answer);
            ExitCode::SUCCESS
        }
        Ok((status, answer)) => failed(status, &answer),
        Err(code) => code,
    }
}

fn failed(status: u16, answer: &Value) -> ExitCode {
    eprintln!(
        "error ({status}): {}",
        answer["error_description"]
            .as_str()
            .unwrap_or("request failed")
    );
    ExitCode::from(1)
}

fn print_keys(answer: &Value) {
    let time = |v: &Value| v.as_i64().map_or("-".to_owned(), crate::time::rfc3339);
    println!(
        "{:<44} {:<6} {:<8} {:<21} {:<21} {:<21} {:<21}",
        "KID", "ALG", "STATE", "CREATED", "ACTIVATED", "RETIRED", "UNPUBLISHED"
    );
    for key in answer["keys"].as_array().into_iter().flatten() {
        println!(
            "{:<44} {:<6} {:<8} {:<21} {:<21} {:<21} {:<21}",
            key["kid"].as_str().unwrap_or("?"),
            key["alg"].as_str().unwrap_or("?"),
            key["state"].as_str().unwrap_or("?"),
            time(&key["created_at"]),
            time(&key["activated_at"]),
            time(&key["retired_at"]),
            time(&key["unpublish_at"]),
        );
    }
}
