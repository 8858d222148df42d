//! Who the client really is, for limits keyed on it.
//!
//! Why a rule of its own: behind a CDN or an L4 balancer every connection comes from the
//! proxy, so a per-client limit keyed on the peer would throttle everyone together. The
//! proxy's `X-Forwarded-For` names the client, but only a trusted proxy's word counts, and
//! only its own hop: entries to the left of the first untrusted address were written by
//! whoever sent the request and prove nothing (nginx's `real_ip_recursive`, Apache's
//! mod_remoteip walk the same way).

use std::net::IpAddr;
use std::str::FromStr;

use http::header::HeaderMap;

use super::trusted::canonical;
use super::TrustedProxies;

/// The client's address: `peer` unless `trusted` trusts it; then, walking `X-Forwarded-For`
/// from the right, the first address that is not a trusted proxy (the leftmost when all
/// are). A malformed entry ends the walk at the last address proven so far, so a client
/// cannot pick its own key by writing garbage.
///
/// ```
/// use std::net::IpAddr;
/// use tower_balancer_proxy::hygiene::{real_client, TrustedProxies};
///
/// let cdn = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
/// let mut h = http::HeaderMap::new();
/// h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3".parse().unwrap());
/// let peer: IpAddr = "10.0.0.1".parse().unwrap();
/// assert_eq!(real_client(peer, &h, &cdn), "203.0.113.9".parse::<IpAddr>().unwrap());
/// // an untrusted peer is the client, whatever it claims
/// let peer: IpAddr = "198.51.100.4".parse().unwrap();
/// assert_eq!(real_client(peer, &h, &cdn), peer);
/// ```
#[must_use]
pub fn real_client(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let mut client = canonical(peer);
    if !trusted.contains(client) {
        return client;
    }
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for entry in lines.iter().rev().flat_map(|l| l.rsplit(',')) {
        // `1.2.3.4:5678` and `[2001:db8::1]:5678`, as some proxies write them, are addresses
        let entry = entry.trim();
        let parsed = IpAddr::from_str(entry)
            .or_else(|_| std::net::SocketAddr::from_str(entry).map(|s| s.ip()));
        let Ok(addr) = parsed else {
            return client;
        };
        client = canonical(addr);
        if !trusted.contains(client) {
            return client;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_trusted_hops_are_believed() {
        let t = TrustedProxies::parse(["10.0.0.0/8", "::1"]).unwrap();
        let cases = [
            ("10.0.0.1", vec!["1.1.1.1"], "1.1.1.1"),
            ("10.0.0.1", vec!["1.1.1.1, 2.2.2.2"], "2.2.2.2"),
            ("10.0.0.1", vec!["1.1.1.1", "2.2.2.2, 10.9.9.9"], "2.2.2.2"),
            ("10.0.0.1", vec!["10.3.3.3, 10.2.2.2"], "10.3.3.3"),
            ("10.0.0.1", vec![], "10.0.0.1"),
            ("10.0.0.1", vec!["1.1.1.1, garbage"], "10.0.0.1"),
            ("10.0.0.1", vec!["garbage, 10.5.5.5"], "10.5.5.5"),
            ("5.5.5.5", vec!["1.1.1.1"], "5.5.5.5"),
            ("::1", vec!["::ffff:7.7.7.7"], "7.7.7.7"),
            ("::ffff:10.0.0.1", vec!["8.8.8.8"], "8.8.8.8"),
            ("10.0.0.1", vec!["1.1.1.1:5678"], "1.1.1.1"),
            ("10.0.0.1", vec!["[2001:db8::1]:443"], "2001:db8::1"),
        ];
        for (peer, lines, want) in cases {
            assert_eq!(
                real_client(ip(peer), &xff(&lines), &t),
                ip(want),
                "{peer} {lines:?}"
            );
        }
        // trusting nobody: always the peer
        let none = TrustedProxies::none();
        assert_eq!(
            real_client(ip("10.0.0.1"), &xff(&["1.1.1.1"]), &none),
            ip("10.0.0.1")
        );
    }
}
