//! An embeddable HTTP load balancer, as tower layers.
//!
//! tower-balancer does the job Apache's `mod_proxy_balancer` does in front of a cluster —
//! pick a member, keep sessions on their member, fail over when a member dies, probe health —
//! as [`tower`] layers you compose into your own hyper or axum server.
//!
//! A request flows through the stack from the outside in:
//!
//! ```text
//! client ─▶ Sticky ─▶ Failover ─▶ Balance ─▶ Forward (any per-member tower Service)
//! ```
//!
//! Quick start, plain HTTP, against two members this example starts on loopback. The
//! innermost service sends each request to the member the balancer picked; here a few lines
//! over hyper-util's client, in a real gateway the `tower-balancer-proxy` crate's `Forward`
//! (TLS, pooling, header hygiene) or its whole `Proxy` builder:
//!
//! ```
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_balancer::balance::{BalanceLayer, Picked};
//! use tower_balancer::failover::{FailoverConfig, FailoverLayer};
//! use tower_balancer::registry::{MemberId, MemberSpec, Registry};
//! use tower_balancer::sticky::{StickyConfig, StickyLayer};
//! use tower_balancer::strategy::RoundRobin;
//! use tower_balancer::BoxError;
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
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! # let (node1, node2) = (member("node1").await, member("node2").await);
//! let registry = Registry::new();
//! registry.insert(MemberSpec::new(MemberId::new("node1")?, format!("http://{node1}").parse()?))?;
//! registry.insert(MemberSpec::new(MemberId::new("node2")?, format!("http://{node2}").parse()?))?;
//!
//! let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//!     .build_http();
//! let forward = service_fn(move |mut req: http::Request<_>| {
//!     let member = req.extensions().get::<Picked>().map(|p| p.0.clone());
//!     let base = member.map(|m| m.endpoint().to_string()).unwrap_or_default();
//!     let target = format!("{}{}", base.trim_end_matches('/'), req.uri().path());
//!     *req.uri_mut() = target.parse().unwrap_or_default();
//!     client.request(req)
//! });
//!
//! let balancer = ServiceBuilder::new()
//!     .layer(StickyLayer::new(registry.clone(), StickyConfig::builder().build()?))
//!     .layer(FailoverLayer::new(registry.clone(), FailoverConfig::default()))
//!     .layer(BalanceLayer::new(registry.clone(), RoundRobin::new()))
//!     .service(forward);
//!
//! let res = balancer.oneshot(http::Request::new(http_body_util::Empty::<bytes::Bytes>::new())).await?;
//! assert_eq!(res.status(), 200);
//! assert!(res.headers()["set-cookie"].to_str()?.starts_with("ROUTEID=")); // the session's route
//! # Ok(()) }
//! ```
//!
//! The parts: the [`registry`] (members, admin state, health, live stats, lock-free
//! snapshots), [`discovery`] (DNS, any stream of changes), the [`strategy`] trait with seven
//! strategies, and the layers [`sticky`], [`failover`] and [`balance`], with [`health`]
//! (active probes, passive ejection, slow start) beside them. Errors from any layer map to a
//! client status with [`error::error_status`]. HTTP forwarding, serving, the
//! balancer-manager and the configuration file are in the `tower-balancer-proxy` crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod balance;
pub mod client;
pub mod deadline;
pub mod descriptors;
pub mod discovery;
pub mod error;
pub mod failover;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod log_budget;
pub mod outcome;
pub mod registry;
pub mod sticky;
pub mod strategy;
pub mod task_timer;
pub mod upstream;

/// The boxed error type the layers return, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The crate README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
