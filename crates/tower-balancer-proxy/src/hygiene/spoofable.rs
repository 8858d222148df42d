//! Which request headers let a client claim to be someone else, to have come over TLS, or to
//! have asked for another URL: none of them may pass from a peer that is not trusted.
//!
//! Why a list this long: members and their frameworks read many spellings. Rack, Spring,
//! ASP.NET and PHP honour `X-Forwarded-Port`, `-Prefix`, `-Ssl`, `-Scheme`; CDNs put the client
//! in `True-Client-IP`, `CF-Connecting-IP`, `Fastly-Client-IP`; IIS rewrites by
//! `X-Original-URL`. CGI, WSGI and PHP map `X_Forwarded_For` to the same variable as
//! `X-Forwarded-For`, so underscores count as dashes here (nginx drops every header with an
//! underscore by default for the same reason).

use http::header::HeaderName;
use http::HeaderMap;

/// Names matched whole.
const NAMES: [&[u8]; 14] = [
    b"forwarded",
    b"forwarded-for",
    b"client-ip",
    b"x-client-ip",
    b"x-client-cert",
    b"x-originating-ip",
    b"x-rewrite-url",
    b"x-host",
    b"x-scheme",
    b"x-url-scheme",
    b"front-end-https",
    b"x-http-host-override",
    // httpoxy: CGI turns it into HTTP_PROXY, which HTTP clients in the member then use
    b"proxy",
    b"x-custom-ip-authorization",
];

/// Families matched by their start: forwarding headers of every proxy, CDN and platform
/// that writes the client's address, scheme, certificate or original URL.
const PREFIXES: [&[u8]; 22] = [
    b"x-forwarded",
    b"x-forward-",
    b"x-original-",
    b"x-real-",
    b"x-remote-",
    b"x-envoy-",
    b"x-azure-",
    b"x-appengine-",
    b"x-arr-",
    b"x-ssl-",
    b"ssl-client",
    b"wl-proxy-",
    b"proxy-client-",
    b"x-proxyuser-",
    b"x-proxymesh-",
    b"x-cluster-client-",
    b"true-client-",
    b"fastly-client-",
    b"akamai-client-",
    b"fly-client-",
    b"cf-connecting-",
    b"cf-visitor",
];

/// `a` and `b` agree byte for byte, an underscore in `a` standing for a dash in `b`.
fn dashed(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x == b'_' && y == b'-'))
}

/// Whether a client could claim an address, a scheme, a host, a certificate or a URL through
/// `name`: the whole `X-Forwarded-*` family, `Forwarded`, `X-Real-*`, the client-address
/// headers of CDNs and platforms (Cloudflare, Akamai, Fastly, Azure, App Engine, Fly,
/// Envoy, WebLogic's `WL-Proxy-*`), client-certificate headers, `X-Original-*` and
/// `X-Rewrite-URL`, and httpoxy's `Proxy`, in any spelling with underscores for dashes.
///
/// ```
/// use http::HeaderName;
/// use tower_balancer_proxy::hygiene::is_forwarding_header;
///
/// assert!(is_forwarding_header(&HeaderName::from_static("x-forwarded-prefix")));
/// assert!(is_forwarding_header(&HeaderName::from_static("x_forwarded_for")));
/// assert!(is_forwarding_header(&HeaderName::from_static("true-client-ip")));
/// assert!(!is_forwarding_header(&HeaderName::from_static("accept")));
/// ```
#[must_use]
pub fn is_forwarding_header(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    // most names fail on their first byte
    if !matches!(
        n.first(),
        Some(b'x' | b'f' | b't' | b'c' | b'p' | b's' | b'w' | b'a')
    ) {
        return false;
    }
    NAMES.iter().any(|p| dashed(n, p))
        || PREFIXES
            .iter()
            .any(|p| n.len() >= p.len() && dashed(&n[..p.len()], p))
}

/// Removes every header [`is_forwarding_header`] names: what an untrusted peer sent, or any
/// peer when the client's address is unknown (fail closed), so a member never mistakes what
/// a client wrote for what the proxy vouches for.
pub fn strip_forwarding_headers(headers: &mut HeaderMap) {
    // one pass over the names, no hashing and no allocation when there is none (the usual case)
    let mut found: Option<Vec<HeaderName>> = None;
    for name in headers.keys() {
        if is_forwarding_header(name) {
            found.get_or_insert_with(Vec::new).push(name.clone());
        }
    }
    for name in found.into_iter().flatten() {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_a_member_may_read_is_caught() {
        for n in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-forwarded-server",
            "x-forwarded-ssl",
            "x-forwarded-scheme",
            "x-forwarded",
            "x_forwarded_for",
            "x-real_ip",
            "forwarded",
            "forwarded-for",
            "x-client-ip",
            "true-client-ip",
            "cf-connecting-ip",
            "x-cluster-client-ip",
            "fastly-client-ip",
            "x-original-url",
            "x-rewrite-url",
            "front-end-https",
            "x-url-scheme",
            "x-host",
            "x-scheme",
            "x-original-uri",
            "x-envoy-original-path",
            "x-envoy-external-address",
            "x-http-host-override",
            "cf-connecting-ipv6",
            "fly-client-ip",
            "x-azure-clientip",
            "x-appengine-user-ip",
            "akamai-client-ip",
            "x-original-forwarded-for",
            "x-forward-for",
            "x-proxyuser-ip",
            "wl-proxy-client-ip",
            "wl-proxy-ssl",
            "proxy-client-ip",
            "ssl-client-cert",
            "x-ssl-client-cert",
            "x-client-cert",
            "x-arr-clientcert",
            "proxy",
            "x-custom-ip-authorization",
            "x-proxymesh-ip",
        ] {
            assert!(
                is_forwarding_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
        for n in [
            "accept",
            "x-request-id",
            "cookie",
            "content-type",
            "x-forwarde",
            "via",
            "host",
        ] {
            assert!(
                !is_forwarding_header(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
    }

    #[test]
    fn stripping_keeps_everything_else() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-port", "443".parse().unwrap());
        h.insert("x_forwarded_for", "1.2.3.4".parse().unwrap());
        h.append("true-client-ip", "1.2.3.4".parse().unwrap());
        h.append("true-client-ip", "5.6.7.8".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        strip_forwarding_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["accept"], "*/*");
    }
}
