//! One call to GitHub: bounded in time (the client's timeout) and size, retried only when
//! retrying can help (no connection, or a 5xx), and GitHub's rate-limit answers read as
//! "come back later" rather than as refusals.

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

/// Attempts per call, the first included.
const ATTEMPTS: u32 = 3;
/// Wait before the first retry; doubled before each next one.
const BACKOFF: Duration = Duration::from_millis(200);
/// GitHub's answers here are a few hundred bytes; nothing larger is read.
const MAX_BODY: usize = 64 * 1024;
/// A wait GitHub asks for is passed on up to this (its rate-limit window is an hour).
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// An answer read whole: any status that is neither a 5xx nor a rate limit.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) request_id: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    pub(super) fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// No usable answer: GitHub unreachable, failing, or rate limiting.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) status: Option<u16>,
    pub(super) retry_after: Option<Duration>,
    pub(super) rate_limited: bool,
    pub(super) request_id: Option<String>,
    retryable: bool,
    why: &'static str,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.why)?;
        if let Some(status) = self.status {
            write!(f, " ({status})")?;
        }
        Ok(())
    }
}

impl Failure {
    fn new(why: &'static str, retryable: bool) -> Self {
        Self {
            status: None,
            retry_after: None,
            rate_limited: false,
            request_id: None,
            retryable,
            why,
        }
    }
}

/// Sends `request`, retrying connection failures and 5xx with a doubling backoff.
pub(super) async fn send(request: reqwest::RequestBuilder) -> Result<Answer, Failure> {
    let mut wait = BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let Some(this) = request.try_clone() else {
            return Err(Failure::new("request cannot be sent", false));
        };
        match once(this).await {
            Err(f) if f.retryable && attempt < ATTEMPTS => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the last attempt returns")
}

async fn once(request: reqwest::RequestBuilder) -> Result<Answer, Failure> {
    let mut response = request.send().await.map_err(|e| {
        // A request that never reached GitHub may be sent again; one that timed out may
        // have created a token already.
        Failure::new("GitHub is unreachable", e.is_connect())
    })?;
    let status = response.status().as_u16();
    let headers = response.headers();
    let request_id = header(headers, "x-github-request-id").map(str::to_owned);
    let fail = |why, retryable, rate_limited| Failure {
        status: Some(status),
        retry_after: wait_asked(headers, crate::jose::unix_now()),
        rate_limited,
        request_id: request_id.clone(),
        retryable,
        why,
    };
    if status >= 500 {
        return Err(fail("GitHub failed", true, false));
    }
    if is_rate_limited(status, headers) {
        return Err(fail("GitHub rate limit", false, true));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| Failure::new("GitHub's answer broke off", false))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Failure::new("GitHub's answer is too large", false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        request_id,
        body,
    })
}

/// GitHub's rate limits: 429, or 403 with `Retry-After` (secondary limits) or with no
/// requests left in the window (primary limit). A 403 without them is a refusal.
fn is_rate_limited(status: u16, headers: &HeaderMap) -> bool {
    status == 429
        || (status == 403
            && (header(headers, "retry-after").is_some()
                || header(headers, "x-ratelimit-remaining") == Some("0")))
}

/// How long GitHub asked to wait: `Retry-After` seconds, else until `x-ratelimit-reset`
/// when no requests are left. At least a second, at most [`MAX_WAIT`].
fn wait_asked(headers: &HeaderMap, now: i64) -> Option<Duration> {
    let seconds = match header(headers, "retry-after").and_then(|v| v.parse::<u64>().ok()) {
        Some(s) => s,
        None if header(headers, "x-ratelimit-remaining") == Some("0") => {
            let reset = header(headers, "x-ratelimit-reset")?.parse::<i64>().ok()?;
            u64::try_from(reset.saturating_sub(now)).unwrap_or(0)
        }
        None => return None,
    };
    Some(Duration::from_secs(seconds.max(1)).min(MAX_WAIT))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn rate_limits_are_told_from_refusals() {
        assert!(is_rate_limited(429, &headers(&[])));
        assert!(is_rate_limited(403, &headers(&[("retry-after", "30")])));
        assert!(is_rate_limited(
            403,
            &headers(&[("x-ratelimit-remaining", "0")])
        ));
        assert!(!is_rate_limited(
            403,
            &headers(&[("x-ratelimit-remaining", "12")])
        ));
        assert!(!is_rate_limited(404, &headers(&[("retry-after", "30")])));
    }

    #[test]
    fn the_wait_comes_from_retry_after_or_the_reset() {
        let now = 1_000;
        assert_eq!(
            wait_asked(&headers(&[("retry-after", "30")]), now),
            Some(Duration::from_secs(30))
        );
        let reset = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1090"),
        ]);
        assert_eq!(wait_asked(&reset, now), Some(Duration::from_secs(90)));
        let past = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "10")]);
        assert_eq!(wait_asked(&past, now), Some(Duration::from_secs(1)));
        let far = headers(&[("retry-after", "999999")]);
        assert_eq!(wait_asked(&far, now), Some(MAX_WAIT));
        assert_eq!(wait_asked(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(
            wait_asked(&headers(&[("x-ratelimit-reset", "1090")]), now),
            None
        );
    }
}
