//! The whole balancer as one service: members given once, sticky → failover → balance →
//! forward composed in the one right order, probes and passive ejection running, errors
//! already answered as statuses.
//!
//! Why: the layers are public for custom stacks, but a gateway that only wants "these
//! members, sticky, failing over, health-checked" should not have to know their order, pass
//! the registry to four constructors, or map errors to statuses itself. [`Proxy::builder`]
//! does it with the defaults of the configuration file (60 s timeouts, passive ejection,
//! retry budget, TCP probes), and hands back the registry and the manager page.
//!
//! [`ProxyService`] is `Clone`, `Sync` and has `Error = Infallible`, so it mounts as axum's
//! `fallback_service` / `nest_service`, and serves from this crate's
//! [`Server`] or hyper's `serve_connection` (through hyper-util's
//! `TowerToHyperService`). **Available with the crate feature `axum`**: the client's address
//! is read from axum's `ConnectInfo<SocketAddr>`; without the feature, give requests a
//! [`ClientAddr`] extension (the crate's `Server` does), or no `X-Forwarded-For` is written
//! and a warning says so once.
//!
//! In an axum app (`tower-balancer-proxy = { version = "…", features = ["axum"] }`): your
//! own routes, everything else to the members, the manager on a loopback port:
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{routing::get, Router};
//! use tower_balancer_proxy::prelude::*;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), BoxError> {
//!     let proxy = Proxy::builder()
//!         .member("node1", "http://127.0.0.1:9763")
//!         .member("node2", "http://127.0.0.1:9764")
//!         .health_check("/")
//!         .build()?;
//!     let _manager = proxy.serve_manager("127.0.0.1:9000".parse()?).await?;
//!     let app = Router::new()
//!         .route("/api/hello", get(|| async { "hello\n" }))
//!         .fallback_service(proxy.service());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//!     Ok(())
//! }
//! ```
//!
//! Used on its own, as a tower service:
//!
//! ```
//! use tower::ServiceExt;
//! use tower_balancer_proxy::prelude::*;
//! # async fn member(name: &'static str) -> std::net::SocketAddr {
//! #     use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! #     let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let addr = l.local_addr().unwrap();
//! #     tokio::spawn(async move {
//! #         while let Ok((mut s, _)) = l.accept().await {
//! #             let mut buf = [0u8; 4096];
//! #             let _ = s.read(&mut buf).await;
//! #             let body = format!("hello from {name}");
//! #             let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
//! #             let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
//! #         }
//! #     });
//! #     addr
//! # }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! # let (node1, node2) = (member("node1").await, member("node2").await);
//! let proxy = Proxy::builder()
//!     .member("node1", &format!("http://{node1}"))
//!     .member("node2", &format!("http://{node2}"))
//!     .build()?;
//! let res = proxy.service().oneshot(http::Request::new(String::new())).await?;
//! assert_eq!(res.status(), 200);
//! assert!(res.headers()["set-cookie"].to_str()?.starts_with("ROUTEID="));
//! # Ok(()) }
//! ```
//!
//! [`ClientAddr`]: tower_balancer::client::ClientAddr

mod builder;
mod error;
mod optional;
pub(crate) mod request_id;
mod service;
mod stack;
mod tracing_layers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tower_balancer::health::{HealthProbeTask, ReadmissionTask};
use tower_balancer::registry::Registry;

pub use builder::ProxyBuilder;
pub use error::ProxyError;
pub use service::{ProxyBody, ProxyFuture, ProxyService};
#[cfg(feature = "config")]
pub(crate) use stack::StackPlan;

use crate::manager::ManagerService;
use crate::metrics::Metrics;
use crate::serve::{ServeConfig, Server};

/// A built balancer: its [`service`](Self::service), live [`registry`](Self::registry) and
/// [`manager`](Self::manager). Its probes and ejection run while this or any clone of its
/// service is alive.
#[derive(Debug, Clone)]
pub struct Proxy {
    service: ProxyService,
    registry: Registry,
    manager: ManagerService,
    metrics: Metrics,
}

/// The tasks that run beside a proxy, stopped when the last handle to them goes.
#[derive(Debug)]
pub(crate) struct Background {
    pub(crate) _probe: Option<HealthProbeTask>,
    pub(crate) _readmissions: ReadmissionTask,
}

impl Proxy {
    /// Starts a builder: round robin, sticky on `JSESSIONID` and a signed `ROUTEID` cookie,
    /// failover, TCP probes every 2 s, passive ejection, 60 s timeouts.
    #[must_use]
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::new()
    }

    /// The service that balances requests: clone it freely.
    #[must_use]
    pub fn service(&self) -> ProxyService {
        self.service.clone()
    }

    /// The live member registry: add, remove, drain and disable members through it.
    #[must_use]
    pub const fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The balancer-manager page and its JSON view, to mount behind authentication or serve
    /// on a loopback port ([`serve_manager`](Self::serve_manager)).
    #[must_use]
    pub const fn manager(&self) -> &ManagerService {
        &self.manager
    }

    /// Serves the manager page on `addr` (keep it on loopback) until the returned handle is
    /// dropped; the handle says the address bound (for port 0).
    ///
    /// # Errors
    /// The listener's error.
    pub async fn serve_manager(&self, addr: SocketAddr) -> Result<ManagerTask, io::Error> {
        let server = Server::bind(addr, ServeConfig::new()).await?;
        let local = server.local_addr()?;
        let manager = self.manager.clone().allow_hosts([local.ip().to_string()]);
        let task = tokio::spawn(server.serve(manager, std::future::pending()));
        Ok(ManagerTask { local, task })
    }

    pub(crate) const fn new(
        service: ProxyService,
        registry: Registry,
        manager: ManagerService,
        metrics: Metrics,
    ) -> Self {
        Self {
            service,
            registry,
            manager,
            metrics,
        }
    }

    /// The members' Prometheus metrics as a service (also served by the manager at
    /// `/metrics`); add your server's with [`Metrics::server`].
    #[must_use]
    pub const fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The manager page served on its own port; dropping this stops it.
#[derive(Debug)]
pub struct ManagerTask {
    local: SocketAddr,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl ManagerTask {
    /// The address the manager listens on.
    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for ManagerTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps the background tasks alive as long as any service clone.
pub(crate) type Keepalive = Arc<Background>;
