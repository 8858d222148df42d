//! HTTP forwarding for [`tower_balancer`]: what carries a request to the picked member and the
//! response back, the way Apache's `mod_proxy_http` does in front of a cluster.
//!
//! Quick start, plain HTTP, against two members this example starts on loopback: the
//! whole balancer from [`Proxy::builder`](proxy::Proxy::builder) (sticky sessions, failover,
//! probes, passive ejection), served by this crate's [`Server`](serve::Server):
//!
//! ```
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
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! # let (node1, node2) = (member("node1").await, member("node2").await);
//! let proxy = Proxy::builder()
//!     .member("node1", &format!("http://{node1}"))
//!     .member("node2", &format!("http://{node2}"))
//!     .build()?;
//! let server = Server::bind("127.0.0.1:0".parse()?, ServeConfig::new()).await?;
//! let addr = server.local_addr()?;
//! tokio::spawn(server.serve(proxy.service(), std::future::pending()));
//! # use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! # let mut client = tokio::net::TcpStream::connect(addr).await?;
//! # client.write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n").await?;
//! # let mut answer = String::new();
//! # client.read_to_string(&mut answer).await?;
//! # assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
//! # assert!(answer.contains("hello from node"));
//! # Ok(()) }
//! ```
//!
//! The same with TLS in front and members over HTTPS with their own certificates, trusted
//! through a private CA, their names resolved inside the process (the seed's setup), from
//! the layers themselves:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tower::ServiceBuilder;
//! use tower_balancer::balance::BalanceLayer;
//! use tower_balancer::failover::{FailoverConfig, FailoverLayer};
//! use tower_balancer::registry::{MemberId, MemberSpec, Registry};
//! use tower_balancer::sticky::{StickyConfig, StickyLayer};
//! use tower_balancer::strategy::RoundRobin;
//! use tower_balancer_proxy::forward::{ForwardConfig, UpstreamTls};
//! use tower_balancer_proxy::rewrite::ReverseRewrite;
//! use tower_balancer_proxy::serve::{server_tls_from_pem, ServeConfig, Server};
//!
//! let registry = Registry::new();
//! registry.insert(MemberSpec::new(MemberId::new("node1")?, "https://abc.com:9443".parse()?))?;
//! registry.insert(MemberSpec::new(MemberId::new("node2")?, "https://xyz.com:9444".parse()?))?;
//!
//! let forward = ForwardConfig::new()
//!     .tls(UpstreamTls::from_pem_roots(&std::fs::read("certs/ca.pem")?)?)
//!     .resolve("abc.com", ["127.0.0.1:9443".parse()?])
//!     .resolve("xyz.com", ["127.0.0.1:9444".parse()?])
//!     .reverse_rewrite(ReverseRewrite::new(&"https://wso2.com".parse()?))
//!     .build(registry.clone())?;
//!
//! let stack = ServiceBuilder::new()
//!     .layer(StickyLayer::new(registry.clone(), StickyConfig::builder().build()?))
//!     .layer(FailoverLayer::new(registry.clone(), FailoverConfig::default()))
//!     .layer(BalanceLayer::new(registry.clone(), RoundRobin::new()))
//!     .service(forward);
//!
//! let tls = server_tls_from_pem(&std::fs::read("certs/wso2.com.pem")?, &std::fs::read("certs/wso2.com.key")?)?;
//! let server = Server::bind("127.0.0.1:8443".parse()?, ServeConfig::new().tls(tls)).await?;
//! server.serve(stack, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! The modules, in the order a request meets them: [`serve`] accepts clients (plain or TLS,
//! HTTP/1.1 and HTTP/2, under a connection cap, with header-read timeouts and a framing
//! guard) and maps stack errors to statuses; [`limits`] bounds how long request and response
//! bodies may go silent; [`forward`] carries the request to the picked member over hyper-util's
//! pool with TLS to members ([`tls`] holds the TLS errors both share); [`hygiene`] removes
//! hop-by-hop and forged forwarding headers and writes `X-Forwarded-*` / `Forwarded` / `Via`
//! under a trusted-proxies list; [`rewrite`] is Apache's `ProxyPassReverse`. Beside them,
//! [`manager`] is Apache's balancer-manager page, and `config` (feature) builds the whole
//! balancer from a TOML file that mirrors an Apache virtual host.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod access_log;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
pub mod forward;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod hygiene;
pub mod limits;
pub mod manager;
pub mod metrics;
pub mod prelude;
pub mod proxy;
mod recent_values;
pub mod rewrite;
// the route tables are built by the file's reader (the `config` feature); without it the
// router only ever takes its single-stack path
#[cfg_attr(not(feature = "config"), allow(dead_code, unused_imports))]
mod routes;
pub mod serve;
pub mod tls;

/// The crate README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
