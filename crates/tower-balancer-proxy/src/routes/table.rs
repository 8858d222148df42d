//! Which virtual host a request is for and which of its routes it takes: the pure part of
//! routing, with no I/O, so that every rule is tested on its own.
//!
//! The rules are Apache's, which the file mirrors: a virtual host is chosen by the request's
//! host name among `ServerName`/`ServerAlias`-style names (exact, or `*.example.com` for any
//! name under it), the first virtual host when none names it; its routes are tried in the
//! order they are written, as `ProxyPass` lines are, the first that matches wins. A prefix
//! matches whole segments, as Apache's `ProxyPass` and `Redirect` do: `/app` takes `/app`
//! and `/app/x`, not `/application`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode};

/// Every virtual host of one listener, in the file's order.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable {
    pub(crate) vhosts: Vec<VirtualHost>,
    /// The public URL's authority (what member URLs are rewritten to), once bound: a
    /// member's absolute redirect to it goes back to the host the client asked for.
    pub(crate) public: Option<http::uri::Authority>,
}

/// One `<VirtualHost>`: the names it answers for and its routes.
#[derive(Debug, Clone)]
pub(crate) struct VirtualHost {
    /// Lowercase host names; `*.example.com` matches any name ending in `.example.com`.
    pub(crate) names: Vec<String>,
    pub(crate) routes: Vec<Route>,
}

/// One route: what it matches and what it does.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) path: PathMatch,
    /// A header the request must carry (with this value, when one is given).
    pub(crate) header: Option<(HeaderName, Option<HeaderValue>)>,
    pub(crate) action: Action,
}

/// How a route matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathMatch {
    /// The path is this, or starts with it followed by `/` (or the prefix ends in `/`).
    Prefix(String),
    /// The path is exactly this.
    Exact(String),
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Forwards to the balancer with this index, replacing the matched prefix with
    /// `rewrite` when one is given (`ProxyPass /app balancer://b/inner`).
    Balancer {
        lane: usize,
        rewrite: Option<String>,
    },
    /// Answers itself.
    Respond {
        status: StatusCode,
        body: Bytes,
        content_type: HeaderValue,
    },
    /// Redirects to `to` followed by what the path had after the matched prefix, and the
    /// query (Apache's `Redirect`).
    Redirect { to: String, status: StatusCode },
}

/// What a request matched: the route and the virtual host's index, or the reason none did.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Selected<'a> {
    Route(&'a Route),
    /// The virtual host has no route for the path: 404.
    NoRoute,
    /// TLS named one virtual host and `Host` another: 421, as Apache answers, so a client
    /// cannot use one certificate's connection to reach another host's routes.
    Misdirected,
}

impl RouteTable {
    /// The route `req` takes; `sni` is the name the client gave in TLS, when it gave one.
    pub(crate) fn select<B>(&self, req: &Request<B>, sni: Option<&str>) -> Selected<'_> {
        let path = super::normalize::without_params(req.uri().path());
        self.select_path(req, &path, sni)
    }

    /// As [`select`](Self::select), matching `path` (the request's, parameters dropped).
    fn select_path<B>(&self, req: &Request<B>, path: &str, sni: Option<&str>) -> Selected<'_> {
        let host = request_host(req);
        let vhost = host.and_then(|h| self.named(h));
        if let Some(sni) = sni {
            // a name no host has: the first host, as for a Host no host names
            let by_sni = self.named(sni).unwrap_or(0);
            match vhost {
                Some(v) if v != by_sni => return Selected::Misdirected,
                // a Host no virtual host names goes to the one TLS chose
                None => return self.in_vhost(by_sni, path, req),
                Some(_) => {}
            }
        }
        self.in_vhost(vhost.unwrap_or(0), path, req)
    }

    /// Whether a virtual host names `host`.
    pub(crate) fn names(&self, host: &str) -> bool {
        self.named(host).is_some()
    }

    /// The first virtual host that names `host`.
    fn named(&self, host: &str) -> Option<usize> {
        self.vhosts
            .iter()
            .position(|v| v.names.iter().any(|n| host_matches(n, host)))
    }

    fn in_vhost<B>(&self, index: usize, path: &str, req: &Request<B>) -> Selected<'_> {
        let Some(vhost) = self.vhosts.get(index) else {
            return Selected::NoRoute;
        };
        vhost
            .routes
            .iter()
            .find(|r| r.matches(path, req.headers()))
            .map_or(Selected::NoRoute, Selected::Route)
    }
}

impl Route {
    fn matches(&self, path: &str, headers: &http::HeaderMap) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Exact(p) => path == p,
        };
        path_ok
            && self.header.as_ref().is_none_or(|(name, value)| {
                headers
                    .get_all(name)
                    .iter()
                    .any(|v| value.as_ref().is_none_or(|want| v == want))
            })
    }

    /// The part of `path` after what the route matched (all of it for an exact match's
    /// empty remainder).
    pub(crate) fn remainder<'p>(&self, path: &'p str) -> &'p str {
        match &self.path {
            PathMatch::Prefix(p) => path.get(p.len()..).unwrap_or(""),
            PathMatch::Exact(_) => "",
        }
    }

    /// The matched prefix (`""` for an exact match).
    pub(crate) fn prefix(&self) -> &str {
        match &self.path {
            PathMatch::Prefix(p) => p,
            PathMatch::Exact(_) => "",
        }
    }
}

/// Whether `prefix` takes `path`: whole segments only.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

