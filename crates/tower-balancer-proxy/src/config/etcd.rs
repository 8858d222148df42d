//! `[balancer.etcd]`: members from an etcd key prefix, shared by every balancer instance.
//!
//! Why in the file: operators who run several balancers keep one membership in etcd and
//! give each instance the same few lines, instead of copying a members file to each. The
//! section is read by every build, so `--check` catches its mistakes; following etcd needs
//! the `etcd` feature (which needs `protoc` to build), and a build without it says so
//! instead of starting without members.
//!
//! ```toml
//! [balancer.etcd]
//! endpoints = ["https://10.0.0.5:2379", "https://10.0.0.6:2379"]
//! prefix = "/lb/wso2/members/"
//! user = "lb"                      # etcd --auth; password or password_file
//! password_file = "etcd.pass"
//! ca = "certs/etcd-ca.pem"         # TLS to etcd: its CA; certificate + key for client auth
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use tower_balancer::registry::{MemberId, Registry};

use super::build::{ConfigFile, NO_SPAN};
use super::error::ConfigError;
use super::plan::AbortOnDrop;
use super::values::duration_opt;

/// `[balancer.etcd]`: members from an etcd key prefix (APISIX and Traefik keep theirs
/// there); one key a member, its value JSON such as
/// `{"url": "https://abc.com:9443", "route": "node1", "weight": 2}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    /// etcd's client URLs (`http://host:2379`, or `https://` with `ca`).
    pub endpoints: Vec<String>,
    /// The key prefix the members are under, such as `/lb/wso2/members/`.
    pub prefix: String,
    /// The user to log in as, when etcd's authentication is on.
    #[serde(default)]
    pub user: Option<String>,
    /// The user's password (prefer `password_file`, which keeps it out of this file).
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the user's password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<Spanned<PathBuf>>,
    /// The CA certificate(s) for etcd's server certificates (PEM): TLS to etcd.
    #[serde(default)]
    pub ca: Option<Spanned<PathBuf>>,
    /// A client certificate chain for etcd's `--client-cert-auth` (PEM), with `key`.
    #[serde(default)]
    pub certificate: Option<Spanned<PathBuf>>,
    /// The client certificate's private key (PEM).
    #[serde(default)]
    pub key: Option<Spanned<PathBuf>>,
    /// The name etcd's certificate is checked against, when not the endpoints' host.
    #[serde(default)]
    pub tls_name: Option<String>,
    /// How long connecting, reading or starting the watch may take (default 3 s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub timeout: Option<Duration>,
    /// The longest wait between two reconnection tries (default 5 s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub retry_max: Option<Duration>,
}

/// A running etcd source's settings, in builds that have one.
#[cfg(feature = "etcd")]
pub(crate) type EtcdSource = tower_balancer::discovery::EtcdDiscovery;

/// Builds without the `etcd` feature have no etcd source.
#[cfg(not(feature = "etcd"))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum EtcdSource {}

impl ConfigFile {
    /// The etcd source `[balancer.etcd]` asks for, checked and with its files read.
    pub(super) fn etcd(&self) -> Result<Option<EtcdSource>, ConfigError> {
        let Some(e) = &self.file.balancer.etcd else {
            return Ok(None);
        };
        if cfg!(not(feature = "etcd")) {
            // said first: nothing else about the section matters to a build that cannot
            // use it (a missing password file was said before, and then this)
            return Err(self.err(NO_SPAN, "balancer.etcd", NOT_BUILT));
        }
        let key = |k: &str| format!("balancer.etcd.{k}");
        if e.password.is_some() && e.password_file.is_some() {
            return Err(self.err(
                NO_SPAN,
                &key("password"),
                "give password or password_file, not both",
            ));
        }
        let password = match (&e.password, &e.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(f)) => {
                let bytes = self.read(f, &key("password_file"))?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    self.err(Some(f), &key("password_file"), "the password is not UTF-8")
                })?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            (None, None) => None,
        };
        if password.is_some() != e.user.is_some() {
            return Err(self.err(
                NO_SPAN,
                &key("user"),
                "user and a password go together: give both or neither",
            ));
        }
        if e.certificate.is_some() != e.key.is_some() {
            return Err(self.err(
                NO_SPAN,
                &key("certificate"),
                "certificate and key go together: give both or neither",
            ));
        }
        if e.ca.is_none() && (e.certificate.is_some() || e.tls_name.is_some()) {
            return Err(self.err(
                NO_SPAN,
                &key("ca"),
                "TLS to etcd needs `ca`, the CA certificate its server certificates are signed by",
            ));
        }
        let tls = match &e.ca {
            Some(ca) => {
                let ca = self.read(ca, &key("ca"))?;
                let client = match (&e.certificate, &e.key) {
                    (Some(c), Some(k)) => Some((
                        self.read(c, &key("certificate"))?,
                        self.read(k, &key("key"))?,
                    )),
                    _ => None,
                };
                Some((ca, client, e.tls_name.clone()))
            }
            None => None,
        };
        let user = e.user.clone().zip(password);
        // the file's own members stand: etcd never takes their routes
        let inline: Vec<MemberId> = self
            .file
            .balancer
            .members
            .iter()
            .map(|m| m.route.get_ref().id().clone())
            .collect();
        build(e, user, tls, inline).map_err(|m| self.err(NO_SPAN, "balancer.etcd", m))
    }
}

