//! The settings of an etcd source, checked before it starts: endpoints, prefix, login, TLS,
//! timeouts; and the errors a source reports.
//!
//! Why apart from the source: what an operator can get wrong is refused here, with the
//! setting named, before any connection is tried.

use std::fmt;
use std::time::Duration;

use etcd_client::{Certificate, Identity, TlsOptions};

use super::etcd::EtcdDiscovery;
use super::etcd_members::Announced;

/// An etcd source could not be set up, or etcd could not be read or watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The settings cannot work.
    #[error("etcd settings: {0}")]
    Settings(String),
    /// No endpoint answered, or authentication failed.
    #[error("cannot connect to etcd at {endpoints}: {message}; keeping the last good members")]
    Connect {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What the client said.
        message: String,
    },
    /// Reading the prefix failed.
    #[error("reading `{prefix}` from etcd: {message}; keeping the last good members")]
    Read {
        /// The key prefix.
        prefix: String,
        /// What the client said.
        message: String,
    },
    /// The watch failed or ended; the source reconnects.
    #[error(
        "watching `{prefix}` in etcd: {message}; keeping the last good members and reconnecting"
    )]
    Watch {
        /// The key prefix.
        prefix: String,
        /// What the client or server said.
        message: String,
    },
    /// etcd compacted its history past the revision the watch was to resume from.
    #[error("etcd compacted its history to revision {compacted}, past where the watch of `{prefix}` stopped; reading the prefix again")]
    Compacted {
        /// The key prefix.
        prefix: String,
        /// The oldest revision etcd still has.
        compacted: i64,
    },
    /// No key under the prefix names a member: the last good members stay (delete keys one
    /// by one down to one member; a balancer with none would refuse every request).
    #[error("no key under `{prefix}` names a member; keeping the last good members")]
    Empty {
        /// The key prefix.
        prefix: String,
    },
    /// A key's value is not a member; the key keeps its last good member, if it had one.
    #[error("etcd key `{key}`: {message}; the key keeps its last good member")]
    Value {
        /// The key.
        key: String,
        /// What is wrong with the value.
        message: String,
    },
}

/// TLS to etcd: the CA that signs its certificates, and optionally a client certificate.
#[derive(Clone)]
pub struct EtcdTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl EtcdTls {
    /// Trusts the CA certificates in `ca_pem` (PEM) for etcd's server certificates.
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca_pem: ca_pem.into(),
            identity: None,
            domain: None,
        }
    }

    /// Presents this client certificate chain and key (both PEM), for etcd's
    /// `--client-cert-auth`.
    #[must_use]
    pub fn client_certificate(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.identity = Some((cert_pem, key_pem));
        self
    }

    /// Checks etcd's certificate against `name` instead of each endpoint's host.
    #[must_use]
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    pub(super) fn options(&self) -> TlsOptions {
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        if let Some(d) = &self.domain {
            tls = tls.domain_name(d.clone());
        }
        tls
    }
}

/// Settings for an [`EtcdDiscovery`], made by [`EtcdDiscovery::builder`].
#[derive(Clone)]
#[must_use]
pub struct EtcdDiscoveryBuilder {
    pub(super) endpoints: Vec<String>,
    pub(super) prefix: String,
    pub(super) user: Option<(String, String)>,
    pub(super) tls: Option<EtcdTls>,
    pub(super) timeout: Duration,
    pub(super) retry_min: Duration,
    pub(super) retry_max: Duration,
    pub(super) keep_alive: Duration,
    pub(super) reserved: std::sync::Arc<std::collections::BTreeSet<crate::registry::MemberId>>,
}

impl fmt::Debug for EtcdDiscoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDiscoveryBuilder")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("retry", &(self.retry_min, self.retry_max))
            .field("keep_alive", &self.keep_alive)
            .field("reserved", &self.reserved)
            .finish()
    }
}

impl EtcdDiscoveryBuilder {
    /// Logs in as `user` (etcd's `--auth` on): the user needs read access to the prefix.
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Routes another source owns, such as the members written in the balancer's own file:
    /// a key that names one is refused with a warning and the other source's member stands,
    /// on every instance alike, whatever order the two were read in.
    pub fn reserve_routes(
        mut self,
        routes: impl IntoIterator<Item = crate::registry::MemberId>,
    ) -> Self {
        self.reserved = std::sync::Arc::new(routes.into_iter().collect());
        self
    }

