//! Finding the route a request carries: in the URL, in the balancer's cookie, or at the end of
//! the application's session id.
//!
//! Pure functions over the request head, so they can be fuzzed. Names are matched exactly on
//! boundaries: a cookie named `xjsessionid` or a parameter `;xjsessionid=` never matches
//! `jsessionid` (Apache's substring match lets those through). Values are only candidates: a
//! route is used only after it resolves to a registered member.

use http::header::COOKIE;
use http::{HeaderMap, Uri};

/// The route after the first `separator` of a session id (`3F2A….node1` → `node1`), as Apache
/// does; with no separator, the whole value. Empty results are no route.
#[must_use]
pub(crate) fn route_from_session_id(value: &str, separator: Option<char>) -> Option<&str> {
    let route = match separator {
        Some(sep) => value.split_once(sep)?.1,
        None => value,
    };
    (!route.is_empty()).then_some(route)
}

/// The first value of cookie `name` across every `Cookie` header (HTTP/2 may split them),
/// with surrounding double quotes removed. Malformed pairs are skipped. The tests' oracle
/// for [`first_cookie_values`].
#[cfg(test)]
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    use cookie::Cookie;
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
        .map(|v| v.trim_matches('"'))
}

/// The first value of each cookie in `names` (up to [`MAX_COOKIE_NAMES`]), in one pass over
/// every `Cookie` header: `out[i]` is the value of `names[i]`, with surrounding double quotes
/// removed.
///
/// A request's `Cookie` header is only `name=value` pairs split by `;` (RFC 6265 §4.2.1),
/// so the pairs are cut here directly, as the `cookie` crate's `Cookie::split_parse` cuts
/// them (pieces without `=` or with an empty name skipped, spaces and tabs around names and
/// values trimmed; a proptest holds the two to agreeing). Going through the crate built a
/// full `Cookie` (expiry, domain, path and the rest) for every pair: about 1,800
/// instructions of a request that carries the route cookie (`scripts/instructions-check.sh`).
pub(crate) fn first_cookie_values<'h>(
    headers: &'h HeaderMap,
    names: &[&str],
) -> [Option<&'h str>; MAX_COOKIE_NAMES] {
    let mut out = [None; MAX_COOKIE_NAMES];
    let names = &names[..names.len().min(MAX_COOKIE_NAMES)];
    // one `name=value` pair; only a value taken must be text
    let mut take = |pair: &'h [u8]| {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            return;
        };
        // a header value's only blanks are spaces and tabs: `trim_ascii` trims just those here
        let name = pair[..eq].trim_ascii();
        if name.is_empty() {
            return;
        }
        if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
            if out[i].is_none() {
                out[i] = std::str::from_utf8(trim_quotes(pair[eq + 1..].trim_ascii())).ok();
            }
        }
    };
    for header in headers.get_all(COOKIE) {
        // not read through `HeaderValue::to_str`: that checked each byte for visible ASCII
        // (~4 instructions a byte, ~700 of a browser's request with a few cookies), and one
        // cookie's value in Latin-1 or UTF-8 hid every other cookie of its line, the route
        // cookie with them. A line that is UTF-8 (checked a word at a time) is cut with
        // `str::split`'s fast search; another byte by byte.
        let line = header.as_bytes();
        match std::str::from_utf8(line) {
            Ok(text) => text.split(';').for_each(|pair| take(pair.as_bytes())),
            Err(_) => line.split(|&b| b == b';').for_each(&mut take),
        }
    }
    out
}

/// `s` without the double quotes at its ends (every one, as `str::trim_matches('"')`).
fn trim_quotes(s: &[u8]) -> &[u8] {
    let from = s.iter().position(|&b| b != b'"').unwrap_or(s.len());
    let to = s.iter().rposition(|&b| b != b'"').map_or(from, |i| i + 1);
    &s[from..to]
}

/// How many cookie names the sticky layer looks for: its own and up to 7 session cookies.
pub const MAX_COOKIE_NAMES: usize = 8;

/// The value of path parameter `;name=` in the last path segment that has it, or of query
/// parameter `name=`; the path parameter is looked at first (Tomcat writes
/// `/app;jsessionid=ABC.node1?x=1`).
#[must_use]
pub(crate) fn url_param<'u>(uri: &'u Uri, name: &str) -> Option<&'u str> {
    let path = uri.path();
    let from_path = path
        .contains(';')
        .then(|| {
            path.split('/').rev().find_map(|segment| {
                segment
                    .split(';')
                    .skip(1)
                    .find_map(|param| param_value(param, name))
            })
        })
        .flatten();
    from_path.or_else(|| {
        uri.query()?
            .split('&')
            .find_map(|pair| param_value(pair, name))
    })
}

