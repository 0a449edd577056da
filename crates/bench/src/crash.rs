//! Crash consistency at peak load: `kill -9` the broker while the load generator runs
//! closed-loop, restart it on the same files, and check that every exchange a client was
//! answered 200 for has its audit record, exactly once (the test suite does five short
//! rounds; the bench does more, at the peak's concurrency).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::child::{self, BENCH_TOKEN, Child, Launch};
use crate::issuer::Minted;
use crate::load;

/// What the rounds found.
#[derive(Debug, Clone, Default)]
pub struct Crash {
    /// `kill -9` rounds run.
    pub rounds: usize,
    /// Exchanges answered 200 before the kills.
    pub acknowledged: usize,
    /// Of those, how many had no record after the last restart.
    pub missing: usize,
    /// And how many had more than one.
    pub twice: usize,
    /// One missing request id, to look up.
    pub first_missing: Option<String>,
}

impl Crash {
    /// Nothing missing, nothing twice.
    pub fn held(&self) -> bool {
        self.missing == 0 && self.twice == 0
    }
}

/// How long load runs before the `n`th kill: staggered, so kills land in different phases
/// of the group commit.
fn before_kill(n: usize) -> Duration {
    Duration::from_millis(300 + 70 * n as u64)
}

/// Bound on one round's load, should the kill not stop it.
const ROUND_LIMIT: Duration = Duration::from_secs(30);
/// How long, after the last restart, the index may take to show every record.
const INDEX_WAIT: Duration = Duration::from_secs(20);

/// Runs `rounds` rounds of load + `kill -9` + restart on one broker's files.
pub async fn rounds(
    dir: &Path,
    launch: &Launch,
    policy_files: &[(String, String)],
    tokens: &[Minted],
    connections: usize,
    rounds: usize,
) -> anyhow::Result<Crash> {
    const NAME: &str = "crash-consistency";
    let mut broker = child::start_broker(dir, NAME, launch, "ES256", policy_files).await?;
    let mut acknowledged = Vec::new();
    for round in 0..rounds {
        let (addr, requests) = (broker.addr, load::requests(broker.addr, tokens));
        let load = tokio::spawn(async move {
            load::until_gone(addr, &requests, connections, ROUND_LIMIT).await
        });
        tokio::time::sleep(before_kill(round)).await;
        // Dropping the child sends SIGKILL and reaps it.
        drop(broker);
        acknowledged.extend(load.await.context("the load task")?);
        broker =
            child::restart_broker(dir, NAME, launch, &format!("broker-{}.log", round + 1)).await?;
    }
    let mut crash = Crash {
        rounds,
        acknowledged: acknowledged.len(),
        ..Crash::default()
    };
    // After the last restart the journal's tail is replayed into the index: wait for it.
    let deadline = Instant::now() + INDEX_WAIT;
    loop {
        let counts = allowed_by_request(&broker).await?;
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            crash.missing = missing.len();
            crash.first_missing = missing.first().map(|id| (*id).clone());
            crash.twice = acknowledged
                .iter()
                .filter(|id| counts.get(*id).is_some_and(|n| *n > 1))
                .count();
            return Ok(crash);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every allowed exchange's record in the audit list, counted by request id (pages of 500,
/// newest first).
async fn allowed_by_request(broker: &Child) -> anyhow::Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/admin/v1/audit?decision=allow&kind=exchange&limit=500".to_owned();
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(c);
        }
        let (status, body) = load::get_with_bearer(broker.addr, &path, BENCH_TOKEN)
            .await
            .context("listing the audit records")?;
        anyhow::ensure!(status == 200, "audit list: {status} {body}");
        let page: serde_json::Value = serde_json::from_str(&body).context("audit list JSON")?;
        for event in page["events"].as_array().into_iter().flatten() {
            if let Some(id) = event["request_id"].as_str() {
                *counts.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(counts),
        }
    }
}
