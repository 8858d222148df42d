//! Hop-by-hop headers: meaningful for one connection, never forwarded.

use http::header::{self, HeaderName};
use http::HeaderMap;

/// Headers that are always hop-by-hop (RFC 9110 §7.6.1, plus the de-facto `Keep-Alive` and
/// `Proxy-Connection`). `TE` is handled apart: `TE: trailers` may be forwarded.
pub const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers before a message is forwarded: `Connection` and every header it
/// names, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`,
/// `Trailer`, `Transfer-Encoding`, `TE` (except a `TE: trailers`, which is kept as exactly
/// that), and `Upgrade` unless `upgrading` (a WebSocket handshake keeps `Upgrade` and gets
/// `Connection: upgrade` back).
///
/// Run it on what the peer sent, before adding the proxy's own headers, so a peer cannot
/// name one of ours in `Connection` and have it removed.
///
/// ```
/// use http::HeaderMap;
/// use tower_balancer_proxy::hygiene::strip_hop_by_hop;
///
/// let mut h = HeaderMap::new();
/// h.insert("connection", "close, x-secret".parse()?);
/// h.insert("x-secret", "1".parse()?);
/// h.insert("te", "trailers, deflate".parse()?);
/// h.insert("accept", "*/*".parse()?);
/// strip_hop_by_hop(&mut h, false);
/// assert!(h.get("x-secret").is_none() && h.get("connection").is_none());
/// assert_eq!(h["te"], "trailers");
/// assert_eq!(h["accept"], "*/*");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    // names listed in Connection (any number of Connection headers, comma separated)
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let wants_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for name in named {
        if upgrading && name == header::UPGRADE {
            continue;
        }
        headers.remove(&name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TE);
    if wants_trailers {
        headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
    if upgrading {
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
    } else {
        headers.remove(header::UPGRADE);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn every_hop_by_hop_header_and_every_named_one_is_removed() {
        let mut m = h(&[
            ("connection", "keep-alive, X-Custom"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic abc"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("x-custom", "1"),
            ("x-other", "2"),
            ("authorization", "Bearer t"),
        ]);
        strip_hop_by_hop(&mut m, false);
        let left: Vec<_> = m.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["authorization"]);
    }

    #[test]
    fn te_trailers_survives_and_nothing_else_of_te() {
        let mut m = h(&[("te", "deflate;q=0.5, trailers")]);
        strip_hop_by_hop(&mut m, false);
        assert_eq!(m["te"], "trailers");
        let mut m = h(&[("te", "deflate")]);
        strip_hop_by_hop(&mut m, false);
        assert!(m.get("te").is_none());
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_says_connection_upgrade() {
        let mut m = h(&[
            ("connection", "Upgrade, x-drop"),
            ("upgrade", "websocket"),
            ("x-drop", "1"),
        ]);
        strip_hop_by_hop(&mut m, true);
        assert_eq!(m["upgrade"], "websocket");
        assert_eq!(m["connection"], "upgrade");
        assert!(m.get("x-drop").is_none());
    }

    #[test]
    fn junk_in_connection_is_ignored() {
        let mut m = h(&[("connection", ", ,, bad header, x"), ("accept", "*/*")]);
        // obs-text is legal in a value but not UTF-8: that Connection value is skipped whole
        m.append(
            "connection",
            HeaderValue::from_bytes(b"\xffaccept").unwrap(),
        );
        strip_hop_by_hop(&mut m, false);
        assert_eq!(m.len(), 1);
        assert_eq!(m["accept"], "*/*");
    }
}
