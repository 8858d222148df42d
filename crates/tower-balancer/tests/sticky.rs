//! The sticky layer over the balance layer, with in-process members.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::registry;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, Picked, ResponseBody};
use tower_balancer::client::ClientTls;
use tower_balancer::error::error_status;
use tower_balancer::registry::{AdminState, Health, MemberId, Registry};
use tower_balancer::sticky::{RouteChanged, RouteKeys, StickyConfig, StickyLayer};
use tower_balancer::strategy::RoundRobin;
use tower_balancer::BoxError;

type Body = Full<Bytes>;
type Res = Response<ResponseBody<Body>>;

async fn echo<B>(req: Request<B>) -> Result<Response<Body>, Infallible> {
    let m = req.extensions().get::<Picked>().unwrap().0.clone();
    Ok(Response::new(Full::new(Bytes::from(m.id().to_string()))))
}

fn stack(
    r: &Registry,
    config: StickyConfig,
) -> impl Service<Request<Body>, Response = Res, Error = BoxError> + Clone {
    ServiceBuilder::new()
        .layer(StickyLayer::new(r.clone(), config))
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(echo))
}

fn keys(byte: u8) -> RouteKeys {
    RouteKeys::new(&[[byte; 32]]).unwrap()
}

fn signed() -> StickyConfig {
    StickyConfig::builder().signed(keys(7)).build().unwrap()
}

fn get(cookie: Option<&str>, uri: &str) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(c) = cookie {
        b = b.header(COOKIE, c);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// (member that served, Set-Cookie name=value if any, number of Set-Cookie headers)
async fn send<S>(svc: &mut S, req: Request<Body>) -> (String, Option<String>, usize)
where
    S: Service<Request<Body>, Response = Res, Error = BoxError>,
{
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let n = res.headers().get_all(SET_COOKIE).iter().count();
    let cookie = res
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8(body.to_vec()).unwrap(), cookie, n)
}

#[tokio::test]
async fn a_session_stays_on_its_member_and_the_cookie_is_set_once() {
    let r = registry(3);
    let mut svc = stack(&r, signed());
    let (first, cookie, n) = send(&mut svc, get(None, "/")).await;
    assert_eq!(n, 1);
    let cookie = cookie.unwrap();
    assert!(cookie.starts_with("ROUTEID="));
    assert!(
        !cookie.contains(&first),
        "the cookie reveals the member id: {cookie}"
    );
    for _ in 0..20 {
        let (served, set, n) = send(&mut svc, get(Some(&cookie), "/")).await;
        assert_eq!(served, first);
        assert_eq!((set, n), (None, 0));
    }
}

#[tokio::test]
async fn the_route_suffix_of_the_application_session_cookie_pins_the_request() {
    let r = registry(3);
    let mut svc = stack(&r, signed());
    for _ in 0..5 {
        let (served, set, _) = send(&mut svc, get(Some("JSESSIONID=3F2A9C.m2"), "/carbon/")).await;
        assert_eq!(served, "m2");
        assert_eq!(
            set, None,
            "the carried route already names the member that served"
        );
    }
}

#[tokio::test]
async fn a_url_route_wins_over_the_cookie() {
    let r = registry(3);
    let mut svc = stack(&r, signed());
    let (served, _, _) = send(
        &mut svc,
        get(Some("JSESSIONID=A.m0"), "/carbon/admin;jsessionid=B.m1?x=1"),
    )
    .await;
    assert_eq!(served, "m1");
    let (served, _, _) = send(
        &mut svc,
        get(Some("JSESSIONID=A.m0"), "/carbon/?jsessionid=B.m2"),
    )
    .await;
    assert_eq!(served, "m2");
}

#[tokio::test]
async fn apache_route_cookie_form_is_accepted_and_plain_mode_writes_it() {
    let r = registry(3);
    let mut svc = stack(&r, signed());
    let (served, _, _) = send(&mut svc, get(Some("ROUTEID=.m1"), "/")).await;
    assert_eq!(served, "m1");
    // turned off: the clear form is ignored
    let strict_signed = StickyConfig::builder()
        .signed(keys(7))
        .accept_apache_form(false)
        .build()
        .unwrap();
    let mut svc2 = stack(&r, strict_signed);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(send(&mut svc2, get(Some("ROUTEID=.m1"), "/")).await.0);
    }
    assert_eq!(
        seen.len(),
        3,
        "a clear route was honoured with accept_apache_form(false)"
    );
    // plain mode
    let mut plain = stack(&r, StickyConfig::builder().plain().build().unwrap());
    let (served, cookie, _) = send(&mut plain, get(None, "/")).await;
    assert_eq!(cookie.unwrap(), format!("ROUTEID=.{served}"));
}