type Tls = (Vec<u8>, Option<(Vec<u8>, Vec<u8>)>, Option<String>);

#[cfg(feature = "etcd")]
fn build(
    e: &EtcdSection,
    user: Option<(String, String)>,
    tls: Option<Tls>,
    inline: Vec<MemberId>,
) -> Result<Option<EtcdSource>, String> {
    use tower_balancer::discovery::{EtcdDiscovery, EtcdTls};
    let mut b = EtcdDiscovery::builder(e.endpoints.iter().cloned(), e.prefix.clone())
        .reserve_routes(inline);
    if let Some((u, p)) = user {
        b = b.user(u, p);
    }
    if let Some((ca, client, name)) = tls {
        let mut t = EtcdTls::new(ca);
        if let Some((cert, key)) = client {
            t = t.client_certificate(cert, key);
        }
        if let Some(n) = name {
            t = t.domain_name(n);
        }
        b = b.tls(t);
    }
    if let Some(t) = e.timeout {
        b = b.timeout(t);
    }
    if let Some(t) = e.retry_max {
        b = b.retry_max(t);
    }
    b.build().map(Some).map_err(|e| e.to_string())
}

#[cfg(not(feature = "etcd"))]
fn build(
    _: &EtcdSection,
    _: Option<(String, String)>,
    _: Option<Tls>,
    _: Vec<MemberId>,
) -> Result<Option<EtcdSource>, String> {
    Err(NOT_BUILT.to_owned())
}

/// What a build without the `etcd` feature says of `[balancer.etcd]`.
const NOT_BUILT: &str = "this build cannot follow etcd: build tower-balancer with `--features etcd` (which needs protoc, Debian's protobuf-compiler)";

/// Puts the members etcd has now into `registry` (within the source's timeout), so the
/// balancer does not start empty; when etcd cannot be read, it starts with the members it
/// has and the source keeps trying.
#[cfg(feature = "etcd")]
pub(crate) async fn initial(source: &EtcdSource, registry: &Registry) {
    if let Err(e) = source.read_into(registry).await {
        tracing::warn!(error = %e, "starting without etcd's members");
    }
}

#[cfg(not(feature = "etcd"))]
pub(crate) async fn initial(source: &EtcdSource, _: &Registry) {
    match *source {}
}

/// A running etcd source: its task, and what it has put in the registry.
#[derive(Debug)]
pub(crate) struct Following {
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    task: AbortOnDrop,
    source: EtcdSource,
}

/// Follows etcd until the returned handle is dropped, draining members whose keys go for
/// `drain`; taking over from `previous` (a reload), it removes what that one added and no
/// longer names.
#[cfg(feature = "etcd")]
pub(crate) fn spawn(
    mut source: EtcdSource,
    previous: Option<&Following>,
    registry: &Registry,
    drain: Duration,
) -> Following {
    if let Some(p) = previous {
        source = source.replacing(&p.source);
    }
    Following {
        task: AbortOnDrop::spawn(source.clone().run(registry, drain)),
        source,
    }
}

#[cfg(not(feature = "etcd"))]
pub(crate) fn spawn(
    source: EtcdSource,
    _: Option<&Following>,
    _: &Registry,
    _: Duration,
) -> Following {
    match source {}
}

impl Following {
    /// The members this source put in the registry and has not removed.
    #[cfg(feature = "etcd")]
    pub(crate) fn announced(&self) -> Vec<tower_balancer::registry::MemberId> {
        self.source.announced()
    }

