//! Whom the balancer believes about a client's address: the proxies in front of it.
//!
//! Why its own type: one list decides both whose forwarding headers pass
//! ([`Forwarding`](super::Forwarding)) and which address is the client's for its limits
//! ([`real_client`](super::real_client)); an address written two ways (`::ffff:10.0.0.1`)
//! must be the same address to both.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::ForwardingError;

/// The peers whose `X-Forwarded-*` and `Forwarded` headers are believed: usually the L4 load
/// balancer or CDN in front of this one. Empty by default: nobody is trusted, and a client
/// cannot forge its address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts nobody.
    #[must_use]
    pub const fn none() -> Self {
        Self(Vec::new())
    }

    /// Trusts these addresses and CIDR blocks (`10.0.0.0/8`, `192.168.1.7`, `::1`).
    ///
    /// # Errors
    /// [`ForwardingError::InvalidCidr`] naming the first entry that is neither.
    pub fn parse<I, S>(entries: I) -> Result<Self, ForwardingError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        entries
            .into_iter()
            .map(|e| {
                let e = e.as_ref().trim();
                IpNet::from_str(e)
                    .or_else(|_| IpAddr::from_str(e).map(IpNet::from))
                    .map_err(|_| ForwardingError::InvalidCidr(e.escape_default().to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether an entry trusts every address (`0.0.0.0/0`, `::/0`): then any client can
    /// claim any address, scheme and host.
    #[must_use]
    pub fn trusts_everyone(&self) -> bool {
        self.0.iter().any(|n| n.prefix_len() == 0)
    }

    /// Whether `addr` is trusted.
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0.iter().any(|n| n.contains(&addr))
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1`.
pub(super) fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}
