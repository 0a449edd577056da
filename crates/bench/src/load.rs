//! The load generator: keep-alive HTTP/1.1 over loopback TCP, written by hand so that the
//! client costs little next to the server (its own CPU is measured and reported too).
//!
//! Every response is checked: status 200, a `Content-Length` body, and an `access_token`
//! in it. Anything else is an error; the connection is then replaced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::issuer::Minted;

/// Whole `POST /token` requests, ready to write.
pub type Requests = Arc<Vec<Vec<u8>>>;

/// One exchange request per minted token.
pub fn requests(addr: SocketAddr, minted: &[Minted]) -> Requests {
    let list = minted
        .iter()
        .map(|m| {
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair(
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                )
                .append_pair(
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                )
                .append_pair("subject_token", &m.token)
                .append_pair("audience", &m.audience)
                .finish();
            format!(
                "POST /token HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    Arc::new(list)
}

/// What a load phase saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Checked, successful exchanges.
    pub ok: u64,
    /// Failed exchanges (status, body, or connection).
    pub errors: u64,
    /// The first failure, to show.
    pub first_error: Option<String>,
    /// Latency of every successful exchange, microseconds.
    pub latencies: Vec<u32>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

impl Outcome {
    /// Successful exchanges per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile of latency (0 < q ≤ 1); sorts on first use.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        Duration::from_micros(u64::from(self.latencies[rank - 1]))
    }

    fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
    }

    fn record(&mut self, result: Result<(), String>, started: Instant) {
        match result {
            Ok(()) => {
                self.ok += 1;
                let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                self.latencies.push(micros);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Closed loop: `connections` workers, each sending its next request as soon as the last is
/// answered, for `duration`. Measures the peak rate.
pub async fn closed_loop(
    addr: SocketAddr,
    requests: &Requests,
    connections: usize,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..connections {
        let requests = requests.clone();
        tasks.spawn(async move {
            let mut out = Outcome::default();
            let mut conn = None;
            let mut k = w;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let result = exchange(&mut conn, addr, &requests[k % requests.len()]).await;
                out.record(result, t0);
                k += connections;
            }
            out
        });
    }
    gather(tasks, started).await
}

/// Open loop: requests leave on a schedule of `rate` per second over `connections`
/// connections, whatever the answers do. A request that could not leave on time (its
/// connection was still waiting) is timed from when it should have left, so a stalled server
/// shows in the latency instead of slowing the schedule (no coordinated omission).
pub async fn paced(
    addr: SocketAddr,
    requests: &Requests,
    connections: usize,
    rate: f64,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..connections {
        let requests = requests.clone();
        tasks.spawn(async move {
            let mut out = Outcome::default();
            let mut conn = None;
            let mut k = w;
            let mut due = started + interval.mul_f64(w as f64 / connections as f64);
            while due < deadline {
                let t0 = if Instant::now() >= due {
                    due
                } else {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                };
                let result = exchange(&mut conn, addr, &requests[k % requests.len()]).await;
                out.record(result, t0);
                k += connections;
                due += interval;
            }
            out
        });
    }
    gather(tasks, started).await
}

/// Closed loop until the server goes away (no connection can be made) or `limit` passes:
/// the `X-Request-Id` of every exchange answered 200 and checked, i.e. every answer a client
/// was given.
pub async fn until_gone(
    addr: SocketAddr,
    requests: &Requests,
    connections: usize,
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..connections {
        let requests = requests.clone();
        tasks.spawn(async move {
            let mut answered = Vec::new();
            let mut conn = None;
            let mut k = w;
            while Instant::now() < deadline {
                let request = &requests[k % requests.len()];
                k += connections;
                match exchange_for_id(&mut conn, addr, request, true).await {
                    Ok(Some(id)) => answered.push(id),
                    Ok(None) => {}
                    // The connection was cut mid-answer: try a new one, which fails once the
                    // server is gone.
                    Err(e) if !e.starts_with("connect") => {}
                    Err(_) => break,
                }
            }
            answered
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("load task"));
    }
    all
}

/// One request on a new connection: the time to answer, connection included.
pub async fn single(addr: SocketAddr, request: &[u8]) -> Result<Duration, String> {
    let t0 = Instant::now();
    exchange(&mut None, addr, request).await?;
    Ok(t0.elapsed())
}

/// One request on a new connection; the `X-Request-Id` of its answer, which must have the
/// HTTP status `status`.
pub async fn single_with_id(
    addr: SocketAddr,
    request: &[u8],
    status: &str,
) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(4096),
    };
    let head_end = loop {
        if let Some(at) = find(&conn.buf, b"\r\n\r\n") {
            break at + 4;
        }
        read_more(&mut conn).await?;
    };
    let head = String::from_utf8_lossy(&conn.buf[..head_end]).into_owned();
    if head.get(9..12) != Some(status) {
        return Err(format!("status {}", head.get(9..12).unwrap_or("???")));
    }
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_owned())
        })
        .ok_or_else(|| "no X-Request-Id".into())
}

