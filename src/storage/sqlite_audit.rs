//! The SQLite audit connection: a plain synchronous connection that the audit committer
//! thread drives directly.
//!
//! Every exchange waits for its record's group commit, so this is the hottest write path.
//! Through sqlx each batch crossed three threads (the committer task, sqlx's connection
//! thread, back to the task) before the waiting exchanges could be woken; a synchronous
//! connection on the committer's own thread does the same work with no hop. It links the same
//! SQLite library as sqlx (one `libsqlite3-sys`), so both share the file's locks correctly.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, params};

use crate::audit::AuditEvent;

const INSERT: &str = "INSERT INTO audit_events (request_id, time, kind, decision, reason,
    client_addr, policy, inbound_iss, inbound_sub, inbound_jti, issued_jti, issued_exp, detail)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// Page cache of the audit connection, in KiB (SQLite takes a negative `cache_size` as KiB).
const AUDIT_CACHE_KIB: i64 = -256;

/// The audit writer's connection to the database file.
pub struct AuditConnection {
    conn: Connection,
}

impl AuditConnection {
    /// Opens the (already created and migrated) database at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        // As the pooled connections: wait for another writer rather than fail, and make a
        // committed record survive a power loss (WAL + FULL), not only a crash.
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Appends touch only the right edges of the table and its indexes, a few dozen
        // pages; the default 2 MB cache would only fill with pages already written.
        conn.pragma_update(None, "cache_size", AUDIT_CACHE_KIB)?;
        Ok(Self { conn })
    }

    /// Appends `events` in one transaction: all of them are durable, or none is.
    pub fn append(&mut self, events: &[AuditEvent]) -> rusqlite::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            // Prepared once per connection and kept: one statement executed per record
            // costs no more than a multi-row INSERT when no round trip separates them.
            let mut insert = tx.prepare_cached(INSERT)?;
            for e in events {
                insert.execute(params![
                    e.request_id,
                    e.time,
                    e.kind.as_str(),
                    e.decision.map(|d| d.as_str()),
                    e.reason,
                    e.client_addr,
                    e.policy,
                    e.inbound_iss,
                    e.inbound_sub,
                    e.inbound_jti,
                    e.issued_jti,
                    e.issued_exp,
                    serde_json::to_string(&e.detail).unwrap_or_default(),
                ])?;
            }
        }
        tx.commit()
    }
}