    /// Speaks TLS to etcd (the endpoints are then `https://`, or given without a scheme).
    pub fn tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How long connecting, logging in, reading the prefix or starting the watch may take
    /// (default 3 s).
    pub const fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The first wait before reconnecting after etcd was lost (default 100 ms); it doubles
    /// after every failed try, up to [`retry_max`](Self::retry_max), with jitter so several
    /// balancers do not reconnect in step.
    pub const fn retry_min(mut self, d: Duration) -> Self {
        self.retry_min = d;
        self
    }

    /// The longest wait between two tries (default 5 s).
    pub const fn retry_max(mut self, d: Duration) -> Self {
        self.retry_max = d;
        self
    }

    /// The HTTP/2 keep-alive ping interval on the watch connection (default 10 s): an etcd
    /// that stops answering without closing the connection is given up after two intervals.
    pub const fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }

    /// Makes the source. Connecting starts when its stream is polled.
    ///
    /// # Errors
    /// [`EtcdError::Settings`] for no endpoints, an empty prefix, a zero timeout or retry
    /// wait, or `http://` endpoints with TLS settings.
    pub fn build(self) -> Result<EtcdDiscovery, EtcdError> {
        let bad = |m: String| Err(EtcdError::Settings(m));
        if self.endpoints.is_empty() {
            return bad("give at least one endpoint".to_owned());
        }
        let p = &self.prefix;
        if p.is_empty() || p == "/" {
            return bad(format!("the prefix `{p}` takes every key in etcd: give the key prefix the members are under, such as `/lb/wso2/members/`"));
        }
        if !p.ends_with('/') {
            return bad(format!("the prefix `{p}` does not end with `/`, so it would also take keys such as `{p}x` and `{p}2/y`: write `{p}/`"));
        }
        for (what, d) in [
            ("the timeout", self.timeout),
            ("retry_min", self.retry_min),
            ("keep_alive", self.keep_alive),
        ] {
            if d.is_zero() {
                return bad(format!("{what} must be longer than zero"));
            }
        }
        if self.retry_max < self.retry_min {
            return bad(format!(
                "retry_max ({:?}) is shorter than the first wait, retry_min ({:?})",
                self.retry_max, self.retry_min
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.endpoints {
            check_endpoint(e, self.tls.is_some()).map_err(|m| {
                EtcdError::Settings(format!("endpoint `{}`: {m}", e.escape_debug()))
            })?;
            if !seen.insert(e.trim_end_matches('/')) {
                return bad(format!("endpoint `{}` is listed twice", e.escape_debug()));
            }
        }
        Ok(EtcdDiscovery::new(self, Announced::default()))
    }
}

/// An etcd endpoint: `http://host:port` without TLS, `https://host:port` with it, or
/// `host:port` either way; nothing after the port.
fn check_endpoint(e: &str, tls: bool) -> Result<(), &'static str> {
    let full = if e.contains("://") {
        e.to_owned()
    } else {
        format!("http://{e}")
    };
    let u: http::Uri = full.parse().map_err(|_| "not a URL or host:port")?;
    match u.scheme_str() {
        Some("http") if tls && e.contains("://") => {
            return Err("http:// with TLS settings: write https:// or leave the scheme out")
        }
        Some("https") if !tls => return Err("https:// needs TLS settings (the CA at least)"),
        Some("http" | "https") => {}
        _ => return Err("etcd is reached over http:// or https:// only"),
    }
    let Some(a) = u.authority() else {
        return Err("no host");
    };
    if a.as_str().contains('@') {
        return Err(
            "a user name or password in the URL is never sent: give `user` and a password instead",
        );
    }
    if u.port().is_some() && u.port_u16().is_none_or(|p| p == 0) {
        return Err("a port outside 1-65535");
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() {
        return Err("etcd's gRPC endpoint has no path: give scheme, host and port only");
    }
    Ok(())
}
