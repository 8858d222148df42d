//! `cargo run --example is_cluster`: the two-node WSO2 Identity Server cluster behind a
//! TLS-terminating, session-aware balancer, reproduced in one process.
//!
//! ```text
//! cargo run --example is_cluster                       # start it; Ctrl-C stops it
//! cargo run --example is_cluster -- --demo             # walk the recipe's last step, check it
//! cargo run --example is_cluster -- --config lb.toml   # front real nodes from a TOML file
//! cargo run --example is_cluster -- --demo --from-apache  # the balancer imported from the
//!                                                      # recipe's Apache virtual host
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tower_balancer::registry::{AdminState, Health};
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
    /// The balancer's address (443 needs privileges) [default: 127.0.0.1:8443; with --config,
    /// the file's `server.listen`].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The balancer-manager's address (keep it on loopback) [default: 127.0.0.1:9000; with
    /// --config, the file's `manager.listen`].
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Run the scripted demo, print its transcript and exit (non-zero if it fails).
    #[arg(long)]
    demo: bool,
    /// Requests per step in the demo.
    #[arg(long, default_value_t = 20, value_name = "N")]
    requests: usize,
    /// Front the members a TOML file names (no nodes are started).
    #[arg(long, value_name = "FILE", conflicts_with = "demo")]
    config: Option<PathBuf>,
    /// Build the balancer from the recipe written as Apache would have it
    /// (examples/is_cluster/httpd-wso2.conf), through `tower-balancer import-apache`.
    #[arg(long, conflicts_with = "config")]
    from_apache: bool,
    /// How long to wait for members to pass their health checks.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    wait: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // warnings and errors (a member going down and why, a request that failed and its
    // causes) to stderr; the cluster's own lines go to stdout
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_target(false)
        .init();
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

/// Prints a line; a closed stdout (`| head`) costs the line, never the balancer.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn say(line: &str) {
    say!("{line}");
}

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
    options.listen = args
        .listen
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443)));
    options.admin = args
        .admin
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9000)));
    options.from_apache = args.from_apache;
    let mut step = 0;
    let mut cluster = Cluster::start(&options, &mut |line| {
        step += 1;
        say!("[{step}] {line}");
    })
    .await?;
    let watcher = tokio::spawn(status::watch(cluster.registry.clone(), |line| {
        say!("    {line}");
    }));
    say!("[{}] waiting for the health probes to pass…", step + 1);
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
    say("");
    say!(
        "The cluster is up. Configuration: {}",
        cluster.config_file.display()
    );
    say!(
        "  curl:    curl --resolve wso2.com:{port}:127.0.0.1 --cacert {} -i {url}/carbon/",
        ca.display()
    );
    say!(
        "  browser: {url}/carbon/  (map wso2.com to 127.0.0.1, e.g. chromium --host-resolver-rules=\"MAP wso2.com 127.0.0.1\", and trust {})",
        ca.display()
    );
    if let Some(m) = cluster.manager {
        say!("  manager: http://{m}/balancer-manager");
    }
    say!("  login:   admin / admin");
    say("");

    let result = if args.demo {
        say!("Demo:");
        demo::run(&mut cluster, args.requests, &mut |line| say!("{line}"))
            .await
            .map(|_| ())
            .map_err(|e| format!("the demo failed: {e}").into())
    } else {
        say!("Press Ctrl-C to stop.");
        tower_balancer_proxy::serve::shutdown_signal().await;
        Ok(())
    };
    watcher.abort();
    cluster.shutdown().await;
    result
}

/// `--config`: front real nodes.
async fn front(file: &PathBuf, args: &Args) -> Result<(), Error> {
    let config = ConfigFile::from_file(file)?;
    // the recipe stops on a member whose host does not resolve (the binary only warns)
    let lookups = config.clone();
    let unresolved = tokio::task::spawn_blocking(move || lookups.unresolved_members()).await?;
    if let Some(e) = unresolved.into_iter().next() {
        return Err(e.into());
    }
    let mut balancer = config.build()?;
    if let Some(addr) = args.listen {
        balancer.set_listen(addr);
    }
    if let Some(addr) = args.admin {
        balancer.set_manager_listen(Some(addr));
    }
    let registry = balancer.registry().clone();
    let has_probe = config.file().balancer.health.is_some();
    let bound = balancer.bind().await?;
    say!("balancer listening on {}", bound.local_addr()?);
    if let Some(m) = bound.manager_addr() {
        say!("manager: http://{m}/balancer-manager");
    }
    let watcher = tokio::spawn(status::watch(registry.clone(), |line| {
        say!("    {line}");
    }));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(bound.serve(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let mut stop = std::pin::pin!(tower_balancer_proxy::serve::shutdown_signal());
    let mut result = Ok(());
    let mut stopped = false;
    if has_probe {
        tokio::select! {
            r = wait_for_members(&registry, args.wait) => result = r,
            () = &mut stop => stopped = true,
        }
    }
    if result.is_ok() && !stopped {
        say!("Press Ctrl-C to stop.");
        stop.await;
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    watcher.abort();
    result
}

/// Waits until a member passes its health check, or says why none can.
async fn wait_for_members(
    registry: &tower_balancer::registry::Registry,
    seconds: u64,
) -> Result<(), Error> {
    let takes_requests = |snap: &tower_balancer::registry::Snapshot| {
        snap.members()
            .iter()
            .any(|m| matches!(m.state(), AdminState::Active | AdminState::Standby))
    };
    if !takes_requests(&registry.load()) {
        return Err("every member is disabled or draining (`status` in the file), so none is probed or takes requests: set status = \"active\" on at least one".into());
    }
    let limit = Duration::from_secs(seconds);
    wait_for(registry, limit, |snap| {
        snap.members().iter().any(|m| m.health() == Health::Healthy)
    })
    .await
    .map_err(|_| {
        format!(
            "no member passed its health check within {seconds}s: check that the nodes run, that their URLs and `resolve` lines are right, and that `trust_roots` holds the CA of their certificates"
        )
        .into()
    })
}
