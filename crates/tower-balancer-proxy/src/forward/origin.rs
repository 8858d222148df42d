//! Where a request goes at its member: the member's origin (scheme and authority, from its
//! endpoint) and the request's target and authority as each protocol carries them, the
//! `Host` field over HTTP/1.1, the `:authority` pseudo-header over HTTP/2.

use http::header::{self, HeaderValue};
use http::{Method, Request, Uri};
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};

/// Makes `req` an HTTP/1.1 request to `origin`: its target in origin form and a `Host`, the
/// authority an HTTP/2 request back from a closed connection carried (see [`h2_target`]),
/// else the member's.
pub(super) fn http1_head<B>(req: &mut Request<B>, origin: &Origin<'_>) {
    if !req.headers().contains_key(header::HOST) {
        let authority = req.uri().authority().unwrap_or(origin.authority);
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    http1_target(req, origin);
}

/// Makes `req` an HTTP/2 request to `origin`: its scheme and authority as pseudo-headers,
/// the authority the `Host` it carried (the client's with `preserve_host`, else the
/// member's), and no `Host` beside it. RFC 9113 §8.3.1 lets a client send both, but nginx
/// before 1.25 refuses such a request with 400 (hostile round 5: every request to an nginx
/// HTTP/2 member failed), and with `preserve_host` the two differed.
pub(super) fn h2_target<B>(req: &mut Request<B>, origin: &Origin<'_>) -> Result<(), UpstreamError> {
    let host = req.headers_mut().remove(header::HOST);
    let authority = host.and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok());
    *req.uri_mut() =
        origin.absolute_at(req.uri(), authority.as_ref().unwrap_or(origin.authority))?;
    Ok(())
}

/// The member's scheme and authority, borrowed from its endpoint.
pub(super) struct Origin<'a> {
    scheme: &'a http::uri::Scheme,
    pub(super) authority: &'a http::uri::Authority,
}

impl<'a> Origin<'a> {
    pub(super) fn of(endpoint: &'a Uri) -> Option<Self> {
        Some(Self {
            scheme: endpoint.scheme()?,
            authority: endpoint.authority()?,
        })
    }

    /// Whether the member is reached over TLS (where ALPN may choose HTTP/2).
    pub(super) fn is_tls(&self) -> bool {
        *self.scheme == http::uri::Scheme::HTTPS
    }

    /// The origin's root, to connect to.
    pub(super) fn root(&self) -> Result<Uri, UpstreamError> {
        self.absolute(&Uri::from_static("/"))
    }

    /// `target` (origin or authority form) on this origin again.
    fn absolute(&self, target: &Uri) -> Result<Uri, UpstreamError> {
        self.absolute_at(target, self.authority)
    }

    /// `target` at this origin's scheme and `authority`.
    fn absolute_at(
        &self,
        target: &Uri,
        authority: &http::uri::Authority,
    ) -> Result<Uri, UpstreamError> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(
            target
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).map_err(|e| UpstreamError::new(UpstreamErrorKind::Connect, e))
    }
}

/// Makes the request target the HTTP/1.1 one: origin form, authority form for `CONNECT`
/// (RFC 9112 §3.2). A target already in origin form (every request `prepare` made) is left
/// as it is; an absolute one (a request back from a closed HTTP/2 connection) loses its
/// scheme and authority.
fn http1_target<B>(req: &mut Request<B>, origin: &Origin<'_>) {
    if req.method() == Method::CONNECT {
        *req.uri_mut() = Uri::from(origin.authority.clone());
    } else if req.uri().scheme().is_some() || req.uri().path_and_query().is_none() {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
    }
}

/// A member endpoint without a scheme and authority: where to connect is unknown.
#[derive(Debug, thiserror::Error)]
#[error("the member's endpoint names no origin")]
pub(crate) struct NoOrigin;
