//! `[server.per_client]`: limits on each client's request rate and open connections.
//!
//! Why under `[server]`: they protect the front, whichever balancer a request goes to; the
//! client is found under `balancer.trusted_proxies`, as `X-Forwarded-For` is.

use serde::{de, Deserialize, Deserializer};

use crate::hygiene::TrustedProxies;
use crate::limits::{ClientConnectionLimit, ClientRate, ClientRateLimitLayer};

/// The most requests a second a rate may allow (a million: above it, no limit is meant).
const MAX_RATE: f64 = 1e6;

/// The least: one request in about 17 minutes (below it, `Retry-After` runs to years).
const MIN_RATE: f64 = 0.001;

/// The most clients the rate table may remember (about 1 GiB at most).
const MAX_CLIENTS: usize = 10_000_000;

/// Per-client limits (nginx `limit_req` and `limit_conn`, HAProxy stick tables). Every key
/// is optional; each limit is off when its key is absent.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerClientSection {
    /// nginx `limit_req … rate=`: requests a second each client may send on average
    /// (fractions allowed: 0.5 is one every 2 s); past it, 429 with `Retry-After`.
    #[serde(default, deserialize_with = "rate_opt")]
    pub rate: Option<f64>,
    /// nginx `burst=`: requests a client may send at once before the rate applies (default:
    /// the rate rounded up, at least 1). Needs `rate`.
    #[serde(default, deserialize_with = "count_opt")]
    pub burst: Option<u32>,
    /// nginx `limit_conn`: connections a client may have open at once; one past it is closed
    /// as soon as it is accepted. Trusted proxies are not capped: each request under way of
    /// a client behind one counts as one of that client's connections instead (429 past it).
    #[serde(default, deserialize_with = "count_opt")]
    pub connections: Option<u32>,
    /// How many clients the rate table remembers at once (default 65,536, a few MiB); past
    /// it the longest-idle are forgotten first.
    #[serde(default, deserialize_with = "clients_opt")]
    pub clients: Option<usize>,
}

impl PerClientSection {
    /// The request-rate layer, when `rate` is set.
    pub(super) fn rate_layer(&self, trusted: &TrustedProxies) -> Option<ClientRateLimitLayer> {
        let mut rate = ClientRate::new(self.rate?);
        if let Some(b) = self.burst {
            rate = rate.burst(b);
        }
        if let Some(n) = self.clients {
            rate = rate.clients(n);
        }
        Some(ClientRateLimitLayer::new(rate, trusted.clone()))
    }

    /// The connection cap, when `connections` is set.
    pub(super) fn connection_limit(
        &self,
        trusted: &TrustedProxies,
    ) -> Option<ClientConnectionLimit> {
        Some(ClientConnectionLimit::new(
            self.connections?,
            trusted.clone(),
        ))
    }

    /// What is wrong with the section as a whole, if anything.
    pub(super) const fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.rate.is_none() {
            let why = "burst and clients shape a request rate: set server.per_client.rate too";
            if self.burst.is_some() {
                return Some(("server.per_client.burst", why));
            }
            if self.clients.is_some() {
                return Some(("server.per_client.clients", why));
            }
        }
        None
    }
}

fn rate_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let r = f64::deserialize(d)?;
    if !(r.is_finite() && (MIN_RATE..=MAX_RATE).contains(&r)) {
        return Err(de::Error::custom(format!(
            "{r} is not a rate: give requests a second, from {MIN_RATE} to {MAX_RATE}"
        )));
    }
    Ok(Some(r))
}

fn count_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(de::Error::custom("must be at least 1"));
    }
    Ok(Some(n))
}

fn clients_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 || n > MAX_CLIENTS {
        return Err(de::Error::custom(format!(
            "must be from 1 to {MAX_CLIENTS}"
        )));
    }
    Ok(Some(n))
}
