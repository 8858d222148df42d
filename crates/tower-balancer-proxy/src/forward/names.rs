//! The name a member proves over TLS.
//!
//! Why not always the URI's host: a member found by a DNS A/AAAA lookup is addressed by IP
//! (one pooled connection set per address), while its certificate names the host that was
//! looked up; checking it against the IP would refuse every such member. The member's
//! [`tls_name`](tower_balancer::registry::Member::tls_name) says which name to send as SNI
//! and verify; every other member proves its endpoint's host, as before.

use hyper_rustls::{DefaultServerNameResolver, ResolveServerName};
use rustls::pki_types::ServerName;
use tower_balancer::registry::Registry;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Picks the TLS server name for a new connection to a member's URI: the `tls_name` of the
/// registry's member at that scheme and authority if it has one, the URI's host otherwise.
/// Runs once per new connection (a scan of the members), never per request.
pub(crate) struct MemberNames {
    registry: Registry,
}

impl MemberNames {
    pub(crate) const fn new(registry: Registry) -> Self {
        Self { registry }
    }
}

impl ResolveServerName for MemberNames {
    fn resolve(&self, uri: &http::Uri) -> Result<ServerName<'static>, BoxError> {
        let snapshot = self.registry.load();
        let named = snapshot.members().iter().find_map(|m| {
            let e = m.endpoint();
            let same = e.scheme() == uri.scheme() && e.authority() == uri.authority();
            m.tls_name().filter(|_| same)
        });
        match named {
            Some(name) => Ok(ServerName::try_from(name.to_owned())?),
            None => DefaultServerNameResolver::default().resolve(uri),
        }
    }
}
