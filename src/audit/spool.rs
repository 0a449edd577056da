//! A local, durable spool for audit records while the database is unreachable.
//!
//! A token is never issued without a durable audit record. When the database cannot take a
//! batch, and a spool directory is configured, the batch is appended to a local file and
//! fsynced instead, for at most a grace period after the outage began (the writer keeps
//! time); past that, or without a spool, exchanges fail closed with 503. When the database answers again, the spooled
//! records are copied into it, in order, before the file is removed.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::AuditEvent;
use crate::storage::StorageError;

/// Records copied to the database per transaction when replaying.
const REPLAY_CHUNK: usize = 500;

/// The spool file.
pub struct Spool {
    path: PathBuf,
    pending: bool,
}

impl Spool {
    /// A spool in `dir` (created if needed). Records left by an earlier run are replayed
    /// once the database answers.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("audit-spool.jsonl");
        let pending = path.metadata().is_ok_and(|m| m.len() > 0);
        Ok(Self { path, pending })
    }

    /// Whether spooled records wait for the database.
    pub fn has_pending(&self) -> bool {
        self.pending
    }

    /// Appends `events` and makes them durable (fsync) before returning.
    pub fn append(&mut self, events: &[AuditEvent]) -> std::io::Result<()> {
        let mut text = String::new();
        for event in events {
            text.push_str(&serde_json::to_string(event).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        self.pending = true;
        Ok(())
    }

    /// Copies every spooled record into the database, then removes the file. On failure the
    /// file stays (records may be copied twice; the audit table tolerates repeats of a
    /// request id, and none is lost).
    pub fn replay(
        &mut self,
        mut append: impl FnMut(&[AuditEvent]) -> Result<(), StorageError>,
    ) -> Result<usize, String> {
        let file = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
        let mut copied = 0;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                continue;
            }
            // A torn last line (a crash mid-write) was never acknowledged: skip it.
            let Ok(event) = serde_json::from_str::<AuditEvent>(&line) else {
                tracing::warn!(path = %self.path.display(), "skipping an unreadable spooled audit line");
                continue;
            };
            chunk.push(event);
            if chunk.len() == REPLAY_CHUNK {
                append(&chunk).map_err(|e| e.to_string())?;
                copied += chunk.len();
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            append(&chunk).map_err(|e| e.to_string())?;
            copied += chunk.len();
        }
        std::fs::remove_file(&self.path).map_err(|e| e.to_string())?;
        self.pending = false;
        Ok(copied)
    }
}
