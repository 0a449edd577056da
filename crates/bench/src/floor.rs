//! The least a group commit can be, for the ideal handler: each exchange hands a token to a
//! thread of its own and waits until that thread has finished a group of such tokens, by the
//! broker's mechanics (a channel to one committer thread, a 200 µs gather once exchanges are
//! concurrent, a oneshot answer per exchange), with none of its content: no record is
//! encoded, framed, compressed or indexed.
//!
//! Three depths, each a row beside the ideal + durable journal:
//! - [`Floor::Wait`]: the thread sleeps as long as a sync takes instead of any I/O. What the
//!   hand-off, the wake-ups and a sync's latency cost, without the disk's work.
//! - [`Floor::Fsync`]: the thread writes 512 bytes per exchange into a preallocated file and
//!   `fdatasync`s once per group, as the journal must: the least a durable record costs.
//! - [`Floor::Overwrite`]: the same into blocks written once before, so no sync has an
//!   allocated-but-unwritten extent to convert (the file system's own journal commit).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use sts_broker::trail::{GATHER, MAX_BATCH};
use tokio::sync::oneshot;

/// Bytes written per exchange: about a journal record's.
const RECORD: usize = 512;
/// The file written, preallocated once; writes wrap around at its end.
const FILE_BYTES: u64 = 1 << 30;
/// With [`Floor::Overwrite`], the part of the file written before the load starts (more
/// than a full run's phases write at the peak; writes wrap around inside it).
const WRITTEN_BYTES: u64 = 128 << 20;
/// [`Floor::Wait`]'s stand-in for one group's write and sync: about the journal's `fdatasync`
/// p50 on the benchmark's machines (0.15–0.21 ms).
const SYNC_WALL: Duration = Duration::from_micros(200);

/// How deep the floor goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Floor {
    /// Hand-off, a sync's wall time asleep, wake-up: no I/O.
    Wait,
    /// Hand-off, one write and one `fdatasync` per group into preallocated space, wake-up.
    Fsync,
    /// As [`Floor::Fsync`], into blocks already written.
    Overwrite,
}

/// Hands exchanges to the committer thread.
pub struct GroupCommit {
    queue: mpsc::SyncSender<oneshot::Sender<()>>,
}

impl GroupCommit {
    /// Starts the committer; with [`Floor::Fsync`] or [`Floor::Overwrite`] it writes into a
    /// file in `dir`.
    pub fn start(floor: Floor, dir: &Path) -> anyhow::Result<Self> {
        let sink = match floor {
            Floor::Wait => Sink::Sleep,
            Floor::Fsync => Sink::File(preallocated(dir, 0)?, FILE_BYTES),
            Floor::Overwrite => Sink::File(preallocated(dir, WRITTEN_BYTES)?, WRITTEN_BYTES),
        };
        let (queue, rx) = mpsc::sync_channel(8192);
        std::thread::Builder::new()
            .name("floor-commit".into())
            .spawn(move || commit_loop(&rx, &sink))?;
        Ok(Self { queue })
    }

    /// Returns once this exchange's group is done.
    pub async fn wait(&self) -> anyhow::Result<()> {
        let (done, committed) = oneshot::channel();
        // The queue is far larger than the connections, so this never blocks the worker.
        self.queue
            .send(done)
            .map_err(|_| anyhow::anyhow!("the committer stopped"))?;
        committed
            .await
            .map_err(|_| anyhow::anyhow!("the committer stopped"))
    }
}

/// What the committer does with a group.
enum Sink {
    Sleep,
    /// The file and where its writes wrap around.
    File(File, u64),
}

/// A file of [`FILE_BYTES`] preallocated in `dir`, its first `written` bytes written (zeros)
/// and everything synced.
fn preallocated(dir: &Path, written: u64) -> anyhow::Result<File> {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("floor"))?;
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, FILE_BYTES)?;
    let zeros = vec![0_u8; 1 << 20];
    for at in (0..written).step_by(zeros.len()) {
        file.write_all_at(&zeros, at)?;
    }
    file.sync_all()?;
    Ok(file)
}

fn commit_loop(rx: &mpsc::Receiver<oneshot::Sender<()>>, sink: &Sink) {
    let page = vec![0x5a_u8; RECORD * MAX_BATCH];
    let mut offset = 0_u64;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter().take(MAX_BATCH - 1));
        if batch.len() > 1 && batch.len() < MAX_BATCH {
            std::thread::sleep(GATHER);
            let room = MAX_BATCH - batch.len();
            batch.extend(rx.try_iter().take(room));
        }
        match sink {
            Sink::Sleep => std::thread::sleep(SYNC_WALL),
            Sink::File(file, wrap) => {
                let bytes = &page[..RECORD * batch.len()];
                if offset + bytes.len() as u64 > *wrap {
                    offset = 0;
                }
                let written = file
                    .write_all_at(bytes, offset)
                    .and_then(|()| file.sync_data());
                if let Err(e) = written {
                    // Unanswered, the exchanges fail: the bench counts them as errors.
                    eprintln!("floor: {e}");
                    batch.clear();
                    continue;
                }
                offset += bytes.len() as u64;
            }
        }
        for done in batch.drain(..) {
            let _ = done.send(());
        }
    }
}
