//! Connections that never finish their request: a deadline on request bodies, a cap per
//! client and a server-wide cap below the file limit, so health checks, other clients and
//! the broker's own files keep working; clients counted by IPv6 /64.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::child::{self, closed_within, connect_from, read_answer, stall};
use crate::helpers::{FakeIdp, GRANT, ID_TOKEN, TestApp, form, spawn_app, spawn_app_with};

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_closed_at_the_deadline() {
    let app = spawn_app().await;
    let addr = format!("127.0.0.1:{}", port_of(&app)).parse().unwrap();
    let started = Instant::now();
    // One sends a few bytes of its body and stops; one trickles a byte a second.
    let mut silent = connect_from(loopback(1), addr).await.unwrap();
    stall(&mut silent, 1000).await.unwrap();
    let mut trickle = connect_from(loopback(1), addr).await.unwrap();
    stall(&mut trickle, 1000).await.unwrap();
    let trickling = tokio::spawn(async move {
        let mut buf = Vec::new();
        loop {
            let wait = Duration::from_secs(1);
            match tokio::time::timeout(wait, read_answer(&mut trickle, &mut buf)).await {
                Ok(answer) => return (answer, started.elapsed()),
                Err(_) => {
                    let _ = trickle.write_all(b"x").await;
                }
            }
        }
    });
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        read_answer(&mut silent, &mut Vec::new()),
    )
    .await
    .expect("a stalled body is not held for ever")
    .expect("an answer before the close");
    let answered = started.elapsed();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    let held = started.elapsed();
    assert_eq!(answer.status, 408);
    assert!(answer.close, "Connection: close");
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(
        answered >= Duration::from_millis(9_500) && held <= Duration::from_secs(12),
        "answered after {answered:?}, closed after {held:?}"
    );
    eprintln!("a stalled body was answered 408 after {answered:?} and closed after {held:?}");
    let (answer, after) = trickling.await.unwrap();
    assert_eq!(
        answer.expect("answered").status,
        408,
        "a trickle is cut at the same deadline"
    );
    assert!(after <= Duration::from_secs(11), "{after:?}");
    // The broker serves on.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// actix-web times only a connection's first request head: after one answer, a few bytes of