#[tokio::test]
async fn a_tampered_signed_cookie_is_ignored() {
    let r = registry(3);
    let mut svc = stack(&r, signed());
    let (first, cookie, _) = send(&mut svc, get(None, "/")).await;
    let cookie = cookie.unwrap();
    let value = cookie.strip_prefix("ROUTEID=").unwrap();
    // flip one bit of each character in turn: no altered token may be taken as a route
    for i in 0..value.len() {
        let mut bytes = value.as_bytes().to_vec();
        bytes[i] ^= 0x01;
        let forged = String::from_utf8_lossy(&bytes).into_owned();
        let (_, set, _) = send(&mut svc, get(Some(&format!("ROUTEID={forged}")), "/")).await;
        // an ignored route means no carried route: a cookie is always (re)issued
        assert!(
            set.is_some(),
            "forged value {forged} was accepted as a route (first member {first})"
        );
    }
}

#[tokio::test]
async fn rotated_keys_keep_old_cookies_working() {
    let r = registry(3);
    let mut old = stack(&r, StickyConfig::builder().signed(keys(1)).build().unwrap());
    let (first, cookie, _) = send(&mut old, get(None, "/")).await;
    let rotated = StickyConfig::builder()
        .signed(RouteKeys::new(&[[2u8; 32], [1u8; 32]]).unwrap())
        .build()
        .unwrap();
    let mut new = stack(&r, rotated);
    // an old-key cookie is honoured, and signed again with the new key on the way back
    let (served, resigned, _) = send(&mut new, get(cookie.as_deref(), "/")).await;
    assert_eq!(served, first);
    let resigned = resigned.expect("an old-key cookie is signed again with the first key");
    assert_ne!(Some(&resigned), cookie.as_ref());
    for _ in 0..5 {
        let (served, set, _) = send(&mut new, get(Some(&resigned), "/")).await;
        assert_eq!(served, first);
        assert_eq!(set, None, "a current-key cookie is not set again");
    }
    // a balancer that dropped the old key no longer honours the old cookie, but does the new
    let mut dropped = stack(&r, StickyConfig::builder().signed(keys(2)).build().unwrap());
    let (_, set, _) = send(&mut dropped, get(cookie.as_deref(), "/")).await;
    assert!(set.is_some());
    let (served, set, _) = send(&mut dropped, get(Some(&resigned), "/")).await;
    assert_eq!((served, set), (first, None));
}

#[tokio::test]
async fn bad_route_values_are_balanced_normally_without_panic() {
    let r = registry(2);
    let mut svc = stack(&r, signed());
    let long = "x".repeat(4096);
    let repeated = std::iter::repeat_n("JSESSIONID=a.m9", 50)
        .collect::<Vec<_>>()
        .join("; ");
    let values: Vec<Vec<u8>> = vec![
        b"ROUTEID=".to_vec(),
        b"ROUTEID=.".to_vec(),
        b"ROUTEID=.node9".to_vec(),
        b"JSESSIONID=.".to_vec(),
        b"JSESSIONID=abc.".to_vec(),
        format!("ROUTEID={long}").into_bytes(),
        format!("JSESSIONID=a.{long}").into_bytes(),
        "JSESSIONID=a.m\u{f6}".as_bytes().to_vec(),
        b"ROUTEID=\"\"".to_vec(),
        b"ROUTEID=\"unterminated".to_vec(),
        b"JSESSIONID=a.m0%0d%0aX: y".to_vec(),
        repeated.into_bytes(),
        b"=;=;;;ROUTEID".to_vec(),
    ];
    for v in values {
        let mut req = get(None, "/");
        req.headers_mut()
            .insert(COOKIE, HeaderValue::from_bytes(&v).unwrap());
        let (served, set, n) = send(&mut svc, req).await;
        assert!(served == "m0" || served == "m1");
        assert_eq!(n, 1, "{v:?}");
        let set = set.unwrap();
        assert!(!set.contains('\r') && !set.contains('\n'));
    }
    // CR, LF and NUL never get into a header value in the first place
    for bad in [&b"ROUTEID=.m0\r\nX: y"[..], b"ROUTEID=.m0\0"] {
        assert!(HeaderValue::from_bytes(bad).is_err());
    }
    // URL forms
    for uri in [
        "/;jsessionid=",
        "/;jsessionid=.",
        "/a;jsessionid=x.node9",
        "/?jsessionid=%0d%0a.m0",
        "/;xjsessionid=a.m0",
    ] {
        let (served, _, _) = send(&mut svc, get(None, uri)).await;
        assert!(served == "m0" || served == "m1");
    }
    // a route name that looks like a member but differs in case is unknown
    let (_, set, _) = send(&mut svc, get(Some("JSESSIONID=a.M0"), "/")).await;
    assert!(set.is_some());
}

