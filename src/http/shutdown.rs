//! Stopping on SIGTERM or SIGINT without dropping requests the broker has received.
//!
//! actix-web's own graceful stop closes idle keep-alive connections at once and does not
//! start a request that a connection has already received but not begun: a client whose
//! next request crossed the signal gets its connection closed without an answer (367 of
//! 1,000 keep-alive clients under load). So the broker stops in its own order:
//!
//! 1. It stops accepting: the listening sockets are shut, so a new connection is refused
//!    (and can go to another replica) instead of waiting in the accept queue for an answer
//!    that never comes.
//! 2. Open connections go on being served, but every response says `Connection: close`
//!    ([`super::connections::guard`]): each connection answers what it has received and
//!    then ends; an idle one ends at its keep-alive timeout.
//! 3. When none is left, or after [`DRAIN_LIMIT`], the server stops; a request still
//!    running then has [`FINAL_GRACE`] more.
//!
//! A second signal skips the wait. A proxy in front should stop sending to a replica before
//! it is told to stop (README, Operations).

use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};

use super::connections::Connections;

/// Longest wait for open connections to finish after a stop signal.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// What a request still running after [`DRAIN_LIMIT`] gets before the worker is dropped.
pub const FINAL_GRACE: Duration = Duration::from_secs(1);

/// The running servers, stopped in the order above; resolves when they have stopped.
pub struct Serving(Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>);

impl Future for Serving {
    type Output = std::io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Serving {
    /// Runs `servers` (built with signals disabled), which listen on `listeners` (copies of
    /// their sockets), until a stop signal; `connections` counts the public server's
    /// connections.
    pub fn new(
        servers: Vec<Server>,
        listeners: Vec<TcpListener>,
        connections: Arc<Connections>,
    ) -> std::io::Result<Self> {
        let mut signals = Signals::new()?;
        let handles: Vec<ServerHandle> = servers.iter().map(Server::handle).collect();
        let all = futures_util::future::try_join_all(servers);
        Ok(Self(Box::pin(async move {
            let mut all = std::pin::pin!(all);
            tokio::select! {
                done = &mut all => return done.map(drop),
                () = signals.next() => {}
            }
            tokio::select! {
                done = &mut all => return done.map(drop),
                () = drain(&handles, &listeners, &connections) => {}
                () = signals.next() => {
                    tracing::warn!("second stop signal: stopping now");
                    for handle in &handles {
                        handle.stop(false).await;
                    }
                }
            }
            all.await.map(drop)
        })))
    }
}

/// Steps 1 to 3.
async fn drain(handles: &[ServerHandle], listeners: &[TcpListener], connections: &Connections) {
    tracing::info!(
        open = connections.open(),
        "stopping: new connections are refused; open ones answer what they received, then close"
    );
    connections.start_draining();
    for handle in handles {
        handle.pause().await;
    }
    // Let the accept thread take its sockets off its poller before they are shut, so it
    // does not see them fail.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for listener in listeners {
        stop_listening(listener);
    }
    let started = tokio::time::Instant::now();
    while connections.open() > 0 && started.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match connections.open() {
        0 => tracing::info!(
            after_ms = started.elapsed().as_millis() as u64,
            "every connection closed"
        ),
        open => tracing::warn!(
            open,
            "connections still open after the drain limit; closing them"
        ),
    }
    for handle in handles {
        handle.stop(true).await;
    }
}

/// Refuses new connections on `listener` from now on.
///
/// On Linux, shutting the read side of a listening socket turns it back to closed (HAProxy
/// pauses its listeners this way): connection attempts are refused at once. Elsewhere this
/// fails, accepting stays paused, and connections wait in the queue until the process exits.
fn stop_listening(listener: &TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Read) {
        tracing::debug!(error = %e, "the listening socket could not be shut; accepting is paused");
    }
}

/// SIGTERM and SIGINT (Ctrl-C), as one stream.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
