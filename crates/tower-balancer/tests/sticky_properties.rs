//! Sticky-session invariants under random sessions, member state changes and junk routes.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use proptest::prelude::*;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, ServedBy};
use tower_balancer::registry::{AdminState, Health};
use tower_balancer::sticky::{RouteKeys, StickyConfig, StickyLayer};
use tower_balancer::strategy::RoundRobin;

#[derive(Debug, Clone)]
enum Op {
    /// a request from session `n` (carrying its cookie, if it has one)
    Request(usize),
    /// a request carrying an arbitrary route value
    Junk(Vec<u8>),
    /// change member `m`'s admin state
    State(usize, AdminState),
    /// change member `m`'s health
    Health(usize, Health),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..8).prop_map(Op::Request),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Junk),
        1 => (0usize..3, prop_oneof![
            Just(AdminState::Active), Just(AdminState::Draining), Just(AdminState::Disabled)
        ]).prop_map(|(m, s)| Op::State(m, s)),
        1 => (0usize..3, prop_oneof![Just(Health::Healthy), Just(Health::Unhealthy)])
            .prop_map(|(m, h)| Op::Health(m, h)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sessions_stay_while_their_member_can_serve_and_never_get_two_cookies(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let r = common::registry(3);
            let config = StickyConfig::builder().signed(RouteKeys::new(&[[3u8; 32]]).unwrap()).build().unwrap();
            let mut svc = ServiceBuilder::new()
                .layer(StickyLayer::new(r.clone(), config))
                .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
                .service(service_fn(|_req: Request<_>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }));
            // session -> (cookie, member it was on)
            let mut sessions: HashMap<usize, (String, String)> = HashMap::new();
            for op in ops {
                match op {
                    Op::State(m, s) => { r.set_state(&format!("m{m}"), s).unwrap(); }
                    Op::Health(m, h) => { r.set_health(&format!("m{m}"), h).unwrap(); }
                    Op::Junk(bytes) => {
                        let mut req = Request::new(Full::new(Bytes::new()));
                        let mut v = b"ROUTEID=".to_vec();
                        v.extend(bytes.iter().filter(|b| b.is_ascii_graphic() && **b != b';'));
                        req.headers_mut().insert(COOKIE, HeaderValue::from_bytes(&v).unwrap());
                        if let Ok(res) = svc.ready().await.unwrap().call(req).await {
                            prop_assert!(res.headers().get_all(SET_COOKIE).iter().count() <= 1);
                            prop_assert!(res.extensions().get::<ServedBy>().is_some());
                        }
                    }
                    Op::Request(n) => {
                        let mut req = Request::new(Full::new(Bytes::new()));
                        let before = sessions.get(&n).cloned();
                        if let Some((cookie, _)) = &before {
                            req.headers_mut().insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
                        }
                        let Ok(res) = svc.ready().await.unwrap().call(req).await else {
                            // nothing eligible at all: then no member may serve this session
                            let snap = r.load();
                            prop_assert!(snap.tiers().is_empty());
                            continue;
                        };
                        let setc: Vec<_> = res.headers().get_all(SET_COOKIE).iter().collect();
                        prop_assert!(setc.len() <= 1, "two Set-Cookie headers");
                        let served = res.extensions().get::<ServedBy>().unwrap().0.clone();
                        if let Some((_, member)) = &before {
                            let pinned = r.load().get(member).cloned();
                            if pinned.is_some_and(|m| m.serves_pinned()) {
                                prop_assert_eq!(served.id().as_str(), member.as_str(), "session left a member that could serve it");
                                prop_assert!(setc.is_empty(), "cookie re-set while the session stayed");
                            }
                        }
                        let cookie = match setc.first() {
                            Some(v) => v.to_str().unwrap().split(';').next().unwrap().to_owned(),
                            None => before.map(|b| b.0).unwrap(),
                        };
                        sessions.insert(n, (cookie, served.id().to_string()));
                    }
                }
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn new_sessions_split_evenly_between_two_members() {
    let r = common::registry(2);
    let config = StickyConfig::builder().build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(StickyLayer::new(r.clone(), config))
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(|_req: Request<_>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    let mut on_m0 = 0;
    for _ in 0..1000 {
        let res = svc
            .clone()
            .oneshot(Request::new(Full::new(Bytes::new())))
            .await
            .unwrap();
        if res.extensions().get::<ServedBy>().unwrap().0.id().as_str() == "m0" {
            on_m0 += 1;
        }
    }
    assert!(
        (450..=550).contains(&on_m0),
        "{on_m0} of 1000 new sessions on m0"
    );
}