#[tokio::test]
async fn a_draining_member_keeps_its_sessions_and_a_disabled_one_hands_them_over() {
    let r = registry(2);
    let mut svc = stack(&r, signed());
    let (first, cookie, _) = send(&mut svc, get(None, "/")).await;
    let other = if first == "m0" { "m1" } else { "m0" };
    r.set_state(&first, AdminState::Draining).unwrap();
    let (served, set, _) = send(&mut svc, get(cookie.as_deref(), "/")).await;
    assert_eq!((served.as_str(), set), (first.as_str(), None));
    // new sessions avoid the draining member
    for _ in 0..4 {
        assert_eq!(send(&mut svc, get(None, "/")).await.0, other);
    }
    r.set_state(&first, AdminState::Disabled).unwrap();
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(get(cookie.as_deref(), "/"))
        .await
        .unwrap();
    let changed = res.extensions().get::<RouteChanged>().unwrap().clone();
    assert_eq!(
        (changed.from.as_str(), changed.to.as_str()),
        (first.as_str(), other)
    );
    assert_eq!(res.headers().get_all(SET_COOKIE).iter().count(), 1);
}

#[tokio::test]
async fn strict_mode_answers_503_when_the_pinned_member_is_down() {
    let r = registry(2);
    let config = StickyConfig::builder()
        .signed(keys(7))
        .strict(true)
        .build()
        .unwrap();
    let mut svc = stack(&r, config);
    r.set_health("m1", Health::Unhealthy).unwrap();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(get(Some("JSESSIONID=z.m1"), "/"))
        .await
        .unwrap_err();
    assert_eq!(error_status(&*err), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_redirect_route_moves_pinned_sessions_for_a_migration() {
    let r = registry(3);
    r.set_redirect("m0", Some(MemberId::new("m2").unwrap()))
        .unwrap();
    let mut svc = stack(&r, signed());
    assert_eq!(
        send(&mut svc, get(Some("JSESSIONID=q.m0"), "/")).await.0,
        "m0"
    );
    r.set_state("m0", AdminState::Disabled).unwrap();
    for _ in 0..4 {
        assert_eq!(
            send(&mut svc, get(Some("JSESSIONID=q.m0"), "/")).await.0,
            "m2"
        );
    }
}

#[tokio::test]
async fn cookie_attributes_follow_the_config_and_secure_follows_tls() {
    let r = registry(1);
    let config = StickyConfig::builder()
        .signed(keys(7))
        .path("/carbon")
        .domain("wso2.com")
        .max_age(Some(std::time::Duration::from_secs(600)))
        .build()
        .unwrap();
    let svc = stack(&r, config);
    let res = svc.clone().oneshot(get(None, "/")).await.unwrap();
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for part in [
        "Path=/carbon",
        "Domain=wso2.com",
        "Max-Age=600",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    assert!(!set.contains("Secure"));
    let mut tls = get(None, "/");
    tls.extensions_mut().insert(ClientTls);
    let res = svc.oneshot(tls).await.unwrap();
    assert!(res.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Secure"));
}

#[tokio::test]
async fn two_instances_with_the_same_keys_agree_on_every_session() {
    let r1 = registry(3);
    let r2 = registry(3);
    let mut a = stack(&r1, signed());
    let mut b = stack(&r2, signed());
    for _ in 0..10 {
        let (first, cookie, _) = send(&mut a, get(None, "/")).await;
        let (served, set, _) = send(&mut b, get(cookie.as_deref(), "/")).await;
        assert_eq!((served, set), (first, None));
    }
}

#[tokio::test]
async fn upgrade_requests_follow_the_same_routes() {
    let r = registry(3);
    let mut svc = stack(&r, signed());
    for _ in 0..4 {
        let req = Request::get("/carbon/ws")
            .header(http::header::CONNECTION, "upgrade")
            .header(http::header::UPGRADE, "websocket")
            .header(COOKIE, "JSESSIONID=77.m2")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&mut svc, req).await.0, "m2");
    }
}
