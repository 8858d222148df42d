//! `ProxyPass /app balancer://b/inner` and its `ProxyPassReverse`: the request's matched
//! prefix replaced on the way in, and the member's `Location`, `Content-Location` and `URI`
//! headers mapped back on the way out, so that a member redirecting to `/inner/login`
//! sends the client to `/app/login`, a path that routes back to it.
//!
//! Why the reverse is needed: without it a member's redirects name paths no route takes,
//! and the client lands on a 404 (Apache's documentation warns of the same).

use http::header::{CONTENT_LOCATION, LOCATION};
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Uri};

/// Joins two path pieces with exactly one `/` where they meet.
pub(crate) fn join(a: &str, b: &str) -> String {
    match (a.ends_with('/'), b.starts_with('/')) {
        (true, true) => format!("{a}{}", &b[1..]),
        _ => format!("{a}{b}"),
    }
}

/// `uri` with `prefix` (which its path starts with) replaced by `with`; `None` when the
/// result is not a valid URI (it always is for the checked values the file allows).
pub(crate) fn rewrite_uri(uri: &Uri, prefix: &str, with: &str) -> Option<Uri> {
    let path = uri.path();
    let rest = path.get(prefix.len()..)?;
    let mut path = join(with, rest);
    if path.is_empty() {
        path.push('/');
    }
    if let Some(q) = uri.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path).ok()?);
    Uri::from_parts(parts).ok()
}

/// The mapping back for one forwarded request: member paths under `inner` become paths
/// under `outer`, and a member's absolute URL on the public host (which the balancer's
/// `ProxyPassReverse` made of the member's own) goes back to the host the client asked for.
#[derive(Debug, Clone)]
pub(crate) struct PathReverse {
    /// `(inner, outer)`: the prefix members see and the one clients use.
    pub(crate) paths: Option<(String, String)>,
    /// The host the client asked for, without port.
    pub(crate) host: Option<String>,
    /// `scheme://authority` as the client asked.
    pub(crate) asked: Option<String>,
    /// The public URL's authority.
    pub(crate) public: Option<String>,
}

/// The headers `ProxyPassReverse` adjusts.
static URI_HEADERS: [HeaderName; 3] = [LOCATION, CONTENT_LOCATION, HeaderName::from_static("uri")];

impl PathReverse {
    /// The mapping for `req`, routed with `paths`; `None` when there is nothing to map.
    pub(crate) fn for_request<B>(
        req: &http::Request<B>,
        paths: Option<(String, String)>,
        public: Option<&http::uri::Authority>,
    ) -> Option<Self> {
        let host = super::table::request_host(req);
        let public = public.filter(|p| host.is_some_and(|h| !p.host().eq_ignore_ascii_case(h)));
        if paths.is_none() && public.is_none() {
            // nothing to map: no allocation on the request path
            return None;
        }
        let host = host.map(str::to_owned);
        let public = public.map(|p| p.as_str().to_owned());
        let asked_authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        let scheme = if req
            .extensions()
            .get::<tower_balancer::client::ClientTls>()
            .is_some()
        {
            "https"
        } else {
            "http"
        };
        Some(Self {
            paths,
            host,
            asked: asked_authority.map(|a| format!("{scheme}://{a}")),
            public,
        })
    }

    /// Maps the member's headers in `headers` back.
    pub(crate) fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &URI_HEADERS {
            let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if let Some(mapped) = self.map(value) {
                if let Ok(v) = HeaderValue::try_from(mapped) {
                    headers.insert(name.clone(), v);
                }
            }
        }
    }

    /// `value` mapped back, when it is one of ours and anything changes.
    fn map(&self, value: &str) -> Option<String> {
        let (origin, path) = split_origin(value)?;
        let origin = if origin.is_empty() {
            origin.to_owned()
        } else {
            let authority = origin.split_once("://")?.1;
            let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let bare = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            if self
                .host
                .as_deref()
                .is_some_and(|h| bare.eq_ignore_ascii_case(h))
            {
                origin.to_owned()
            } else if self
                .public
                .as_deref()
                .is_some_and(|p| authority.eq_ignore_ascii_case(p))
            {
                self.asked.clone()?
            } else {
                return None;
            }
        };
        let mapped = match &self.paths {
            Some((inner, outer)) => match path.strip_prefix(inner.as_str()).filter(|rest| {
                inner.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?', '#'])
            }) {
                Some(rest) if inner.ends_with('/') && !outer.ends_with('/') => {
                    format!("{outer}/{rest}")
                }
                Some(rest) => join(outer, rest),
                None => path.to_owned(),
            },
            None => path.to_owned(),
        };
        let out = format!("{origin}{mapped}");
        (out != value).then_some(out)
    }
}

