//! Open connections: how many the server holds, all clients together and per client, and
//! the count that shutdown waits on.
//!
//! Every connection costs file descriptors. Without a cap, one client that opens requests
//! and never finishes them takes the process to its file limit, and then the database, the
//! audit files and upstream key fetches fail too (`Too many open files`). So the server-wide
//! cap stays below the file limit ([`super::connection_limits`]); at the cap the server stops
//! accepting, and further connections wait in the kernel's accept queue, which costs the
//! process nothing. Within the cap one client (an IPv4 address or an IPv6 /64, as the rate
//! limiter counts them) holds at most `per_client` connections: a connection over that is
//! shut as soon as it is accepted. A trusted proxy carries many clients, so its connections
//! are not capped per client; the requests in flight of each client it forwards are
//! ([`guard`]). Stalls are cut by deadlines: the first head (actix-web, 5 s), each body
//! ([`super::body_deadline`]) and each later head ([`super::next_head`]).

use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::http::header::HeaderName;
use actix_web::middleware::Next;
use actix_web::rt::net::TcpStream;
use actix_web::{Error, HttpMessage};

use super::connection_limits::ConnectionLimits;
use super::next_head::Watch;
use super::oauth_error::OAuthError;
use super::request_id::RequestId;
use crate::metrics::Metrics;
use crate::ratelimit::client_block;
use crate::trusted_proxies::TrustedProxies;

/// The open connections and what each client holds.
pub struct Connections {
    limits: ConnectionLimits,
    trusted: TrustedProxies,
    metrics: Arc<Metrics>,
    open: AtomicUsize,
    /// Per client block: connections, plus requests in flight through trusted proxies.
    clients: Mutex<HashMap<IpAddr, usize>>,
    draining: AtomicBool,
    full_warning: Quiet,
    client_warning: Quiet,
}

/// Lets a warning through at most once a minute: a flood must not also flood the log (the
/// metrics count every refusal).
struct Quiet {
    start: Instant,
    /// Seconds since `start` of the last warning, plus one; 0: none yet.
    last: AtomicU64,
}

