//! From DNS answers to member specs, and from one answer to the next as registry changes.
//!
//! Kept apart from the resolver so the rules (stable ids, the removal hold-down, refusing an
//! empty or oversized answer) are tested without a network.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::time::Instant;
use tower::discover::Change;
use xxhash_rust::xxh3::xxh3_64;

use crate::registry::{MemberId, MemberSpec, MAX_WEIGHT};

/// The member id for an address found by an A or AAAA lookup: the address and port with
/// `.` and `:` written as `-` (`10-0-0-1-8080`, `fd00--1-8080`), after `prefix-` when a
/// prefix is set. The same address always gets the same id, on every balancer instance.
#[must_use]
pub fn address_member_id(prefix: &str, ip: IpAddr, port: u16) -> MemberId {
    let ip = ip.to_string().replace(['.', ':'], "-");
    named(prefix, &format!("{ip}-{port}"))
}

/// The member id for an SRV target: the target name (without its final dot, `.` written as
/// `-`) and port, after `prefix-` when a prefix is set; a hash of them when that would be
/// longer than a member id may be.
#[must_use]
pub fn srv_member_id(prefix: &str, target: &str, port: u16) -> MemberId {
    let target = target.trim_end_matches('.').to_ascii_lowercase();
    named(prefix, &format!("{}-{port}", target.replace('.', "-")))
}

fn named(prefix: &str, base: &str) -> MemberId {
    let full = if prefix.is_empty() {
        base.to_owned()
    } else {
        format!("{prefix}-{base}")
    };
    MemberId::new(&full).unwrap_or_else(|_| {
        // too long or odd characters: a fixed hash keeps it stable across instances; made
        // of letters, digits and `-` only, and at most 24 + 1 + 16 bytes long
        let h = xxh3_64(full.as_bytes());
        let p: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(24)
            .collect();
        let p = if p.is_empty() { "m".to_owned() } else { p };
        MemberId::from_checked(format!("{p}-{h:016x}"))
    })
}

/// One member as an answer names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) id: MemberId,
    pub(crate) endpoint: Uri,
    /// For an `https` member found by address: the name its certificate is checked against.
    pub(crate) tls_name: Option<Arc<str>>,
    pub(crate) weight: u32,
    pub(crate) priority: u16,
}

impl Found {
    /// An address from an A/AAAA answer.
    pub(crate) fn address(prefix: &str, scheme: &str, ip: IpAddr, port: u16) -> Option<Self> {
        let endpoint = format!("{scheme}://{}", SocketAddr::new(ip, port))
            .parse()
            .ok()?;
        Some(Self {
            id: address_member_id(prefix, ip, port),
            endpoint,
            tls_name: None,
            weight: 1,
            priority: 0,
        })
    }

    /// A target from an SRV answer: its weight (0 counts as 1) and priority carry over.
    pub(crate) fn srv(
        prefix: &str,
        scheme: &str,
        target: &str,
        port: u16,
        weight: u16,
        priority: u16,
    ) -> Option<Self> {
        let host = target.trim_end_matches('.');
        if host.is_empty() {
            // "." is RFC 2782's "no service here"
            return None;
        }
        let endpoint = format!("{scheme}://{host}:{port}").parse().ok()?;
        Some(Self {
            id: srv_member_id(prefix, host, port),
            endpoint,
            tls_name: None,
            weight: u32::from(weight).clamp(1, MAX_WEIGHT),
            priority,
        })
    }

    /// The same member at `ip` (its SRV target, `name`, resolved): same id, weight and
    /// priority; over `https` it proves `name`.
    pub(crate) fn at_address(mut self, ip: IpAddr, name: &Arc<str>) -> Option<Self> {
        let port = self.endpoint.port_u16()?;
        let scheme = self.endpoint.scheme_str()?;
        self.endpoint = format!("{scheme}://{}", SocketAddr::new(ip, port))
            .parse()
            .ok()?;
        Some(self.looked_up_as(name))
    }