/// `scheme://authority` and the rest (path, query, fragment) of a URI reference; an empty
/// origin for a path. `None` for references that are neither (`//host/…`, `other.html`).
fn split_origin(value: &str) -> Option<(&str, &str)> {
    if value.starts_with('/') {
        return (!value.starts_with("//")).then_some(("", value));
    }
    let after = value.find("://")? + 3;
    let path_at = value[after..].find('/').map_or(value.len(), |i| after + i);
    let (origin, path) = value.split_at(path_at);
    Some((origin, if path.is_empty() { "/" } else { path }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rev(inner: &str, outer: &str) -> PathReverse {
        PathReverse {
            paths: Some((inner.into(), outer.into())),
            host: Some("wso2.com".into()),
            asked: Some("https://wso2.com:8443".into()),
            public: Some("main.test:8443".into()),
        }
    }

    #[test]
    fn the_prefix_is_replaced_on_the_way_in() {
        let u = |s: &str| s.parse::<Uri>().unwrap();
        let r = |uri: &str, p, w| rewrite_uri(&u(uri), p, w).unwrap().to_string();
        assert_eq!(r("/app/x?q=1", "/app", "/inner"), "/inner/x?q=1");
        assert_eq!(r("/app", "/app", "/"), "/");
        assert_eq!(r("/app/x", "/app", "/"), "/x");
        assert_eq!(r("/app/x", "/app/", "/inner/"), "/inner/x");
        assert_eq!(r("https://h/app/x", "/app", "/i"), "https://h/i/x");
    }

    #[test]
    fn member_paths_map_back_under_the_route() {
        assert_eq!(
            rev("/inner", "/app").map("/inner/login"),
            Some("/app/login".into())
        );
        assert_eq!(
            rev("/", "/app").map("/login?x=1"),
            Some("/app/login?x=1".into())
        );
        assert_eq!(
            rev("/", "/app").map("https://WSO2.com:8443/x"),
            Some("https://WSO2.com:8443/app/x".into())
        );
        // another host, another path, a relative reference: left alone
        assert_eq!(rev("/", "/app").map("https://other.org/x"), None);
        assert_eq!(rev("/inner", "/app").map("/elsewhere"), None);
        assert_eq!(rev("/inner", "/app").map("/innerx"), None);
        assert_eq!(rev("/inner", "/app").map("/inner?a"), Some("/app?a".into()));
        assert_eq!(rev("/", "/app").map("login.html"), None);
        // the public host the balancer rewrote the member's URL to: back to the client's
        assert_eq!(
            rev("/i", "/app").map("https://main.test:8443/i/z"),
            Some("https://wso2.com:8443/app/z".into())
        );
        assert_eq!(rev("/", "/app").map("//wso2.com/x"), None);
    }

    #[test]
    fn headers_are_rewritten_in_place() {
        let mut h = http::HeaderMap::new();
        h.insert(LOCATION, HeaderValue::from_static("/inner/a"));
        h.insert("uri", HeaderValue::from_static("/inner/b"));
        rev("/inner", "/app").apply(&mut h);
        assert_eq!(h[LOCATION], "/app/a");
        assert_eq!(h["uri"], "/app/b");
    }

    proptest! {
        #[test]
        fn mapping_never_panics(v in "\\PC{0,60}", inner in "/[a-z/]{0,5}", outer in "/[a-z/]{0,5}") {
            let _ = rev(&inner, &outer).map(&v);
            if let Ok(uri) = format!("/{v}").parse::<Uri>() {
                let _ = rewrite_uri(&uri, "/", &outer);
            }
        }
    }
}
