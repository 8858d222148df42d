//! Serving the stack to clients: plain or TLS, HTTP/1.1 or HTTP/2, with the limits a public
//! endpoint needs.
//!
//! Why not just hyper's examples: hyper's header-read timeout is off unless a timer is set
//! (a slowloris client then holds a connection forever), a TLS handshake needs its own
//! timeout, the client's address must reach `X-Forwarded-For`, and errors from the stack must
//! become 502/503/504 without leaking upstream error text.
//!
//! The common request (HTTP/1.1, no body) is read and answered by the server's own path
//! (`front`), which costs less than hyper's general server; every other request, and the
//! rest of its connection, is hyper's.

mod admission;
mod answer;
mod client_body;
mod config;
mod connection;
mod flood;
mod front;
mod going_away;
mod guard;
mod head_timer;
mod place;
mod plain_on_tls;
mod progress;
mod read_ahead;
mod reload;
mod server;
#[cfg_attr(not(feature = "config"), allow(dead_code))]
mod sni;
mod stack;
mod stats;
pub(crate) mod status;
mod stream_claim;
mod tasks;
mod timeout;
mod under_tls;
mod unsent;
mod upload_limit;
mod window;

pub use client_body::ClientBody;
pub use config::{
    default_max_connections, server_tls_from_pem, ServeConfig, DEFAULT_HTTP2_MAX_STREAMS,
    DEFAULT_HTTP2_MAX_UPLOADS,
};
// a certificate and a key apart, for `--check` to name the file at fault
#[cfg_attr(not(feature = "config"), allow(unused_imports))]
pub(crate) use config::{chain_from_pem, key_from_pem};
pub use guard::{check_framing, FramingError};
pub use reload::{LiveSettings, Reloadable};
pub use server::Server;
// names for the virtual hosts' certificates: the file's reader (the `config` feature) uses them
#[cfg_attr(not(feature = "config"), allow(unused_imports))]
pub(crate) use sni::{server_tls_by_name, NamedCertificate};
pub use stack::Servable;
pub use stats::ServerStats;
pub use status::{client_status, ServeBody, StatusFuture, StatusOnError, StatusOnErrorLayer};
pub(crate) use stream_claim::StreamClaim;
pub(crate) use tasks::dropped_at_stop;

/// Completes on SIGTERM (what systemd and docker send) or Ctrl-C: give it to
/// [`Server::serve`] so a stop drains requests in flight instead of cutting them.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stopping: finishing requests in flight");
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
