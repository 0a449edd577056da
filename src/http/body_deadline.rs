//! Request bodies must arrive within [`BODY_DEADLINE`] of the request head (SPEC).
//!
//! actix-web times out a request head (`client_request_timeout`) but not a body: a client that
//! declares `Content-Length: 1000` and sends ten bytes holds its connection, and a file
//! descriptor, for as long as it likes. The payload of every request with a body is wrapped
//! here, so whatever reads it (form, JSON, bytes) gets an error at the deadline; the answer
//! is then replaced by 408 and the connection is closed (the rest of the body is never read).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use futures_util::Stream;

use super::oauth_error::OAuthError;

/// How long after its head a request's body may take to arrive, all of it.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Puts the deadline on `req`'s body, if it has one; the flag says whether it passed.
pub fn apply(req: &mut ServiceRequest) -> Option<Rc<Cell<bool>>> {
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        req.set_payload(payload);
        return None;
    }
    let timed_out = Rc::new(Cell::new(false));
    let limited = Deadline {
        inner: payload,
        sleep: Box::pin(tokio::time::sleep(BODY_DEADLINE)),
        timed_out: timed_out.clone(),
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(limited),
    });
    Some(timed_out)
}

/// The answer to a request whose body came too late.
pub fn too_late() -> OAuthError {
    OAuthError::new(
        StatusCode::REQUEST_TIMEOUT,
        "invalid_request",
        format!(
            "the request body did not arrive within {} s",
            BODY_DEADLINE.as_secs()
        ),
    )
}

/// A payload that fails once the deadline passes.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timed_out: Rc<Cell<bool>>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.timed_out.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.set(true);
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request body deadline passed",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
