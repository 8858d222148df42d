//! Members from an etcd key prefix: one key a member, its value the member's settings.
//!
//! Why etcd: operators who run several balancers in front of a changing cluster keep the
//! membership in a store every instance can watch, as APISIX and Traefik do with etcd. DNS
//! cannot carry a member's weight, route, priority set or admin state, and a file has to be
//! copied to every instance; a key written once reaches every balancer within a round trip.
//!
//! The source reads the whole prefix, then watches it from the revision right after that
//! read, so no change between the two is missed. When it loses etcd (restart, network, a
//! leader election) it reconnects with a growing, jittered backoff and reads the prefix
//! again before it watches on: the etcd that answers may have been compacted, restored from
//! a backup or wiped and written anew meanwhile, and resuming an old watch would then miss
//! writes or keep members etcd no longer has. The last good membership stays while etcd
//! cannot be reached, and a key whose value is not a valid member keeps its last good value.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use futures_core::Stream;
use tower::discover::Change;

use super::etcd_follow::Follow;
use super::etcd_members::{Announced, Entries};
use super::etcd_settings::{EtcdDiscoveryBuilder, EtcdError};
use crate::registry::{Discovery, MemberId, MemberSpec, Registry};

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
/// `disabled`, `standby`, `draining`), `max` (requests in flight at once; 0, no limit) and
/// `tls_name` are optional.
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
    pub(super) settings: EtcdDiscoveryBuilder,
    pub(super) announced: Announced,
}

impl EtcdDiscovery {
    pub(super) const fn new(settings: EtcdDiscoveryBuilder, announced: Announced) -> Self {
        Self {
            settings,
            announced,
        }
    }

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
            reserved: std::sync::Arc::default(),
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
        let mut entries = Entries::new(&self.settings.prefix, Announced::default())
            .reserving(self.settings.reserved.clone());
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
        let mut entries = Entries::new(&self.settings.prefix, self.announced.clone())
            .reserving(self.settings.reserved.clone());
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
        let follow = Follow::new(self);
        futures_util::stream::unfold(follow, |mut f| async move {
            loop {
                if let Some(item) = f.next_item() {
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

    pub(super) async fn connect(&self) -> Result<Client, EtcdError> {
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
    pub(super) async fn list(
        &self,
        client: &mut Client,
        entries: &mut Entries,
    ) -> Result<(i64, Vec<EtcdError>), EtcdError> {
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
        let revision = header.revision();
        let errors = entries.replace(resp.kvs().iter().map(|kv| (kv.key(), kv.value())));
        Ok((revision, errors))
    }
}
