//! Header hygiene in both directions.
//!
//! Why a module of its own: reverse proxies have a long CVE history right here. Apache
//! CVE-2022-31813 and Traefik CVE-2024-45410: a client listing `X-Forwarded-For` in
//! `Connection` made the proxy drop the `X-Forwarded-*` headers it had just added, so the
//! member saw the proxy's address instead of the client's. Small Rust proxies forward
//! hop-by-hop headers or lose `X-Forwarded-For`. The order here is the fix: [`strip_hop_by_hop`]
//! runs first, on what the client sent, and only then does [`Forwarding::apply`] add ours.

mod cookie;
mod forwarded;
mod hop;
mod host;
mod pass_only;
mod real_client;
mod spoofable;
mod trusted;

pub use cookie::join_cookie_fields;
pub use forwarded::{Forwarding, ForwardingError};
pub(crate) use hop::{connection_tokens, is_hop_by_hop, strip_hop_by_hop_answer};
pub use hop::{strip_hop_by_hop, HOP_BY_HOP};
pub use host::is_valid_host;
pub use pass_only::PassOnly;
pub use real_client::real_client;
pub use spoofable::{is_forwarding_header, strip_forwarding_headers};
pub use trusted::TrustedProxies;
