//! Each strategy's behaviour, through the public `Picker`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{candidates, counts, pick_id, registry, spec};
use tower_balancer::registry::{AdminState, Health, InFlight, Registry};
use tower_balancer::strategy::{
    hash_key, BoundedLoad, ByTraffic, LeastOutstanding, Maglev, PickContext, PickError, Picker,
    PowerOfTwo, RingHash, RoundRobin, Strategy, Tried, WeightedRandom,
};

fn all_strategies_yield_each_member_once_then_none<S: Strategy>(s: S) {
    let r = registry(5);
    let p = Picker::new(&r, s);
    let got = candidates(&r, &p, Some(hash_key(b"k")));
    let ids: HashSet<String> = got.iter().map(|m| m.id().to_string()).collect();
    assert_eq!(got.len(), 5, "{ids:?}");
    assert_eq!(ids.len(), 5);
}

#[test]
fn every_strategy_yields_every_member_once_then_no_eligible_member() {
    all_strategies_yield_each_member_once_then_none(RoundRobin::new());
    all_strategies_yield_each_member_once_then_none(LeastOutstanding::new());
    all_strategies_yield_each_member_once_then_none(ByTraffic::new());
    all_strategies_yield_each_member_once_then_none(PowerOfTwo::new());
    all_strategies_yield_each_member_once_then_none(WeightedRandom::new());
    all_strategies_yield_each_member_once_then_none(RingHash::new());
    all_strategies_yield_each_member_once_then_none(Maglev::new());
}

#[test]
fn an_empty_registry_gives_no_eligible_member() {
    let r = Registry::new();
    let p = Picker::new(&r, RoundRobin::new());
    let tried = Tried::new();
    assert_eq!(
        p.pick(&r.load(), &PickContext::new(None, &tried))
            .unwrap_err(),
        PickError::NoEligibleMember
    );
}

#[test]
fn round_robin_retries_take_no_turn_so_first_attempts_still_alternate() {
    let r = registry(2);
    let p = Picker::new(&r, RoundRobin::new());
    let snap = r.load();
    let none = Tried::new();
    let mut firsts = Vec::new();
    for _ in 0..6 {
        // each request's first attempt meets the member that fails it, then retries
        let first = p.pick(&snap, &PickContext::new(None, &none)).unwrap();
        let mut tried = Tried::new();
        tried.insert(first);
        let retry = p.pick(&snap, &PickContext::new(None, &tried)).unwrap();
        assert_ne!(retry.id(), first.id(), "a retry goes to the other member");
        firsts.push(first.id().to_string());
    }
    // first attempts still alternate: a failing member meets half the requests, not all
    for pair in firsts.windows(2) {
        assert_ne!(pair[0], pair[1], "{firsts:?}");
    }
}

#[test]
fn round_robin_follows_weights_exactly_over_a_period() {
    let r = Registry::new();
    r.insert(spec("a").weight(5)).unwrap();
    r.insert(spec("b")).unwrap();
    r.insert(spec("c")).unwrap();
    let p = Picker::new(&r, RoundRobin::new());
    let c = counts(&r, &p, 7 * 1000);
    assert_eq!(c["a"], 5000);
    assert_eq!(c["b"], 1000);
    assert_eq!(c["c"], 1000);
}

#[test]
fn round_robin_alternates_between_equal_members() {
    let r = registry(2);
    let p = Picker::new(&r, RoundRobin::new());
    let a = pick_id(&r, &p, None);
    let b = pick_id(&r, &p, None);
    let c = pick_id(&r, &p, None);
    assert_ne!(a, b);
    assert_eq!(a, c);
}

#[test]
fn least_outstanding_picks_the_least_busy_member() {
    let r = registry(3);
    let p = Picker::new(&r, LeastOutstanding::new());
    let snap = r.load();
    let m0 = snap.get("m0").unwrap().clone();
    let m2 = snap.get("m2").unwrap().clone();
    let _busy: Vec<InFlight> = (0..3)
        .map(|_| InFlight::start(m0.clone()))
        .chain((0..2).map(|_| InFlight::start(m2.clone())))
        .collect();
    for _ in 0..10 {
        assert_eq!(pick_id(&r, &p, None), "m1");
    }
}

