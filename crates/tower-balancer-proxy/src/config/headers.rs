//! What the members are told of a client, and which of the client's own headers they get:
//! a balancer section's forwarding settings, with a warning for each that cannot be what
//! the operator meant.

use super::file::BalancerSection;
use crate::hygiene::Forwarding;

impl BalancerSection {
    /// The forwarding headers the balancer writes and the client headers it passes.
    pub(super) fn forwarding_headers(&self) -> Forwarding {
        if self.trusted_proxies.trusts_everyone() {
            tracing::warn!(
                "balancer.trusted_proxies trusts every address: any client can claim any \
                 address, scheme and host to the members"
            );
        }
        let mut headers = Forwarding::new().trusted(self.trusted_proxies.clone());
        if let Some(list) = &self.pass_headers {
            let session = self.stickysession.cookie.as_ref();
            if let Some(session) = session.filter(|_| !list.passes(&http::header::COOKIE)) {
                tracing::warn!(
                    "balancer.pass_headers leaves out \"cookie\": the members never see \
                     their session cookie ({session}) or any other"
                );
            }
            headers = headers.pass_only(list.clone());
        }
        headers
    }
}
