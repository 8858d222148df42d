//! Members from an etcd key prefix: one key a member, its value the member's settings.
//!
//! Why etcd: operators who run several balancers in front of a changing cluster keep the
//! membership in a store every instance can watch, as APISIX and Traefik do with etcd. DNS
//! cannot carry a member's weight, route, priority set or admin state, and a file has to be
//! copied to every instance; a key written once reaches every balancer within a round trip.
//!
//! The source reads the whole prefix, then watches it from the revision right after that
//! read, so no change between the two is missed. When it loses etcd (restart, network, a
//! leader election) it reconnects with a growing, jittered backoff and resumes the watch
//! where it stopped; if etcd compacted its history past that point in the meantime, it
//! reads the prefix again. The last good membership stays while etcd cannot be reached,
//! and a key whose value is not a valid member keeps its last good value.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, TlsOptions, WatchOptions,
    WatchStream,
};
use futures_core::Stream;
use tower::discover::Change;

use super::etcd_members::{Announced, Entries};
use crate::registry::{Discovery, MemberId, MemberSpec, Registry};

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
    /// etcd's revision is behind the one the source had read up to, or another cluster
    /// answers: it was restored from a backup, or wiped and started anew. The source reads
    /// the prefix again.
    #[error("etcd is at revision {revision} (the source had read up to {expected}) or is another cluster: restored or replaced; reading `{prefix}` again")]
    Rewound {
        /// The key prefix.
        prefix: String,
        /// etcd's revision now.
        revision: i64,
        /// The revision the source had read up to.
        expected: i64,
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

    fn options(&self) -> TlsOptions {
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
    endpoints: Vec<String>,
    prefix: String,
    user: Option<(String, String)>,
    tls: Option<EtcdTls>,
    timeout: Duration,
    retry_min: Duration,
    retry_max: Duration,
    keep_alive: Duration,
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
            .finish()
    }
}

impl EtcdDiscoveryBuilder {
    /// Logs in as `user` (etcd's `--auth` on): the user needs read access to the prefix.
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
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
        Ok(EtcdDiscovery {
            settings: self,
            announced: Announced::default(),
        })
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

/// A discovery source that follows a key prefix in etcd.
///
/// Each key under the prefix is one member; its value is JSON with the member's settings,
/// as in the balancer's configuration file:
///
/// ```text
/// /lb/wso2/members/node1 = {"url": "https://abc.com:9443", "route": "node1", "weight": 2}
/// /lb/wso2/members/node2 = {"url": "https://xyz.com:9444", "status": "+H", "lbset": 1}
/// ```
///
/// `url` is required; `route` defaults to the key's name after the prefix; `weight` (or
/// `loadfactor`, 1 by default), `lbset` (0), `status` (`+D`, `+H`, `+N` or `active`,
/// `disabled`, `standby`, `draining`) and `tls_name` are optional.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_balancer::discovery::EtcdDiscovery;
/// use tower_balancer::registry::Registry;
///
/// let registry = Registry::new();
/// let etcd = EtcdDiscovery::builder(["http://127.0.0.1:2379"], "/lb/wso2/members/").build()?;
/// // the members etcd has now, before serving
/// etcd.read_into(&registry).await?;
/// // then every change, for as long as it runs; members whose key is deleted drain for 30 s
/// tokio::spawn(etcd.run(&registry, Duration::from_secs(30)));
/// # Ok(()) }
/// ```
///
/// Clones share what the source has put in the registry; so does a source made
/// [`replacing`](Self::replacing) another.
#[derive(Debug, Clone)]
pub struct EtcdDiscovery {
    settings: EtcdDiscoveryBuilder,
    announced: Announced,
}

impl EtcdDiscovery {
    /// Follows the keys under `prefix` in the etcd cluster at `endpoints`
    /// (`http://127.0.0.1:2379`, or `host:port`).
    pub fn builder<E: Into<String>>(
        endpoints: impl IntoIterator<Item = E>,
        prefix: impl Into<String>,
    ) -> EtcdDiscoveryBuilder {
        EtcdDiscoveryBuilder {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: prefix.into(),
            user: None,
            tls: None,
            timeout: Duration::from_secs(3),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            keep_alive: Duration::from_secs(10),
        }
    }

