//! Request framing rules the server enforces before anything reaches the stack.
//!
//! Why stricter than the parser: request smuggling (Apache CVE-2023-25690 and a long list of
//! others) lives in the gap between how a proxy and a member read a message's length. hyper
//! already refuses malformed lengths, obs-fold and control bytes; on top of that we refuse
//! what RFC 9112 lets a server refuse and what other hops may read differently, and close the
//! connection, so no byte after a doubtful request is ever read as another request.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, Request, Version};

use crate::hygiene::is_valid_host;

/// Why a request was refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// `Transfer-Encoding` is anything but exactly `chunked` (e.g. `chunked, chunked`,
    /// `gzip, chunked`, or a coding that does not end in chunked).
    #[error("Transfer-Encoding must be exactly \"chunked\"")]
    TransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request, which has no chunked coding.
    #[error("Transfer-Encoding is not allowed in HTTP/1.0")]
    TransferEncodingHttp10,
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("Content-Length and Transfer-Encoding together")]
    BothLengths,
    /// No `Host` in HTTP/1.1; an HTTP/2 request with neither `:authority` nor `Host`.
    #[error("the request has no Host (HTTP/2: nor :authority)")]
    NoHost,
    /// More than one `Host` field.
    #[error("the request has several Host fields")]
    HostRepeated,
    /// A `Host`, or an authority in the request target, that is not a host with an optional
    /// port 1–65535 (see [`is_valid_host`](crate::hygiene::is_valid_host)).
    #[error("the request's Host (or authority) is not a host with an optional port")]
    HostInvalid,
    /// An HTTP/2 request whose `:authority` and `Host` name different hosts (RFC 9113
    /// §8.3.1).
    #[error("the request's :authority and Host name different hosts")]
    HostsDiffer,
    /// An absolute-form target (HTTP/1.1) or `:scheme` (HTTP/2) other than `http` or
    /// `https`.
    #[error("the request's scheme must be http or https")]
    Scheme,
    /// The asterisk-form target `*` with a method other than `OPTIONS`.
    #[error("the target * is only for OPTIONS")]
    Target,
    /// An HTTP/1 target in authority form (`host:port`, no scheme, no path), which is for
    /// `CONNECT` alone (RFC 9112 §3.2.3); `http` would read it as the request's host.
    #[error("the request target must be a path or an absolute URI")]
    TargetForm,
    /// `CONNECT` other than HTTP/2's extended CONNECT for WebSocket (RFC 8441): a reverse
    /// proxy never opens tunnels to hosts a client names, and an extended CONNECT for any
    /// other protocol has no HTTP/1.1 form a member would take (it would reach the member as
    /// a plain `CONNECT`).
    #[error("CONNECT is only accepted as HTTP/2 extended CONNECT for WebSocket")]
    Connect,
}

