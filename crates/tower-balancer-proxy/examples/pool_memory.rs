//! Memory per idle pooled connection: opens `--connections N` connections to `--member` at
//! once (N requests in flight together), lets them go idle in the pool, and reports how much
//! this process's resident memory grew per connection. Run against a backend in another
//! process (scripts/compare.sh does, against nginx and HAProxy), so only the pool is counted.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_balancer::balance::Picked;
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer_proxy::forward::ForwardConfig;

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
    #[allow(clippy::cast_precision_loss)]
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "{n} requests at once ({failed} failed): RSS {before} KiB -> {after} KiB, about {per:.0} bytes per idle pooled connection"
    );
    Ok(())
}
