//! Rate limits: per client address and per (issuer, subject), as GCRA buckets.
//!
//! GCRA keeps one timestamp per key (the "theoretical arrival time"), updated with a
//! compare-and-swap, so a check is a hash lookup and an atomic. Keys live in a bounded cache,
//! so a flood of distinct keys cannot grow memory without limit.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most this many keys are tracked per limiter; the least recently used are forgotten.
const MAX_KEYS: u64 = 100_000;

/// A rate such as `100/s` or `600/m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period (also the burst).
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/m` or `N/h`; `0` (or `0/…`) means no limit (`Ok(None)`).
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(None);
        }
        let bad =
            || format!("invalid rate {text:?}: expected N/s, N/m or N/h, or 0 to turn it off");
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok((count > 0).then_some(Rate { count, per }))
    }
}

/// A configured rate: `N/s`, `N/m`, `N/h`, or `0` for no limit. Read once from the
/// configuration (an invalid rate refuses to start), used as it is after that.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateSetting(Option<Rate>);

impl RateSetting {
    /// No limit.
    pub const OFF: Self = Self(None);

    /// The rate, unless the limit is off.
    pub fn rate(self) -> Option<Rate> {
        self.0
    }

    /// A limiter for this setting, unless it is off.
    pub fn limiter(self) -> Option<RateLimiter> {
        self.0.map(RateLimiter::new)
    }
}

impl std::str::FromStr for RateSetting {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Rate::parse(text).map(Self)
    }
}

impl std::fmt::Display for RateSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(rate) = self.0 else {
            return f.write_str("0");
        };
        let unit = match rate.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", rate.count)
    }
}

impl serde::Serialize for RateSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RateSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `STS_BROKER_RATE_LIMIT_PER_CLIENT=0` arrives as a number.
        let text = crate::secret::scalar_text(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A keyed limiter.
pub struct RateLimiter {
    /// Nanoseconds between two requests at the steady rate.
    interval: u64,
    /// How far ahead of now a key's arrival time may run (the burst).
    tolerance: u64,
    start: Instant,
    keys: moka::sync::Cache<String, Arc<AtomicU64>>,
}

impl RateLimiter {
    /// A limiter for `rate`, allowing bursts of `rate.count`.
    pub fn new(rate: Rate) -> Self {
        let interval = (rate.per.as_nanos() / u128::from(rate.count)).max(1) as u64;
        Self {
            interval,
            tolerance: interval * u64::from(rate.count - 1),
            start: Instant::now(),
            keys: moka::sync::Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_idle(rate.per * 2)
                .build(),
        }
    }

    /// Admits one request for `key`, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = self.start.elapsed().as_nanos() as u64;
        let tat = self
            .keys
            .get_with_by_ref(key, || Arc::new(AtomicU64::new(0)));
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            let arrival = current.max(now);
            if arrival - now > self.tolerance {
                return Err(Duration::from_nanos(arrival - now - self.tolerance));
            }
            match tat.compare_exchange_weak(
                current,
                arrival + self.interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }
}

/// The block a client is counted by, for rate and connection limits: its IPv4 address, or
/// the /64 an IPv6 address is in. One host commonly gets a whole /64 (SLAAC, RFC 7421), so
/// counting IPv6 addresses would give every client 2^64 identities.
pub fn client_block(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

/// The per-client limiter's key for a client address: the address itself, or for IPv6 the
/// /64 it is in ([`client_block`]), so a host cannot multiply its allowance by taking more
/// addresses of its own prefix.
pub fn client_key(client: &str) -> Cow<'_, str> {
    match client.parse::<IpAddr>() {
        Ok(ip @ IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            Cow::Owned(format!("{}/64", client_block(ip)))
        }
        _ => Cow::Borrowed(client),
    }
}

/// The per-client limit, checked before a request's body is read, so a flooding client
/// costs little.
pub struct ClientLimit {
    limiter: Option<RateLimiter>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl ClientLimit {
    /// The limit `setting` (off: every request passes).
    pub fn new(setting: RateSetting, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        Self {
            limiter: setting.limiter(),
            metrics,
        }
    }

    /// Admits one request from `client`, or says how long to wait.
    pub fn check(&self, client: Option<&str>) -> Result<(), Duration> {
        let (Some(limiter), Some(client)) = (&self.limiter, client) else {
            return Ok(());
        };
        limiter.check(&client_key(client)).inspect_err(|_| {
            self.metrics.rate_limited("client");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(Rate::parse("0"), Ok(None));
        assert_eq!(
            Rate::parse("100/s"),
            Ok(Some(Rate {
                count: 100,
                per: Duration::from_secs(1)
            }))
        );
        assert_eq!(
            Rate::parse("600/m").unwrap().unwrap().per,
            Duration::from_secs(60)
        );
        assert!(Rate::parse("fast").is_err());
        assert!(Rate::parse("10/d").is_err());
    }

    #[test]
    fn settings_read_numbers_and_text_and_print_back() {
        for text in ["0", "100/s", "600/m", "5/h"] {
            let setting: RateSetting = serde_json::from_value(text.into()).unwrap();
            assert_eq!(setting.to_string(), text);
        }
        let off: RateSetting = serde_json::from_value(0.into()).unwrap();
        assert_eq!(off, RateSetting::OFF);
        let err = serde_json::from_value::<RateSetting>("fast".into()).unwrap_err();
        assert!(err.to_string().contains("fast"), "{err}");
    }

    #[test]
    fn bursts_then_limits_each_key_alone() {
        let limiter = RateLimiter::new(Rate {
            count: 3,
            per: Duration::from_secs(60),
        });
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limiter.check("b").is_ok(), "another key is not starved");
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limiter = RateLimiter::new(Rate {
            count: 2,
            per: Duration::from_secs(60),
        });
        let check = |client: &str| limiter.check(&client_key(client));
        assert!(check("2001:db8:7:1::1").is_ok());
        assert!(check("2001:db8:7:1:ffff:ffff:ffff:fffe").is_ok());
        assert!(
            check("2001:db8:7:1:1234::9").is_err(),
            "the third address of one /64"
        );
        assert!(
            check("2001:db8:7:2::1").is_ok(),
            "the next /64 is another client"
        );
        assert_eq!(client_key("192.0.2.1"), "192.0.2.1");
        assert_eq!(client_key("2001:db8::1"), "2001:db8::/64");
        assert_eq!(client_key("not an address"), "not an address");
    }
}