    /// Takes over from `previous` (a reload that changes the endpoints or the prefix): this
    /// source's first read removes the members `previous` put in the registry that it does
    /// not name, and leaves alone the ones it names alike.
    #[must_use]
    pub fn replacing(mut self, previous: &EtcdDiscovery) -> Self {
        self.announced = previous.announced.clone();
        self
    }

    /// The members this source (or the one it replaced) has put in the registry and not
    /// removed since: what to drain when the source is dropped for good.
    #[must_use]
    pub fn announced(&self) -> Vec<MemberId> {
        self.announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The key prefix followed.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    /// Reads the members under the prefix once (for the members a balancer starts with).
    /// Keys whose values are not members are left out, with a warning each.
    ///
    /// # Errors
    /// [`EtcdError::Connect`] or [`EtcdError::Read`] when etcd cannot be reached or read
    /// within the timeout.
    pub async fn read(&self) -> Result<Vec<MemberSpec>, EtcdError> {
        let mut client = self.connect().await?;
        let mut entries = Entries::new(&self.settings.prefix, Announced::default());
        let (_, errors) = self.list(&mut client, &mut entries).await?;
        for e in errors {
            tracing::warn!(error = %e, "etcd member refused");
        }
        let (members, errors) = entries.members();
        for (_, e) in errors {
            tracing::warn!(error = %e, "etcd member refused");
        }
        Ok(members.into_values().collect())
    }

    /// Reads the members under the prefix once and puts them in `registry` (the members a
    /// balancer starts with), as this source's own: when it runs, its first read changes
    /// only what differs, and a source [`replacing`](Self::replacing) it removes them if it
    /// does not name them. Keys whose values are not members are left out, with a warning
    /// each. Returns how many members were put in.
    ///
    /// # Errors
    /// [`EtcdError::Connect`] or [`EtcdError::Read`] when etcd cannot be reached or read
    /// within the timeout; the registry is then unchanged.
    pub async fn read_into(&self, registry: &Registry) -> Result<usize, EtcdError> {
        let mut client = self.connect().await?;
        let mut entries = Entries::new(&self.settings.prefix, self.announced.clone());
        let (_, errors) = self.list(&mut client, &mut entries).await?;
        let mut put = 0;
        for change in errors.into_iter().map(Err).chain(entries.changes()) {
            match change {
                Ok(Change::Insert(_, spec)) => match registry.upsert(spec) {
                    Ok(_) => put += 1,
                    Err(e) => tracing::warn!(error = %e, "etcd member refused"),
                },
                Ok(Change::Remove(_)) => {}
                Err(e) => tracing::warn!(error = %e, "etcd member refused"),
            }
        }
        Ok(put)
    }

    /// The changes this source announces, forever: inserts for new or changed members,
    /// removes for deleted keys, and an error (which changes nothing) whenever etcd is lost,
    /// compacted, or a value is refused.
    pub fn into_stream(
        self,
    ) -> impl Stream<Item = Result<Change<MemberId, MemberSpec>, EtcdError>> + Send + 'static {
        let follow = Follow {
            entries: Entries::new(&self.settings.prefix, self.announced.clone()),
            source: self,
            client: None,
            watch: None,
            next_revision: None,
            cluster: None,
            failures: 0,
            pending: VecDeque::new(),
        };
        futures_util::stream::unfold(follow, |mut f| async move {
            loop {
                if let Some(item) = f.pending.pop_front() {
                    return Some((item, f));
                }
                f.step().await;
            }
        })
    }

    /// Applies this source to `registry` for as long as the future runs, draining members
    /// whose keys were deleted for `drain` before removing them.
    pub fn run(
        self,
        registry: &Registry,
        drain: Duration,
    ) -> Discovery<
        impl Stream<Item = Result<Change<MemberId, MemberSpec>, EtcdError>> + Send + 'static,
    > {
        registry.discover(self.into_stream()).drain_removed(drain)
    }