#[test]
fn least_outstanding_breaks_ties_round_robin() {
    let r = registry(3);
    let p = Picker::new(&r, LeastOutstanding::new());
    let c = counts(&r, &p, 300);
    assert_eq!(
        c.values().copied().collect::<HashSet<_>>(),
        HashSet::from([100])
    );
}

#[test]
fn least_outstanding_weighs_load_by_weight() {
    let r = Registry::new();
    r.insert(spec("big").weight(4)).unwrap();
    r.insert(spec("small")).unwrap();
    let p = Picker::new(&r, LeastOutstanding::new());
    let snap = r.load();
    // big has 3 in flight (3/4 per weight), small has 1 (1/1): big is less loaded
    let _g: Vec<InFlight> = (0..3)
        .map(|_| InFlight::start(snap.get("big").unwrap().clone()))
        .chain(std::iter::once(InFlight::start(
            snap.get("small").unwrap().clone(),
        )))
        .collect();
    assert_eq!(pick_id(&r, &p, None), "big");
}

#[test]
fn by_traffic_picks_the_member_that_moved_fewest_bytes() {
    let r = registry(3);
    let p = Picker::new(&r, ByTraffic::new());
    let snap = r.load();
    snap.get("m0").unwrap().stats().add_bytes_from_member(1_000);
    snap.get("m1").unwrap().stats().add_bytes_to_member(10);
    snap.get("m2").unwrap().stats().add_bytes_from_member(500);
    assert_eq!(pick_id(&r, &p, None), "m1");
}

#[test]
fn p2c_with_two_members_prefers_the_idle_one() {
    let r = registry(2);
    let p = Picker::new(&r, PowerOfTwo::new());
    let snap = r.load();
    let _busy: Vec<InFlight> = (0..10)
        .map(|_| InFlight::start(snap.get("m0").unwrap().clone()))
        .collect();
    for _ in 0..20 {
        assert_eq!(pick_id(&r, &p, None), "m1");
    }
}

#[test]
fn weighted_random_follows_weights() {
    let r = Registry::new();
    r.insert(spec("a").weight(3)).unwrap();
    r.insert(spec("b")).unwrap();
    let p = Picker::new(&r, WeightedRandom::new());
    let c = counts(&r, &p, 100_000);
    #[allow(clippy::cast_precision_loss)]
    let share = c["a"] as f64 / 100_000.0;
    assert!((share - 0.75).abs() < 0.02, "{share}");
}

#[test]
fn hashing_strategies_send_one_key_to_one_member() {
    let r = registry(8);
    let ring = Picker::new(&r, RingHash::new());
    let maglev = Picker::new(&r, Maglev::new());
    for k in 0..100u64 {
        let key = Some(hash_key(&k.to_le_bytes()));
        let a = pick_id(&r, &ring, key);
        assert_eq!(a, pick_id(&r, &ring, key));
        let b = pick_id(&r, &maglev, key);
        assert_eq!(b, pick_id(&r, &maglev, key));
    }
}

#[test]
fn hashing_agrees_across_independent_registries() {
    // two balancer instances, members inserted in different orders
    let r1 = registry(6);
    let r2 = Registry::new();
    for i in (0..6).rev() {
        r2.insert(spec(&format!("m{i}"))).unwrap();
    }
    let (ring1, ring2) = (
        Picker::new(&r1, RingHash::new()),
        Picker::new(&r2, RingHash::new()),
    );
    let (mag1, mag2) = (
        Picker::new(&r1, Maglev::new()),
        Picker::new(&r2, Maglev::new()),
    );
    for k in 0..500u64 {
        let key = Some(hash_key(format!("user-{k}").as_bytes()));
        assert_eq!(pick_id(&r1, &ring1, key), pick_id(&r2, &ring2, key));
        assert_eq!(pick_id(&r1, &mag1, key), pick_id(&r2, &mag2, key));
    }
}

