//! Members from DNS: A/AAAA records with a fixed port, or SRV records.
//!
//! Why DNS: it is what Kubernetes headless services, Consul and most platforms already
//! publish, and what nginx (`resolve`), HAProxy (`server-template` with `resolvers`) and
//! Envoy (`STRICT_DNS`) read. We re-resolve when the answer's TTL runs out, bounded by a
//! floor (a TTL of 0 must not turn into a query loop) and a ceiling (a day-long TTL must not
//! hide a member change for a day), and keep the last good membership whenever an answer
//! is missing, empty or implausibly large.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::time::Instant;
use tower::discover::Change;

use super::dns_members::{Found, Membership, Refused};
use crate::registry::{Discovery, MemberId, MemberSpec, Registry};

/// A DNS discovery source could not be set up, or one resolution was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The system resolver configuration (`/etc/resolv.conf`) could not be read.
    #[error("cannot read the system resolver configuration: {0}; give name servers explicitly")]
    SystemConfig(String),
    /// The resolver could not be made from the settings.
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
    /// The scheme is not `http` or `https`.
    #[error("member scheme `{0}` is not http or https")]
    Scheme(String),
    /// The settings contradict each other.
    #[error("{0}")]
    Settings(&'static str),
    /// The lookup failed: no answer, a timeout, NXDOMAIN or a server failure.
    #[error("resolving {name}: {message}; keeping the last good members")]
    Resolve {
        /// The name looked up.
        name: String,
        /// What the resolver said.
        message: String,
    },
    /// The answer named no usable member.
    #[error("resolving {name}: the answer names no member; keeping the last good members")]
    Empty {
        /// The name looked up.
        name: String,
    },
    /// The answer named more members than allowed.
    #[error("resolving {name}: the answer names {count} members, more than the {max} allowed; keeping the last good members")]
    TooMany {
        /// The name looked up.
        name: String,
        /// Members in the answer.
        count: usize,
        /// The configured limit.
        max: usize,
    },
}

/// What to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsQuery {
    /// A and AAAA records of `name`; every address is a member on `port`.
    Addresses {
        /// The name, e.g. `wso2-is.default.svc.cluster.local`.
        name: String,
        /// The members' port.
        port: u16,
    },
    /// SRV records of `name` (e.g. `_https._tcp.wso2-is.example`): every target and port is a
    /// member, with the record's weight (0 counts as 1) and priority (as the priority set).
    Srv {
        /// The SRV name.
        name: String,
    },
}

impl DnsQuery {
    fn name(&self) -> &str {
        match self {
            Self::Addresses { name, .. } | Self::Srv { name } => name,
        }
    }
}

/// Settings for a [`DnsDiscovery`], made by [`DnsDiscovery::addresses`] or
/// [`DnsDiscovery::srv`].
#[derive(Debug, Clone)]
#[must_use]
pub struct DnsDiscoveryBuilder {
    query: DnsQuery,
    scheme: String,
    prefix: String,
    name_servers: Vec<SocketAddr>,
    ttl_floor: Duration,
    ttl_ceiling: Duration,
    retry: Duration,
    remove_after: Duration,
    max_members: usize,
    timeout: Duration,
}

/// A discovery source that resolves one name again and again.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_balancer::discovery::DnsDiscovery;
/// use tower_balancer::registry::Registry;
///
/// let registry = Registry::new();
/// let dns = DnsDiscovery::srv("_http._tcp.wso2-is.example")
///     .ttl_floor(Duration::from_secs(5))
///     .build()?;
/// // inserts, updates and drains members for as long as it runs
/// tokio::spawn(dns.run(&registry, Duration::from_secs(30)));
/// # Ok(()) }
/// ```
pub struct DnsDiscovery {
    resolver: TokioResolver,
    settings: DnsDiscoveryBuilder,
}

