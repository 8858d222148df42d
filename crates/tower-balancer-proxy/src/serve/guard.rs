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
    /// No `Host` in HTTP/1.1, several, or one (or an authority in the request target) that
    /// is not a host with an optional port 1–65535 (see
    /// [`is_valid_host`](crate::hygiene::is_valid_host)), or an absolute-form target whose
    /// scheme is not `http` or `https`.
    #[error("a request needs exactly one valid Host (HTTP/1.1) and no invalid one")]
    Host,
    /// The asterisk-form target `*` with a method other than `OPTIONS`.
    #[error("the target * is only for OPTIONS")]
    Target,
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
    // the asterisk form is for OPTIONS alone (RFC 9112 §3.2.4)
    if req.uri() == "*" && req.method() != Method::OPTIONS {
        return Err(FramingError::Target);
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
    // HTTP/1.1 needs exactly one Host; HTTP/1.0 may have none; HTTP/2 carries the
    // authority in the URI and may add a Host too. Every one present must be valid.
    let mut hosts = h.get_all(HOST).iter();
    let ok = match (hosts.next(), hosts.next()) {
        (Some(v), None) => is_valid_host(v.as_bytes()),
        (None, None) => req.version() != Version::HTTP_11,
        _ => false,
    };
    let authority_ok = req
        .uri()
        .authority()
        .is_none_or(|a| is_valid_host(a.as_str().as_bytes()));
    // an absolute-form target names http or https, nothing else
    let scheme_ok = req
        .uri()
        .scheme_str()
        .is_none_or(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    if !ok || !authority_ok || !scheme_ok {
        return Err(FramingError::Host);
    }
    Ok(())
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
            Err(FramingError::Host)
        );
        assert_eq!(
            check_framing(&req(Version::HTTP_11, &[("host", "a"), ("host", "b")])),
            Err(FramingError::Host)
        );
        assert_eq!(
            check_framing(&req(Version::HTTP_11, &[("host", "a b")])),
            Err(FramingError::Host)
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
                    Err(FramingError::Host),
                    "{v:?} {bad}"
                );
            }
        }
        let h2 = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://lb.test:99999/")
            .body(())
            .unwrap();
        assert_eq!(check_framing(&h2), Err(FramingError::Host));
    }
}
