//! SIGTERM with many keep-alive connections under load: every request the broker received
//! is answered, the answer says `Connection: close`, and nothing is cut off unanswered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::child::{self, connect_from, read_answer};
use crate::helpers::{FakeIdp, GRANT, ID_TOKEN, form};

#[derive(Default)]
struct Tally {
    /// Answers before the signal.
    before: AtomicUsize,
    /// Answers after it.
    after: AtomicUsize,
    /// Answers that closed their connection.
    closing: AtomicUsize,
    /// Requests written whose connection then ended without an answer.
    unanswered: AtomicUsize,
    /// Connections that could not be opened.
    not_connected: AtomicUsize,
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_that_keep_alive_connections_sent() {
    const CONNECTIONS: usize = 1000;
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = child::start(&idp, dir.path(), "", "max_connections_per_client = 0", None).await;
    let body = form(&[
        ("grant_type", GRANT),
        ("subject_token", &idp.token(&idp.claims())),
        ("subject_token_type", ID_TOKEN),
        ("audience", "https://deploy.internal"),
    ]);
    let request = Arc::new(child::post_token(&body));
    let tally = Arc::new(Tally::default());
    let signalled = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        let (request, tally, signalled) = (request.clone(), tally.clone(), signalled.clone());
        let from = std::net::IpAddr::from([127, 0, 1, (i % 200) as u8 + 1]);
        let to = broker.addr;
        clients.push(tokio::spawn(async move {
            let mut stream = match connect_from(from, to).await {
                Ok(stream) => stream,
                Err(e) => {
                    eprintln!("connecting from {from}: {e}");
                    tally.not_connected.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            let mut buf = Vec::new();
            loop {
                if stream.write_all(&request).await.is_err() {
                    // Closed before this request left: nothing was lost.
                    return;
                }
                match read_answer(&mut stream, &mut buf).await {
                    Ok(answer) => {
                        assert_eq!(
                            answer.status,
                            200,
                            "{}",
                            String::from_utf8_lossy(&answer.body)
                        );
                        let counter = match signalled.load(Ordering::SeqCst) {
                            true => &tally.after,
                            false => &tally.before,
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                        if answer.close {
                            tally.closing.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    Err(_) => {
                        tally.unanswered.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }));
    }
    // Every connection open and busy.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tally.before.load(Ordering::SeqCst) < 2 * CONNECTIONS {
        assert!(std::time::Instant::now() < deadline, "load did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signalled.store(true, Ordering::SeqCst);
    broker.terminate();
    let mut process = broker.process;
    let status = tokio::task::spawn_blocking(move || {
        let status = process.0.wait().unwrap();
        (process, status)
    });
    let (_process, status) = tokio::time::timeout(Duration::from_secs(30), status)
        .await
        .expect("the broker stops")
        .unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let t = |c: &AtomicUsize| c.load(Ordering::SeqCst);
    eprintln!(
        "{CONNECTIONS} connections: {} answers before SIGTERM, {} after ({} with Connection: \
         close), {} unanswered, {} not connected",
        t(&tally.before),
        t(&tally.after),
        t(&tally.closing),
        t(&tally.unanswered),
        t(&tally.not_connected)
    );
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(t(&tally.not_connected), 0);
    assert_eq!(t(&tally.unanswered), 0, "requests closed without an answer");
    assert!(t(&tally.after) > 0, "the signal came under load");
    assert_eq!(
        t(&tally.closing),
        CONNECTIONS,
        "each connection was told to close"
    );
}