impl Quiet {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn allow(&self) -> bool {
        let now = self.start.elapsed().as_secs() + 1;
        let last = self.last.load(Ordering::Relaxed);
        (last == 0 || now >= last + 60)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Connections {
    /// Counts connections under `limits`; clients behind `trusted` proxies are counted by the
    /// address the proxy forwards.
    pub fn new(limits: ConnectionLimits, trusted: TrustedProxies, metrics: Arc<Metrics>) -> Self {
        Self {
            limits,
            trusted,
            metrics,
            open: AtomicUsize::new(0),
            clients: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            full_warning: Quiet::new(),
            client_warning: Quiet::new(),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// From now on every response closes its connection (shutdown).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// One more slot for `block`, unless it holds its share already.
    fn acquire(self: &Arc<Self>, block: IpAddr) -> Option<ClientSlot> {
        if self.limits.per_client == 0 {
            return None;
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let held = clients.entry(block).or_insert(0);
        if *held >= self.limits.per_client {
            drop(clients);
            if self.client_warning.allow() {
                tracing::warn!(
                    client = %block,
                    max_connections_per_client = self.limits.per_client,
                    "a client holds all the connections it may; refusing more from it \
                     (sts_connections_refused_total counts them)"
                );
            }
            self.metrics.connection_refused();
            return Some(ClientSlot::Refused);
        }
        *held += 1;
        Some(ClientSlot::Held {
            connections: self.clone(),
            block,
        })
    }

    fn release(&self, block: IpAddr) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = clients.get_mut(&block) {
            *held -= 1;
            if *held == 0 {
                clients.remove(&block);
            }
        }
    }

    /// `HttpServer::on_connect`: counts the connection, and shuts it at once when its client
    /// is over its cap (before a byte of it is read).
    pub fn on_connect(self: &Arc<Self>, io: &dyn Any, ext: &mut Extensions) {
        let Some(tcp) = tcp_of(io) else {
            return;
        };
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics.connection_opened();
        if open >= self.limits.total && self.full_warning.allow() {
            tracing::warn!(
                open,
                max_connections = self.limits.total,
                "connection cap reached: new connections wait in the accept queue"
            );
        }
        let peer = tcp.peer_addr().ok().map(|a| a.ip().to_canonical());
        let from_proxy = peer.is_some_and(|ip| self.trusted.trusts(ip));
        let client = match peer {
            Some(ip) if !from_proxy => self.acquire(client_block(ip)),
            _ => None,
        };
        let refused = matches!(client, Some(ClientSlot::Refused));
        if refused {
            // Shutting both directions makes the server's next read end the connection at
            // once; the client sees it closed before any answer, as from a full server.
            let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Both);
            tracing::debug!(peer = ?peer, "connection refused: its client holds its share");
        }
        ext.insert(Connection {
            connections: self.clone(),
            from_proxy,
            watch: if refused { None } else { Watch::start(tcp) },
            _client: client,
        });
    }
}

/// The TCP stream under a plain or TLS connection.
fn tcp_of(io: &dyn Any) -> Option<&TcpStream> {
    io.downcast_ref::<TcpStream>().or_else(|| {
        io.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0)
    })
}

/// One client's share held (released on drop), or the sign that it had none left.
enum ClientSlot {
    Held {
        connections: Arc<Connections>,
        block: IpAddr,
    },
    Refused,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Self::Held { connections, block } = self {
            connections.release(*block);
        }
    }
}

/// Kept with each connection (its extensions live as long as it does).
struct Connection {
    connections: Arc<Connections>,
    from_proxy: bool,
    watch: Option<Rc<Watch>>,
    _client: Option<ClientSlot>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
        self.connections.metrics.connection_closed();
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Middleware: the per-client cap for requests that arrive through a trusted proxy, the
/// request-body deadline, and `Connection: close` on every response while shutting down.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let connection = req
        .conn_data::<Connection>()
        .map(|c| (c.connections.clone(), c.from_proxy));
    let _answering = req
        .conn_data::<Connection>()
        .and_then(|c| c.watch.as_ref())
        .map(Watch::request);
    let _in_flight = match &connection {
        Some((connections, true)) => {
            let forwarded = req.headers().get_all(X_FORWARDED_FOR).map(|v| v.as_bytes());
            let client = connections
                .trusted
                .client(req.peer_addr().map(|a| a.ip()), forwarded)
                .filter(|ip| !connections.trusted.trusts(*ip));
            match client.and_then(|ip| connections.acquire(client_block(ip))) {
                Some(ClientSlot::Refused) => {
                    let refusal = OAuthError::rate_limited(
                        std::time::Duration::from_secs(1),
                        "too many requests in flight from this client; retry later",
                    )
                    .response(&request_id(req.request()));
                    return Ok(req.into_response(refusal).map_into_right_body());
                }
                held => held,
            }
        }
        _ => None,
    };
    let timed_out = super::body_deadline::apply(&mut req);
    let response = next.call(req).await?;
    if timed_out.is_some_and(|t| t.get()) {
        if let Some((connections, ..)) = &connection {
            connections.metrics.body_timeout();
        }
        let mut late = super::body_deadline::too_late().response(&request_id(response.request()));
        late.head_mut().set_connection_type(ConnectionType::Close);
        return Ok(response.into_response(late).map_into_right_body());
    }
    let mut response = response.map_into_left_body();
    if connection.is_some_and(|(c, _)| c.draining()) {
        // Answer what arrived, then close: the client learns from this answer not to send
        // another request on a connection that is about to go.
        (response.response_mut().head_mut()).set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

fn request_id(req: &actix_web::HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share() {
        let connections = Arc::new(Connections::new(
            ConnectionLimits {
                total: 100,
                per_client: 2,
            },
            TrustedProxies::default(),
            Arc::new(Metrics::new()),
        ));
        let ip = |t: &str| client_block(t.parse().unwrap());
        let a = connections.acquire(ip("2001:db8:1:1::1"));
        let b = connections.acquire(ip("2001:db8:1:1::2"));
        assert!(matches!(a, Some(ClientSlot::Held { .. })));
        assert!(matches!(b, Some(ClientSlot::Held { .. })));
        assert!(
            matches!(
                connections.acquire(ip("2001:db8:1:1:ffff::3")),
                Some(ClientSlot::Refused)
            ),
            "one /64 is one client"
        );
        assert!(matches!(
            connections.acquire(ip("2001:db8:1:2::1")),
            Some(ClientSlot::Held { .. })
        ));
        drop(a);
        assert!(matches!(
            connections.acquire(ip("2001:db8:1:1::9")),
            Some(ClientSlot::Held { .. })
        ));
        drop(b);
    }
}
