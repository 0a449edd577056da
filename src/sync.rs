//! Keeping replicas in step. Documents, revocations and signing keys can be changed through
//! any broker sharing the database; each broker reloads what changed when the storage's
//! change feed says so (within milliseconds on PostgreSQL), and everything every
//! [`RESYNC_PERIOD`] regardless, in case a notification was lost. Reloading only reads:
//! rotating keys stays with each broker's rotation timer (see `startup`).

use std::sync::Arc;
use std::time::Duration;

use crate::admin::Documents;
use crate::mint::SigningKeys;
use crate::revocation::Revocations;
use crate::storage::{Change, ChangeFeed};

/// How often everything is reloaded without being told.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);

/// What replicas share and each reloads.
pub struct ReplicaSync {
    documents: Arc<Documents>,
    revocations: Arc<Revocations>,
    keys: Arc<SigningKeys>,
}

impl ReplicaSync {
    /// Keeps these in step with the database.
    pub fn new(
        documents: Arc<Documents>,
        revocations: Arc<Revocations>,
        keys: Arc<SigningKeys>,
    ) -> Self {
        Self {
            documents,
            revocations,
            keys,
        }
    }

    /// Follows `feed` (if the storage has one) and the periodic resync for the life of the
    /// process.
    pub fn spawn(self, feed: Option<ChangeFeed>) {
        tokio::spawn(run(self, feed));
    }

    /// Reloads what `change` names. A failure keeps the state in force and is logged; the
    /// next notification or resync tries again.
    async fn reload(&self, change: Change) {
        tracing::debug!(change = change.as_str(), "reloading shared state");
        if matches!(change, Change::Documents | Change::All)
            && let Err(e) = self.documents.reload().await
        {
            tracing::error!(error = %e, "reloading policies failed; the previous set stays in force");
        }
        if matches!(change, Change::Revocations | Change::All)
            && let Err(e) = self.revocations.reload(crate::jose::unix_now()).await
        {
            tracing::error!(error = %e, "reloading revocations failed");
        }
        if matches!(change, Change::Keys | Change::All)
            && let Err(e) = self.keys.reload().await
        {
            tracing::error!(error = %e, "reloading signing keys failed; the current key keeps signing");
        }
    }
}

async fn run(sync: ReplicaSync, mut feed: Option<ChangeFeed>) {
    let mut resync = tokio::time::interval(RESYNC_PERIOD);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and startup has just loaded everything.
    resync.tick().await;
    loop {
        let change = tokio::select! {
            change = next_change(&mut feed) => change,
            _ = resync.tick() => Change::All,
        };
        sync.reload(change).await;
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
