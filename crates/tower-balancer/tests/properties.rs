//! Properties of picking that must hold for any membership.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::spec;
use proptest::prelude::*;
use tower_balancer::registry::{AdminState, Health, Registry, RegistryError};
use tower_balancer::strategy::{
    hash_key, ByTraffic, LeastOutstanding, Maglev, PickContext, PickError, Picker, PowerOfTwo,
    RingHash, RoundRobin, Strategy, Tried, WeightedRandom,
};

fn state_strategy() -> impl proptest::strategy::Strategy<Value = (AdminState, Health)> {
    (
        prop_oneof![
            Just(AdminState::Active),
            Just(AdminState::Standby),
            Just(AdminState::Draining),
            Just(AdminState::Disabled),
        ],
        prop_oneof![Just(Health::Healthy), Just(Health::Unhealthy)],
    )
}

fn check_only_eligible<S: Strategy>(s: S, members: &[(AdminState, Health, u16, u32)]) {
    let r = Registry::new();
    // eligibility as such: panic mode (which ignores health on purpose) is tested apart
    r.set_panic_threshold(0.0);
    for (i, &(state, health, prio, weight)) in members.iter().enumerate() {
        r.insert(
            spec(&format!("m{i}"))
                .state(state)
                .health(health)
                .priority(prio)
                .weight(weight),
        )
        .unwrap();
    }
    let p = Picker::new(&r, s);
    let snap = r.load();
    let any_active = members
        .iter()
        .any(|&(s, h, _, _)| s == AdminState::Active && h == Health::Healthy);
    let any_standby = members
        .iter()
        .any(|&(s, h, _, _)| s == AdminState::Standby && h == Health::Healthy);
    let best_prio = members
        .iter()
        .filter(|&&(s, h, _, _)| s == AdminState::Active && h == Health::Healthy)
        .map(|&(_, _, p, _)| p)
        .min();
    let tried = Tried::new();
    for k in 0..50u64 {
        let res = p.pick(
            &snap,
            &PickContext::new(Some(hash_key(&k.to_le_bytes())), &tried),
        );
        match res {
            Ok(m) => {
                assert_eq!(m.health(), Health::Healthy);
                if any_active {
                    assert_eq!(m.state(), AdminState::Active);
                    assert_eq!(Some(m.priority()), best_prio);
                } else {
                    assert_eq!(m.state(), AdminState::Standby);
                }
            }
            Err(e) => {
                assert_eq!(e, PickError::NoEligibleMember);
                assert!(!any_active && !any_standby);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn never_picks_an_ineligible_member_while_an_eligible_one_exists(
        members in proptest::collection::vec((state_strategy(), 0u16..3, 1u32..10), 1..12)
    ) {
        let members: Vec<_> = members.into_iter().map(|((s, h), p, w)| (s, h, p, w)).collect();
        check_only_eligible(RoundRobin::new(), &members);
        check_only_eligible(LeastOutstanding::new(), &members);
        check_only_eligible(ByTraffic::new(), &members);
        check_only_eligible(PowerOfTwo::new(), &members);
        check_only_eligible(WeightedRandom::new(), &members);
        check_only_eligible(RingHash::new(), &members);
        check_only_eligible(Maglev::new(), &members);
    }
}

fn shares<S: Strategy>(s: S, weights: &[u32], picks: usize) -> Vec<f64> {
    let r = Registry::new();
    for (i, &w) in weights.iter().enumerate() {
        r.insert(spec(&format!("m{i:02}")).weight(w)).unwrap();
    }
    let p = Picker::new(&r, s);
    let snap = r.load();
    let tried = Tried::new();
    let cx = PickContext::new(None, &tried);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..picks {
        *counts
            .entry(p.pick(&snap, &cx).unwrap().id().to_string())
            .or_default() += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    (0..weights.len())
        .map(|i| *counts.get(&format!("m{i:02}")).unwrap_or(&0) as f64 / picks as f64)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn weighted_shares_are_within_two_percent_over_100k_picks(
        weights in proptest::collection::vec(1u32..=10, 2..8)
    ) {
        let total: u32 = weights.iter().sum();
        for got in [
            shares(RoundRobin::new(), &weights, 100_000),
            shares(WeightedRandom::new(), &weights, 100_000),
        ] {
            for (i, &w) in weights.iter().enumerate() {
                let want = f64::from(w) / f64::from(total);
                prop_assert!((got[i] - want).abs() <= 0.02, "member {i}: got {} want {want}", got[i]);
            }
        }
    }
}

fn moved_share<S: Strategy + Clone>(s: S, n: usize) -> f64 {
    let before = common::registry(n);
    let after = common::registry(n);
    after.insert(spec(&format!("m{n}"))).unwrap();
    let pb = Picker::new(&before, s.clone());
    let pa = Picker::new(&after, s);
    let keys = 20_000u64;
    let moved = (0..keys)
        .filter(|k| {
            let key = Some(hash_key(&k.to_le_bytes()));
            common::pick_id(&before, &pb, key) != common::pick_id(&after, &pa, key)
        })
        .count();
    #[allow(clippy::cast_precision_loss)]
    let share = moved as f64 / keys as f64;
    share
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn consistent_hash_moves_at_most_one_nth_plus_two_percent_when_a_member_joins(n in 2usize..16) {
        #[allow(clippy::cast_precision_loss)]
        let limit = 1.0 / (n + 1) as f64 + 0.02;
        let ring = moved_share(RingHash::new(), n);
        prop_assert!(ring <= limit, "ring moved {ring} of keys with {n} -> {} members", n + 1);
        let maglev = moved_share(Maglev::new(), n);
        prop_assert!(maglev <= limit, "maglev moved {maglev} of keys with {n} -> {} members", n + 1);
    }
}

/// Insert/remove/state churn on one thread, picks on three others: once `remove` returned, no
/// pick that starts afterwards returns the removed member.
fn churn_never_yields_a_removed_member<S: Strategy>(s: S) {
    let r = Registry::new();
    for i in 0..8 {
        r.insert(spec(&format!("m{i}"))).unwrap();
    }
    let p = Picker::new(&r, s);
    // serial of the member most recently removed; 0 = none
    let removed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicUsize::new(0));
    let picks = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_millis(400);
    std::thread::scope(|scope| {
        for t in 0..3u64 {
            let (r, p, removed, stop, violations, picks) = (
                r.clone(),
                p.clone(),
                removed.clone(),
                stop.clone(),
                violations.clone(),
                picks.clone(),
            );
            scope.spawn(move || {
                let tried = Tried::new();
                let mut k = t;
                while !stop.load(Ordering::Acquire) {
                    let gone = removed.load(Ordering::Acquire) as u64;
                    k += 1;
                    let snap = r.load();
                    if let Ok(m) = p.pick(
                        &snap,
                        &PickContext::new(Some(hash_key(&k.to_le_bytes())), &tried),
                    ) {
                        if m.serial() == gone {
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    picks.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut n = 8;
        let mut rounds = 0;
        while Instant::now() < deadline && rounds < 20_000 {
            rounds += 1;
            let victim = format!("m{}", n - 8);
            let gone = r.remove(&victim).unwrap();
            removed.store(usize::try_from(gone.serial()).unwrap(), Ordering::Release);
            r.insert(spec(&format!("m{n}"))).unwrap();
            let _ = r.set_state(&format!("m{}", n - 3), AdminState::Draining);
            let _ = r.set_state(&format!("m{}", n - 3), AdminState::Active);
            n += 1;
        }
        stop.store(true, Ordering::Release);
        assert!(rounds > 10);
    });
    assert_eq!(violations.load(Ordering::Relaxed), 0);
    assert!(picks.load(Ordering::Relaxed) > 100);
}

#[test]
fn registry_churn_never_yields_a_removed_member_after_removal_returned() {
    churn_never_yields_a_removed_member(RoundRobin::new());
    churn_never_yields_a_removed_member(LeastOutstanding::new());
    churn_never_yields_a_removed_member(PowerOfTwo::new());
    churn_never_yields_a_removed_member(RingHash::new().points_per_weight(16));
    churn_never_yields_a_removed_member(Maglev::new().table_size(4093));
}

#[test]
fn removing_every_member_leaves_a_typed_error_not_a_panic() {
    let r = common::registry(3);
    let p = Picker::new(&r, RoundRobin::new());
    r.update(|b| {
        for i in 0..3 {
            b.remove(&format!("m{i}"))?;
        }
        Ok::<_, RegistryError>(())
    })
    .unwrap();
    let tried = Tried::new();
    assert_eq!(
        p.pick(&r.load(), &PickContext::new(None, &tried))
            .unwrap_err(),
        PickError::NoEligibleMember
    );
}
