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

/// Names matched whole; and every name that starts with `x-forwarded`.
const NAMES: [&[u8]; 18] = [
    b"forwarded",
    b"forwarded-for",
    b"x-real-ip",
    b"x-client-ip",
    b"client-ip",
    b"true-client-ip",
    b"cf-connecting-ip",
    b"x-cluster-client-ip",
    b"fastly-client-ip",
    b"x-originating-ip",
    b"x-remote-ip",
    b"x-remote-addr",
    b"x-original-url",
    b"x-rewrite-url",
    b"x-original-host",
    b"x-host",
    b"x-url-scheme",
    b"front-end-https",
];

const PREFIX: &[u8] = b"x-forwarded";

/// `a` and `b` agree byte for byte, an underscore in `a` standing for a dash in `b`.
fn dashed(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x == b'_' && y == b'-'))
}

/// Whether a client could claim an address, a scheme, a host or a URL through `name`: the
/// whole `X-Forwarded-*` family, `Forwarded`, `X-Real-IP`, the CDN client-address headers,
/// `X-Original-URL` and the like, in any spelling with underscores for dashes.
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
    if !matches!(n.first(), Some(b'x' | b'f' | b't' | b'c')) {
        return false;
    }
    (n.len() >= PREFIX.len() && dashed(&n[..PREFIX.len()], PREFIX))
        || NAMES.iter().any(|p| dashed(n, p))
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
