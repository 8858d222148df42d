//! Picking allocates nothing: proven with a counting global allocator.
//!
//! One test function in this binary, so no other test allocates while it counts.
#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower_balancer::registry::{Member, Registry};
use tower_balancer::strategy::{
    hash_key, BoundedLoad, ByTraffic, LeastOutstanding, Maglev, PickContext, Picker, PowerOfTwo,
    RingHash, RoundRobin, Strategy, Tried, WeightedRandom,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations made by 10 000 picks (fresh and retries, with and without a key): the least
/// of three runs. The counting allocator counts every thread's, and the test harness's own
/// threads allocated during a count in one CI run (4 over 10 000 picks, once); an allocation
/// of picking's own shows in every run.
fn allocations_per_10k_picks<S: Strategy>(r: &Registry, s: S) -> usize {
    let p = Picker::new(r, s);
    (0..3).map(|_| count_10k_picks(r, &p)).min().unwrap_or(0)
}

/// One count of [`allocations_per_10k_picks`].
fn count_10k_picks<S: Strategy>(r: &Registry, p: &Picker<S>) -> usize {
    let snap = r.load();
    let mut tried = Tried::new();
    // warm up thread-locals (the RNG) outside the measured region
    let _ = p.pick(&snap, &PickContext::new(None, &tried));
    let first: &Member = p.pick(&snap, &PickContext::new(None, &tried)).unwrap();
    let region = Region::new(GLOBAL);
    let plain = Tried::new();
    for k in 0..5_000u64 {
        let key = if k % 2 == 0 {
            Some(hash_key(&k.to_le_bytes()))
        } else {
            None
        };
        let _ = std::hint::black_box(p.pick(&snap, &PickContext::new(key, &plain)));
    }
    tried.insert(first);
    for k in 0..5_000u64 {
        let _ = std::hint::black_box(p.pick(&snap, &PickContext::new(Some(k), &tried)));
    }
    // the registry guard load is part of a pick too
    for _ in 0..1_000 {
        std::hint::black_box(r.load().version());
    }
    let stats = region.change();
    stats.allocations + stats.reallocations
}

#[test]
fn picking_allocates_nothing_for_any_strategy() {
    // control: the counter does see an allocation
    let region = Region::new(GLOBAL);
    std::hint::black_box(Box::new(42u64));
    assert!(
        region.change().allocations >= 1,
        "the counting allocator is not installed"
    );

    for n in [2, 16, 256] {
        let r = common::registry(n);
        let bound = BoundedLoad::new(1.25).unwrap();
        let results = [
            (
                "round-robin",
                allocations_per_10k_picks(&r, RoundRobin::new()),
            ),
            (
                "least-outstanding",
                allocations_per_10k_picks(&r, LeastOutstanding::new()),
            ),
            (
                "by-traffic",
                allocations_per_10k_picks(&r, ByTraffic::new()),
            ),
            ("p2c", allocations_per_10k_picks(&r, PowerOfTwo::new())),
            (
                "weighted-random",
                allocations_per_10k_picks(&r, WeightedRandom::new()),
            ),
            (
                "ring-hash",
                allocations_per_10k_picks(&r, RingHash::new().bounded_load(bound)),
            ),
            (
                "maglev",
                allocations_per_10k_picks(&r, Maglev::new().bounded_load(bound)),
            ),
        ];
        for (name, allocs) in results {
            assert_eq!(
                allocs, 0,
                "{name} with {n} members allocated {allocs} times"
            );
        }
    }
    memory_per_member_at_4096();
    allocations_per_request_through_the_stack();
}

/// Bytes a rebuild keeps per member: the snapshot itself, then each strategy's tables.
/// Printed with `cargo test -p tower-balancer --test alloc -- --nocapture`.
#[allow(clippy::cast_precision_loss)]
fn memory_per_member_at_4096() {
    const N: usize = 4096;
    // bytes a new snapshot keeps, measured while the old one is still held
    fn retained(r: &Registry) -> f64 {
        let old = r.snapshot();
        let region = Region::new(GLOBAL);
        r.rebuild();
        let c = region.change();
        drop(old);
        (c.bytes_allocated as f64 - c.bytes_deallocated as f64) / N as f64
    }
    let region = Region::new(GLOBAL);
    let r = common::registry(N);
    let c = region.change();
    let member_once = (c.bytes_allocated as f64 - c.bytes_deallocated as f64) / N as f64;

    let snapshot = retained(&r);
    println!("memory at {N} members (bytes per member):");
    println!("  member itself, once, shared by all snapshots: {member_once:.0}");
    println!("  snapshot without strategy tables:             {snapshot:.1}");
    assert!(snapshot > 0.0, "the measurement saw nothing");
    assert!(
        snapshot <= 256.0,
        "a snapshot keeps {snapshot} bytes a member"
    );
    let report = |name: &str, with: f64| println!("  + {name:<18} tables: {:.1}", with - snapshot);
    let p = Picker::new(&r, RoundRobin::new());
    report("round-robin", retained(&r));
    drop(p);
    let p = Picker::new(&r, LeastOutstanding::new());
    report("least-outstanding", retained(&r));
    drop(p);
    let p = Picker::new(&r, PowerOfTwo::new());
    report("p2c", retained(&r));
    drop(p);
    let p = Picker::new(&r, WeightedRandom::new());
    report("weighted-random", retained(&r));
    drop(p);
    let p = Picker::new(&r, Maglev::new());
    report("maglev", retained(&r));
    drop(p);
    let p = Picker::new(&r, RingHash::new());
    report("ring-hash", retained(&r));
    drop(p);
}

/// Allocations one request costs in each layer combination, around a service that answers at
/// once. Printed with `--nocapture`; bounded so a regression fails.
fn allocations_per_request_through_the_stack() {
    use std::convert::Infallible;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use tower::{service_fn, Service, ServiceBuilder};
    use tower_balancer::balance::BalanceLayer;
    use tower_balancer::failover::{FailoverConfig, FailoverLayer};
    use tower_balancer::sticky::{RouteKeys, StickyConfig, StickyLayer};

    fn answer<B>(
        _req: Request<B>,
    ) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
    }

    /// Allocations per request over 1 000 requests made by `make`, each polled once to its end.
    fn per_request<S, F>(mut svc: S, make: F) -> f64
    where
        S: Service<Request<Full<Bytes>>>,
        S::Error: std::fmt::Debug,
        F: Fn() -> Request<Full<Bytes>>,
    {
        let mut cx = Context::from_waker(Waker::noop());
        let mut run = |svc: &mut S| {
            assert!(svc.poll_ready(&mut cx).is_ready());
            let fut = svc.call(make());
            let mut fut = std::pin::pin!(fut);
            let Poll::Ready(res) = fut.as_mut().poll(&mut cx) else {
                panic!("an immediate service must answer at once")
            };
            drop(res.unwrap());
        };
        run(&mut svc); // warm: registry tables, thread-locals
        let region = Region::new(GLOBAL);
        for _ in 0..1000 {
            run(&mut svc);
        }
        #[allow(clippy::cast_precision_loss)]
        let n = region.change().allocations as f64 / 1000.0;
        n
    }

    let r = common::registry(2);
    let plain = || Request::new(Full::new(Bytes::new()));
    let with_session = || {
        Request::builder()
            .header(http::header::COOKIE, "JSESSIONID=3F2A9C01.m1")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let bare = per_request(service_fn(answer), plain);
    let balance = per_request(
        ServiceBuilder::new()
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(service_fn(answer)),
        plain,
    );
    let sticky = || {
        StickyConfig::builder()
            .signed(RouteKeys::new(&[[7u8; 32]]).unwrap())
            .build()
            .unwrap()
    };
    let full = || {
        ServiceBuilder::new()
            .layer(StickyLayer::new(r.clone(), sticky()))
            .layer(FailoverLayer::new(r.clone(), FailoverConfig::default()))
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(service_fn(answer))
    };
    let new_session = per_request(full(), plain);
    let pinned = per_request(full(), with_session);
    println!("allocations per request (around an immediate service):");
    println!("  bare service:                          {bare:.1}");
    println!("  balance:                               {balance:.1}");
    println!("  sticky+failover+balance, new session:  {new_session:.1}");
    println!("  sticky+failover+balance, JSESSIONID:   {pinned:.1}");
    assert!(
        new_session - bare <= 16.0,
        "the stack allocates {new_session} times a request"
    );
}