#[test]
fn bounded_load_passes_over_a_full_member() {
    let r = registry(4);
    let bound = BoundedLoad::new(1.25).unwrap();
    let p = Picker::new(&r, RingHash::new().bounded_load(bound));
    let key = Some(hash_key(b"hot"));
    let owner = pick_id(&r, &p, key);
    let snap = r.load();
    let _load: Vec<InFlight> = (0..8)
        .map(|_| InFlight::start(snap.get(&owner).unwrap().clone()))
        .collect();
    assert_ne!(pick_id(&r, &p, key), owner);

    let m = Picker::new(&r, Maglev::new().bounded_load(bound));
    let owner_m = pick_id(&r, &m, key);
    let _more: Vec<InFlight> = (0..8)
        .map(|_| InFlight::start(snap.get(&owner_m).unwrap().clone()))
        .collect();
    assert_ne!(pick_id(&r, &m, key), owner_m);
}

fn tiers_apply_to<S: Strategy>(s: S) {
    let r = Registry::new();
    r.set_panic_threshold(0.0);
    r.insert(spec("primary").priority(0)).unwrap();
    r.insert(spec("second").priority(1)).unwrap();
    r.insert(spec("standby").state(AdminState::Standby))
        .unwrap();
    let p = Picker::new(&r, s);
    let key = Some(hash_key(b"k"));
    assert_eq!(pick_id(&r, &p, key), "primary");
    r.set_health("primary", Health::Unhealthy).unwrap();
    assert_eq!(pick_id(&r, &p, key), "second");
    r.set_state("second", AdminState::Draining).unwrap();
    assert_eq!(pick_id(&r, &p, key), "standby");
    r.set_state("standby", AdminState::Disabled).unwrap();
    let tried = Tried::new();
    assert_eq!(
        p.pick(&r.load(), &PickContext::new(key, &tried))
            .unwrap_err(),
        PickError::NoEligibleMember
    );
    // order of candidates across tiers when every member is up
    r.set_health("primary", Health::Healthy).unwrap();
    r.set_state("second", AdminState::Active).unwrap();
    r.set_state("standby", AdminState::Standby).unwrap();
    let order: Vec<String> = candidates(&r, &p, key)
        .iter()
        .map(|m| m.id().to_string())
        .collect();
    assert_eq!(order, ["primary", "second", "standby"]);
}

#[test]
fn priority_sets_then_hot_standby_apply_to_every_strategy() {
    tiers_apply_to(RoundRobin::new());
    tiers_apply_to(LeastOutstanding::new());
    tiers_apply_to(ByTraffic::new());
    tiers_apply_to(PowerOfTwo::new());
    tiers_apply_to(WeightedRandom::new());
    tiers_apply_to(RingHash::new());
    tiers_apply_to(Maglev::new());
}

/// A strategy that breaks its contract.
struct Liar;
impl Strategy for Liar {
    type Table = ();
    fn name(&self) -> &'static str {
        "liar"
    }
    fn build(&self, _: &[Arc<tower_balancer::registry::Member>]) {}
    fn pick(
        &self,
        _: &(),
        _: &[Arc<tower_balancer::registry::Member>],
        _: &PickContext<'_>,
    ) -> Option<usize> {
        Some(usize::MAX)
    }
}

#[test]
fn a_strategy_returning_a_bad_index_cannot_cause_a_panic_or_a_repeat() {
    let r = registry(2);
    let p = Picker::new(&r, Liar);
    let got = candidates(&r, &p, None);
    assert_eq!(got.len(), 2);
}

#[test]
fn a_new_strategy_works_after_an_old_picker_was_dropped() {
    let r = registry(2);
    let p = Picker::new(&r, RoundRobin::new());
    drop(p);
    r.rebuild();
    // a new strategy reuses the slot and still works
    let q = Picker::new(&r, Maglev::new());
    assert!(pick_id(&r, &q, Some(1)).starts_with('m'));
}

