//! Harnesses shared by the cargo-fuzz targets under `fuzz/` and the corpus replay test, so
//! both run the same code. Not part of the public API.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use http::header::{HeaderName, HeaderValue, CONNECTION};
use http::HeaderMap;

use crate::hygiene::{strip_hop_by_hop, Forwarding, TrustedProxies, HOP_BY_HOP};

fn forwarding() -> &'static Forwarding {
    static F: OnceLock<Forwarding> = OnceLock::new();
    F.get_or_init(|| {
        let trusted =
            TrustedProxies::parse(["10.0.0.0/8", "::1/128"]).unwrap_or(TrustedProxies::none());
        Forwarding::new().trusted(trusted).forwarded(true)
    })
}

/// Header hygiene on headers parsed from `data` (`name: value` lines; the first byte picks
/// the client address: trusted or not): hop-by-hop headers and every header `Connection`
/// names are gone, and exactly one `X-Forwarded-For` ends with the client. No panic.
pub fn header_hygiene(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in rest.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            headers.append(n, v);
        }
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrading = first & 1 == 1;
    let client = if first & 2 == 2 {
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
    };
    strip_hop_by_hop(&mut headers, upgrading);
    // an upgrade keeps `Upgrade` and gets `Connection: upgrade` back
    let kept = |n: &HeaderName| upgrading && (n == http::header::UPGRADE || n == CONNECTION);
    for n in &named {
        let allowed = kept(n);
        assert!(
            allowed || !headers.contains_key(n),
            "{n} named in Connection survived"
        );
    }
    for n in &HOP_BY_HOP {
        let allowed = kept(n) || n == http::header::TE;
        assert!(
            allowed || !headers.contains_key(n),
            "hop-by-hop {n} survived"
        );
    }
    if upgrading {
        let c: Vec<_> = headers.get_all(CONNECTION).iter().collect();
        assert!(
            c.len() <= 1 && c.iter().all(|v| *v == "upgrade"),
            "Connection: {c:?}"
        );
    }
    let host = headers.get(http::header::HOST).cloned();
    forwarding().apply(&mut headers, client, first & 4 == 4, host.as_ref());
    let xff: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff.len(), 1, "one X-Forwarded-For field");
    let text = xff[0].to_str().unwrap_or_default();
    assert!(
        text.ends_with(&client.to_string()),
        "X-Forwarded-For ends with the client: {text}"
    );
}

/// The configuration parser on `data` as a file's text: an error or a configuration, never
/// a panic; an error's line is within the file.
#[cfg(feature = "config")]
pub fn config_parser(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::config::ConfigFile::from_toml(text, std::path::Path::new("fuzz.toml")) {
        Ok(config) => {
            // building reads no file unless one is named; a named file is absent: an error
            let _ = config.build();
        }
        Err(e) => {
            if let Some(line) = e.line() {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "line {line}"
                );
            }
            assert!(!e.to_string().is_empty());
        }
    }
}

/// A member's answer read by the member client's own HTTP/1.1 path (the first byte picks
/// `GET` or `HEAD` and how many bytes arrive at a time): no panic; a body never holds more
/// than arrived; the same answer read in one piece or in small ones reads the same.
pub fn member_answer(data: &[u8]) {
    let Some((&first, wire)) = data.split_first() else {
        return;
    };
    let method = if first & 1 == 1 {
        http::Method::HEAD
    } else {
        http::Method::GET
    };
    let piece = usize::from(first >> 1) + 1;
    let whole = crate::forward::read_answer(wire, &method, wire.len());
    let pieces = crate::forward::read_answer(wire, &method, piece);
    if let Ok((head, body)) = &whole {
        assert!(body.len() <= wire.len());
        let (head2, body2) = pieces
            .as_ref()
            .expect("one piece read it, small ones did not");
        assert_eq!(head.status(), head2.status());
        assert_eq!(head.headers(), head2.headers());
        assert_eq!(body, body2);
    }
}