/// `GET path` with a bearer; the status and body, when something answered.
pub async fn get_with_bearer(addr: SocketAddr, path: &str, bearer: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let status = std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()?;
    let body_at = find(&answer, b"\r\n\r\n")? + 4;
    Some((
        status,
        String::from_utf8_lossy(&answer[body_at..]).into_owned(),
    ))
}

/// `GET path`; the status, when something answered.
pub async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()
}

async fn gather(mut tasks: tokio::task::JoinSet<Outcome>, started: Instant) -> Outcome {
    let mut total = Outcome::default();
    while let Some(done) = tasks.join_next().await {
        total.merge(done.expect("load task"));
    }
    total.elapsed = started.elapsed();
    total
}

/// A keep-alive connection and its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One checked exchange on `conn` (connecting first if needed; dropped after a failure).
async fn exchange(conn: &mut Option<Conn>, addr: SocketAddr, request: &[u8]) -> Result<(), String> {
    exchange_for_id(conn, addr, request, false).await.map(drop)
}

/// As [`exchange`]; with `want_id`, the answer's `X-Request-Id` too.
async fn exchange_for_id(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    request: &[u8],
    want_id: bool,
) -> Result<Option<String>, String> {
    if conn.is_none() {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        *conn = Some(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        });
    }
    let c = conn.as_mut().expect("connected");
    let result = round_trip(c, request, want_id).await;
    match result {
        Ok((keep_alive, id)) => {
            if !keep_alive {
                *conn = None;
            }
            Ok(id)
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

/// Writes `request`, reads one response, checks it; `Ok((false, _))` when the server
/// closes; with `want_id`, the answer's `X-Request-Id`.
async fn round_trip(
    c: &mut Conn,
    request: &[u8],
    want_id: bool,
) -> Result<(bool, Option<String>), String> {
    c.stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let head_end = loop {
        if let Some(at) = find(&c.buf, b"\r\n\r\n") {
            break at + 4;
        }
        read_more(c).await?;
    };
    let head = std::str::from_utf8(&c.buf[..head_end]).map_err(|_| "response head is not UTF-8")?;
    let status = head.get(9..12).unwrap_or("???").to_owned();
    let mut length = None;
    let mut keep_alive = true;
    let mut id = None;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep_alive = false;
        } else if want_id && name.eq_ignore_ascii_case("x-request-id") {
            id = Some(value.to_owned());
        }
    }
    let length = length.ok_or_else(|| format!("status {status}: no Content-Length"))?;
    while c.buf.len() < head_end + length {
        read_more(c).await?;
    }
    let body = &c.buf[head_end..head_end + length];
    let ok = status == "200" && find(body, b"\"access_token\":\"").is_some();
    let outcome = if ok {
        Ok((keep_alive, id))
    } else {
        Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ))
    };
    c.buf.drain(..head_end + length);
    outcome
}

async fn read_more(c: &mut Conn) -> Result<(), String> {
    match c.stream.read_buf(&mut c.buf).await {
        Ok(0) => Err("connection closed by the server".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("read: {e}")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
