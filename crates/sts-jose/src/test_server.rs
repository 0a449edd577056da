//! A tiny HTTP/1.1 server for the fetch and cache tests: chosen answers per path, counted,
//! optionally late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How one path answers.
#[derive(Debug, Clone)]
pub struct Route {
    pub status: u16,
    pub body: String,
    pub cache_control: Option<String>,
    /// Sent as `ETag`; a request whose `If-None-Match` equals it gets a 304.
    pub etag: Option<String>,
    /// Waits this long before answering.
    pub delay: Duration,
}

impl Route {
    pub fn json(body: &serde_json::Value) -> Self {
        Self {
            status: 200,
            body: body.to_string(),
            cache_control: None,
            etag: None,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    hits: HashMap<String, usize>,
    not_modified: usize,
}

/// A server on a loopback port.
pub struct TestServer {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl TestServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                    let if_none_match = text.lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("if-none-match")
                            .then(|| value.trim().to_owned())
                    });
                    let route = {
                        let mut s = state.lock().unwrap();
                        *s.hits.entry(path.clone()).or_default() += 1;
                        s.routes.get(&path).cloned()
                    };
                    let Some(route) = route else {
                        let _ = socket
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    };
                    tokio::time::sleep(route.delay).await;
                    let matched = route.etag.is_some() && route.etag == if_none_match;
                    let (status, body) = match matched {
                        true => {
                            state.lock().unwrap().not_modified += 1;
                            (304, "")
                        }
                        false => (route.status, route.body.as_str()),
                    };
                    let mut head = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n");
                    if let Some(cc) = &route.cache_control {
                        head.push_str(&format!("cache-control: {cc}\r\n"));
                    }
                    if let Some(etag) = &route.etag {
                        head.push_str(&format!("etag: {etag}\r\n"));
                    }
                    if status != 304 {
                        head.push_str(&format!(
                            "content-type: application/json\r\ncontent-length: {}\r\n",
                            body.len()
                        ));
                    }
                    head.push_str("\r\n");
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(body.as_bytes()).await;
                });
            }
        });
        Self { url, state }
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), route);
    }

    /// Changes a route in place.
    pub fn edit(&self, path: &str, change: impl FnOnce(&mut Route)) {
        change(self.state.lock().unwrap().routes.get_mut(path).unwrap());
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn not_modified(&self) -> usize {
        self.state.lock().unwrap().not_modified
    }
}
