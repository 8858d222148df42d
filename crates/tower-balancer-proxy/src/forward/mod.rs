//! Forwarding to the picked member over hyper, HTTP/1.1 or HTTP/2, plain or TLS.
//!
//! Why hyper-util's pooled client: connection reuse to members is most of a proxy's speed,
//! and its pool, HTTP/2 by ALPN and timeouts are well kept; this module adds what a balancer
//! needs around it: the picked member's address, hygiene and forwarding headers, name
//! overrides, trust roots, reverse rewriting, and errors that tell failover whether anything
//! was sent.

mod config;
mod error;
mod future;
mod names;
mod resolve;
mod service;
mod tls;

/// The TLS settings error, also at [`crate::tls::TlsError`].
pub use crate::tls::TlsError;
pub use config::{ForwardConfig, ProbeClient, MAX_MEMBER_HEAD_BYTES};
pub use error::NotPicked;
pub use future::ResponseFuture;
pub use resolve::{Addrs, Resolver};
pub use service::Forward;
pub use tls::UpstreamTls;