impl fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscovery")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl DnsDiscovery {
    /// Members are the A and AAAA addresses of `name`, on `port`.
    pub fn addresses(name: impl Into<String>, port: u16) -> DnsDiscoveryBuilder {
        DnsDiscoveryBuilder::new(DnsQuery::Addresses {
            name: name.into(),
            port,
        })
    }

    /// Members are the targets of the SRV records of `name`.
    pub fn srv(name: impl Into<String>) -> DnsDiscoveryBuilder {
        DnsDiscoveryBuilder::new(DnsQuery::Srv { name: name.into() })
    }

    /// The changes this source announces, forever: inserts when members appear or change,
    /// removes when they have been missing for the hold-down time, and an error (which
    /// changes nothing) when a resolution is not taken.
    pub fn into_stream(
        self,
    ) -> impl Stream<Item = Result<Change<MemberId, MemberSpec>, DnsError>> + Send + 'static {
        let s = &self.settings;
        let state = State {
            membership: Membership::new(s.remove_after, s.max_members),
            pending: VecDeque::new(),
            next_at: Instant::now(),
            source: self,
        };
        futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(item) = st.pending.pop_front() {
                    return Some((item, st));
                }
                tokio::time::sleep_until(st.next_at).await;
                st.resolve_once().await;
            }
        })
    }

    /// Applies this source to `registry` for as long as the future runs, draining members
    /// that left DNS for `drain` before removing them.
    pub fn run(
        self,
        registry: &Registry,
        drain: Duration,
    ) -> Discovery<
        impl Stream<Item = Result<Change<MemberId, MemberSpec>, DnsError>> + Send + 'static,
    > {
        registry.discover(self.into_stream()).drain_removed(drain)
    }

    /// One lookup: the members it names and how long the answer is good for.
    async fn lookup(&self) -> Result<(Vec<Found>, Duration), String> {
        let s = &self.settings;
        let (scheme, prefix) = (s.scheme.as_str(), s.prefix.as_str());
        let (found, valid_until) = match &s.query {
            DnsQuery::Addresses { name, port } => {
                let answer = self
                    .resolver
                    .lookup_ip(name.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let looked_up: Arc<str> = Arc::from(name.trim_end_matches('.'));
                let found = answer
                    .iter()
                    .filter_map(|ip| Found::address(prefix, scheme, ip, *port))
                    .map(|f| f.looked_up_as(&looked_up))
                    .collect();
                (found, answer.valid_until())
            }
            DnsQuery::Srv { name } => {
                let answer = self
                    .resolver
                    .lookup(name.as_str(), RecordType::SRV)
                    .await
                    .map_err(|e| e.to_string())?;
                let found = answer
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(srv) => Found::srv(
                            prefix,
                            scheme,
                            &srv.target.to_ascii(),
                            srv.port,
                            srv.weight,
                            srv.priority,
                        ),
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                if s.name_servers.is_empty() {
                    // the system's resolver, which connecting uses, knows the targets
                    (found, answer.valid_until())
                } else {
                    self.addressed(found, answer.valid_until()).await
                }
            }
        };
        Ok((
            found,
            valid_until.saturating_duration_since(std::time::Instant::now()),
        ))
    }
}

impl DnsDiscovery {
    /// SRV targets resolved by the name servers given, not the system's (which the member
    /// connection would ask, and which may not know a service registry's names): each
    /// becomes its target's first address, proving the target's name over `https`. A target
    /// they cannot resolve is left out of this answer (a member is removed only once it has
    /// been missing for `remove_after`); the answer is good until its shortest TTL.
    async fn addressed(
        &self,
        found: Vec<Found>,
        valid_until: std::time::Instant,
    ) -> (Vec<Found>, std::time::Instant) {
        // all at once: an answer of fifty targets takes one round trip, not fifty
        let looked_up = futures_util::future::join_all(found.into_iter().map(|f| async move {
            let host: Arc<str> = Arc::from(f.endpoint.host()?);
            let ips = self.resolver.lookup_ip(&*host).await.ok()?;
            let until = ips.valid_until();
            f.at_address(ips.iter().next()?, &host).map(|f| (f, until))
        }))
        .await;
        let until = looked_up
            .iter()
            .flatten()
            .map(|(_, t)| *t)
            .fold(valid_until, std::cmp::Ord::min);
        (
            looked_up.into_iter().flatten().map(|(f, _)| f).collect(),
            until,
        )
    }
}

struct State {
    source: DnsDiscovery,
    membership: Membership,
    pending: VecDeque<Result<Change<MemberId, MemberSpec>, DnsError>>,
    next_at: Instant,
}

impl State {
    async fn resolve_once(&mut self) {
        let s = &self.source.settings;
        let name = s.query.name().to_owned();
        let result = self.source.lookup().await;
        let now = Instant::now();
        match result {
            Ok((found, ttl)) => match self.membership.apply(found, now) {
                Ok(changes) => {
                    self.pending.extend(changes.into_iter().map(Ok));
                    self.next_at = now + ttl.clamp(s.ttl_floor, s.ttl_ceiling);
                }
                Err(Refused::Empty) => {
                    self.pending.push_back(Err(DnsError::Empty { name }));
                    self.next_at = now + s.retry;
                }
                Err(Refused::TooMany(count)) => {
                    self.pending.push_back(Err(DnsError::TooMany {
                        name,
                        count,
                        max: s.max_members,
                    }));
                    self.next_at = now + s.retry;
                }
            },
            Err(message) => {
                self.pending
                    .push_back(Err(DnsError::Resolve { name, message }));
                self.next_at = now + s.retry;
            }
        }
    }
}

