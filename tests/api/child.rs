//! `sts-broker serve` as a child process with a chosen configuration and file limit, its
//! stderr kept; and a bare HTTP/1.1 client that sees exactly what happens to a connection.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::end_to_end::Running;
use crate::helpers::{FakeIdp, KEK, POLICIES};

const BIN: &str = env!("CARGO_BIN_EXE_sts-broker");

/// A broker process.
pub struct Child {
    pub process: Running,
    pub url: String,
    pub addr: SocketAddr,
    pub stderr: PathBuf,
}

impl Child {
    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.process.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a broker in `dir` with the test policies plus `more_policies`, `extra` lines of
/// configuration, and at most `file_limit` open files. `{IDP}` and `{BROKER}` in the
/// policies are the fake issuer's and the broker's URLs.
pub async fn start(
    idp: &FakeIdp,
    dir: &Path,
    more_policies: &str,
    extra: &str,
    file_limit: Option<u32>,
) -> Child {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let policies = dir.join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.yaml"),
        format!("{POLICIES}{more_policies}")
            .replace("{IDP}", &idp.url)
            .replace("{BROKER}", &url),
    )
    .unwrap();
    let config = dir.join("sts-broker.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n\
             database_url = \"sqlite://{}\"\n\
             policies_dir = \"{}\"\n\
             key_encryption_key = \"{KEK}\"\n\
             allow_insecure_loopback_issuers = true\n{extra}\n",
            dir.join("b.db").display(),
            policies.display()
        ),
    )
    .unwrap();
    let stderr = dir.join("stderr.log");
    // The shell sets the limit and then becomes the broker (same pid, for signals).
    let limit = file_limit.map_or(String::new(), |n| format!("ulimit -n {n} && "));
    let process = Running(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{limit}exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("STS_BROKER_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap(),
    );
    let child = Child {
        process,
        url: url.clone(),
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        stderr,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the broker did not come up:\n{}",
            child.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// A connection to `to` from the loopback address `from` (all of 127/8 is loopback on
/// Linux, so one machine can be many clients).
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// An HTTP/1.1 response as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The server said `Connection: close`.
    pub close: bool,
    pub body: Vec<u8>,
}

/// Reads one response from `stream` (`buf` keeps what was read past it). An error means
/// the connection ended (or failed) before a whole response arrived.
pub async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Answer> {
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before an answer");
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let (mut length, mut close) = (0, false);
            for line in lines {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "connection" => close = value.trim().eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
            while buf.len() < end + 4 + length {
                read_more(stream, buf)
                    .await?
                    .then_some(())
                    .ok_or_else(eof)?;
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            return Ok(Answer {
                status,
                close,
                body,
            });
        }
        read_more(stream, buf)
            .await?
            .then_some(())
            .ok_or_else(eof)?;
    }
}

/// False at end of stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// `POST /token` with `body`, as bytes on the wire.
pub fn post_token(body: &str) -> Vec<u8> {
    format!(
        "POST /token HTTP/1.1\r\nHost: sts\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The head of a `POST /token` that announces `length` bytes of body and the first bytes
/// of it: a request whose body stalls.
pub async fn stall(stream: &mut TcpStream, length: usize) -> std::io::Result<()> {
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: sts\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {length}\r\n\r\ngrant_type="
    );
    stream.write_all(head.as_bytes()).await
}

/// True when the server has closed `stream` (end of stream or reset) within `wait`.
pub async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(wait, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}
