//! A headless Chromium driven over WebDriver: `chromedriver` started on a free loopback
//! port for each test, a fresh profile, and nothing but loopback to talk to. Without
//! `chromium` and `chromedriver` the browser tests are skipped, saying so on stderr.

use std::future::Future;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Browsers at once, across the whole test binary: the machines that run the suite have two
/// cores, and the other tests run meanwhile.
static BROWSERS: Semaphore = Semaphore::const_new(2);

/// How long a step may take before the test fails (generous: the suite runs in parallel).
pub const PATIENCE: Duration = Duration::from_secs(15);

/// How long starting the driver and the browser may take, on a machine busy with the rest
/// of the suite.
const SESSION_PATIENCE: Duration = Duration::from_secs(45);

/// Flags for a headless browser on a closed network: no GPU, no sandbox (tests run as
/// root), nothing fetched in the background.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,900",
];

/// A browser session, its driver and its profile (removed once the driver and its browser
/// are gone).
pub struct Browser {
    pub client: Client,
    name: String,
    _driver: Driver,
    _profile: tempfile::TempDir,
    _permit: SemaphorePermit<'static>,
}

/// The first of `names` on `PATH`, or the file an environment variable names.
fn program(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A browser for the test `name`, or `None` (with `SKIPPED: …` on stderr) when this
/// machine has no Chromium or no chromedriver.
pub async fn browser(name: &str) -> Option<Browser> {
    let chromium = program(
        "STS_TEST_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let driver = program("STS_TEST_CHROMEDRIVER", &["chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        // Straight to the process's stderr: the test harness would hold back eprintln! of
        // a passing test, and a skip should be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {name}: needs chromium and chromedriver (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let permit = BROWSERS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": chromium, "args": args},
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    // The port is free when asked, not necessarily when chromedriver binds it (other tests
    // bind ports meanwhile): a driver that exits at once is started again on another.
    let start = Instant::now();
    let (driver, client) = 'start: loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Driver(
            Command::new(&driver)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so that the browsers it starts go with it.
                .process_group(0)
                .spawn()
                .expect("chromedriver starts"),
        );
        let url = format!("http://127.0.0.1:{port}");
        loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break 'start (child, client),
                Err(e) if start.elapsed() > SESSION_PATIENCE => {
                    panic!("no WebDriver session: {e}")
                }
                Err(_) if child.0.try_wait().ok().flatten().is_some() => continue 'start,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    Some(Browser {
        client,
        name: name.to_owned(),
        _driver: driver,
        _profile: profile,
        _permit: permit,
    })
}

impl Browser {
    /// Runs `body`; if it fails, saves a screenshot first (the path is printed), then
    /// closes the session and fails the test with the body's panic.
    pub async fn check<F, Fut>(self, body: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let outcome = tokio::spawn(body(self.client.clone())).await;
        if outcome.is_err() {
            let path = failure_dir().join(format!("{}.png", self.name));
            match self.client.screenshot().await {
                Ok(png) => {
                    let _ = std::fs::create_dir_all(failure_dir());
                    let _ = std::fs::write(&path, png);
                    eprintln!(
                        "{}: screenshot of the failure: {}",
                        self.name,
                        path.display()
                    );
                }
                Err(e) => eprintln!("{}: no screenshot: {e}", self.name),
            }
        }
        let _ = self.client.clone().close().await;
        if let Err(e) = outcome {
            match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// A chromedriver; its whole process group (the browsers it started) is killed when it is
/// dropped, whatever the test did.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

/// Where failure screenshots go.
pub fn failure_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-failures")
}

/// CSS selector.
pub fn css(selector: &str) -> Locator<'_> {
    Locator::Css(selector)
}

/// Waits for the element `selector`, for at most [`PATIENCE`].
pub async fn find(client: &Client, selector: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(css(selector))
        .await
        .unwrap_or_else(|e| panic!("no {selector}: {e}"))
}

/// Waits until the text of `selector` contains `expected`; returns the text.
pub async fn text_with(client: &Client, selector: &str, expected: &str) -> String {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < PATIENCE {
        if let Ok(element) = client.find(css(selector)).await
            && let Ok(text) = element.text().await
        {
            if text.contains(expected) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{selector} never said {expected:?}; last: {last:?}");
}

/// Sets a text field's value the way typing would (an `input` event follows).
pub async fn set_value(client: &Client, selector: &str, value: &str) {
    find(client, selector).await;
    client
        .execute(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', {bubbles: true}));",
            vec![json!(selector), json!(value)],
        )
        .await
        .unwrap();
}

/// Clicks `selector` once it is there.
pub async fn click(client: &Client, selector: &str) {
    find(client, selector).await.click().await.unwrap();
}

/// Opens the console at `address` and signs in with `token`, from the keyboard.
pub async fn sign_in(client: &Client, address: &str, token: &str) {
    client.goto(&format!("{address}/admin/")).await.unwrap();
    let input = find(client, "#token").await;
    input.send_keys(token).await.unwrap();
    input.send_keys("\u{E007}").await.unwrap(); // Enter
    find(client, "#signout").await;
}
