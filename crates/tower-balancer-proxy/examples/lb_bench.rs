//! A plain-HTTP balancer for load comparisons: round robin over the given members through the
//! same stack users build (balance + forward, pooled keep-alive connections to members).
//!
//! ```sh
//! cargo run --release -p tower-balancer-proxy --example lb_bench -- \
//!   --listen 127.0.0.1:8090 --member 127.0.0.1:9763 --member 127.0.0.1:9764 --threads 1 --seconds 60
//! ```
//!
//! `--cert FILE --key FILE` puts TLS in front (PEM). `--sticky` adds the sticky and failover
//! layers in front of balance (the whole stack, with a fixed signing key so that every worker
//! decodes the same cookies; the `ROUTEID` value that pins to node1 is printed at start). It
//! stops by itself after `--seconds` (default 60). `--per-core` runs one single-threaded
//! runtime per thread, each with its own listener (`SO_REUSEPORT`) and connection pool, as
//! nginx runs its workers; without it, `--threads` above 1 is one multi-threaded runtime.

use std::net::SocketAddr;
use std::time::Duration;

use tower::ServiceBuilder;
use tower_balancer::balance::BalanceLayer;
use tower_balancer::failover::{FailoverConfig, FailoverLayer};
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::sticky::{RouteKeys, StickyConfig, StickyLayer};
use tower_balancer::strategy::RoundRobin;
use tower_balancer_proxy::forward::ForwardConfig;
use tower_balancer_proxy::serve::{server_tls_from_pem, ServeConfig, Server};

// glibc's malloc and free were 7% of the balancer's CPU under load; the library leaves the
// allocator to the binary, and this is the one the comparison runs with
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/args.rs"]
mod args;
use args::arg_values;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (listen, seconds, members) = args::common("127.0.0.1:8090")?;
    let threads: usize = arg_values("--threads")
        .first()
        .map_or(Ok(1), |s| s.parse())?;
    let per_core = std::env::args().any(|a| a == "--per-core");
    let sticky = std::env::args().any(|a| a == "--sticky");
    let mut config = ServeConfig::new();
    if let (Some(cert), Some(key)) = (arg_values("--cert").first(), arg_values("--key").first()) {
        config = config.tls(server_tls_from_pem(
            &std::fs::read(cert)?,
            &std::fs::read(key)?,
        )?);
    }
    let registry = Registry::new();
    for (i, m) in members.iter().enumerate() {
        registry.insert(MemberSpec::new(
            MemberId::new(format!("node{}", i + 1))?,
            format!("http://{m}").parse()?,
        ))?;
    }
    if sticky {
        println!("ROUTEID={}", bench_keys()?.token(&MemberId::new("node1")?));
    }
    println!(
        "lb_bench on {listen}, {threads} thread(s){}, for {seconds} s",
        if per_core {
            " (one runtime per thread)"
        } else {
            ""
        }
    );
    if per_core {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let registry = registry.clone();
                let config = config.clone();
                std::thread::spawn(move || -> Result<(), String> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(serve(registry, listen, config, seconds, true, sticky))
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "a worker panicked")??;
        }
        return Ok(());
    }
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(registry, listen, config, seconds, false, sticky))?;
    Ok(())
}

async fn serve(
    registry: Registry,
    listen: SocketAddr,
    config: ServeConfig,
    seconds: u64,
    reuseport: bool,
    sticky: bool,
) -> Result<(), String> {
    let server = if reuseport {
        Server::bind_reuseport(listen, config)
    } else {
        Server::bind(listen, config).await
    }
    .map_err(|e| e.to_string())?;
    let stop = tokio::time::sleep(Duration::from_secs(seconds));
    let forward = ForwardConfig::new();
    let balance = BalanceLayer::new(registry.clone(), RoundRobin::new());
    if sticky {
        // the whole stack, as is_cluster runs it
        let keys = bench_keys().map_err(|e| e.to_string())?;
        let config = StickyConfig::builder()
            .signed(keys)
            .build()
            .map_err(|e| e.to_string())?;
        let stack = ServiceBuilder::new()
            .layer(StickyLayer::new(registry.clone(), config))
            .layer(FailoverLayer::new(
                registry.clone(),
                FailoverConfig::default(),
            ))
            .layer(balance)
            .service(forward.build(registry).map_err(|e| e.to_string())?);
        server.serve(stack, stop).await
    } else {
        let stack = ServiceBuilder::new()
            .layer(balance)
            .service(forward.build(registry).map_err(|e| e.to_string())?);
        server.serve(stack, stop).await
    }
    .map_err(|e| e.to_string())
}

/// A fixed key, so every worker (and the script that sends the cookie) agrees; a real
/// deployment reads its keys from a secret store.
fn bench_keys() -> Result<RouteKeys, tower_balancer::sticky::KeyError> {
    RouteKeys::new(&[[0x5a_u8; 32]])
}