#[tokio::test(start_paused = true)]
async fn p2c_lets_a_member_whose_slow_sample_has_aged_win_again() {
    use std::time::Duration;
    use tower_balancer::outcome::Outcome;
    let r = registry(2);
    let p = Picker::new(&r, PowerOfTwo::new());
    let snap = r.snapshot();
    let (slow, fast) = (snap.get("m0").unwrap(), snap.get("m1").unwrap());
    slow.stats().record(&Outcome::Success {
        latency: Duration::from_millis(100),
    });
    fast.stats().record(&Outcome::Success {
        latency: Duration::from_millis(10),
    });
    for _ in 0..10 {
        assert_eq!(
            pick_id(&r, &p, None),
            "m1",
            "the slow member won while its sample was fresh"
        );
    }
    // a minute later the slow member's estimate has decayed to 100 ms * e^-6 = 0.25 ms, while
    // the fast one keeps answering in 10 ms
    tokio::time::advance(Duration::from_secs(60)).await;
    fast.stats().record(&Outcome::Success {
        latency: Duration::from_millis(10),
    });
    for _ in 0..10 {
        assert_eq!(
            pick_id(&r, &p, None),
            "m0",
            "the aged sample kept the member out"
        );
    }
}

#[test]
fn one_dead_member_of_two_is_avoided_without_panic() {
    let r = registry(2);
    r.set_health("m0", Health::Unhealthy).unwrap();
    assert!(!r.load().is_panic());
    let p = Picker::new(&r, RoundRobin::new());
    for _ in 0..10 {
        assert_eq!(pick_id(&r, &p, None), "m1");
    }
}

#[test]
fn below_the_panic_threshold_requests_spread_over_every_active_member() {
    let r = registry(4);
    r.insert(spec("off").state(AdminState::Disabled)).unwrap();
    r.insert(spec("drain").state(AdminState::Draining)).unwrap();
    for id in ["m0", "m1", "m2"] {
        r.set_health(id, Health::Unhealthy).unwrap();
    }
    // 1 healthy of 4 is below 50%: fail open over all four, never over disabled or draining
    assert!(r.load().is_panic());
    let p = Picker::new(&r, RoundRobin::new());
    let c = counts(&r, &p, 400);
    assert_eq!(c.len(), 4, "{c:?}");
    assert!(!c.contains_key("off") && !c.contains_key("drain"));
    // with panic mode off, only the healthy member takes requests
    r.set_panic_threshold(0.0);
    assert!(!r.load().is_panic());
    assert_eq!(counts(&r, &p, 10).keys().collect::<Vec<_>>(), ["m3"]);
}

#[test]
fn when_every_member_is_down_panic_mode_fails_open_unless_turned_off() {
    let r = registry(2);
    r.set_health("m0", Health::Unhealthy).unwrap();
    r.set_health("m1", Health::Unhealthy).unwrap();
    let p = Picker::new(&r, RoundRobin::new());
    assert_eq!(counts(&r, &p, 10).len(), 2);
    r.set_panic_threshold(0.0);
    let tried = Tried::new();
    assert_eq!(
        p.pick(&r.load(), &PickContext::new(None, &tried))
            .unwrap_err(),
        PickError::NoEligibleMember
    );
}

#[test]
fn health_sources_do_not_undo_each_other() {
    use tower_balancer::registry::HealthSource;
    let r = registry(1);
    r.set_health_by("m0", HealthSource::Probe, Health::Unhealthy)
        .unwrap();
    r.set_health_by("m0", HealthSource::Outlier, Health::Unhealthy)
        .unwrap();
    // the outlier timer readmits, but the probe still says down
    r.set_health_by("m0", HealthSource::Outlier, Health::Healthy)
        .unwrap();
    let m = r.load().get("m0").unwrap().clone();
    assert_eq!(m.health(), Health::Unhealthy);
    assert!(m.is_down_by(HealthSource::Probe) && !m.is_down_by(HealthSource::Outlier));
    r.set_health_by("m0", HealthSource::Probe, Health::Healthy)
        .unwrap();
    assert_eq!(m.health(), Health::Healthy);
}