    #[cfg(not(feature = "etcd"))]
    pub(crate) fn announced(&self) -> Vec<tower_balancer::registry::MemberId> {
        match self.source {}
    }

    /// Stops following and drains every member this source put in the registry (the
    /// section was removed on reload).
    #[cfg(feature = "etcd")]
    pub(crate) fn retire(self, registry: &Registry, drain: Duration) -> AbortOnDrop {
        drop(self.task);
        let removes: Vec<Result<_, std::convert::Infallible>> = self
            .source
            .announced()
            .into_iter()
            .map(|id| Ok(tower::discover::Change::Remove(id)))
            .collect();
        AbortOnDrop::spawn(
            registry
                .discover(futures_util::stream::iter(removes))
                .drain_removed(drain),
        )
    }

    #[cfg(not(feature = "etcd"))]
    pub(crate) fn retire(self, _: &Registry, _: Duration) -> AbortOnDrop {
        match self.source {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;

    const BASE: &str = "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n[balancer]\nname = \"b\"\n[balancer.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/lb/m/\"\n";

    fn build(extra: &str) -> Result<(), ConfigError> {
        let text = format!("{BASE}{extra}");
        ConfigFile::from_toml(&text, Path::new("lb.toml"))?
            .build()
            .map(drop)
    }

    #[test]
    fn an_etcd_section_alone_is_a_balancer() {
        let r = build("");
        if cfg!(feature = "etcd") {
            r.unwrap();
        } else {
            let e = r.unwrap_err();
            assert_eq!(e.key(), Some("balancer.etcd"), "{e}");
            assert!(e.to_string().contains("--features etcd"), "{e}");
        }
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            ("user = \"lb\"\n", "balancer.etcd.user"),
            ("password = \"p\"\n", "balancer.etcd.user"),
            (
                "user = \"lb\"\npassword = \"p\"\npassword_file = \"f\"\n",
                "balancer.etcd.password",
            ),
            (
                "user = \"lb\"\npassword_file = \"/no/such/file\"\n",
                "balancer.etcd.password_file",
            ),
            ("ca = \"/no/such/ca.pem\"\n", "balancer.etcd.ca"),
            ("certificate = \"c.pem\"\n", "balancer.etcd.certificate"),
            ("tls_name = \"etcd.test\"\n", "balancer.etcd.ca"),
            ("timeout = \"soon\"\n", "balancer.etcd.timeout"),
            ("colour = 1\n", "balancer.etcd.colour"),
        ];
        for (extra, key) in cases {
            let e = build(extra).unwrap_err();
            // a build without etcd says so first, whatever else is wrong but what the file's
            // reading refuses (an unknown key, a value that is not a duration)
            let at_parse = ["colour", "timeout"].iter().any(|k| extra.starts_with(k));
            let key = if cfg!(feature = "etcd") || at_parse {
                key
            } else {
                "balancer.etcd"
            };
            assert_eq!(e.key(), Some(key), "{extra}: {e}");
        }
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn the_source_refuses_what_cannot_work() {
        let endpoints = "[\"http://127.0.0.1:2379\"]";
        for (from, to, says) in [
            (endpoints, "[]", "at least one endpoint"),
            ("\"/lb/m/\"", "\"\"", "takes every key"),
            ("\"/lb/m/\"", "\"/\"", "takes every key"),
            ("\"/lb/m/\"", "\"/lb/m\"", "does not end with `/`"),
            (
                endpoints,
                "[\"ftp://127.0.0.1:2379\"]",
                "http:// or https://",
            ),
            (
                endpoints,
                "[\"http://u:p@127.0.0.1:2379\"]",
                "user name or password",
            ),
            (
                endpoints,
                "[\"https://127.0.0.1:2379\"]",
                "needs TLS settings",
            ),
            (endpoints, "[\"http://127.0.0.1:2379/v3\"]", "no path"),
            (endpoints, "[\"127.0.0.1:0\"]", "port outside"),
            (endpoints, "[\"h:2379\", \"h:2379\"]", "listed twice"),
        ] {
            let text = BASE.replace(from, to);
            let e = ConfigFile::from_toml(&text, Path::new("lb.toml"))
                .and_then(|c| c.build().map(drop))
                .unwrap_err();
            assert!(e.to_string().contains(says), "{to}: {e}");
        }
    }
}