    /// An address found by looking up `name`: over `https` the member is addressed by IP
    /// but proves `name`, which its certificate carries (an IP rarely is in it).
    pub(crate) fn looked_up_as(mut self, name: &Arc<str>) -> Self {
        if self.endpoint.scheme_str() == Some("https") {
            self.tls_name = Some(name.clone());
        }
        self
    }

    fn spec(&self) -> MemberSpec {
        let spec = MemberSpec::new(self.id.clone(), self.endpoint.clone())
            .weight(self.weight)
            .priority(self.priority);
        match &self.tls_name {
            Some(name) => spec.tls_name(name.clone()),
            None => spec,
        }
    }
}

/// Why an answer was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Empty,
    TooMany(usize),
}

struct Known {
    found: Found,
    last_seen: Instant,
}

/// The members the source has announced, and when each was last in an answer.
pub(crate) struct Membership {
    known: BTreeMap<MemberId, Known>,
    remove_after: Duration,
    max_members: usize,
}

impl Membership {
    pub(crate) const fn new(remove_after: Duration, max_members: usize) -> Self {
        Self {
            known: BTreeMap::new(),
            remove_after,
            max_members,
        }
    }

    /// The changes that take the registry from the last answer to this one. A member missing
    /// from the answer is removed only once it has been missing for `remove_after`, so an
    /// answer that flips between two sets, or a server that returns part of the set, does
    /// not churn the registry. An empty or oversized answer changes nothing.
    pub(crate) fn apply(
        &mut self,
        answer: Vec<Found>,
        now: Instant,
    ) -> Result<Vec<Change<MemberId, MemberSpec>>, Refused> {
        let mut seen = BTreeMap::new();
        for f in answer {
            seen.entry(f.id.clone()).or_insert(f);
        }
        if seen.is_empty() {
            return Err(Refused::Empty);
        }
        if seen.len() > self.max_members {
            return Err(Refused::TooMany(seen.len()));
        }
        let mut changes = Vec::new();
        let ids: BTreeSet<MemberId> = seen.keys().cloned().collect();
        for (id, found) in seen {
            match self.known.get_mut(&id) {
                Some(k) if k.found == found => k.last_seen = now,
                _ => {
                    changes.push(Change::Insert(id.clone(), found.spec()));
                    self.known.insert(
                        id,
                        Known {
                            found,
                            last_seen: now,
                        },
                    );
                }
            }
        }
        let gone: Vec<MemberId> = self
            .known
            .iter()
            .filter(|(id, k)| {
                !ids.contains(*id)
                    && now.saturating_duration_since(k.last_seen) >= self.remove_after
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.known.remove(&id);
            changes.push(Change::Remove(id));
        }
        Ok(changes)
    }

    /// How many members are announced.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn addr(last: u8) -> Found {
        Found::address("", "http", IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 8080).unwrap()
    }