/// The request's host name, lowercase-insensitive, without port: `Host`, or for HTTP/2 the
/// `:authority`.
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    let raw = match req.uri().authority() {
        Some(a) => a.host(),
        None => req.headers().get(http::header::HOST)?.to_str().ok()?,
    };
    Some(strip_port(raw))
}

/// `name` without a `:port` (an IPv6 literal keeps its brackets).
pub(crate) fn strip_port(name: &str) -> &str {
    if name.starts_with('[') {
        return name.find(']').map_or(name, |end| &name[..=end]);
    }
    name.rsplit_once(':').map_or(name, |(host, _)| host)
}

/// Whether the configured `pattern` (lowercase) names `host` (any case, a trailing dot
/// ignored).
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
            host.len() > suffix.len() + 1
                && host[host.len() - suffix.len() - 1] == b'.'
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn to(lane: usize) -> Action {
        Action::Balancer {
            lane,
            rewrite: None,
        }
    }

    fn route(path: PathMatch, action: Action) -> Route {
        Route {
            path,
            header: None,
            action,
        }
    }

    fn table() -> RouteTable {
        let canary = Route {
            path: PathMatch::Prefix("/".into()),
            header: Some((
                HeaderName::from_static("x-canary"),
                Some(HeaderValue::from_static("1")),
            )),
            action: to(2),
        };
        RouteTable {
            public: None,
            vhosts: vec![
                VirtualHost {
                    names: vec!["wso2.com".into(), "*.wso2.com".into()],
                    routes: vec![
                        route(PathMatch::Exact("/".into()), to(9)),
                        canary,
                        route(PathMatch::Prefix("/carbon".into()), to(0)),
                    ],
                },
                VirtualHost {
                    names: vec!["api.example.org".into()],
                    routes: vec![route(PathMatch::Prefix("/".into()), to(1))],
                },
            ],
        }
    }

    fn req(host: &str, path: &str) -> Request<()> {
        Request::builder()
            .uri(path)
            .header("host", host)
            .body(())
            .unwrap()
    }

    fn lane(s: Selected<'_>) -> Option<usize> {
        match s {
            Selected::Route(route) => match route.action {
                Action::Balancer { lane, .. } => Some(lane),
                _ => None,
            },
            _ => None,
        }
    }

    #[test]
    fn the_host_chooses_the_virtual_host_and_the_first_matching_route_wins() {
        let t = table();
        assert_eq!(lane(t.select(&req("wso2.com", "/carbon/x"), None)), Some(0));
        assert_eq!(lane(t.select(&req("WSO2.com:8443", "/"), None)), Some(9));
        assert_eq!(
            lane(t.select(&req("a.b.wso2.com", "/carbon/"), None)),
            Some(0)
        );
        // whole segments only, as Apache's ProxyPass
        assert!(matches!(
            t.select(&req("wso2.com", "/carbonara"), None),
            Selected::NoRoute
        ));
        assert_eq!(
            lane(t.select(&req("api.example.org", "/carbon"), None)),
            Some(1)
        );
        // no name matches: the first virtual host, as Apache's default
        assert_eq!(lane(t.select(&req("other", "/carbon"), None)), Some(0));
        // the first virtual host has no route for /other
        assert!(matches!(
            t.select(&req("wso2.com", "/other"), None),
            Selected::NoRoute
        ));
    }

    #[test]
    fn a_header_route_needs_the_header_with_its_value() {
        let t = table();
        let mut r = req("wso2.com", "/carbon");
        r.headers_mut()
            .insert("x-canary", HeaderValue::from_static("1"));
        assert_eq!(lane(t.select(&r, None)), Some(2));
        r.headers_mut()
            .insert("x-canary", HeaderValue::from_static("0"));
        assert_eq!(lane(t.select(&r, None)), Some(0));
    }

    #[test]
    fn tls_naming_another_virtual_host_than_host_is_misdirected() {
        let t = table();
        let r = req("api.example.org", "/");
        assert!(matches!(
            t.select(&r, Some("wso2.com")),
            Selected::Misdirected
        ));
        assert_eq!(lane(t.select(&r, Some("api.example.org"))), Some(1));
        // a Host nobody names goes where TLS went
        assert_eq!(
            lane(t.select(&req("x", "/y"), Some("api.example.org"))),
            Some(1)
        );
        // a TLS name no host has chose the first host: Host may name it
        assert_eq!(
            lane(t.select(&req("wso2.com", "/carbon"), Some("nosuch"))),
            Some(0)
        );
    }

    #[test]
    fn wildcards_need_a_label_before_the_suffix() {
        assert!(host_matches("*.wso2.com", "a.wso2.com"));
        assert!(host_matches("*.wso2.com", "A.WSO2.COM."));
        assert!(!host_matches("*.wso2.com", "wso2.com"));
        assert!(!host_matches("*.wso2.com", "evilwso2.com"));
        assert!(!host_matches("*.wso2.com", ".wso2.com"));
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("a.b:1"), "a.b");
    }

    proptest! {
        #[test]
        fn selecting_never_panics(host in "\\PC{0,40}", path in "/[ -~]{0,40}", sni in proptest::option::of("\\PC{0,20}")) {
            let t = table();
            if let Ok(r) = Request::builder().uri(path.as_str()).header("host", host.as_str()).body(()) {
                let _ = t.select(&r, sni.as_deref());
            }
            let _ = host_matches("*.a", &host);
        }
    }
}