impl DnsDiscoveryBuilder {
    fn new(query: DnsQuery) -> Self {
        Self {
            query,
            scheme: "http".to_owned(),
            prefix: String::new(),
            name_servers: Vec::new(),
            ttl_floor: Duration::from_secs(1),
            ttl_ceiling: Duration::from_secs(60),
            retry: Duration::from_secs(2),
            remove_after: Duration::from_secs(10),
            max_members: 256,
            timeout: Duration::from_secs(2),
        }
    }

    /// The members' scheme, `http` (the default) or `https`. HTTPS members found by A/AAAA
    /// records are addressed by IP and verified by the name looked up (their
    /// [`MemberSpec::tls_name`](crate::registry::MemberSpec::tls_name)); SRV targets are
    /// addressed and verified by their target names.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }

    /// Puts `prefix-` in front of every member id, to tell two sources apart.
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Asks these servers (UDP, then TCP for truncated answers) instead of the system's.
    /// SRV targets are then resolved by them too, and their members addressed by IP (the
    /// target's first address, proved as the target's name over `https`), since the
    /// member connection would otherwise ask the system's resolver, which may not know a
    /// service registry's names.
    pub fn name_servers(mut self, servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.name_servers = servers.into_iter().collect();
        self
    }

    /// The shortest time between two resolutions, whatever the TTL says (default 1 s).
    pub const fn ttl_floor(mut self, d: Duration) -> Self {
        self.ttl_floor = d;
        self
    }

    /// The longest time between two resolutions, whatever the TTL says (default 60 s).
    pub const fn ttl_ceiling(mut self, d: Duration) -> Self {
        self.ttl_ceiling = d;
        self
    }

    /// The wait before trying again after a failed or refused resolution (default 2 s).
    pub const fn retry_interval(mut self, d: Duration) -> Self {
        self.retry = d;
        self
    }

    /// How long a member must be missing from every answer before it is removed (default
    /// 10 s): an answer that flips between sets, or a server that returns part of the set,
    /// then does not churn the membership.
    pub const fn remove_after(mut self, d: Duration) -> Self {
        self.remove_after = d;
        self
    }

    /// The most members one answer may name (default 256); a larger answer is refused as
    /// a whole and the last good membership stays.
    pub const fn max_members(mut self, n: usize) -> Self {
        self.max_members = n;
        self
    }

    /// How long one query may take (default 2 s).
    pub const fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Makes the source. Needs no runtime; resolving starts when its stream is polled.
    ///
    /// # Errors
    /// [`DnsError::Scheme`], [`DnsError::Settings`], [`DnsError::Resolver`], or
    /// [`DnsError::SystemConfig`] when no
    /// name servers were given and the system's cannot be read.
    pub fn build(self) -> Result<DnsDiscovery, DnsError> {
        if self.scheme != "http" && self.scheme != "https" {
            return Err(DnsError::Scheme(self.scheme));
        }
        // shorter ones resolve hundreds of times a second (a TTL of 0 is common)
        if self.ttl_floor < Duration::from_millis(10) || self.retry < Duration::from_millis(10) {
            return Err(DnsError::Settings(
                "the TTL floor and the retry interval must be 10ms or longer",
            ));
        }
        if self.ttl_ceiling < self.ttl_floor {
            return Err(DnsError::Settings("the TTL ceiling is below the TTL floor"));
        }
        if self.max_members == 0 {
            return Err(DnsError::Settings("max_members must be at least 1"));
        }
        let (config, mut opts) = if self.name_servers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| DnsError::SystemConfig(e.to_string()))?
        } else {
            let servers = self
                .name_servers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            (
                ResolverConfig::from_parts(None, Vec::new(), servers),
                ResolverOpts::default(),
            )
        };
        // we honour TTLs ourselves, with our own floor and ceiling: no second cache
        opts.cache_size = 0;
        opts.timeout = self.timeout;
        opts.attempts = 1;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        if !self.name_servers.is_empty() {
            opts.use_hosts_file = ResolveHosts::Never;
        }
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| DnsError::Resolver(e.to_string()))?;
        Ok(DnsDiscovery {
            resolver,
            settings: self,
        })
    }
}
