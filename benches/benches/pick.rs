//! Pick cost per strategy at 2, 16, 256 and 4096 members: one snapshot load plus one pick,
//! which is what every request pays.

use std::hint::black_box;
use std::time::Duration;

use benches::{pick_serial, registry, SIZES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tower_balancer::outcome::Outcome;
use tower_balancer::registry::InFlight;
use tower_balancer::strategy::{
    hash_key, ByTraffic, LeastOutstanding, Maglev, PickContext, Picker, PowerOfTwo, RingHash,
    RoundRobin, Strategy, Tried, WeightedRandom,
};

fn bench_strategy<S: Strategy>(c: &mut Criterion, name: &str, make: impl Fn() -> S) {
    let mut group = c.benchmark_group(format!("pick/{name}"));
    for n in SIZES {
        let r = registry(n);
        // steady state: every member has answered once, so latency-aware strategies have a
        // sample to compare
        for m in r.snapshot().members() {
            m.stats().record(&Outcome::Success {
                latency: Duration::from_micros(200 + m.serial() % 100),
            });
        }
        let p = Picker::new(&r, make());
        let tried = Tried::new();
        let mut k = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                k = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
                black_box(pick_serial(&r, &p, &PickContext::new(Some(k), &tried)));
            });
        });
    }
    group.finish();
}

/// Least outstanding when every member is busy: the scan cannot stop early.
fn bench_least_outstanding_busy(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick/least-outstanding-all-busy");
    for n in SIZES {
        let r = registry(n);
        let snap = r.snapshot();
        let _busy: Vec<InFlight> = snap
            .members()
            .iter()
            .map(|m| InFlight::start(m.clone()))
            .collect();
        let p = Picker::new(&r, LeastOutstanding::new());
        let tried = Tried::new();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                black_box(pick_serial(&r, &p, &PickContext::new(None, &tried)));
            });
        });
    }
    group.finish();
}

/// A retry: the first candidate is excluded.
fn bench_retry(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick/retry-round-robin");
    for n in SIZES {
        let r = registry(n);
        let p = Picker::new(&r, RoundRobin::new());
        let snap = r.snapshot();
        let mut tried = Tried::new();
        tried.insert(&snap.members()[0]);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                black_box(pick_serial(&r, &p, &PickContext::new(None, &tried)));
            });
        });
    }
    group.finish();
}

fn picks(c: &mut Criterion) {
    bench_strategy(c, "round-robin", RoundRobin::new);
    bench_strategy(c, "least-outstanding", LeastOutstanding::new);
    bench_strategy(c, "by-traffic", ByTraffic::new);
    bench_strategy(c, "p2c-peak-ewma", PowerOfTwo::new);
    bench_strategy(c, "weighted-random", WeightedRandom::new);
    bench_strategy(c, "ring-hash", RingHash::new);
    bench_strategy(c, "maglev", Maglev::new);
    bench_least_outstanding_busy(c);
    bench_retry(c);
    // the key hash itself, for a 16-byte key
    c.bench_function("hash_key/16B", |b| {
        b.iter(|| black_box(hash_key(black_box(b"user-0123456789a"))));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = picks
}
criterion_main!(benches);
