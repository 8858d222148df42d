//! Ejection by failure percentage: opt-in, Envoy's `failure_percentage` rule.
//!
//! Why besides the runs in a row: a member that fails one request in five almost never fails
//! five in a row (0.2⁵: once in some 3,000 requests, and a success ends the run), yet a
//! fifth of its clients get errors for as long as it stays in rotation. This rule looks at
//! each member's share of failed requests over an interval and ejects it, the same way as
//! the other rules (ejection time, cap, probation), when that share is at or above a
//! threshold and the member had enough requests for the share to mean something.
//!
//! It costs the request path nothing: the members' own counters are read once an interval
//! by the detector's task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::registry::Member;

/// The failure-percentage rule: a member whose failed requests were at least `percent` of
/// at least `min_requests` requests over one `interval` is ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePercentage {
    percent: u8,
    min_requests: u64,
    interval: Duration,
}

impl FailurePercentage {
    /// Ejects at `percent` (1–100; clamped) of at least `min_requests` (at least 1) requests
    /// failed over `interval` (at least 1 ms). Envoy's defaults are 85%, 50 requests, 10 s.
    #[must_use]
    pub const fn new(percent: u8, min_requests: u64, interval: Duration) -> Self {
        let percent = if percent == 0 {
            1
        } else if percent > 100 {
            100
        } else {
            percent
        };
        let min_requests = if min_requests == 0 { 1 } else { min_requests };
        let least = Duration::from_millis(1);
        let interval = if interval.as_nanos() < least.as_nanos() {
            least
        } else {
            interval
        };
        Self {
            percent,
            min_requests,
            interval,
        }
    }

    /// The share of failed requests that ejects, in percent.
    #[must_use]
    pub const fn percent(&self) -> u8 {
        self.percent
    }

    /// The fewest requests in an interval for the share to count.
    #[must_use]
    pub const fn min_requests(&self) -> u64 {
        self.min_requests
    }

    /// How often the shares are taken.
    #[must_use]
    pub const fn interval(&self) -> Duration {
        self.interval
    }
}

/// A member over the threshold: it, its failed share in percent, and its requests.
pub(super) type Over = (Arc<Member>, u64, u64);

/// Each member's request and failure counts at the last look.
#[derive(Debug, Default)]
pub(super) struct Rates {
    seen: HashMap<u64, (u64, u64)>,
}

impl Rates {
    /// The members whose requests since the last look failed at `rule`'s share or more. A
    /// member seen for the first time is only counted from now on.
    pub(super) fn judge<'a>(
        &mut self,
        rule: &FailurePercentage,
        members: impl Iterator<Item = &'a Arc<Member>>,
    ) -> Vec<Over> {
        let mut next = HashMap::with_capacity(self.seen.len());
        let mut over = Vec::new();
        for member in members {
            let view = member.stats().view();
            let now = (view.requests, view.failures);
            if let Some(&(requests, failures)) = self.seen.get(&member.serial()) {
                let requests = now.0.saturating_sub(requests);
                let failures = now.1.saturating_sub(failures).min(requests);
                if requests >= rule.min_requests
                    && failures.saturating_mul(100) >= u64::from(rule.percent) * requests
                {
                    over.push((member.clone(), failures * 100 / requests, requests));
                }
            }
            next.insert(member.serial(), now);
        }
        // members gone from the registry are forgotten
        self.seen = next;
        over
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{FailureKind, Outcome};
    use crate::registry::{MemberId, MemberSpec, Registry};

    fn registry() -> Registry {
        let registry = Registry::new();
        for id in ["a", "b"] {
            let url = format!("http://{id}.test").parse().unwrap();
            registry
                .insert(MemberSpec::new(MemberId::new(id).unwrap(), url))
                .unwrap();
        }
        registry
    }

    /// `failed` failures and `ok` requests that were not failures, on `id`.
    fn serve(registry: &Registry, id: &str, ok: u64, failed: u64) {
        let snap = registry.load();
        let member = snap.get(id).unwrap();
        for _ in 0..ok {
            member.stats().record(&Outcome::NotCounted);
        }
        for _ in 0..failed {
            member.stats().record(&Outcome::Failure {
                kind: FailureKind::Status(http::StatusCode::BAD_GATEWAY),
                latency: None,
            });
        }
    }

    fn judge(rates: &mut Rates, registry: &Registry, rule: &FailurePercentage) -> Vec<String> {
        let snap = registry.load();
        rates
            .judge(rule, snap.members().iter())
            .into_iter()
            .map(|(m, pct, n)| format!("{} {pct}% of {n}", m.id()))
            .collect()
    }

    #[test]
    fn a_member_at_the_share_over_enough_requests_is_named() {
        let registry = registry();
        let rule = FailurePercentage::new(20, 50, Duration::from_secs(10));
        let mut rates = Rates::default();
        // what came before the first look is not judged
        serve(&registry, "a", 0, 100);
        assert!(judge(&mut rates, &registry, &rule).is_empty());
        // a: 10 of 50 failed (20%); b: 9 of 50 (18%)
        serve(&registry, "a", 40, 10);
        serve(&registry, "b", 41, 9);
        assert_eq!(judge(&mut rates, &registry, &rule), ["a 20% of 50"]);
        // the next interval counts afresh: 10 of 49 is too few requests
        serve(&registry, "a", 39, 10);
        assert!(judge(&mut rates, &registry, &rule).is_empty());
    }

    #[test]
    fn the_settings_are_kept_in_range() {
        let rule = FailurePercentage::new(0, 0, Duration::ZERO);
        assert_eq!(
            (rule.percent(), rule.min_requests(), rule.interval()),
            (1, 1, Duration::from_millis(1))
        );
        assert_eq!(
            FailurePercentage::new(250, 5, Duration::ZERO).percent(),
            100
        );
    }
}