/// Checks a request's framing and `Host`.
///
/// # Errors
/// The first rule broken.
pub fn check_framing<B>(req: &Request<B>) -> Result<(), FramingError> {
    if req.method() == Method::CONNECT
        && (req.version() != Version::HTTP_2
            || !req
                .extensions()
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket")))
    {
        return Err(FramingError::Connect);
    }
    // the asterisk form is for OPTIONS alone (RFC 9112 §3.2.4, RFC 9113 §8.3.1): over
    // HTTP/2, `:path *` beside the scheme and authority
    if req.uri().path() == "*" && req.method() != Method::OPTIONS {
        return Err(FramingError::Target);
    }
    // `GET evil.com:80 HTTP/1.1` names no resource: without this, the target's authority
    // would pass for the request's host and its empty path for `/`
    if req.version() != Version::HTTP_2
        && req.uri().scheme().is_none()
        && req.uri().authority().is_some()
    {
        return Err(FramingError::TargetForm);
    }
    let h = req.headers();
    if h.contains_key(TRANSFER_ENCODING) {
        if req.version() == Version::HTTP_10 {
            return Err(FramingError::TransferEncodingHttp10);
        }
        if h.contains_key(CONTENT_LENGTH) {
            return Err(FramingError::BothLengths);
        }
        let mut codings = h
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty());
        let only_chunked = codings
            .next()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
            && codings.next().is_none();
        if !only_chunked {
            return Err(FramingError::TransferEncoding);
        }
    }
    // an absolute-form target (HTTP/2: `:scheme`) names http or https, nothing else
    let scheme = req.uri().scheme_str();
    if !scheme.is_none_or(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https")) {
        return Err(FramingError::Scheme);
    }
    // HTTP/1.1 needs exactly one Host; HTTP/1.0 may have none; HTTP/2 carries the
    // authority in the URI (`:authority`) or a Host, and when both, the same one. Every one
    // present must be valid.
    let mut hosts = h.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(v), None) if is_valid_host(v.as_bytes()) => Some(v.as_bytes()),
        (Some(_), None) => return Err(FramingError::HostInvalid),
        (None, None) if req.version() != Version::HTTP_11 => None,
        (None, None) => return Err(FramingError::NoHost),
        (_, Some(_)) => return Err(FramingError::HostRepeated),
    };
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    if !authority.is_none_or(is_valid_host) {
        return Err(FramingError::HostInvalid);
    }
    if req.version() == Version::HTTP_2 {
        let https = scheme.is_some_and(|s| s.eq_ignore_ascii_case("https"));
        match (authority, host) {
            (None, None) => return Err(FramingError::NoHost),
            (Some(a), Some(h)) if !same_authority(a, h, if https { 443 } else { 80 }) => {
                return Err(FramingError::HostsDiffer)
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether two valid hosts (with optional ports) name the same one: the host alike in any
/// case, the port alike once the scheme's default fills in a missing one.
fn same_authority(a: &[u8], b: &[u8], default_port: u16) -> bool {
    let split = |v: &[u8]| -> (Vec<u8>, u16) {
        // a port follows the last ':' unless it is inside an IPv6 literal's brackets
        match v.iter().rposition(|&c| c == b':') {
            Some(i) if !v[i..].contains(&b']') => {
                let port = std::str::from_utf8(&v[i + 1..])
                    .ok()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                (v[..i].to_ascii_lowercase(), port)
            }
            _ => (v.to_ascii_lowercase(), default_port),
        }
    };
    split(a) == split(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::builder().version(version).uri("/");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn connect_is_refused_but_http2s_extended_connect_for_websocket() {
        let connect = |version, protocol: Option<&'static str>| {
            let mut r = req(version, &[("host", "x")]);
            *r.method_mut() = Method::CONNECT;
            if let Some(p) = protocol {
                r.extensions_mut()
                    .insert(hyper::ext::Protocol::from_static(p));
            }
            check_framing(&r)
        };
        assert_eq!(connect(Version::HTTP_2, Some("websocket")), Ok(()));
        assert_eq!(connect(Version::HTTP_2, Some("WebSocket")), Ok(()));
        for protocol in [None, Some("foo"), Some("h2c"), Some("connect-udp")] {
            assert_eq!(
                connect(Version::HTTP_2, protocol),
                Err(FramingError::Connect),
                "{protocol:?}"
            );
        }
        assert_eq!(
            connect(Version::HTTP_11, Some("websocket")),
            Err(FramingError::Connect)
        );
    }

    #[test]
    fn only_plain_chunked_framing_passes() {
        let ok = req(
            Version::HTTP_11,
            &[("host", "x"), ("transfer-encoding", "Chunked")],
        );
        assert_eq!(check_framing(&ok), Ok(()));
        for te in [
            "chunked, chunked",
            "gzip, chunked",
            "chunked, identity",
            "identity",
            "",
        ] {
            let r = req(
                Version::HTTP_11,
                &[("host", "x"), ("transfer-encoding", te)],
            );
            assert_eq!(
                check_framing(&r),
                Err(FramingError::TransferEncoding),
                "{te:?}"
            );
        }
        let two = req(
            Version::HTTP_11,
            &[
                ("host", "x"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert_eq!(check_framing(&two), Err(FramingError::TransferEncoding));
    }

    #[test]
    fn lengths_together_and_te_in_http10_are_refused() {
        let both = req(
            Version::HTTP_11,
            &[
                ("host", "x"),
                ("content-length", "3"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert_eq!(check_framing(&both), Err(FramingError::BothLengths));
        let old = req(Version::HTTP_10, &[("transfer-encoding", "chunked")]);
        assert_eq!(
            check_framing(&old),
            Err(FramingError::TransferEncodingHttp10)
        );
    }

    #[test]
    fn exactly_one_valid_host_is_needed_in_http11() {
        assert_eq!(
            check_framing(&req(Version::HTTP_11, &[])),
            Err(FramingError::NoHost)
        );
        assert_eq!(
            check_framing(&req(Version::HTTP_11, &[("host", "a"), ("host", "b")])),
            Err(FramingError::HostRepeated)
        );
        assert_eq!(
            check_framing(&req(Version::HTTP_11, &[("host", "a"), ("host", "a b")])),
            Err(FramingError::HostRepeated)
        );
        assert_eq!(
            check_framing(&req(Version::HTTP_11, &[("host", "a b")])),
            Err(FramingError::HostInvalid)
        );
        assert_eq!(
            check_framing(&req(Version::HTTP_11, &[("host", "wso2.com:8443")])),
            Ok(())
        );
        assert_eq!(check_framing(&req(Version::HTTP_10, &[])), Ok(()));
    }

    #[test]
    fn hosts_with_userinfo_or_bad_ports_are_refused_in_every_version() {
        for v in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
            for bad in ["lb.test@evil.test", "lb.test:abc", "lb.test:99999"] {
                assert_eq!(
                    check_framing(&req(v, &[("host", bad)])),
                    Err(FramingError::HostInvalid),
                    "{v:?} {bad}"
                );
            }
        }
        let h2 = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://lb.test:99999/")
            .body(())
            .unwrap();
        assert_eq!(check_framing(&h2), Err(FramingError::HostInvalid));
    }

    fn h2(uri: &str, host: Option<&str>) -> Result<(), FramingError> {
        let mut r = Request::builder().version(Version::HTTP_2).uri(uri);
        if let Some(h) = host {
            r = r.header("host", h);
        }
        check_framing(&r.body(()).unwrap())
    }

    #[test]
    fn http2_needs_an_authority_or_a_host_and_the_same_one_when_both() {
        assert_eq!(h2("https://lb.test/", None), Ok(()));
        assert_eq!(h2("/", Some("lb.test")), Ok(()));
        assert_eq!(h2("/", None), Err(FramingError::NoHost), "neither");
        for (authority, host) in [
            ("lb.test", "lb.test"),
            ("lb.test", "LB.Test"),
            ("lb.test", "lb.test:443"),
            ("lb.test:443", "lb.test"),
            ("lb.test:8443", "lb.test:8443"),
            ("[::1]:443", "[::1]"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(
                h2(&format!("https://{authority}/"), Some(host)),
                Ok(()),
                "{authority} {host}"
            );
        }
        for (authority, host) in [
            ("lb.test", "evil.test"),
            ("lb.test", "lb.test:80"),
            ("lb.test:8443", "lb.test"),
            ("[::1]", "[::2]"),
        ] {
            assert_eq!(
                h2(&format!("https://{authority}/"), Some(host)),
                Err(FramingError::HostsDiffer),
                "{authority} {host}"
            );
        }
        assert_eq!(h2("http://lb.test/", Some("lb.test:80")), Ok(()));
    }

    #[test]
    fn schemes_other_than_http_and_https_are_refused_as_such() {
        assert_eq!(h2("gopher://lb.test/", None), Err(FramingError::Scheme));
        let old = Request::builder()
            .uri("ftp://lb.test/")
            .header("host", "lb.test")
            .body(())
            .unwrap();
        assert_eq!(check_framing(&old), Err(FramingError::Scheme));
        assert_eq!(h2("HTTPS://lb.test/", None), Ok(()));
    }

    #[test]
    fn an_http1_target_in_authority_form_is_refused() {
        for target in ["evil.com", "evil.com:80", "x:1", "[::1]:8080"] {
            for method in [Method::GET, Method::POST] {
                let r = Request::builder()
                    .method(method.clone())
                    .uri(target)
                    .header("host", "lb.test")
                    .body(())
                    .unwrap();
                assert_eq!(
                    check_framing(&r),
                    Err(FramingError::TargetForm),
                    "{method} {target}"
                );
            }
        }
        for target in ["/", "/a?b", "http://lb.test/", "https://lb.test"] {
            let r = Request::builder()
                .uri(target)
                .header("host", "lb.test")
                .body(())
                .unwrap();
            assert_eq!(check_framing(&r), Ok(()), "{target}");
        }
    }

    #[test]
    fn the_asterisk_target_is_for_options_alone_over_http2_too() {
        let star = |method: Method, version: Version, uri: http::Uri| {
            let r = Request::builder()
                .method(method)
                .version(version)
                .uri(uri)
                .header("host", "lb.test")
                .body(())
                .unwrap();
            check_framing(&r)
        };
        let h2 = || {
            http::Uri::builder()
                .scheme("https")
                .authority("lb.test")
                .path_and_query("*")
                .build()
                .unwrap()
        };
        for method in [Method::GET, Method::POST, Method::DELETE] {
            assert_eq!(
                star(method.clone(), Version::HTTP_2, h2()),
                Err(FramingError::Target),
                "{method}"
            );
            let h1 = http::Uri::from_static("*");
            assert_eq!(
                star(method.clone(), Version::HTTP_11, h1),
                Err(FramingError::Target),
                "{method}"
            );
        }
        assert_eq!(star(Method::OPTIONS, Version::HTTP_2, h2()), Ok(()));
        let h1 = http::Uri::from_static("*");
        assert_eq!(star(Method::OPTIONS, Version::HTTP_11, h1), Ok(()));
    }
}
