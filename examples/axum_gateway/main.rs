//! `cargo run -p tower-balancer-examples --example axum_gateway -- http://127.0.0.1:9763 http://127.0.0.1:9764`
//!
//! An axum app that serves its own `/api/hello` and proxies everything else to the members
//! it is given: sticky sessions, failover, health probes, passive ejection, the
//! balancer-manager on a loopback port. The gateway itself is the 12 lines of [`gateway`].

use std::net::SocketAddr;

use axum::{routing::get, Router};
use tokio::net::TcpListener;
use tower_balancer_proxy::prelude::*;
use tower_balancer_proxy::proxy::ManagerTask;

/// The gateway: `/api/hello` is the app's own, the rest goes to `members` (`node1`, `node2`,
/// … in order). Returns the app and the manager's task; serve the app with
/// `into_make_service_with_connect_info::<SocketAddr>()` so members learn the client.
pub(crate) async fn gateway(
    manager: SocketAddr,
    members: &[String],
) -> Result<(Router, ManagerTask), BoxError> {
    let mut builder = Proxy::builder().health_check("/health");
    for (i, url) in members.iter().enumerate() {
        builder = builder.member(&format!("node{}", i + 1), url);
    }
    let proxy = builder.build()?;
    let manager = proxy.serve_manager(manager).await?;
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello from the gateway\n" }))
        .fallback_service(proxy.service());
    Ok((app, manager))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let members: Vec<String> = std::env::args().skip(1).collect();
    if members.is_empty() {
        return Err(
            "give the members' URLs: axum_gateway http://127.0.0.1:9763 http://127.0.0.1:9764"
                .into(),
        );
    }
    let (app, manager) = gateway("127.0.0.1:9000".parse()?, &members).await?;
    let listener = TcpListener::bind("127.0.0.1:8080").await?;
    println!("gateway on http://127.0.0.1:8080/ (own route /api/hello)");
    println!(
        "manager on http://{}/balancer-manager",
        manager.local_addr()
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
