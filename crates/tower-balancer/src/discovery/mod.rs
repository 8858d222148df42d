//! Discovery sources: where members come from when a platform, not an operator, says so.
//!
//! Why: a balancer in front of a real cluster rarely has a fixed member list. Kubernetes
//! headless services, Consul and plain DNS publish the members as DNS records; deployment
//! tools write them to a file. Each source here turns what it reads into the stream of
//! `tower::discover::Change` items that [`Registry::discover`](crate::registry::Registry::discover)
//! applies, so the layers never learn where members come from.
//!
//! Every source keeps the last good membership when it cannot read a new one (a resolver
//! timeout, an empty or oversized answer), and member ids are derived from what the member
//! is (its address and port), so the routes in clients' cookies survive every re-read and
//! every balancer instance that reads the same source names the members the same way.
//!
//! - [`DnsDiscovery`] (feature `dns`): A/AAAA records with a fixed port, or SRV records for
//!   ports, weights and priorities, re-resolved as their TTLs run out.
//! - `EtcdDiscovery` (feature `etcd`): one key under a prefix a member, its value the
//!   member's settings as JSON; read, then watched from the revision of that read.
//! - A members file: `tower_balancer_proxy::config::MembersFile` (feature `config` of the
//!   proxy crate), in the same member syntax as the balancer's configuration file.

#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "dns")]
mod dns_members;

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_follow;
#[cfg(feature = "etcd")]
mod etcd_members;
#[cfg(feature = "etcd")]
mod etcd_settings;

#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use dns::{DnsDiscovery, DnsDiscoveryBuilder, DnsError, DnsQuery};
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use dns_members::{address_member_id, srv_member_id};
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub use etcd::EtcdDiscovery;
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub use etcd_settings::{EtcdDiscoveryBuilder, EtcdError, EtcdTls};