    fn summary(changes: &[Change<MemberId, MemberSpec>]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Insert(id, _) => format!("+{id}"),
                Change::Remove(id) => format!("-{id}"),
            })
            .collect()
    }

    #[test]
    fn ids_are_stable_valid_and_distinct() {
        let v4 = address_member_id("", "10.0.0.1".parse().unwrap(), 8080);
        assert_eq!(v4.as_str(), "10-0-0-1-8080");
        let v6 = address_member_id("web", "fd00::1".parse().unwrap(), 8080);
        assert_eq!(v6.as_str(), "web-fd00--1-8080");
        let mapped = address_member_id("", "::ffff:10.0.0.1".parse().unwrap(), 8080);
        assert_ne!(mapped, v4);
        assert_eq!(
            srv_member_id("", "Node1.Cluster.test.", 9443).as_str(),
            "node1-cluster-test-9443"
        );
        let long = format!("{}.example.", "a".repeat(200));
        let id = srv_member_id("svc", &long, 80);
        assert!(id.as_str().starts_with("svc-") && id.as_str().len() <= 64);
        assert_eq!(id, srv_member_id("svc", &long, 80));
        assert_ne!(id, srv_member_id("svc", &long, 81));
    }

    #[test]
    fn srv_weights_priorities_and_the_no_service_target() {
        let f = Found::srv("", "https", "node1.test.", 9443, 0, 2).unwrap();
        assert_eq!(f.endpoint, "https://node1.test:9443");
        assert_eq!((f.weight, f.priority), (1, 2));
        assert_eq!(
            Found::srv("", "http", "a.", 1, 65535, 0).unwrap().weight,
            65535
        );
        assert!(Found::srv("", "http", ".", 80, 1, 0).is_none());
        let v6 = Found::address("", "http", "::1".parse().unwrap(), 80).unwrap();
        assert_eq!(v6.endpoint, "http://[::1]:80/");
    }

    #[test]
    fn https_members_found_by_address_prove_the_name_looked_up() {
        let name: Arc<str> = Arc::from("is.cluster.test");
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let https = Found::address("", "https", ip, 9443)
            .unwrap()
            .looked_up_as(&name);
        assert_eq!(https.tls_name.as_deref(), Some("is.cluster.test"));
        assert_eq!(https.spec().tls_name.as_deref(), Some("is.cluster.test"));
        // plain http has nothing to prove; SRV targets are addressed by name already
        let http = Found::address("", "http", ip, 80)
            .unwrap()
            .looked_up_as(&name);
        assert_eq!(http.spec().tls_name, None);
        let srv = Found::srv("", "https", "node1.test.", 9443, 1, 0).unwrap();
        assert_eq!(srv.spec().tls_name, None);
    }

    #[test]
    fn inserts_once_and_removes_only_after_the_hold_down() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(10), 100);
        let c = m.apply(vec![addr(1), addr(2)], t0).unwrap();
        assert_eq!(summary(&c), ["+10-0-0-1-8080", "+10-0-0-2-8080"]);
        // the same answer again changes nothing
        assert!(m
            .apply(vec![addr(2), addr(1), addr(1)], t0 + Duration::from_secs(1))
            .unwrap()
            .is_empty());
        // 2 is missing, but not for long enough yet
        assert!(m
            .apply(vec![addr(1)], t0 + Duration::from_secs(5))
            .unwrap()
            .is_empty());
        let c = m
            .apply(vec![addr(1), addr(3)], t0 + Duration::from_secs(11))
            .unwrap();
        assert_eq!(summary(&c), ["+10-0-0-3-8080", "-10-0-0-2-8080"]);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn an_answer_flipping_between_two_sets_settles_on_their_union() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(10), 100);
        let mut all = Vec::new();
        for s in 0..60u64 {
            let set = if s % 2 == 0 {
                vec![addr(1), addr(2)]
            } else {
                vec![addr(3), addr(4)]
            };
            all.extend(summary(&m.apply(set, t0 + Duration::from_secs(s)).unwrap()));
        }
        assert_eq!(all.len(), 4, "four inserts and nothing else: {all:?}");
        assert!(all.iter().all(|c| c.starts_with('+')));
    }

    #[test]
    fn empty_and_oversized_answers_change_nothing() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::ZERO, 256);
        m.apply(vec![addr(1)], t0).unwrap();
        assert_eq!(m.apply(Vec::new(), t0).err(), Some(Refused::Empty));
        let huge: Vec<Found> = (0..1000u32)
            .map(|i| {
                let ip = Ipv4Addr::from(0x0a00_0000 + i);
                Found::address("", "http", IpAddr::V4(ip), 80).unwrap()
            })
            .collect();
        assert_eq!(m.apply(huge, t0).err(), Some(Refused::TooMany(1000)));
        assert_eq!(m.len(), 1);
    }
}
