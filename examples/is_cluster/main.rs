//! `cargo run --example is_cluster`: the two-node WSO2 Identity Server cluster behind a
//! TLS-terminating, session-aware balancer, reproduced in one process.
//!
//! ```text
//! cargo run --example is_cluster                       # start it; Ctrl-C stops it
//! cargo run --example is_cluster -- --demo             # walk the recipe's last step, check it
//! cargo run --example is_cluster -- --config lb.toml   # front real nodes from a TOML file
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tower_balancer::registry::Health;
use tower_balancer_examples::cluster::{wait_for, Cluster, ClusterOptions};
use tower_balancer_examples::{demo, status};
use tower_balancer_proxy::config::ConfigFile;

/// The WSO2 IS two-node recipe behind tower-balancer.
#[derive(Debug, Parser)]
#[command(name = "is_cluster", version, about)]
struct Args {
    /// Where certificates are made, and kept between runs.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// The balancer's TLS address (443 needs privileges).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The balancer-manager's address (keep it on loopback).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    admin: SocketAddr,
    /// Run the scripted demo, print its transcript and exit (non-zero if it fails).
    #[arg(long)]
    demo: bool,
    /// Requests per step in the demo.
    #[arg(long, default_value_t = 20, value_name = "N")]
    requests: usize,
    /// Front the members a TOML file names (no nodes are started).
    #[arg(long, value_name = "FILE", conflicts_with = "demo")]
    config: Option<PathBuf>,
    /// How long to wait for members to pass their health checks.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    wait: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.config {
        Some(file) => front(file, &args).await,
        None => recipe(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn default_certs() -> PathBuf {
    // the workspace's target directory: kept between runs, ignored by git
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("is_cluster")
}

/// The recipe: certificates, user store, two nodes, the balancer.
async fn recipe(args: &Args) -> Result<(), Error> {
    let certs = args.certs.clone().unwrap_or_else(default_certs);
    let mut options = ClusterOptions::recipe(certs);
    options.listen = args.listen;
    options.admin = args.admin;
    let mut step = 0;
    let mut cluster = Cluster::start(&options, &mut |line| {
        step += 1;
        println!("[{step}] {line}");
    })
    .await?;
    let watcher = tokio::spawn(status::watch(cluster.registry.clone(), |line| {
        println!("    {line}");
    }));
    println!("[{}] waiting for the health probes to pass…", step + 1);
    cluster
        .wait_healthy(&["node1", "node2"], Duration::from_secs(args.wait))
        .await?;

    let ca = cluster.certs.ca();
    let port = cluster.front.port();
    let url = if port == 443 {
        "https://wso2.com".to_owned()
    } else {
        format!("https://wso2.com:{port}")
    };
    println!();
    println!(
        "The cluster is up. Configuration: {}",
        cluster.config_file.display()
    );
    println!(
        "  curl:    curl --resolve wso2.com:{port}:127.0.0.1 --cacert {} -i {url}/carbon/",
        ca.display()
    );
    println!(
        "  browser: {url}/carbon/  (map wso2.com to 127.0.0.1, e.g. chromium --host-resolver-rules=\"MAP wso2.com 127.0.0.1\", and trust {})",
        ca.display()
    );
    if let Some(m) = cluster.manager {
        println!("  manager: http://{m}/balancer-manager");
    }
    println!("  login:   admin / admin");
    println!();

    let result = if args.demo {
        println!("Demo:");
        demo::run(&mut cluster, args.requests, &mut |line| println!("{line}"))
            .await
            .map(|_| ())
            .map_err(|e| format!("the demo failed: {e}").into())
    } else {
        println!("Press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
        Ok(())
    };
    watcher.abort();
    cluster.shutdown().await;
    result
}

/// `--config`: front real nodes.
async fn front(file: &PathBuf, args: &Args) -> Result<(), Error> {
    let config = ConfigFile::from_file(file)?;
    for (i, m) in config.file().balancer.members.iter().enumerate() {
        if !m.resolve.is_empty() {
            continue;
        }
        let host = m.url.host().unwrap_or_default();
        let port = m
            .url
            .port_u16()
            .unwrap_or(if m.url.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        if tokio::net::lookup_host((host, port)).await.is_err() {
            return Err(format!(
                "{}: `balancer.member[{i}].url`: the host {host} does not resolve: fix DNS, or add resolve = [\"IP:{port}\"] to the member",
                file.display()
            )
            .into());
        }
    }
    let balancer = config.build()?;
    let registry = balancer.registry().clone();
    let has_probe = config.file().balancer.health.is_some();
    let bound = balancer.bind().await?;
    println!("balancer listening on {}", bound.local_addr()?);
    if let Some(m) = bound.manager_addr() {
        println!("manager: http://{m}/balancer-manager");
    }
    let watcher = tokio::spawn(status::watch(registry.clone(), |line| {
        println!("    {line}");
    }));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(bound.serve(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let mut result = Ok(());
    if has_probe {
        let limit = Duration::from_secs(args.wait);
        let any_healthy = wait_for(&registry, limit, |snap| {
            snap.members().iter().any(|m| m.health() == Health::Healthy)
        })
        .await;
        if any_healthy.is_err() {
            result = Err(format!(
                "no member passed its health check within {}s: check that the nodes run, that their URLs and `resolve` lines are right, and that `trust_roots` holds the CA of their certificates",
                args.wait
            )
            .into());
        }
    }
    if result.is_ok() {
        println!("Press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    watcher.abort();
    result
}
