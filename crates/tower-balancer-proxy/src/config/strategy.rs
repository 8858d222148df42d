//! The strategy a file names, chosen at run time.
//!
//! [`Strategy`] has an associated table type, so it cannot be a trait object; a file picks
//! one of a closed set, and an enum dispatches to it with one branch per pick.

use std::sync::Arc;

use tower_balancer::registry::Member;
use tower_balancer::strategy::{
    AliasTable, ByTraffic, LeastOutstanding, Maglev, MaglevTable, PickContext, PowerOfTwo, Ring,
    RingHash, RoundRobin, RoundRobinTable, ScanTable, Strategy, WeightedRandom,
};

use super::file::LbMethod;

/// One of the strategies a configuration file can name (`lbmethod`).
#[derive(Debug, Clone)]
pub(crate) enum ConfiguredStrategy {
    /// `byrequests`.
    RoundRobin(RoundRobin),
    /// `bybusyness`.
    LeastOutstanding(LeastOutstanding),
    /// `bytraffic`.
    ByTraffic(ByTraffic),
    /// `p2c`.
    PowerOfTwo(PowerOfTwo),
    /// `random`.
    WeightedRandom(WeightedRandom),
    /// `maglev`: consistent hashing of `balancer.hash_key`.
    Maglev(Maglev),
    /// `ringhash`: consistent hashing of `balancer.hash_key` on a ring.
    RingHash(RingHash),
}

/// The table of whichever strategy is configured.
#[derive(Debug)]
pub(crate) enum ConfiguredTable {
    /// Round robin's schedule.
    RoundRobin(RoundRobinTable),
    /// A scan table (least outstanding, by traffic).
    Scan(ScanTable),
    /// No table (P2C).
    None,
    /// Weighted random's alias table.
    Alias(AliasTable),
    /// Maglev's lookup table.
    Maglev(MaglevTable),
    /// The hash ring.
    Ring(Ring),
}

impl ConfiguredStrategy {
    /// The strategy for `method`.
    #[must_use]
    pub(crate) const fn new(method: LbMethod) -> Self {
        match method {
            LbMethod::Byrequests => Self::RoundRobin(RoundRobin::new()),
            LbMethod::Bybusyness => Self::LeastOutstanding(LeastOutstanding::new()),
            LbMethod::Bytraffic => Self::ByTraffic(ByTraffic::new()),
            LbMethod::P2c => Self::PowerOfTwo(PowerOfTwo::new()),
            LbMethod::Random => Self::WeightedRandom(WeightedRandom::new()),
            LbMethod::Maglev => Self::Maglev(Maglev::new()),
            LbMethod::Ringhash => Self::RingHash(RingHash::new()),
        }
    }
}

impl Strategy for ConfiguredStrategy {
    type Table = ConfiguredTable;

    fn name(&self) -> &'static str {
        match self {
            Self::RoundRobin(s) => s.name(),
            Self::LeastOutstanding(s) => s.name(),
            Self::ByTraffic(s) => s.name(),
            Self::PowerOfTwo(s) => s.name(),
            Self::WeightedRandom(s) => s.name(),
            Self::Maglev(s) => s.name(),
            Self::RingHash(s) => s.name(),
        }
    }

    fn build(&self, members: &[Arc<Member>]) -> ConfiguredTable {
        match self {
            Self::RoundRobin(s) => ConfiguredTable::RoundRobin(s.build(members)),
            Self::LeastOutstanding(s) => ConfiguredTable::Scan(s.build(members)),
            Self::ByTraffic(s) => ConfiguredTable::Scan(s.build(members)),
            Self::PowerOfTwo(s) => {
                s.build(members);
                ConfiguredTable::None
            }
            Self::WeightedRandom(s) => ConfiguredTable::Alias(s.build(members)),
            Self::Maglev(s) => ConfiguredTable::Maglev(s.build(members)),
            Self::RingHash(s) => ConfiguredTable::Ring(s.build(members)),
        }
    }

    fn pick(
        &self,
        table: &ConfiguredTable,
        members: &[Arc<Member>],
        cx: &PickContext<'_>,
    ) -> Option<usize> {
        match (self, table) {
            (Self::RoundRobin(s), ConfiguredTable::RoundRobin(t)) => s.pick(t, members, cx),
            (Self::LeastOutstanding(s), ConfiguredTable::Scan(t)) => s.pick(t, members, cx),
            (Self::ByTraffic(s), ConfiguredTable::Scan(t)) => s.pick(t, members, cx),
            (Self::PowerOfTwo(s), ConfiguredTable::None) => s.pick(&(), members, cx),
            (Self::WeightedRandom(s), ConfiguredTable::Alias(t)) => s.pick(t, members, cx),
            (Self::Maglev(s), ConfiguredTable::Maglev(t)) => s.pick(t, members, cx),
            (Self::RingHash(s), ConfiguredTable::Ring(t)) => s.pick(t, members, cx),
            // a table is only ever built by the same strategy that picks from it
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_balancer::registry::{MemberId, MemberSpec, Registry};
    use tower_balancer::strategy::Tried;

    #[test]
    fn every_method_picks_each_member() {
        for method in [
            LbMethod::Byrequests,
            LbMethod::Bybusyness,
            LbMethod::Bytraffic,
            LbMethod::P2c,
            LbMethod::Random,
            LbMethod::Maglev,
            LbMethod::Ringhash,
        ] {
            let registry = Registry::new();
            for id in ["node1", "node2"] {
                registry
                    .insert(MemberSpec::new(
                        MemberId::new(id).unwrap(),
                        "http://127.0.0.1:1".parse().unwrap(),
                    ))
                    .unwrap();
            }
            let members: Vec<_> = registry.snapshot().members().to_vec();
            let s = ConfiguredStrategy::new(method);
            let table = s.build(&members);
            let tried = Tried::new();
            let first = s.pick(&table, &members, &PickContext::new(None, &tried));
            assert!(first.is_some(), "{method:?}");
            let mut tried = Tried::new();
            tried.insert(&members[first.unwrap()]);
            let second = s.pick(&table, &members, &PickContext::new(None, &tried));
            assert!(second.is_some() && second != first, "{method:?}");
        }
    }
}
