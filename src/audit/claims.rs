//! The validated inbound claims an exchange's record keeps, so that an impact preview can
//! decide the exchange again under other policies. Never the token or its signature: the
//! claims are facts the issuer asserted, the token is a credential.
//!
//! Bounded like every other field: a token of a registered issuer may carry any claims. A
//! typical CI token's claims (~1.3 KB for GitHub Actions) fit whole; past the budget the
//! claims least likely to be matched on go first, biggest first, and their names are listed
//! in a marker so that nobody takes the kept claims for the whole set.

use std::io;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::clip;

/// Serialized size budget of the kept claims.
pub const CLAIMS_BYTES: usize = 4096;
/// Dropped claim names listed in the marker, and the longest one.
const DROPPED_NAMES: usize = 16;
const DROPPED_NAME_BYTES: usize = 64;

/// Claims that trust policies match on most often: kept while any other claim can go.
const PREFERRED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "repository_owner_id",
    "repository_id",
    "repository_owner",
    "repository",
    "event_name",
    "ref",
    "ref_type",
    "environment",
    "job_workflow_ref",
    "workflow_ref",
    "kubernetes.io",
    "namespace_id",
    "namespace_path",
    "project_id",
    "project_path",
    "pipeline_source",
    "ci_config_ref_uri",
    "actor_id",
];

/// The claims as the record keeps them, and the marker of what was dropped (`None` when
/// nothing was).
#[derive(Debug, Clone, PartialEq)]
pub struct KeptClaims {
    /// At most [`CLAIMS_BYTES`] serialized.
    pub claims: Value,
    /// The names of dropped claims (at most [`DROPPED_NAMES`], then a count).
    pub dropped: Option<Value>,
}

/// The claims as the token carried them, when that text fits [`CLAIMS_BYTES`] (the common
/// case): the record then holds the text itself, with no copy of the parse tree to build,
/// serialize again and free. `None`: keep them with [`keep`].
pub fn keep_text(payload: &str) -> Option<Box<RawValue>> {
    if payload.len() > CLAIMS_BYTES {
        return None;
    }
    // The text parsed as a JSON object when the token was decoded; this only checks it
    // again as raw JSON (no tree is built).
    RawValue::from_string(payload.to_owned()).ok()
}

/// Keeps `claims` within [`CLAIMS_BYTES`]. The common case (everything fits) costs one
/// serialization into a counter and one copy.
pub fn keep(claims: &Map<String, Value>) -> KeptClaims {
    if serialized_len(claims) <= CLAIMS_BYTES {
        return KeptClaims {
            claims: Value::Object(claims.clone()),
            dropped: None,
        };
    }
    // Each entry costs its key, its value, a colon and a comma (one comma too many: the
    // total is then an upper bound, which is what a budget needs).
    let mut entries: Vec<(&String, &Value, usize)> = claims
        .iter()
        .map(|(k, v)| (k, v, len_of(k) + len_of(v) + 2))
        .collect();
    // Dropped from the end: other claims before preferred ones, biggest first within each.
    entries.sort_by_key(|(k, _, size)| (std::cmp::Reverse(is_preferred(k)), *size));
    let mut total = 2 + entries.iter().map(|e| e.2).sum::<usize>();
    let mut dropped = Vec::new();
    while total > CLAIMS_BYTES {
        let Some((name, _, size)) = entries.pop() else {
            break;
        };
        total -= size;
        dropped.push(name);
    }
    let kept: Map<String, Value> = entries
        .into_iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    KeptClaims {
        claims: Value::Object(kept),
        dropped: Some(marker(&dropped)),
    }
}

fn marker(dropped: &[&String]) -> Value {
    let mut names: Vec<Value> = dropped
        .iter()
        .take(DROPPED_NAMES)
        .map(|n| clip(n, DROPPED_NAME_BYTES).into())
        .collect();
    if dropped.len() > DROPPED_NAMES {
        names.push(format!("…[{} more]", dropped.len() - DROPPED_NAMES).into());
    }
    json!(names)
}

