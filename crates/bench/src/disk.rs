//! The disk's own cost of a durable record, measured on the disk the bench writes to: one
//! page written into a preallocated file and `fdatasync`ed, as the journal does once per
//! group commit. What no design that makes each answer wait for its record can go below.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// One page, as the journal's frames are aligned.
const PAGE: usize = 4096;
/// The file's size: every sync writes a page not written before, as appends do.
const FILE_BYTES: u64 = 64 << 20;

/// What a sync of one page cost.
#[derive(Debug, Clone, Copy)]
pub struct DiskFloor {
    /// Wall time per write + sync, median and 99th percentile.
    pub p50: Duration,
    pub p99: Duration,
    /// CPU time per write + sync (this thread, user and system).
    pub cpu: Duration,
    pub syncs: usize,
}

/// Writes and syncs `syncs` pages (at most the file's size) in `dir`, one after the other.
pub fn measure(dir: &Path, syncs: usize) -> io::Result<DiskFloor> {
    let syncs = syncs.clamp(1, (FILE_BYTES as usize / PAGE) - 1);
    let path = dir.join("disk-floor");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, FILE_BYTES)?;
    file.sync_all()?;
    let page = vec![0x5a_u8; PAGE];
    let mut walls = Vec::with_capacity(syncs);
    let cpu_before = thread_cpu();
    for i in 0..syncs {
        let started = Instant::now();
        file.write_all_at(&page, ((i + 1) * PAGE) as u64)?;
        file.sync_data()?;
        walls.push(started.elapsed());
    }
    let cpu = thread_cpu()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    drop(file);
    let _ = std::fs::remove_file(&path);
    walls.sort();
    let at = |q: f64| walls[((walls.len() - 1) as f64 * q) as usize];
    Ok(DiskFloor {
        p50: at(0.50),
        p99: at(0.99),
        cpu: cpu.unwrap_or_default() / syncs as u32,
        syncs,
    })
}

/// This thread's CPU time so far (`/proc/thread-self/stat`, clock ticks).
fn thread_cpu() -> Option<Duration> {
    crate::procfs::cpu_time_of("thread-self")
}
