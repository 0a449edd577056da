//! `policy lint|diff|apply|explain`: the GitOps path.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use super::{BrokerArgs, client, load_config, read_token_arg};
use crate::policy::Limits;
use crate::policy::load::Bundle;

/// Checks DIR offline. Exit 1 on errors (and on warnings with `--strict`).
pub fn lint(config: Option<PathBuf>, dir: &Path, strict: bool) -> ExitCode {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let limits = Limits {
        max_ttl: config.max_ttl.0,
        allow_insecure_loopback_issuers: config.allow_insecure_loopback_issuers,
        // Lint runs where policies are reviewed; the apps' keys live where the broker runs.
        read_app_keys: false,
    };
    if !dir.is_dir() {
        eprintln!("error: {} is not a folder", dir.display());
        return ExitCode::from(2);
    }
    // Every error of every file in one run: those of reading, then those of validating
    // whatever could be read.
    let loaded = Bundle::read_dir(dir);
    let compiled = loaded.compile_over(&[], &[], &limits);
    // PolicyTest documents are checked too (their shape, and the names they refer to when
    // the policies compiled), and reported with the others.
    let mut errors = crate::proof::check(&loaded.tests, compiled.as_ref().ok());
    let set = match compiled {
        Ok(set) if errors.is_empty() => set,
        result => {
            errors.extend(result.err().into_iter().flatten());
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            for e in &errors {
                println!("{e}");
            }
            eprintln!("{} error(s)", errors.len());
            return ExitCode::from(1);
        }
    };
    let warnings: Vec<_> = crate::policy::lint::warnings(&set)
        .into_iter()
        .map(|w| loaded.bundle.locate(w))
        .collect();
    for w in &warnings {
        let path = w
            .path
            .as_deref()
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        println!("{}:{}: warning: {path}{}", w.file, w.line, w.reason);
    }
    let tests = match loaded.tests.len() {
        0 => String::new(),
        n => format!(", {n} test(s)"),
    };
    println!(
        "{} issuers, {} policies{tests}, {} warning(s)",
        set.issuers().count(),
        set.policies().count(),
        warnings.len()
    );
    if strict && !warnings.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Applies DIR to a running broker (or, `dry_run`, shows what would change).
pub async fn apply(dir: &Path, prune: bool, dry_run: bool, args: &BrokerArgs) -> ExitCode {
    let bundle = match read_dir(dir) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut documents: Vec<Value> = Vec::new();
    for (doc, _) in &bundle.apps {
        documents.push(with_kind(serde_json::to_value(doc), "GitHubApp"));
    }
    for (doc, _) in &bundle.issuers {
        documents.push(with_kind(serde_json::to_value(doc), "Issuer"));
    }
    for (doc, _) in &bundle.policies {
        documents.push(with_kind(serde_json::to_value(doc), "TrustPolicy"));
    }
    let body = json!({"documents": documents, "prune": prune, "dry_run": dry_run});
    let (status, report) = match client::post(args, "apply", &body).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    if status != 200 {
        eprintln!(
            "refused ({status}): {}",
            report["error_description"].as_str().unwrap_or("")
        );
        for e in report["errors"].as_array().into_iter().flatten() {
            println!("{}", e.as_str().unwrap_or_default());
        }
        return ExitCode::from(1);
    }
    for (label, key) in [("+", "created"), ("~", "updated"), ("-", "deleted")] {
        for name in report[key].as_array().into_iter().flatten() {
            println!("{label} {}", name.as_str().unwrap_or_default());
        }
    }
    let verb = if report["applied"] == true {
        "applied"
    } else if dry_run {
        "would change"
    } else {
        "nothing to apply"
    };
    let count = ["created", "updated", "deleted"]
        .iter()
        .map(|k| report[*k].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    println!("{verb}: {count} document(s)");
    ExitCode::SUCCESS
}

/// Prints a running broker's explanation. Exit 0 when allowed, 1 when denied.
pub async fn explain(
    token: &str,
    audience: Option<String>,
    scope: Option<String>,
    policy: Option<String>,
    args: &BrokerArgs,
) -> ExitCode {
    let subject_token = if token == "-" {
        read_token_arg("-")
    } else {
        std::fs::read_to_string(token)
            .ok()
            .map(|t| t.trim().to_owned())
    };
    let Some(subject_token) = subject_token else {
        eprintln!("error: cannot read the token from {token}");
        return ExitCode::from(2);
    };
    let body = json!({"subject_token": subject_token, "audience": audience, "scope": scope, "policy": policy});
    let (status, answer) = match client::post(args, "explain", &body).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    if status != 200 {
        eprintln!(
            "error ({status}): {}",
            answer["error_description"].as_str().unwrap_or("")
        );
        return ExitCode::from(2);
    }
    println!(
        "decision: {} ({}): {}",
        answer["decision"].as_str().unwrap_or(""),
        answer["reason"].as_str().unwrap_or(""),
        answer["message"].as_str().unwrap_or("")
    );
    for policy in answer["policies"].as_array().into_iter().flatten() {
        println!(
            "policy {}: {}",
            policy["policy"].as_str().unwrap_or(""),
            policy["outcome"].as_str().unwrap_or("")
        );
        for check in policy["checks"].as_array().into_iter().flatten() {
            let mark = if check["passed"] == true {
                "ok  "
            } else {
                "FAIL"
            };
            let actual = check["actual"]
                .as_str()
                .map_or_else(|| "(absent)".to_owned(), |a| format!("{a:?}"));
            println!(
                "  {mark} {}: expected {}, got {actual}",
                check["check"].as_str().unwrap_or(""),
                check["expected"].as_str().unwrap_or("")
            );
        }
    }
    if answer["decision"] == "allow" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn read_dir(dir: &Path) -> Result<Bundle, ExitCode> {
    if !dir.is_dir() {
        eprintln!("error: {} is not a folder", dir.display());
        return Err(ExitCode::from(2));
    }
    Bundle::load_dir(dir).map_err(|errors| {
        for e in &errors {
            println!("{e}");
        }
        eprintln!("{} error(s)", errors.len());
        ExitCode::from(1)
    })
}

fn with_kind(doc: Result<Value, serde_json::Error>, kind: &str) -> Value {
    let mut doc = doc.unwrap_or(Value::Null);
    doc["kind"] = json!(kind);
    doc
}
