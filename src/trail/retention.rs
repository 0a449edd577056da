//! Forgetting audit records past the retention period, in the index and in the journal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::journal::JournalReader;
use crate::storage::Storage;

/// How often records past retention are looked for.
const EVERY: Duration = Duration::from_secs(3600);
/// The first look, a while after start: start-up has enough to do.
const FIRST: Duration = Duration::from_secs(60);

/// Removes, every hour, index rows older than `retention`, then the journal segments whose
/// every record is older and indexed (the index first: its rows point into the segments).
pub(super) fn spawn(
    store: Arc<dyn Storage>,
    journal: Option<(JournalReader, watch::Receiver<u64>)>,
    retention: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FIRST, EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let before = crate::jose::unix_now() - retention.as_secs() as i64;
            match store.prune_audit(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(records = n, "audit records past retention removed"),
                Err(e) => {
                    tracing::warn!(error = %e, "removing audit records past retention failed");
                    continue;
                }
            }
            if let Some((reader, indexed)) = &journal {
                let indexed = *indexed.borrow();
                let reader = reader.clone();
                let removed =
                    tokio::task::spawn_blocking(move || reader.remove_older(before, indexed)).await;
                if let Ok(Err(e)) = removed {
                    tracing::warn!(error = %e, "removing audit journal segments past retention failed");
                }
            }
        }
    });
}
