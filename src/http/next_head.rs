//! A kept-alive connection's next request head must arrive within [`NEXT_HEAD_DEADLINE`] of
//! the last answer.
//!
//! actix-http times the head of a connection's first request only (`client_request_timeout`),
//! and stops the keep-alive timer at the first byte of the next one: a client that sends one
//! request, then a few bytes of the next and nothing more, holds its connection for ever.
//! The dispatcher owns the socket, so each connection keeps a second descriptor of it
//! ([`Watch`]), and a small task shuts the socket through it when the next head is late; the
//! dispatcher then reads the end of the stream and drops the connection.

use std::cell::Cell;
#[cfg(unix)]
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
#[cfg(unix)]
use std::rc::Weak;
use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;

/// From an answer to the complete head of the next request on the same connection: the
/// keep-alive timeout (5 s) plus as long again for the head itself.
pub const NEXT_HEAD_DEADLINE: Duration = Duration::from_secs(10);

/// What a connection's watchdog sees.
pub struct Watch {
    #[cfg(unix)]
    socket: OwnedFd,
    /// When the last answer left, while no next request has started.
    answered_at: Cell<Option<Instant>>,
}

impl Watch {
    /// Watches `tcp` (one more descriptor for as long as the connection lives); `None` when
    /// the descriptor cannot be had, and the connection goes unwatched.
    #[cfg(unix)]
    pub fn start(tcp: &TcpStream) -> Option<Rc<Self>> {
        let watch = Rc::new(Self {
            socket: tcp.as_fd().try_clone_to_owned().ok()?,
            answered_at: Cell::new(None),
        });
        actix_web::rt::spawn(watchdog(Rc::downgrade(&watch)));
        Some(watch)
    }

    /// Unwatched where a socket has no second descriptor to shut it through.
    #[cfg(not(unix))]
    pub fn start(_: &TcpStream) -> Option<Rc<Self>> {
        None
    }

    /// A request head arrived; when the returned guard drops, its answer has been made and
    /// the wait for the next head begins.
    pub fn request(self: &Rc<Self>) -> Answering {
        self.answered_at.set(None);
        Answering(self.clone())
    }
}

/// A request of a watched connection, being answered.
pub struct Answering(Rc<Watch>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answered_at.set(Some(Instant::now()));
    }
}

/// Shuts the connection when its next head is late; ends with the connection.
#[cfg(unix)]
async fn watchdog(watch: Weak<Watch>) {
    let mut wake = Instant::now() + NEXT_HEAD_DEADLINE;
    loop {
        actix_web::rt::time::sleep_until(wake.into()).await;
        let Some(watch) = watch.upgrade() else {
            return;
        };
        wake = match watch.answered_at.get() {
            Some(at) if at.elapsed() >= NEXT_HEAD_DEADLINE => {
                let _ = socket2::SockRef::from(&watch.socket).shutdown(std::net::Shutdown::Both);
                tracing::debug!("closed a connection whose next request head did not arrive");
                return;
            }
            Some(at) => at + NEXT_HEAD_DEADLINE,
            // A request is running (its body has its own deadline): look again later.
            None => Instant::now() + NEXT_HEAD_DEADLINE,
        };
    }
}
