//! HTTP forwarding for [`tower_balancer`]: what carries a request to the picked member and the
//! response back, the way Apache's `mod_proxy_http` does in front of a cluster.
//!
//! This release carries [`forward`]: the forwarding service over hyper with TLS to members;
//! [`hygiene`]: hop-by-hop header removal and `X-Forwarded-*` /
//! `Forwarded` / `Via` with a trusted-proxies list; and [`rewrite`], Apache's
//! `ProxyPassReverse` for `Location`-like headers and `Set-Cookie` domains and paths.
//! [`serve`] serves the stack, plain or with TLS in front; HTTP/1.1 upgrades (WebSocket) are
//! tunnelled end to end. The balancer-manager page follows.

pub mod forward;
pub mod hygiene;
pub mod rewrite;
pub mod serve;
