//! Forwarding to the picked member, HTTP/1.1 or HTTP/2, plain or TLS.
//!
//! Why two client paths under one pool keyed by member: connection reuse to members is most
//! of a proxy's speed, and a balancer knows the member before it looks for a connection (no
//! key to hash). Requests without a body, most of what a balancer forwards, take the
//! client's own HTTP/1.1 path (`h1`): one write and the answer read in the request's own
//! task, by hyper's client's framing rules, and nothing but the socket kept while pooled.
//! Everything else (bodies, protocol switches, HTTP/2 members) goes over hyper's client
//! connections, well kept and tested against every framing attack. This module adds what a
//! balancer needs around them: the picked member's address, hygiene and forwarding
//! headers, name overrides, trust roots, reverse rewriting, and errors that tell failover
//! whether anything was sent.

mod body;
mod client;
mod client_h2;
mod config;
mod connect;
mod error;
mod future;
mod h1;
mod idle_relief;
mod names;
mod origin;
mod pool;
mod resolve;
mod send_stall;
mod service;
mod tls;
mod tunnel;

/// The TLS settings error, also at [`crate::tls::TlsError`].
pub use crate::tls::TlsError;
pub use body::{MemberBody, MemberBodyError};
pub use config::{ForwardConfig, ProbeClient, DEFAULT_TUNNEL_IDLE_TIMEOUT, MAX_MEMBER_HEAD_BYTES};
pub use error::NotPicked;
pub use future::ResponseFuture;
#[cfg(feature = "fuzzing")]
pub(crate) use h1::read_answer;
pub use h1::H1Error;
pub(crate) use idle_relief::close_idle_member_connections;
pub use resolve::{Addrs, Resolver};
pub use send_stall::DEFAULT_MEMBER_SEND_TIMEOUT;
pub use service::Forward;
pub use tls::UpstreamTls;
pub use tunnel::{Tunnel, TunnelBytes, TunnelFuture};