    async fn connect(&self) -> Result<Client, EtcdError> {
        let s = &self.settings;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(s.timeout)
            .with_keep_alive(s.keep_alive, s.keep_alive)
            .with_auto_token_refresh(true);
        if let Some((user, password)) = &s.user {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &s.tls {
            options = options.with_tls(tls.options());
        }
        // every endpoint at once, the first to answer wins: one that hangs or refuses
        // costs nothing while another answers
        let mut tries = tokio::task::JoinSet::new();
        for (i, endpoint) in s.endpoints.iter().enumerate() {
            let (endpoint, options, timeout) = (endpoint.clone(), options.clone(), s.timeout);
            tries.spawn(async move {
                let attempt = async {
                    let mut c = Client::connect([endpoint], Some(options)).await?;
                    // connecting may be lazy: an answer proves the endpoint serves
                    c.status().await?;
                    Ok::<_, etcd_client::Error>(c)
                };
                let r = match tokio::time::timeout(timeout, attempt).await {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (i, r)
            });
        }
        let mut failures = vec![String::new(); s.endpoints.len()];
        while let Some(done) = tries.join_next().await {
            match done {
                Ok((_, Ok(client))) => return Ok(client),
                Ok((i, Err(e))) => failures[i] = e,
                Err(_) => {}
            }
        }
        let message = s
            .endpoints
            .iter()
            .zip(&failures)
            .map(|(e, f)| format!("{e}: {f}"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(EtcdError::Connect {
            endpoints: s.endpoints.join(","),
            message,
        })
    }

    /// Reads the whole prefix into `entries`; the revision it was read at and the values
    /// refused.
    async fn list(
        &self,
        client: &mut Client,
        entries: &mut Entries,
    ) -> Result<(Revision, Vec<EtcdError>), EtcdError> {
        let s = &self.settings;
        let failed = |message: String| EtcdError::Read {
            prefix: s.prefix.clone(),
            message,
        };
        let get = client.get(s.prefix.as_str(), Some(GetOptions::new().with_prefix()));
        let resp = match tokio::time::timeout(s.timeout, get).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed(format!("no answer within {:?}", s.timeout))),
        };
        let header = resp
            .header()
            .ok_or_else(|| failed("the answer has no header".to_owned()))?;
        let at = Revision {
            revision: header.revision(),
            cluster: header.cluster_id(),
        };
        let errors = entries.replace(resp.kvs().iter().map(|kv| (kv.key(), kv.value())));
        Ok((at, errors))
    }
}

/// Where a read of the prefix stands in etcd's history.
#[derive(Debug, Clone, Copy)]
struct Revision {
    revision: i64,
    cluster: u64,
}

/// The source's state between two steps.
struct Follow {
    source: EtcdDiscovery,
    entries: Entries,
    client: Option<Client>,
    watch: Option<WatchStream>,
    /// The revision to watch from; `None` until the prefix has been read (or after a
    /// compaction made a new read necessary).
    next_revision: Option<i64>,
    /// The cluster the prefix was read from.
    cluster: Option<u64>,
    failures: u32,
    pending: VecDeque<Result<Change<MemberId, MemberSpec>, EtcdError>>,
}

impl Follow {
    /// Connects, reads, starts the watch or takes one watch message, whichever is next.
    async fn step(&mut self) {
        if self.client.is_none() {
            match self.source.connect().await {
                Ok(c) => self.client = Some(c),
                Err(e) => return self.lost(e).await,
            }
        }
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let Some(watch) = &mut self.watch else {
            let from = match self.next_revision {
                Some(r) => r,
                None => match self.source.list(client, &mut self.entries).await {
                    Ok((at, errors)) => {
                        self.pending.extend(errors.into_iter().map(Err));
                        self.pending.extend(self.entries.changes());
                        self.next_revision = Some(at.revision + 1);
                        self.cluster = Some(at.cluster);
                        at.revision + 1
                    }
                    Err(e) => return self.lost(e).await,
                },
            };
            return self.start_watch(from).await;
        };
        match watch.message().await {
            Ok(Some(resp)) => {
                if resp.compact_revision() > 0 {
                    // asked to resume from a revision etcd no longer has: read it all again
                    self.watch = None;
                    self.next_revision = None;
                    self.pending.push_back(Err(EtcdError::Compacted {
                        prefix: self.source.settings.prefix.clone(),
                        compacted: resp.compact_revision(),
                    }));
                    return;
                }
                if resp.canceled() {
                    let reason = format!("the watch was cancelled: {}", resp.cancel_reason());
                    return self.lost(self.watch_error(reason)).await;
                }
                let mut errors = Vec::new();
                for event in resp.events() {
                    let Some(kv) = event.kv() else { continue };
                    match event.event_type() {
                        EventType::Put => {
                            if let Err(e) = self.entries.put(kv.key(), kv.value()) {
                                errors.push(e);
                            }
                        }
                        EventType::Delete => self.entries.delete(kv.key()),
                    }
                    self.next_revision = Some(kv.mod_revision() + 1);
                }
                self.pending.extend(errors.into_iter().map(Err));
                self.pending.extend(self.entries.changes());
            }
            Ok(None) => {
                let e = self.watch_error("etcd closed the watch".to_owned());
                self.lost(e).await;
            }
            Err(e) => {
                let e = self.watch_error(e.to_string());
                self.lost(e).await;
            }
        }
    }

    async fn start_watch(&mut self, from: i64) {
        let Some(client) = &mut self.client else {
            return;
        };
        let s = &self.source.settings;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let started = tokio::time::timeout(s.timeout, async {
            let mut watch = client.watch(s.prefix.as_str(), Some(options)).await?;
            // the first answer says whether the watch was made
            let first = watch.message().await?;
            Ok::<_, etcd_client::Error>((watch, first))
        })
        .await;
        match started {
            Ok(Ok((watch, Some(first)))) if first.created() && !first.canceled() => {
                let (now, cluster) = first.header().map_or((from - 1, self.cluster), |h| {
                    (h.revision(), Some(h.cluster_id()))
                });
                if now + 1 < from || cluster != self.cluster {
                    // etcd is behind where we stopped, or another cluster answers: restored
                    // from a backup, or wiped and started anew on the same address. Resuming
                    // would wait for revisions that will never come, or skip writes of the
                    // new history: read the prefix again instead.
                    self.next_revision = None;
                    self.pending.push_back(Err(EtcdError::Rewound {
                        prefix: s.prefix.clone(),
                        revision: now,
                        expected: from - 1,
                    }));
                    return;
                }
                if self.failures > 0 {
                    tracing::info!(prefix = %s.prefix, revision = from, "following etcd again");
                }
                self.watch = Some(watch);
                self.failures = 0;
            }
            Ok(Ok((_, Some(first)))) if first.compact_revision() > 0 => {
                self.next_revision = None;
                self.pending.push_back(Err(EtcdError::Compacted {
                    prefix: s.prefix.clone(),
                    compacted: first.compact_revision(),
                }));
            }
            Ok(Ok((_, first))) => {
                let reason = first.map_or_else(
                    || "etcd closed the watch".to_owned(),
                    |f| format!("the watch was not made: {}", f.cancel_reason()),
                );
                let e = self.watch_error(reason);
                self.lost(e).await;
            }
            Ok(Err(e)) => {
                let e = self.watch_error(e.to_string());
                self.lost(e).await;
            }
            Err(_) => {
                let e = self.watch_error(format!("no answer within {:?}", s.timeout));
                self.lost(e).await;
            }
        }
    }

    fn watch_error(&self, message: String) -> EtcdError {
        EtcdError::Watch {
            prefix: self.source.settings.prefix.clone(),
            message,
        }
    }

    /// etcd was lost: says so, forgets the connection and waits before the next try. The
    /// revision to resume from is kept.
    async fn lost(&mut self, error: EtcdError) {
        self.pending.push_back(Err(error));
        self.watch = None;
        self.client = None;
        let s = &self.source.settings;
        let doubled = s
            .retry_min
            .saturating_mul(1u32 << self.failures.min(16))
            .min(s.retry_max);
        self.failures = self.failures.saturating_add(1);
        // between half and all of the wait, so balancers that lost etcd together spread out
        let wait = doubled.mul_f64(0.5 + fastrand::f64() / 2.0);
        tokio::time::sleep(wait).await;
    }
}
