//! An allowlist of the headers a client that is not trusted may send a member.
//!
//! Why: the removal list ([`is_forwarding_header`](super::is_forwarding_header)) names each
//! header some proxy, CDN or gateway writes for a member to believe, and every round of
//! hostile testing found more; no such list is complete, because a member may believe a
//! header nobody else has heard of. An allowlist closes the class, as nginx's
//! `proxy_pass_request_headers off` does with the headers wanted set again: the member gets
//! the headers named, those HTTP needs to carry the request, and the balancer's own.
//!
//! ```
//! use http::{HeaderMap, HeaderValue};
//! use tower_balancer_proxy::hygiene::{Forwarding, PassOnly};
//!
//! let fwd = Forwarding::new().pass_only(PassOnly::new(["accept", "cookie", "user-agent"])?);
//! let mut h = HeaderMap::new();
//! h.insert("cookie", HeaderValue::from_static("JSESSIONID=a.node1"));
//! h.insert("x-tenant-admin", HeaderValue::from_static("yes"));
//! h.insert("content-length", HeaderValue::from_static("2"));
//! fwd.apply(&mut h, "203.0.113.9".parse()?, true, None);
//! assert!(h.contains_key("cookie") && h.contains_key("content-length"));
//! assert!(!h.contains_key("x-tenant-admin"));
//! assert_eq!(h["x-forwarded-for"], "203.0.113.9");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use http::header::{
    CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, TE, TRANSFER_ENCODING,
    UPGRADE,
};
use http::{HeaderMap, HeaderName};

use super::ForwardingError;
use crate::proxy::request_id::X_REQUEST_ID;

/// What every request keeps whatever the list says: its framing and the description of its
/// body (a body without its `Content-Type` or `Content-Encoding` is misread), a protocol
/// switch (a WebSocket's handshake; `Connection` and `Upgrade` only reach a member then),
/// `TE: trailers` (other values never pass), and the request id the balancer checked.
const ALWAYS: [HeaderName; 13] = [
    HOST,
    CONTENT_LENGTH,
    TRANSFER_ENCODING,
    CONTENT_TYPE,
    CONTENT_ENCODING,
    CONNECTION,
    UPGRADE,
    TE,
    SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION,
    SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_EXTENSIONS,
    X_REQUEST_ID,
];

/// The request headers an untrusted client may send a member, beside those every request
/// keeps (its framing, its body's type and encoding, a WebSocket's handshake, `TE`,
/// `X-Request-Id`) and those the balancer writes (`Host`, `X-Forwarded-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassOnly {
    names: Arc<[HeaderName]>,
}

impl PassOnly {
    /// The list, names in any case.
    ///
    /// # Errors
    /// [`ForwardingError::InvalidHeaderName`] for a name that is not a header name, and
    /// [`ForwardingError::NeverPassed`] for one the balancer removes from every untrusted
    /// client ([`is_forwarding_header`](super::is_forwarding_header)): listed, it would
    /// read as passed and never be.
    pub fn new<I, S>(names: I) -> Result<Self, ForwardingError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Vec::new();
        for n in names {
            let n = n.as_ref();
            let name = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| ForwardingError::InvalidHeaderName(n.escape_default().to_string()))?;
            if super::is_forwarding_header(&name) {
                return Err(ForwardingError::NeverPassed(name.as_str().to_owned()));
            }
            if !list.contains(&name) {
                list.push(name);
            }
        }
        Ok(Self { names: list.into() })
    }

    /// The names listed.
    #[must_use]
    pub fn names(&self) -> &[HeaderName] {
        &self.names
    }

    /// Whether a header named `name` reaches a member.
    #[must_use]
    pub fn passes(&self, name: &HeaderName) -> bool {
        ALWAYS.contains(name) || self.names.contains(name)
    }

    /// Removes every header the list does not pass.
    pub(super) fn keep_only(&self, headers: &mut HeaderMap) {
        let mut out: Option<Vec<HeaderName>> = None;
        for name in headers.keys() {
            if !self.passes(name) {
                out.get_or_insert_with(Vec::new).push(name.clone());
            }
        }
        for name in out.into_iter().flatten() {
            headers.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_the_named_and_the_protocols_headers_pass() {
        let list = PassOnly::new(["Accept", "cookie", "accept"]).unwrap();
        assert_eq!(list.names().len(), 2, "one entry a name, in any case");
        let mut h = HeaderMap::new();
        for n in [
            "accept",
            "cookie",
            "content-length",
            "content-type",
            "sec-websocket-key",
            "x-request-id",
            "x-tenant-admin",
            "x-user-role",
            "authorization",
            "x-forwarded-for",
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static("v"));
        }
        h.append("accept", HeaderValue::from_static("w"));
        list.keep_only(&mut h);
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "accept",
                "content-length",
                "content-type",
                "cookie",
                "sec-websocket-key",
                "x-request-id"
            ]
        );
        assert_eq!(
            h.get_all("accept").iter().count(),
            2,
            "every field of a name kept"
        );
    }

    #[test]
    fn a_name_that_is_not_one_or_never_passes_is_refused() {
        assert_eq!(
            PassOnly::new(["accept", "bad name"]),
            Err(ForwardingError::InvalidHeaderName("bad name".to_owned()))
        );
        // in any case and spelling the removal list knows
        assert_eq!(
            PassOnly::new(["X_Forwarded_For"]),
            Err(ForwardingError::NeverPassed("x_forwarded_for".to_owned()))
        );
        assert_eq!(
            PassOnly::new(["remote-user"]),
            Err(ForwardingError::NeverPassed("remote-user".to_owned()))
        );
        assert!(PassOnly::new(Vec::<String>::new())
            .unwrap()
            .names()
            .is_empty());
    }
}
