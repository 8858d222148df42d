//! Registry costs: rebuilding a snapshot at 4096 members, and picking while another thread
//! changes weights about 10 000 times a second.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{pick_serial, registry};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tower_balancer::strategy::{Maglev, PickContext, Picker, RingHash, RoundRobin, Tried};

fn rebuild(c: &mut Criterion) {
    let mut group = c.benchmark_group("rebuild/4096");
    let n = 4096;
    let r = registry(n);
    group.bench_function(BenchmarkId::from_parameter("registry-only"), |b| {
        b.iter(|| r.rebuild());
    });
    let rr = Picker::new(&r, RoundRobin::new());
    group.bench_function(BenchmarkId::from_parameter("with-round-robin"), |b| {
        b.iter(|| r.rebuild());
    });
    drop(rr);
    r.rebuild();
    let mg = Picker::new(&r, Maglev::new());
    group.bench_function(BenchmarkId::from_parameter("with-maglev"), |b| {
        b.iter(|| r.rebuild());
    });
    drop(mg);
    r.rebuild();
    let rh = Picker::new(&r, RingHash::new());
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter("with-ring-hash"), |b| {
        b.iter(|| r.rebuild());
    });
    drop(rh);
    group.finish();
}

/// Picks on this thread while a writer thread sets a weight every 100 µs (10 000 changes/s
/// aimed for; the rate reached is printed).
fn pick_under_churn(c: &mut Criterion) {
    let n = 256;
    let r = registry(n);
    let p = Picker::new(&r, RoundRobin::new());
    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (r, stop, changes) = (r.clone(), stop.clone(), changes.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut next = start;
            let mut w = 1;
            // bounded: stops when asked or after 120 s, whichever is first
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(120) {
                w = w % 4 + 1;
                let _ = r.set_weight("m7", w);
                changes.fetch_add(1, Ordering::Relaxed);
                next += Duration::from_micros(100);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            start.elapsed()
        })
    };
    let tried = Tried::new();
    c.bench_function("pick/round-robin-256-under-weight-churn", |b| {
        b.iter(|| {
            black_box(pick_serial(&r, &p, &PickContext::new(None, &tried)));
        });
    });
    stop.store(true, Ordering::Relaxed);
    let elapsed = writer.join().unwrap_or_default();
    #[allow(clippy::cast_precision_loss)]
    let rate = changes.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64().max(1e-9);
    println!("weight changes during the churn bench: {rate:.0}/s");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = rebuild, pick_under_churn
}
criterion_main!(benches);
