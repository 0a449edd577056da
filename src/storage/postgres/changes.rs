//! LISTEN/NOTIFY: how a change committed through one broker reaches the others.
//!
//! Every write that changes shared state sends a notification in its own transaction, so it
//! is delivered exactly when the change is visible (and never for a rolled-back one).
//! Notifications are not stored: one sent while a listener is disconnected is lost, so after
//! every reconnect the feed says [`Change::All`] and the broker reloads everything.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::storage::{Change, ChangeFeed, StorageError};

/// The one channel all brokers of a database share; the payload is [`Change::as_str`].
const CHANNEL: &str = "sts_broker_changes";

/// Longest pause between two reconnection attempts.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Announces `change`, delivered when the surrounding transaction commits.
pub(super) async fn notify(conn: &mut PgConnection, change: Change) -> Result<(), StorageError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(change.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Starts listening (on a connection of `pool`, held for as long as the feed lives); stops
/// when the returned receiver is dropped.
pub(super) async fn subscribe(pool: &PgPool) -> Result<ChangeFeed, StorageError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let (sender, feed) = mpsc::channel(64);
    tokio::spawn(forward(listener, sender));
    Ok(feed)
}

async fn forward(mut listener: PgListener, feed: mpsc::Sender<Change>) {
    loop {
        let change = tokio::select! {
            () = feed.closed() => return,
            change = next_change(&mut listener) => change,
        };
        if feed.send(change).await.is_err() {
            return;
        }
    }
}

async fn next_change(listener: &mut PgListener) -> Change {
    match listener.try_recv().await {
        Ok(Some(notification)) => Change::parse(notification.payload()),
        // The connection dropped and was re-established (and re-subscribed) already.
        Ok(None) => {
            tracing::warn!("change feed reconnected; reloading everything");
            Change::All
        }
        Err(e) => {
            tracing::warn!(error = %e, "change feed lost the database; reconnecting");
            reconnect(listener).await;
            Change::All
        }
    }
}

/// Retries until the listener is connected and subscribed again. Any statement does it: the
/// listener reconnects and re-issues its `LISTEN` before running it.
async fn reconnect(listener: &mut PgListener) {
    let mut wait = Duration::from_millis(250);
    while let Err(e) = sqlx::query("SELECT 1").execute(&mut *listener).await {
        tracing::warn!(error = %e, retry_in = ?wait, "change feed cannot reach the database");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
}
