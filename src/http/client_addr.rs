//! The client's address behind reverse proxies (`trusted_proxies`).
//!
//! The per-client rate limit and the audit record key on the client's IP. Behind a proxy the
//! TCP peer is the proxy, so the client is read from `X-Forwarded-For`, but only when the
//! peer is a proxy the operator trusts: anyone else could write any address there. Entries
//! are read from the right (each proxy appends the address it received from), skipping
//! trusted proxies; the first address that is not one is the client. Nothing is trusted by
//! default.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Hops of `X-Forwarded-For` looked at; a longer chain is cut at the client end.
const MAX_HOPS: usize = 16;

/// An address block: an IP address and how many leading bits of it match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    addr: IpAddr,
    prefix: u8,
}

impl Block {
    /// `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.1`: all bits).
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("trusted_proxies: {text:?} is not an IP address or CIDR block");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, bits)) => (addr, Some(bits.parse::<u8>().map_err(|_| bad())?)),
            None => (text.trim(), None),
        };
        let given: IpAddr = addr.parse().map_err(|_| bad())?;
        let width = if given.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return Err(bad());
        }
        // Peers are compared in canonical form, so an IPv4-mapped block is an IPv4 block.
        let addr = given.to_canonical();
        let prefix = match (given.is_ipv6(), addr.is_ipv4()) {
            (true, true) => prefix.checked_sub(96).ok_or_else(bad)?,
            _ => prefix,
        };
        Ok(Self { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> u128 {
            match ip {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let mask = match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        };
        bits(self.addr) & mask == bits(ip) & mask
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Block>);

impl TrustedProxies {
    /// Parses the configured blocks.
    pub fn parse(blocks: &[String]) -> Result<Self, String> {
        blocks
            .iter()
            .map(|b| Block::parse(b))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// True when `ip` (canonical) is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|b| b.contains(ip))
    }

    /// The client of a request that arrived from `peer` with these `X-Forwarded-For`
    /// values (in header order, as raw bytes).
    pub fn client<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> Option<IpAddr> {
        let mut client = peer.map(|p| p.to_canonical())?;
        if !self.trusts(client) {
            return Some(client);
        }
        // Hops are split as bytes: a proxy appends its hop to whatever the client sent in
        // the same value, so one byte the client wrote that is not text must not hide the
        // hops after it.
        let hops: Vec<&[u8]> = forwarded_for
            .flat_map(|v| v.split(|&b| b == b','))
            .collect();
        for hop in hops.iter().rev().take(MAX_HOPS) {
            // A hop that is not an address stops the walk at the last one that was: no
            // address is made up from text a client could have written.
            let Some(ip) = std::str::from_utf8(hop)
                .ok()
                .and_then(|h| h.trim().parse::<IpAddr>().ok())
            else {
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }

    /// The client address of `req`, as text for rate limits and audit records.
    pub fn client_of(&self, req: &HttpRequest) -> Option<String> {
        let forwarded = req.headers().get_all(X_FORWARDED_FOR).map(|v| v.as_bytes());
        self.client(req.peer_addr().map(|a| a.ip()), forwarded)
            .map(|ip| ip.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&blocks.iter().map(|b| b.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn client(p: &TrustedProxies, peer: &str, xff: &[&str]) -> String {
        p.client(Some(ip(peer)), xff.iter().map(|v| v.as_bytes()))
            .unwrap()
            .to_string()
    }

    #[test]
    fn blocks_parse_and_match() {
        let p = proxies(&[
            "10.0.0.0/8",
            "192.0.2.1",
            "2001:db8::/32",
            "::ffff:198.51.100.0/120",
        ]);
        assert!(p.trusts(ip("10.255.0.1")));
        assert!(!p.trusts(ip("11.0.0.1")));
        assert!(p.trusts(ip("192.0.2.1")));
        assert!(!p.trusts(ip("192.0.2.2")));
        assert!(p.trusts(ip("2001:db8:1::5")));
        assert!(!p.trusts(ip("2001:db9::5")));
        assert!(p.trusts(ip("::ffff:10.1.2.3").to_canonical()));
        assert!(proxies(&["0.0.0.0/0"]).trusts(ip("203.0.113.9")));
        assert!(!proxies(&["0.0.0.0/0"]).trusts(ip("2001:db8::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host.example",
            "10.0.0.0/x",
        ] {
            assert!(TrustedProxies::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let p = proxies(&["10.0.0.0/8"]);
        // An untrusted peer cannot choose its address.
        assert_eq!(client(&p, "203.0.113.5", &["198.51.100.1"]), "203.0.113.5");
        assert_eq!(
            client(&TrustedProxies::default(), "10.0.0.1", &["198.51.100.1"]),
            "10.0.0.1"
        );
        // Behind one trusted proxy.
        assert_eq!(client(&p, "10.0.0.1", &["198.51.100.1"]), "198.51.100.1");
        // The client's own prefix is ignored: the rightmost untrusted hop wins.
        assert_eq!(
            client(&p, "10.0.0.1", &["1.2.3.4, 198.51.100.1, 10.0.0.2"]),
            "198.51.100.1"
        );
        // Several headers are one list, in order.
        assert_eq!(
            client(&p, "10.0.0.1", &["1.2.3.4", "198.51.100.1"]),
            "198.51.100.1"
        );
        // Only trusted hops: the leftmost.
        assert_eq!(client(&p, "10.0.0.1", &["10.0.0.9, 10.0.0.3"]), "10.0.0.9");
        // No header: the proxy itself.
        assert_eq!(client(&p, "10.0.0.1", &[]), "10.0.0.1");
        // Garbage stops the walk at the last address read.
        assert_eq!(client(&p, "10.0.0.1", &["198.51.100.1, bogus"]), "10.0.0.1");
        assert_eq!(client(&p, "10.0.0.1", &["bogus, 10.0.0.7"]), "10.0.0.7");
        assert_eq!(client(&p, "10.0.0.1", &["[::1]:80"]), "10.0.0.1");
        // Bytes that are not text, before the proxy's own hop in the same value, hide
        // nothing; in a hop read from the right they stop the walk like other garbage.
        let mixed = p.client(
            Some(ip("10.0.0.1")),
            [&b"\xff, 198.51.100.1"[..]].into_iter(),
        );
        assert_eq!(mixed.unwrap().to_string(), "198.51.100.1");
        let last = p.client(
            Some(ip("10.0.0.1")),
            [&b"198.51.100.1, \xff"[..]].into_iter(),
        );
        assert_eq!(last.unwrap().to_string(), "10.0.0.1");
        // IPv4-mapped peers count as IPv4.
        assert_eq!(
            client(&p, "::ffff:10.0.0.1", &["198.51.100.1"]),
            "198.51.100.1"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(
            client_block(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_block(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            client_block(ip("2001:db8:1:2::7"))
        );
        assert_ne!(
            client_block(ip("2001:db8:1:3::1")),
            client_block(ip("2001:db8:1:2::1"))
        );
        assert_eq!(client_block(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_block(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn long_chains_are_cut() {
        let p = proxies(&["10.0.0.0/8"]);
        let chain = vec!["10.0.0.5"; 100].join(", ");
        let hops = format!("198.51.100.1, {chain}");
        assert_eq!(client(&p, "10.0.0.1", &[hops.as_str()]), "10.0.0.5");
    }
}
