//! How many connections the broker may hold: derived from the process's open-file limit.
//!
//! Every connection costs two file descriptors: its socket, and a second descriptor of it
//! through which the broker closes a connection that stalls between requests
//! ([`super::next_head`]). What the limit leaves after the files open at start and a
//! headroom for what is opened later (database connections, the audit spool, upstream
//! fetches, certificate reloads) is shared by the connections, two files each. A configured
//! `max_connections` can only lower the result.

/// Below this many connections the broker cannot usefully serve: start-up is refused.
const MIN_CONNECTIONS: usize = 16;

/// Descriptors one connection holds.
pub const FILES_PER_CONNECTION: u64 = 2;

/// The file limit assumed when the process has none.
const UNLIMITED_FILES: u64 = 1 << 20;

/// How many connections may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// All clients together.
    pub total: usize,
    /// One client; `0`: no per-client cap.
    pub per_client: usize,
}

/// Files kept free for what the broker opens after start: database connections (SQLite
/// opens three files per connection), the audit spool, upstream discovery and JWKS fetches,
/// certificate reloads. An eighth of the limit, and at least 64.
pub fn headroom(file_limit: u64) -> u64 {
    (file_limit / 8).max(64)
}

impl ConnectionLimits {
    /// The caps for a process allowed `file_limit` open files (`None`: unlimited) that holds
    /// `open_files` now, lowered to `max` when given. `per_client` unset is an eighth of
    /// the total.
    pub fn derive(
        file_limit: Option<u64>,
        open_files: usize,
        max: Option<usize>,
        per_client: Option<usize>,
    ) -> Result<Self, String> {
        let limit = file_limit.unwrap_or(UNLIMITED_FILES);
        let room = limit
            .saturating_sub(open_files as u64)
            .saturating_sub(headroom(limit));
        let derived = usize::try_from(room / FILES_PER_CONNECTION).unwrap_or(usize::MAX);
        if derived < MIN_CONNECTIONS {
            let needed = open_files as u64 + FILES_PER_CONNECTION * MIN_CONNECTIONS as u64;
            return Err(format!(
                "the open-file limit ({limit}) leaves room for {derived} connections once the \
                 {open_files} files open now and {} kept for the database, audit and upstream \
                 fetches are counted (each connection takes {FILES_PER_CONNECTION}); raise it \
                 (ulimit -n, or LimitNOFILE= in a systemd unit) to at least {}",
                headroom(limit),
                (needed + 64).max(needed * 8 / 7 + 1),
            ));
        }
        let total = max.map_or(derived, |m| m.min(derived));
        Ok(Self {
            total,
            per_client: per_client.unwrap_or((total / 8).max(1)),
        })
    }

    /// [`ConnectionLimits::derive`] for this process: its soft `RLIMIT_NOFILE` and the files it
    /// has open now; also returns those two.
    pub fn for_this_process(
        max: Option<usize>,
        per_client: Option<usize>,
    ) -> Result<(Self, Option<u64>, usize), String> {
        let file_limit = file_limit();
        let open = open_files();
        let limits = Self::derive(file_limit, open, max, per_client)?;
        if let Some(asked) = max
            && asked > limits.total
        {
            tracing::warn!(
                max_connections = asked,
                allowed = limits.total,
                "max_connections is above what the open-file limit allows; using the lower cap"
            );
        }
        Ok((limits, file_limit, open))
    }
}

/// The soft limit on open files; `None` when there is none.
#[cfg(unix)]
fn file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn file_limit() -> Option<u64> {
    None
}

/// Files this process has open (where the system lists them), else a generous guess.
fn open_files() -> usize {
    ["/proc/self/fd", "/dev/fd"]
        .iter()
        .find_map(|dir| std::fs::read_dir(dir).ok())
        .map_or(64, |entries| entries.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_below_the_file_limit() {
        // 1,024 files, 40 open at start: 128 kept, 856 for connections at two files each:
        // 428 connections, 53 per client.
        let limits = ConnectionLimits::derive(Some(1024), 40, None, None).unwrap();
        assert_eq!(
            limits,
            ConnectionLimits {
                total: 428,
                per_client: 53
            }
        );
        // A configured cap only lowers it.
        let lower = ConnectionLimits::derive(Some(1024), 40, Some(300), Some(0)).unwrap();
        assert_eq!((lower.total, lower.per_client), (300, 0));
        let higher = ConnectionLimits::derive(Some(1024), 40, Some(5000), None).unwrap();
        assert_eq!(higher.total, 428);
        // Large limits keep an eighth.
        let big = ConnectionLimits::derive(Some(65536), 50, None, None).unwrap();
        assert_eq!(big.total, (65536 - 50 - 8192) / 2);
        assert!(
            ConnectionLimits::derive(None, 50, None, None)
                .unwrap()
                .total
                > 100_000
        );
        // Too few files to serve: refused, saying what to do.
        let err = ConnectionLimits::derive(Some(100), 40, None, None).unwrap_err();
        assert!(err.contains("ulimit -n"), "{err}");
        let suggested: u64 = err.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(ConnectionLimits::derive(Some(suggested), 40, None, None).is_ok());
    }
}
