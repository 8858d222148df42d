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
/// under `outer`, in relative references and in absolute ones to the client's own host.
#[derive(Debug, Clone)]
pub(crate) struct PathReverse {
    pub(crate) inner: String,
    pub(crate) outer: String,
    /// The host the client asked for (absolute URLs to other hosts are left alone).
    pub(crate) host: Option<String>,
}

/// The headers `ProxyPassReverse` adjusts.
static URI_HEADERS: [HeaderName; 3] = [LOCATION, CONTENT_LOCATION, HeaderName::from_static("uri")];

impl PathReverse {
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

    /// `value` with its path mapped back, when it is one of ours.
    fn map(&self, value: &str) -> Option<String> {
        let (origin, path) = split_origin(value)?;
        if !origin.is_empty() {
            let host = origin.split_once("://")?.1;
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
            let asked = self.host.as_deref()?;
            if !bare.eq_ignore_ascii_case(asked) {
                return None;
            }
        }
        let rest = path.strip_prefix(self.inner.as_str())?;
        let mapped = if self.inner.ends_with('/') && !self.outer.ends_with('/') {
            format!("{}/{rest}", self.outer)
        } else {
            join(&self.outer, rest)
        };
        Some(format!("{origin}{mapped}"))
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
            inner: inner.into(),
            outer: outer.into(),
            host: Some("wso2.com".into()),
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
        assert_eq!(rev("/", "/app").map("login.html"), None);
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