/// `value` when `pair` is exactly `name=value`.
fn param_value<'a>(pair: &'a str, name: &str) -> Option<&'a str> {
    let (key, value) = pair.split_once('=')?;
    (key == name).then_some(value)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn session_routes_follow_apache_first_separator() {
        assert_eq!(
            route_from_session_id("3F2A.node1", Some('.')),
            Some("node1")
        );
        assert_eq!(route_from_session_id("3F2A.n.1", Some('.')), Some("n.1"));
        assert_eq!(route_from_session_id(".node1", Some('.')), Some("node1"));
        assert_eq!(route_from_session_id("3F2A", Some('.')), None);
        assert_eq!(route_from_session_id("3F2A.", Some('.')), None);
        assert_eq!(route_from_session_id(".", Some('.')), None);
        assert_eq!(route_from_session_id("node1", None), Some("node1"));
        assert_eq!(route_from_session_id("", None), None);
    }

    #[test]
    fn cookie_names_match_exactly_and_the_first_wins() {
        let h = headers(&["xJSESSIONID=evil.node9; JSESSIONID=ABC.node1; JSESSIONID=DEF.node2"]);
        assert_eq!(cookie_value(&h, "JSESSIONID"), Some("ABC.node1"));
        let h = headers(&["a=1", "ROUTEID=\".node2\""]);
        assert_eq!(cookie_value(&h, "ROUTEID"), Some(".node2"));
        assert_eq!(cookie_value(&h, "routeid"), None);
        assert_eq!(cookie_value(&HeaderMap::new(), "ROUTEID"), None);
    }

    #[test]
    fn a_non_ascii_neighbour_does_not_hide_the_route() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            http::HeaderValue::from_bytes("lang=fran\u{e7}ais; ROUTEID=.node2".as_bytes()).unwrap(),
        );
        assert_eq!(first_cookie_values(&h, &["ROUTEID"])[0], Some(".node2"));
        // nor bytes that are not UTF-8 (Latin-1's `ç`), before or after it
        for line in [
            &b"lang=fran\xe7ais; ROUTEID=.node2"[..],
            b"ROUTEID=.node2; a=\xff\xc3",
        ] {
            let mut h = HeaderMap::new();
            h.append(COOKIE, http::HeaderValue::from_bytes(line).unwrap());
            assert_eq!(first_cookie_values(&h, &["ROUTEID"])[0], Some(".node2"));
        }
        // a value taken that is not text is no value
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            http::HeaderValue::from_bytes(b"ROUTEID=\xe7").unwrap(),
        );
        assert_eq!(first_cookie_values(&h, &["ROUTEID"])[0], None);
    }

    proptest::proptest! {
        // headers made of names, values, quotes, spaces, tabs, `=` and `;` in any order,
        // split over one or two `Cookie` lines
        #[test]
        fn the_pair_scan_agrees_with_the_cookie_crate(
            first in "[ \t;=\"a-cA-C]{0,24}",
            second in proptest::option::of("[ \t;=\"a-c]{0,12}"),
        ) {
            let mut lines = vec![first.as_str()];
            lines.extend(second.as_deref());
            let h = headers(&lines);
            let names = ["a", "b", "ab", "A", "c"];
            let got = first_cookie_values(&h, &names);
            for (i, n) in names.iter().enumerate() {
                proptest::prop_assert_eq!(got[i], cookie_value(&h, n), "{:?} {}", lines, n);
            }
        }
    }

    #[test]
    fn url_parameters_match_on_boundaries() {
        let u: Uri = "/carbon/admin;jsessionid=ABC.node1?x=1".parse().unwrap();
        assert_eq!(url_param(&u, "jsessionid"), Some("ABC.node1"));
        let u: Uri = "/a?xjsessionid=ABC.node9&jsessionid=DEF.node2"
            .parse()
            .unwrap();
        assert_eq!(url_param(&u, "jsessionid"), Some("DEF.node2"));
        let u: Uri = "/a;xjsessionid=ABC.node9".parse().unwrap();
        assert_eq!(url_param(&u, "jsessionid"), None);
        let u: Uri = "/a;jsessionid=P.node1?jsessionid=Q.node2".parse().unwrap();
        assert_eq!(url_param(&u, "jsessionid"), Some("P.node1"));
    }
}
