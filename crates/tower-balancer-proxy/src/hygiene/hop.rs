//! Hop-by-hop headers: meaningful for one connection, never forwarded.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

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
/// `Trailer`, `Transfer-Encoding`, `HTTP2-Settings`, `TE` (except a `TE: trailers`, which is kept as exactly
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
    strip(headers, upgrading, true);
}

/// [`strip_hop_by_hop`] for a member's answer: `TE` is a request's field (RFC 9110 §10.1.4),
/// so an answer's is removed whatever it says.
pub(crate) fn strip_hop_by_hop_answer(headers: &mut HeaderMap, switching: bool) {
    strip(headers, switching, false);
}

/// Whether `name` (lower case, as `HeaderName`s are) is removed from every message whatever
/// `Connection` says.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    always_index(name).is_some()
}

fn strip(headers: &mut HeaderMap, upgrading: bool, request: bool) {
    // One pass over the names, no hashing: which of ours are present (most requests carry
    // none, most responses only `Connection: keep-alive`). Only those are then removed.
    let mut present = 0_u16;
    let mut close_header = false;
    for name in headers.keys() {
        match always_index(name.as_str()) {
            Some(i) => present |= 1 << i,
            None => close_header |= name.as_str() == "close",
        }
    }
    if present != 0 {
        let wants_trailers = request && present & TE_BIT != 0 && te_asks_for_trailers(headers);
        if present & CONNECTION_BIT != 0 {
            remove_named(headers, close_header);
        }
        for (i, name) in ALWAYS.iter().enumerate() {
            let keep = upgrading && *name == header::UPGRADE;
            if present & (1 << i) != 0 && !keep {
                headers.remove(name);
            }
        }
        if wants_trailers {
            headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
        }
    }
    if upgrading {
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
    }
}

/// Every header removed whatever `Connection` says: [`HOP_BY_HOP`], then `TE` (kept as
/// `trailers` if asked for), `Upgrade` (kept when upgrading) and `HTTP2-Settings` (only
/// meaningful with `Upgrade: h2c`, which is never forwarded). Spelt out because a const
/// array of `HeaderName`s cannot be taken apart at compile time; a test keeps its start equal
/// to [`HOP_BY_HOP`]. A `static`, not a `const`: every use of a `const` array is a new
/// temporary whose ten names are dropped again, once per header looked at.
static ALWAYS: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// The index of `name` in [`ALWAYS`]: a match on the text (its length first), where a
/// search of the array compared each name in turn, ten comparisons a header.
fn always_index(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "trailer" => 5,
        "transfer-encoding" => 6,
        "te" => 7,
        "upgrade" => 8,
        "http2-settings" => 9,
        _ => return None,
    })
}

/// The bits of `Connection` and `TE` in the presence mask of [`ALWAYS`].
const CONNECTION_BIT: u16 = 1 << 0;
const TE_BIT: u16 = 1 << 7;

/// Removes the headers `Connection` names (any number of `Connection` lines, comma
/// separated), but for names [`ALWAYS`] handles (so a named `Upgrade` stays on an upgrade)
/// and `close` when no header is called that.
fn remove_named(headers: &mut HeaderMap, close_header: bool) {
    // the values nearly every message carries name nothing else: no parsing for them
    let only_usual = headers.get_all(header::CONNECTION).iter().all(|v| {
        let v = v.as_bytes();
        v.eq_ignore_ascii_case(b"keep-alive") || (!close_header && v.eq_ignore_ascii_case(b"close"))
    });
    if only_usual {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .filter(|t| close_header || !t.eq_ignore_ascii_case("close"))
        .filter(|t| !ALWAYS.iter().any(|h| t.eq_ignore_ascii_case(h.as_str())))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(&name);
    }
}

/// The names a `Connection` value lists, trimmed, empty ones skipped; nothing from a value
/// that is not visible ASCII.
pub(crate) fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether `TE` lists `trailers`, the one `TE` value forwarded.
fn te_asks_for_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
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
    fn the_presence_table_covers_every_hop_by_hop_header() {
        assert_eq!(ALWAYS[..HOP_BY_HOP.len()], HOP_BY_HOP);
        for (i, name) in ALWAYS.iter().enumerate() {
            assert_eq!(always_index(name.as_str()), Some(i), "{name}");
        }
        assert_eq!(always_index("close"), None);
        assert!(ALWAYS.contains(&header::TE) && ALWAYS.contains(&header::UPGRADE));
        assert_eq!(
            ALWAYS[CONNECTION_BIT.trailing_zeros() as usize],
            header::CONNECTION
        );
        assert_eq!(ALWAYS[TE_BIT.trailing_zeros() as usize], header::TE);
    }

    #[test]
    fn a_header_called_close_goes_only_when_connection_names_it() {
        let mut m = h(&[("connection", "close"), ("close", "1"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut m, false);
        assert!(m.get("close").is_none());
        let mut m = h(&[("connection", "x-a"), ("close", "1"), ("x-a", "2")]);
        strip_hop_by_hop(&mut m, false);
        assert_eq!(m["close"], "1");
        assert!(m.get("x-a").is_none());
    }

    /// The rules written the slow, obvious way: the fast path must agree with it.
    fn reference(headers: &mut HeaderMap, upgrading: bool) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        // written out again: the reference must not share the code it checks
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
            if !(upgrading && name == header::UPGRADE) {
                headers.remove(&name);
            }
        }
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        headers.remove(header::TE);
        if wants_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if upgrading {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        } else {
            headers.remove(header::UPGRADE);
        }
    }

    proptest::proptest! {
        #[test]
        fn the_fast_path_agrees_with_the_rules(
            lines in proptest::collection::vec((0_usize..16, 0_usize..12), 0..10),
            upgrading: bool,
        ) {
            const NAMES: [&str; 16] = [
                "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                "proxy-authorization", "trailer", "transfer-encoding", "te", "upgrade",
                "close", "x-a", "x-b", "accept", "authorization", "x-forwarded-for", "host",
            ];
            const VALUES: [&str; 12] = [
                "close", "keep-alive", "x-a", "X-B, close", "upgrade", "te, x-a",
                "trailers", "deflate;q=0.5, trailers", "gzip", ", ,", "Keep-Alive, x-b", "1",
            ];
            let mut fast = HeaderMap::new();
            for (n, v) in lines {
                fast.append(HeaderName::from_static(NAMES[n]), HeaderValue::from_static(VALUES[v]));
            }
            let mut slow = fast.clone();
            strip_hop_by_hop(&mut fast, upgrading);
            reference(&mut slow, upgrading);
            proptest::prop_assert_eq!(fast, slow);
        }
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
