//! Harnesses shared by the cargo-fuzz targets under `fuzz/` and the corpus replay test, so
//! both run the same code. Not part of the public API.

use std::sync::OnceLock;

use http::{HeaderValue, Request, Uri};

use crate::registry::{MemberId, MemberSpec, Registry};
use crate::sticky::route::{route_from_session_id, url_param};
use crate::sticky::{RouteKeys, StickyConfig};

struct Fixture {
    registry: Registry,
    signed: StickyConfig,
    plain: StickyConfig,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let registry = Registry::new();
        for (id, port) in [("node1", 9443), ("node2", 9444), ("n.3", 9445)] {
            if let (Ok(id), Ok(uri)) = (
                MemberId::new(id),
                format!("https://127.0.0.1:{port}").parse(),
            ) {
                let _ = registry.insert(MemberSpec::new(id, uri));
            }
        }
        let keys = RouteKeys::new(&[[0x42u8; 32]]).ok();
        let signed = keys
            .map_or_else(StickyConfig::builder, |k| StickyConfig::builder().signed(k))
            .build();
        let plain = StickyConfig::builder().plain().build();
        match (signed, plain) {
            (Ok(signed), Ok(plain)) => Fixture {
                registry,
                signed,
                plain,
            },
            _ => unreachable!("the default sticky settings are valid"),
        }
    })
}

/// Route extraction from a request built from `data`: the bytes up to the first newline are
/// the request target, the rest is one `Cookie` header. Whatever the input, a route found
/// must name a registered member, and nothing may panic.
pub fn route_extraction(data: &[u8]) {
    let (target, cookie) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let mut req = Request::new(());
    *req.uri_mut() = uri;
    if let Ok(v) = HeaderValue::from_bytes(cookie) {
        req.headers_mut().insert(http::header::COOKIE, v);
    }
    let f = fixture();
    let snapshot = f.registry.load();
    for config in [&f.signed, &f.plain] {
        if let Some(id) = config.route_of(&req, &snapshot) {
            assert!(
                snapshot.get(id.as_str()).is_some(),
                "route {id} is not registered"
            );
        }
    }
    // the building blocks on their own
    if let Some(v) = url_param(req.uri(), "jsessionid") {
        let _ = route_from_session_id(v, Some('.'));
        let _ = route_from_session_id(v, None);
    }
}

/// The balancer's signed route cookie decoded from `data` (the cookie's value): a token is
/// accepted only if it names a registered member, and the token the codec issues for that
/// member is accepted for it too. No panic.
pub fn signed_cookie(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cookie) = HeaderValue::from_str(&format!("ROUTEID={value}")) else {
        return;
    };
    let mut req = Request::new(());
    req.headers_mut().insert(http::header::COOKIE, cookie);
    let f = fixture();
    let snapshot = f.registry.load();
    if let Some(id) = f.signed.route_of(&req, &snapshot) {
        assert!(
            snapshot.get(id.as_str()).is_some(),
            "route {id} is not registered"
        );
    }
}
