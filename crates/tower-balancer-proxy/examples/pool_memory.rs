//! Memory per idle pooled connection: opens `--connections N` connections to `--member` at
//! once (N requests in flight together), lets them go idle in the pool, and reports what
//! each one holds: the heap bytes still allocated once the requests are done (counted by a
//! counting allocator: a connection of the client's own HTTP/1.1 path, which the `GET`s here
//! take, holds its socket's registration and its pool entry, no buffers; one of hyper's
//! client, which requests with a body take, also its task and its read and write buffers),
//! and, as an upper bound, how much the process's resident
//! memory grew (which also keeps what the allocator took for the N requests in flight).
//! Run against a backend in another process (scripts/compare.sh does, against nginx), so
//! only the pool is counted.
//!
//! With `POOL_MEMORY_EXIT=1` it exits with the connections still open, so that
//! `valgrind --tool=dhat` shows, among the blocks live at exit, what each one holds
//! (BENCHMARKS.md, "Memory per idle member connection").

use std::alloc::System;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::ServiceExt;
use tower_balancer::balance::Picked;
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer_proxy::forward::ForwardConfig;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let member = arg("--member").ok_or("give --member HOST:PORT")?;
    let n: usize = arg("--connections").map_or(Ok(500), |s| s.parse())?;
    let registry = Registry::new();
    let m = registry.insert(MemberSpec::new(
        MemberId::new("node1")?,
        format!("http://{member}").parse()?,
    ))?;
    let forward = ForwardConfig::new()
        .idle_timeout(Duration::from_secs(120))
        .build::<Full<Bytes>>(registry.clone())?;
    // one warm-up request so the runtime, TLS-free connector and pool exist before measuring
    let mut warm = Request::get("/").body(Full::new(Bytes::new()))?;
    warm.extensions_mut().insert(Picked(m.clone()));
    let _ = forward
        .clone()
        .oneshot(warm)
        .await?
        .into_body()
        .collect()
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib().ok_or("no /proc/self/status")?;
    let heap = Region::new(GLOBAL);
    let mut tasks = tokio::task::JoinSet::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    for _ in 0..n {
        let (fwd, m, barrier) = (forward.clone(), m.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let mut req = Request::get("/")
                .body(Full::new(Bytes::new()))
                .expect("a static request is valid");
            req.extensions_mut().insert(Picked(m));
            let res = fwd.oneshot(req).await.map_err(|e| e.to_string())?;
            res.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        });
    }
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            failed += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // all idle in the pool now
    let after = rss_kib().ok_or("no /proc/self/status")?;
    let change = heap.change();
    // what is still allocated of what the N requests allocated: the idle connections
    #[allow(clippy::cast_possible_wrap)]
    let held = change.bytes_allocated as i64 - change.bytes_deallocated as i64
        + change.bytes_reallocated as i64;
    let blocks = change.allocations.saturating_sub(change.deallocations);
    #[allow(clippy::cast_precision_loss)]
    let (per_heap, per_rss) = (
        held as f64 / n as f64,
        (after.saturating_sub(before)) as f64 * 1024.0 / n as f64,
    );
    println!(
        "{n} requests at once ({failed} failed), then idle in the pool: heap held {held} bytes in {blocks} blocks, \
         {per_heap:.0} bytes ({:.1} KiB) per idle pooled connection; RSS {before} KiB -> {after} KiB, \
         at most {per_rss:.0} bytes per connection",
        per_heap / 1024.0
    );
    // POOL_MEMORY_EXIT=1: exit with the connections still held, so that
    // `valgrind --tool=dhat` lists what each one holds among the blocks live at exit
    if std::env::var_os("POOL_MEMORY_EXIT").is_some() {
        std::process::exit(0);
    }
    drop(forward);
    Ok(())
}
