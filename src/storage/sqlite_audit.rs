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

use rusqlite::{Connection, OpenFlags, params};

use super::IndexEntry;
use crate::audit::AuditEvent;

const INSERT: &str = "INSERT INTO audit_events (request_id, time, kind, decision, reason,
    client_addr, policy, inbound_iss, inbound_sub, inbound_jti, issued_jti, issued_exp, detail)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// A record indexed from the journal: what queries filter on, and where the journal holds
/// the rest. Bytes written per record: ~310 for a slim row against ~930 for a whole one
/// (SQLite WAL with checkpoints, batches of 2,048, measured on the benchmark machine).
const INDEX: &str = "INSERT INTO audit_events (request_id, time, kind, decision, reason,
    policy, inbound_sub, detail, journal_position)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '', ?8)";
const MARK: &str = "INSERT INTO audit_journal_marks (journal_id, indexed_through) VALUES (?1, ?2)
    ON CONFLICT (journal_id) DO UPDATE SET indexed_through = excluded.indexed_through";

/// The audit connection checkpoints the WAL into the database once it holds this many pages
/// (SQLite's default: 1,000). A checkpoint ends with two `fsync`s that flush everything it
/// wrote, and the disk finishes that flush before the journal's next `fdatasync`, which every
/// waiting exchange waits for: at 1,000 pages (4 MB) those syncs took 11–23 ms each, and the
/// journal's commits beside them 10–20 ms (traced). At 100 pages, the ideal handler + durable
/// journal at half load: p99 10–11 ms against 17–81 ms, the same bytes written.
const CHECKPOINT_PAGES: i64 = 100;

/// Page cache of the audit connection, in KiB (SQLite takes a negative `cache_size` as KiB).
const AUDIT_CACHE_KIB: i64 = -256;

/// The audit writer's connection to the database file.
pub struct AuditConnection {
    conn: Connection,
    /// The `synchronous` setting in force: FULL for records whose durable write is this
    /// commit, NORMAL for an index of the journal (the journal is the durable copy, and a
    /// lost index batch is indexed again from it).
    full_sync: bool,
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
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        Ok(Self {
            conn,
            full_sync: true,
        })
    }

    /// Opens the database at `path` to read only: every write through it fails.
    pub fn open_read_only(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Self {
            conn,
            full_sync: true,
        })
    }

    fn sync_mode(&mut self, full: bool) -> rusqlite::Result<()> {
        if self.full_sync != full {
            let mode = if full { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", mode)?;
            self.full_sync = full;
        }
        Ok(())
    }

    /// Indexes journal records past the journal's mark and moves the mark, in one
    /// transaction.
    pub fn index(&mut self, journal_id: &str, entries: &[IndexEntry]) -> rusqlite::Result<()> {
        self.sync_mode(false)?;
        let tx = self.conn.transaction()?;
        let mark: Option<i64> = tx
            .query_row(
                "SELECT indexed_through FROM audit_journal_marks WHERE journal_id = ?1",
                [journal_id],
                |row| row.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })?;
        let mut last = None;
        {
            let mut insert = tx.prepare_cached(INDEX)?;
            for entry in entries {
                if mark.is_some_and(|m| entry.seq as i64 <= m) {
                    continue;
                }
                let e = &entry.event;
                insert.execute(params![
                    e.request_id,
                    e.time,
                    e.kind.as_str(),
                    e.decision.map(|d| d.as_str()),
                    e.reason,
                    e.policy,
                    e.inbound_sub,
                    entry.position,
                ])?;
                last = Some(entry.seq as i64);
            }
        }
        if let Some(last) = last {
            tx.prepare_cached(MARK)?
                .execute(params![journal_id, last])?;
        }
        tx.commit()
    }

    /// Appends `events` in one transaction: all of them are durable, or none is.
    pub fn append(&mut self, events: &[AuditEvent]) -> rusqlite::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.sync_mode(true)?;
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
                    serde_json::to_string(&e.full_detail()).unwrap_or_default(),
                ])?;
            }
        }
        tx.commit()
    }
}
