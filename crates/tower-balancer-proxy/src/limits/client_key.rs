//! The key per-client limits count under: an IPv4 address, or an IPv6 /64.
//!
//! Why /64 for IPv6: one subscriber line or host is handed a whole /64, so keying on the
//! full address would let one client take 2^64 fresh budgets (nginx users key on
//! `$binary_remote_addr` and regret it the same way; Envoy's and Cloudflare's limits group
//! IPv6 by prefix).

use std::net::IpAddr;

/// The unit a per-client limit counts: an IPv4 address, or the /64 an IPv6 address is in
/// (`::ffff:a.b.c.d` counts as `a.b.c.d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    /// The key `addr` counts under.
    #[must_use]
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => Self(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(u128::from(u32::from(v4))),
                // the /64, tagged apart from every IPv4 key by bit 32, which no IPv4 key
                // (below 2^32) has and the /64 (low 64 bits zeroed) leaves free
                None => Self((u128::from(v6) & !u128::from(u64::MAX)) | (1 << 32)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_ipv4_by_address() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
        assert_ne!(key("0.0.0.1"), key("::"));
        assert_ne!(key("0.0.0.0"), key("::"));
    }
}
