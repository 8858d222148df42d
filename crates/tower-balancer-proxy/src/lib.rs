//! HTTP forwarding for [`tower_balancer`]: what carries a request to the picked member and the
//! response back, the way Apache's `mod_proxy_http` does in front of a cluster.
//!
//! This release carries [`hygiene`]: hop-by-hop header removal and `X-Forwarded-*` /
//! `Forwarded` / `Via` with a trusted-proxies list; and [`rewrite`], Apache's
//! `ProxyPassReverse` for `Location`-like headers and `Set-Cookie` domains and paths.
//! Forwarding over hyper with TLS, serving and the balancer-manager page follow.

pub mod hygiene;
pub mod rewrite;