fn is_preferred(name: &str) -> bool {
    PREFERRED.contains(&name)
}

fn serialized_len(claims: &Map<String, Value>) -> usize {
    let mut counter = Counter(0);
    // Writing to a counter cannot fail; a claim set that could not serialize is over budget.
    match serde_json::to_writer(&mut counter, claims) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

fn len_of<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX / 4,
    }
}

/// Counts bytes written: the size of a serialization without allocating it.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github() -> Map<String, Value> {
        let v = json!({
            "iss": "https://token.actions.githubusercontent.com",
            "sub": "repo:acme/api:ref:refs/heads/main",
            "aud": "https://sts.example.com",
            "repository": "acme/api", "repository_id": "892174522",
            "repository_owner": "acme", "repository_owner_id": "2001",
            "event_name": "push", "ref": "refs/heads/main", "ref_type": "branch",
        });
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claims_that_fit_are_kept_whole() {
        let kept = keep(&github());
        assert_eq!(kept.claims, Value::Object(github()));
        assert_eq!(kept.dropped, None);
    }

    #[test]
    fn the_biggest_other_claims_go_first_and_are_named() {
        let mut claims = github();
        claims.insert("blob".into(), json!("x".repeat(10_000)));
        claims.insert("small_extra".into(), json!("keep me"));
        claims.insert("kubernetes.io".into(), json!({"namespace": "prod"}));
        let kept = keep(&claims);
        let size = serde_json::to_vec(&kept.claims).unwrap().len();
        assert!(size <= CLAIMS_BYTES, "{size}");
        assert_eq!(kept.claims["small_extra"], "keep me");
        assert_eq!(kept.claims["kubernetes.io"]["namespace"], "prod");
        assert!(kept.claims.get("blob").is_none());
        assert_eq!(kept.dropped, Some(json!(["blob"])));
    }

    #[test]
    fn a_huge_claim_set_stays_within_the_budget() {
        let mut claims = github();
        for i in 0..5000 {
            claims.insert(format!("c{i:05}{}", "n".repeat(100)), json!("v".repeat(50)));
        }
        claims.insert("sub".into(), json!("s".repeat(20_000)));
        let kept = keep(&claims);
        let size = serde_json::to_vec(&kept.claims).unwrap().len();
        assert!(size <= CLAIMS_BYTES, "{size}");
        // The oversized sub went too (it alone is over budget), the small preferred stay.
        assert!(kept.claims.get("sub").is_none());
        assert_eq!(kept.claims["repository_owner_id"], "2001");
        let marker = serde_json::to_vec(&kept.dropped).unwrap().len();
        assert!(marker < 2048, "{marker}");
    }

    #[test]
    fn claims_kept_as_text_are_stored_as_the_same_claims() {
        let claims = github_actions(3);
        let text = serde_json::to_string(&claims).unwrap();
        let mut as_text = record(3, false);
        as_text.claims_text = Some(keep_text(&text).expect("fits the budget"));
        let mut as_tree = as_text.clone();
        as_tree.claims_text = None;
        as_tree.detail["claims"] = keep(&claims).claims;
        let stored: Value = serde_json::to_value(&as_text).unwrap();
        assert_eq!(stored, serde_json::to_value(&as_tree).unwrap());
        assert_eq!(stored["detail"]["claims"], Value::Object(claims));
        // Read back, the claims are in `detail`, as any record's.
        let read: crate::audit::AuditEvent =
            serde_json::from_slice(&serde_json::to_vec(&as_text).unwrap()).unwrap();
        assert_eq!(read.detail, stored["detail"]);
        assert!(read.claims_text.is_none());
        // Past the budget the text is not kept: `keep` bounds the parsed set instead.
        let big = format!(r#"{{"sub":"{}"}}"#, "s".repeat(CLAIMS_BYTES));
        assert!(keep_text(&big).is_none());
    }

    /// The claims of a GitHub Actions token for a push to main, as GitHub issues them.
    fn github_actions(run: u64) -> Map<String, Value> {
        // What differs from run to run: ids, commits, times.
        let sha = || uuid::Uuid::new_v4().simple().to_string() + "0badc0de";
        let v = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": "repo:acme/api:ref:refs/heads/main",
            "aud": "https://sts.example.com",
            "ref": "refs/heads/main", "sha": sha(),
            "repository": "acme/api", "repository_owner": "acme",
            "repository_owner_id": "2001", "repository_id": "892174522",
            "repository_visibility": "private",
            "run_id": format!("{}", 12_000_000_000u64 + run * 7919), "run_number": format!("{}", 400 + run),
            "run_attempt": "1", "actor_id": "583231", "actor": "octocat",
            "workflow": "deploy", "head_ref": "", "base_ref": "", "event_name": "push",
            "ref_protected": "true", "ref_type": "branch",
            "workflow_ref": "acme/api/.github/workflows/deploy.yml@refs/heads/main",
            "workflow_sha": sha(),
            "job_workflow_ref": "acme/api/.github/workflows/deploy.yml@refs/heads/main",
            "job_workflow_sha": sha(),
            "runner_environment": "github-hosted",
            "iss": "https://token.actions.githubusercontent.com",
            "nbf": 1_796_000_000 + run * 13, "exp": 1_796_000_600 + run * 13,
            "iat": 1_796_000_300 + run * 13,
        });
        v.as_object().unwrap().clone()
    }

    /// An allowed exchange's record, as `exchange::record` builds it, with or without claims.
    fn record(run: u64, with_claims: bool) -> crate::audit::AuditEvent {
        let claims = github_actions(run);
        let mut detail =
            json!({"audience": "https://deploy.internal", "scope": null, "policy": null});
        if with_claims {
            detail["claims"] = keep(&claims).claims;
        }
        crate::audit::AuditEvent {
            request_id: uuid::Uuid::now_v7().to_string(),
            time: 1_796_000_300 + run as i64,
            kind: crate::audit::AuditKind::Exchange,
            decision: Some(crate::audit::Decision::Allow),
            reason: "issued".into(),
            client_addr: Some("10.1.2.3".into()),
            policy: Some("api-deploy".into()),
            inbound_iss: Some("https://token.actions.githubusercontent.com".into()),
            inbound_sub: Some("repo:acme/api:ref:refs/heads/main".into()),
            inbound_jti: claims["jti"].as_str().map(str::to_owned),
            issued_jti: Some(uuid::Uuid::new_v4().to_string()),
            issued_exp: Some(1_796_000_900),
            detail,
            claims_text: None,
        }
    }

    /// Bytes per record in the journal, without and with claims: the JSON each record is,
    /// and its share of a zstd frame of 64 records at the journal's level (-5), and the
    /// cost of keeping the claims. `cargo test --lib bytes_per_record -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement: prints numbers"]
    fn bytes_per_record() {
        const GROUP: u64 = 64;
        for with_claims in [false, true] {
            let encoded: Vec<Vec<u8>> = (0..GROUP)
                .map(|run| serde_json::to_vec(&record(run, with_claims)).unwrap())
                .collect();
            let plain: Vec<u8> = encoded
                .iter()
                .flat_map(|r| {
                    (r.len() as u32)
                        .to_le_bytes()
                        .into_iter()
                        .chain(r.iter().copied())
                })
                .collect();
            let compressed = zstd::bulk::compress(&plain, -5).unwrap();
            println!(
                "claims kept: {with_claims:5}  JSON {:5} B/record  in a frame of {GROUP}: {:4} B/record",
                encoded[0].len(),
                compressed.len() as u64 / GROUP
            );
        }
        let claims = github_actions(7);
        let rounds = 100_000;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(keep(std::hint::black_box(&claims)));
        }
        println!(
            "keep(): {:.2} µs per exchange",
            started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
        );
    }
}
