//! The client's address behind reverse proxies (`trusted_proxies`).
//!
//! The per-client rate limit and the audit record key on the client's IP. Behind a proxy the
//! TCP peer is the proxy, so the client is read from `X-Forwarded-For`, but only when the
//! peer is a proxy the operator trusts: anyone else could write any address there. Entries
//! are read from the right (each proxy appends the address it received from), skipping
//! trusted proxies; the first address that is not one is the client. Nothing is trusted by
//! default.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hops of `X-Forwarded-For` looked at; a longer chain is cut at the client end.
const MAX_HOPS: usize = 16;

/// The proxies whose `X-Forwarded-For` is believed: address blocks, in canonical form (an
/// IPv4-mapped IPv6 block is the IPv4 block, as peers are compared canonically).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses blocks: `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.1`).
    pub fn parse<S: AsRef<str>>(blocks: &[S]) -> Result<Self, String> {
        blocks
            .iter()
            .map(|b| parse_block(b.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `ip` (canonical) is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|b| b.contains(&ip))
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
}

fn parse_block(text: &str) -> Result<IpNet, String> {
    let bad = || format!("trusted_proxies: {text:?} is not an IP address or CIDR block");
    let text = text.trim();
    let block: IpNet = match text.contains('/') {
        true => text.parse().map_err(|_| bad())?,
        false => IpNet::from(text.parse::<IpAddr>().map_err(|_| bad())?),
    };
    // Peers are compared in canonical form, so an IPv4-mapped block is an IPv4 block.
    match block {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) => {
                let prefix = v6.prefix_len().checked_sub(96).ok_or_else(bad)?;
                ipnet::Ipv4Net::new(v4, prefix)
                    .map(IpNet::V4)
                    .map_err(|_| bad())
            }
            None => Ok(block),
        },
        v4 => Ok(v4),
    }
}

impl Serialize for TrustedProxies {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let blocks = Vec::<String>::deserialize(d)?;
        Self::parse(&blocks).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(blocks).unwrap()
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
        assert!(p.trusts(ip("198.51.100.7")));
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
            "::ffff:10.0.0.0/90",
        ] {
            assert!(TrustedProxies::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn blocks_deserialise_once_with_the_key_named() {
        let p: TrustedProxies = serde_json::from_str(r#"["10.0.0.0/8", "2001:db8::1"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"["10.0.0.0/8","2001:db8::1/128"]"#
        );
        let err = serde_json::from_str::<TrustedProxies>(r#"["10.0.0.0/40"]"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trusted_proxies") && err.contains("10.0.0.0/40"),
            "{err}"
        );
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
    fn long_chains_are_cut() {
        let p = proxies(&["10.0.0.0/8"]);
        let chain = vec!["10.0.0.5"; 100].join(", ");
        let hops = format!("198.51.100.1, {chain}");
        assert_eq!(client(&p, "10.0.0.1", &[hops.as_str()]), "10.0.0.5");
    }
}
