//! Keeping replicas in step. Documents, revocations and signing keys can be changed through
//! any broker sharing the database; each broker reloads what changed when the storage's
//! change feed says so (within milliseconds on PostgreSQL), and everything every
//! [`RESYNC_PERIOD`] regardless, in case a notification was lost. Reloading only reads:
//! rotating keys stays with each broker's rotation timer (see `startup`).

use std::sync::Arc;
use std::time::Duration;

use crate::admin::AdminError;
use crate::broker::Broker;
use crate::storage::{Change, ChangeFeed};

/// How often everything is reloaded without being told.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);

/// Follows `feed` (if the storage has one) and the periodic resync for the life of the process.
pub fn spawn(broker: Arc<Broker>, feed: Option<ChangeFeed>) {
    tokio::spawn(run(broker, feed));
}

async fn run(broker: Arc<Broker>, mut feed: Option<ChangeFeed>) {
    let mut resync = tokio::time::interval(RESYNC_PERIOD);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and startup has just loaded everything.
    resync.tick().await;
    loop {
        let change = tokio::select! {
            change = next_change(&mut feed) => change,
            _ = resync.tick() => Change::All,
        };
        reload(&broker, change).await;
    }
}

/// The next change from the feed; never returns once there is no feed.
async fn next_change(feed: &mut Option<ChangeFeed>) -> Change {
    let Some(receiver) = feed else {
        return std::future::pending().await;
    };
    match receiver.recv().await {
        Some(change) => change,
        None => {
            tracing::error!(
                "the change feed stopped; other replicas' changes arrive only every {RESYNC_PERIOD:?}"
            );
            *feed = None;
            Change::All
        }
    }
}

/// Reloads what `change` names. A failure keeps the state in force and is logged; the next
/// notification or resync tries again.
async fn reload(broker: &Broker, change: Change) {
    tracing::debug!(change = change.as_str(), "reloading shared state");
    if matches!(change, Change::Documents | Change::All)
        && let Err(e) = broker.reload_policies().await
    {
        tracing::error!(error = %e, "reloading policies failed; the previous set stays in force");
    }
    if matches!(change, Change::Revocations | Change::All)
        && let Err(e) = broker
            .revocations
            .reload(&*broker.store, crate::jose::unix_now())
            .await
    {
        tracing::error!(error = %e, "reloading revocations failed");
    }
    if matches!(change, Change::Keys | Change::All)
        && let Err(e) = broker.reload_keys().await
    {
        tracing::error!(error = %e, "reloading signing keys failed; the current key keeps signing");
    }
}

impl Broker {
    /// Recompiles the policy set from the stored documents plus the `--dev` overlay, as
    /// startup does, and puts it in force. Holds the admin write lock, so a set compiled from
    /// documents read before an admin write never replaces the one that write installed.
    pub async fn reload_policies(&self) -> Result<(), AdminError> {
        let _write = self.admin_writes.lock().await;
        let docs = self.store.documents().await?;
        let set = self.compile_with_overlay(&docs)?;
        self.policies.store(Arc::new(set));
        crate::memory::release_freed_memory();
        Ok(())
    }
}
