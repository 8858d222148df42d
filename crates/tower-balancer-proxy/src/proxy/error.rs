//! Why a [`Proxy`](super::Proxy) could not be built; each variant names what to change.

use tower_balancer::registry::RegistryError;
use tower_balancer::sticky::StickyConfigError;

use crate::manager::NonceError;
use crate::tls::TlsError;

/// A proxy could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A member's URL is not an `http://` or `https://` URL with a host.
    #[error("member `{route}`: `{url}` is not an http:// or https:// URL with a host")]
    Url {
        /// The member's route.
        route: String,
        /// The URL given.
        url: String,
    },
    /// The registry refused a member (a route that is not a valid id or given twice, a
    /// weight out of range).
    #[error(transparent)]
    Member(#[from] RegistryError),
    /// No member was given.
    #[error("the proxy has no members: add them with `member` or `member_spec`")]
    NoMembers,
    /// The sticky settings were refused.
    #[error(transparent)]
    Sticky(#[from] StickyConfigError),
    /// The TLS settings for members were refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The manager page's nonce could not be made.
    #[error(transparent)]
    Nonce(#[from] NonceError),
    /// `build` was called outside a Tokio runtime (probes and ejection run as tasks).
    #[error("build the proxy inside a Tokio runtime (in `#[tokio::main]` or a task): its probes run as tasks")]
    NoRuntime,
}