/// a second request held the connection for ever.
#[tokio::test]
async fn a_stalled_head_on_a_kept_alive_connection_is_closed() {
    let app = spawn_app().await;
    let addr = format!("127.0.0.1:{}", port_of(&app)).parse().unwrap();
    let mut stream = connect_from(loopback(1), addr).await.unwrap();
    let health = b"GET /healthz HTTP/1.1\r\nHost: sts\r\n\r\n";
    stream.write_all(health).await.unwrap();
    let answer = read_answer(&mut stream, &mut Vec::new()).await.unwrap();
    assert_eq!(answer.status, 200);
    assert!(!answer.close, "kept alive");
    let answered = Instant::now();
    stream.write_all(b"GET /heal").await.unwrap();
    assert!(
        closed_within(&mut stream, Duration::from_secs(20)).await,
        "a stalled second head is not held for ever"
    );
    let held = answered.elapsed();
    eprintln!("a stalled second request head was closed {held:?} after the first answer");
    assert!(
        held >= Duration::from_millis(9_500) && held <= Duration::from_secs(11),
        "{held:?}"
    );
    // A connection that keeps asking is not cut.
    let mut busy = connect_from(loopback(1), addr).await.unwrap();
    let mut buf = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        busy.write_all(health).await.unwrap();
        assert_eq!(read_answer(&mut busy, &mut buf).await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// A request body that arrives in time is unaffected, however it is split.
#[tokio::test]
async fn a_body_sent_in_pieces_within_the_deadline_is_served() {
    let app = spawn_app().await;
    let addr = format!("127.0.0.1:{}", port_of(&app)).parse().unwrap();
    let body = form(&[
        ("grant_type", GRANT),
        ("subject_token", &app.idp.token(&app.idp.claims())),
        ("subject_token_type", ID_TOKEN),
        ("audience", "https://deploy.internal"),
    ]);
    let request = child::post_token(&body);
    let mut stream = connect_from(loopback(1), addr).await.unwrap();
    for piece in request.chunks(request.len() / 3 + 1) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let answer = read_answer(&mut stream, &mut Vec::new()).await.unwrap();
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(!answer.close);
}

/// Opens `n` connections from `from`, each with a stalled body; returns those the broker
/// kept (it shuts the others at once).
async fn stalled_connections(from: IpAddr, to: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut opened = Vec::new();
    for _ in 0..n {
        match connect_from(from, to).await {
            Ok(mut s) => {
                if stall(&mut s, 4096).await.is_ok() {
                    opened.push(s);
                }
            }
            Err(_) => break,
        }
    }
    let checks = opened.into_iter().map(|mut s| async move {
        (!closed_within(&mut s, Duration::from_millis(200)).await).then_some(s)
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The limits the broker announced at start.
fn announced_limits(log: &str) -> (usize, usize) {
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "connection limits")
        .unwrap_or_else(|| panic!("no connection limits logged:\n{log}"));
    let n = |k: &str| line[k].as_u64().unwrap() as usize;
    (n("max_connections"), n("max_connections_per_client"))
}

/// The attack of the review: one client, under its rate limit, opens more stalled
/// `POST /token` bodies than the process may open files. The broker keeps that client to its
/// share; health checks and other clients are served; at the server-wide cap (many
/// clients), connections already open are served and the database still opens its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_cannot_exhaust_the_file_limit() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let health_port = child::free_port();
    let config = format!("log_format = \"json\"\nmetrics_listen = \"127.0.0.1:{health_port}\"");
    let broker = child::start(&idp, dir.path(), "", &config, Some(256)).await;
    let (total, per_client) = announced_limits(&broker.log());
    assert!(total < 256 && per_client < total, "{total} {per_client}");
    eprintln!("under a 256-file limit: {total} connections, {per_client} per client");

    // One client, 300 stalled bodies: it keeps its share, the rest are shut at once.
    let attacker = stalled_connections(loopback(1), broker.addr, 300).await;
    assert!(
        attacker.len() <= per_client,
        "{} of 300 kept",
        attacker.len()
    );
    // Another client is served at once: health, and an exchange (database, audit).
    let other = reqwest::Client::builder()
        .local_address(loopback(2))
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let health = other
        .get(format!("{}/healthz", broker.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let exchange = |client: reqwest::Client| {
        let body = form(&[
            ("grant_type", GRANT),
            ("subject_token", &idp.token(&idp.claims())),
            ("subject_token_type", ID_TOKEN),
            ("audience", "https://deploy.internal"),
        ]);
        let url = format!("{}/token", broker.url);
        async move {
            client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(exchange(other.clone()).await.unwrap(), 200);

    // Many clients, up to the server-wide cap and past it.
    let mut flood = attacker;
    let mut from = 3;
    while flood.len() < total + 20 {
        flood.extend(stalled_connections(loopback(from), broker.addr, per_client).await);
        from += 1;
    }
    // The kept-alive connection of the other client is still served, and the database
    // still opens its files.
    assert_eq!(exchange(other.clone()).await.unwrap(), 200);
    // Health checks sent to the metrics listener are answered at once meanwhile.
    let checked = Instant::now();
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{health_port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    eprintln!(
        "health check on the metrics listener answered in {:?}",
        checked.elapsed()
    );
    // A new connection waits in the accept queue until stalled bodies reach their deadline.
    let waited = Instant::now();
    let fresh = reqwest::Client::builder()
        .local_address(loopback(2))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let health = fresh
        .get(format!("{}/healthz", broker.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    eprintln!(
        "{} stalled connections from {} clients; a new connection was served after {:?}",
        flood.len(),
        from - 1,
        waited.elapsed()
    );
    // It waited for a slot: the flood held the cap.
    assert!(
        waited.elapsed() > Duration::from_secs(3) && waited.elapsed() < Duration::from_secs(15),
        "{:?}",
        waited.elapsed()
    );
    let log = broker.log();
    assert!(
        !log.contains("Too many open files") && !log.contains("os error 24"),
        "{log}"
    );
    drop(flood);
}

/// Behind a trusted proxy the proxy's connections are not capped per client; the requests
/// in flight of each forwarded client are.
#[tokio::test]
async fn behind_a_proxy_each_forwarded_client_has_its_share_of_requests() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = sts_broker::config::TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        c.max_connections_per_client = Some(2);
    })
    .await;
    let addr = format!("127.0.0.1:{}", port_of(&app)).parse().unwrap();
    // The proxy holds more connections than any one client may.
    let mut proxy = Vec::new();
    for _ in 0..4 {
        proxy.push(connect_from(loopback(1), addr).await.unwrap());
    }
    let stalled_for = |client: &'static str| {
        format!(
            "POST /token HTTP/1.1\r\nHost: sts\r\nX-Forwarded-For: {client}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nx"
        )
    };
    for s in proxy.iter_mut().take(2) {
        s.write_all(stalled_for("2001:db8:5:5::1").as_bytes())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third request of the same /64 is refused with 429; another client is served.
    proxy[2]
        .write_all(stalled_for("2001:db8:5:5:ffff::2").as_bytes())
        .await
        .unwrap();
    let refused = read_answer(&mut proxy[2], &mut Vec::new()).await.unwrap();
    assert_eq!(refused.status, 429);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["error"], "slow_down");
    let health = "GET /healthz HTTP/1.1\r\nHost: sts\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n";
    proxy[3].write_all(health.as_bytes()).await.unwrap();
    let served = read_answer(&mut proxy[3], &mut Vec::new()).await.unwrap();
    assert_eq!(served.status, 200);
}

/// The per-client rate limit counts an IPv6 client by its /64, through `X-Forwarded-For`
/// from a trusted proxy; the audit record keeps the whole address.
#[tokio::test]
async fn the_client_rate_limit_counts_ipv6_clients_by_their_64() {
    let app = spawn_app_with(|c| {
        c.rate_limit_per_client = "2/m".parse().unwrap();
        c.trusted_proxies = sts_broker::config::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    })
    .await;
    let exchange_as = |forwarded: &'static str| {
        let body = form(&[
            ("grant_type", GRANT),
            ("subject_token", &app.idp.token(&app.idp.claims())),
            ("subject_token_type", ID_TOKEN),
            ("audience", "https://deploy.internal"),
        ]);
        let request = app
            .client
            .post(format!("{}/token", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", forwarded)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let id = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            (response.status().as_u16(), id)
        }
    };
    let (status, id) = exchange_as("2001:db8:1:2::1").await;
    assert_eq!(status, 200);
    assert_eq!(exchange_as("2001:db8:1:2:ffff:ffff:ffff:ffff").await.0, 200);
    assert_eq!(
        exchange_as("2001:db8:1:2:abcd::7").await.0,
        429,
        "a third address of the same /64 is the same client"
    );
    assert_eq!(
        exchange_as("2001:db8:1:3::1").await.0,
        200,
        "the next /64 is another client"
    );
    assert_eq!(exchange_as("198.51.100.1").await.0, 200);
    let record = &app.audit_records(&id).await[0];
    assert_eq!(record["client_addr"], "2001:db8:1:2::1");
}
