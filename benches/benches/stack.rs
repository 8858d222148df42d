//! The full stack (sticky + failover + balance) around an always-ready service that answers
//! at once, against the bare service, and tower's own `p2c::Balance` behind a `Buffer` doing
//! the same work, all in one run.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use benches::registry;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::COOKIE;
use http::{Request, Response};
use http_body_util::Full;
use tower::balance::p2c::Balance as TowerBalance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_balancer::balance::BalanceLayer;
use tower_balancer::failover::{FailoverConfig, FailoverLayer};
use tower_balancer::sticky::{RouteKeys, StickyConfig, StickyLayer};
use tower_balancer::strategy::RoundRobin;

type Body = Full<Bytes>;

fn answer<B>(_req: Request<B>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
}

fn request(cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get("/carbon/admin/index.jsp");
    if let Some(c) = cookie {
        b = b.header(COOKIE, c);
    }
    b.body(Full::new(Bytes::new()))
        .expect("a static request is valid")
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime starts");
    let mut group = c.benchmark_group("stack");

    let bare = service_fn(answer);
    group.bench_function("bare-service", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(bare.oneshot(request(None)).await.ok());
        });
    });

    let r = registry(2);
    let balance_only = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(answer));
    group.bench_function("balance", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(balance_only.clone().oneshot(request(None)).await.ok());
        });
    });

    let sticky = StickyConfig::builder()
        .signed(RouteKeys::new(&[[7u8; 32]]).expect("a 32-byte key is accepted"))
        .build()
        .expect("the default sticky settings are valid");
    let full = ServiceBuilder::new()
        .layer(StickyLayer::new(r.clone(), sticky))
        .layer(FailoverLayer::new(r.clone(), FailoverConfig::default()))
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(answer));
    group.bench_function("sticky+failover+balance/new-session", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(full.clone().oneshot(request(None)).await.ok());
        });
    });
    group.bench_function("sticky+failover+balance/jsessionid-route", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                full.clone()
                    .oneshot(request(Some("JSESSIONID=3F2A9C01.m1")))
                    .await
                    .ok(),
            );
        });
    });

    let tower_p2c = {
        let members = vec![
            PendingRequests::new(service_fn(answer), CompleteOnResponse::default()),
            PendingRequests::new(service_fn(answer), CompleteOnResponse::default()),
        ];
        let _guard = rt.enter();
        Buffer::new(TowerBalance::new(ServiceList::new(members)), 1024)
    };
    group.bench_function("tower-p2c-balance+buffer (anchor)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(tower_p2c.clone().oneshot(request(None)).await.ok());
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = stack
}
criterion_main!(benches);
