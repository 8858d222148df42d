//! Unit tests of the registry handle.
use super::*;

fn spec(id: &str) -> MemberSpec {
    MemberSpec::new(
        MemberId::new(id).unwrap(),
        format!("http://{id}.test").parse().unwrap(),
    )
}

#[test]
fn duplicate_ids_are_refused_and_change_nothing() {
    let r = Registry::new();
    r.insert(spec("a")).unwrap();
    let v = r.load().version();
    assert!(matches!(
        r.insert(spec("a")),
        Err(RegistryError::DuplicateId(_))
    ));
    assert_eq!(r.load().version(), v);
    assert_eq!(r.load().len(), 1);
}

#[test]
fn zero_weight_is_refused() {
    let r = Registry::new();
    assert!(matches!(
        r.insert(spec("a").weight(0)),
        Err(RegistryError::InvalidWeight { weight: 0, .. })
    ));
    r.insert(spec("a")).unwrap();
    assert!(r.set_weight("a", 0).is_err());
    assert_eq!(r.load().get("a").unwrap().weight(), 1);
}

#[test]
fn unknown_members_give_a_typed_error() {
    let r = Registry::new();
    assert!(matches!(
        r.remove("nope"),
        Err(RegistryError::UnknownMember(_))
    ));
    assert!(r.set_state("nope", AdminState::Disabled).is_err());
}

#[test]
fn tiers_order_active_sets_then_standby() {
    let r = Registry::new();
    r.update(|b| {
        b.insert(spec("s0").state(AdminState::Standby))?;
        b.insert(spec("a1").priority(1))?;
        b.insert(spec("a0"))?;
        b.insert(spec("d").state(AdminState::Draining))?;
        b.insert(spec("x").state(AdminState::Disabled))?;
        b.insert(spec("sick").health(Health::Unhealthy))?;
        Ok::<_, RegistryError>(())
    })
    .unwrap();
    let s = r.load();
    let tiers: Vec<(bool, u16, Vec<&str>)> = s
        .tiers()
        .iter()
        .map(|t| {
            (
                t.is_standby(),
                t.priority(),
                t.members().iter().map(|m| m.id().as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        tiers,
        vec![
            (false, 0, vec!["a0"]),
            (false, 1, vec!["a1"]),
            (true, 0, vec!["s0"]),
        ]
    );
    assert_eq!(s.len(), 6);
}

#[test]
fn stats_survive_rebuilds_and_upserts_with_the_same_endpoint() {
    let r = Registry::new();
    let m = r.insert(spec("a")).unwrap();
    m.stats().add_bytes_to_member(42);
    r.set_weight("a", 5).unwrap();
    r.upsert(spec("a").weight(7)).unwrap();
    let now = r.load();
    let same = now.get("a").unwrap();
    assert!(Arc::ptr_eq(same, &m));
    assert_eq!(same.stats().view().bytes_to_member, 42);
    assert_eq!(same.weight(), 7);
}

#[test]
fn upsert_with_a_new_endpoint_replaces_the_member() {
    let r = Registry::new();
    let old = r.insert(spec("a")).unwrap();
    let new = r
        .upsert(MemberSpec::new(
            MemberId::new("a").unwrap(),
            "http://elsewhere.test".parse().unwrap(),
        ))
        .unwrap();
    assert_ne!(old.serial(), new.serial());
    assert_eq!(r.load().len(), 1);
}

#[test]
fn upsert_with_a_new_tls_name_replaces_the_member() {
    let r = Registry::new();
    let old = r.insert(spec("a").tls_name("abc.com")).unwrap();
    assert_eq!(old.tls_name(), Some("abc.com"));
    let same = r.upsert(spec("a").tls_name("abc.com").weight(3)).unwrap();
    assert_eq!(old.serial(), same.serial());
    // connections verified for one name are not the member another name describes
    let new = r.upsert(spec("a").tls_name("xyz.com")).unwrap();
    assert_ne!(old.serial(), new.serial());
    assert_eq!(r.load().get("a").unwrap().tls_name(), Some("xyz.com"));
    let none = r.upsert(spec("a")).unwrap();
    assert_eq!(none.tls_name(), None);
    assert_ne!(none.serial(), new.serial());
}

#[tokio::test]
async fn subscribers_see_each_change() {
    let r = Registry::new();
    let mut changes = r.subscribe();
    r.insert(spec("a")).unwrap();
    let v = changes.changed().await.unwrap();
    assert_eq!(v, r.load().version());
    r.set_health("a", Health::Unhealthy).unwrap();
    assert!(changes.changed().await.unwrap() > v);
    drop(r);
    assert_eq!(changes.changed().await, Err(RegistryClosed));
}

#[test]
fn setting_an_unchanged_value_does_not_rebuild() {
    let r = Registry::new();
    r.insert(spec("a")).unwrap();
    let v = r.load().version();
    r.set_health("a", Health::Healthy).unwrap();
    r.set_state("a", AdminState::Active).unwrap();
    assert_eq!(r.load().version(), v);
}

#[test]
fn panic_mode_is_counted_once_and_forgotten_probes_end_it_in_one_snapshot() {
    let r = Registry::new();
    for id in ["a", "b"] {
        r.insert(spec(id)).unwrap();
    }
    // both down by a probe that has answered: panic mode, entered once
    for id in ["a", "b"] {
        r.load()
            .get(id)
            .unwrap()
            .set_probe_memo(super::super::ProbeMemo {
                probed: true,
                ..Default::default()
            });
        r.set_health_by(id, HealthSource::Probe, Health::Unhealthy)
            .unwrap();
    }
    assert!(r.load_stats().in_panic());
    assert_eq!(r.load_stats().panics(), 1);
    // checks removed: both come back together, in one snapshot
    let v = r.load().version();
    r.forget_probe_results();
    assert_eq!(r.load().version(), v + 1);
    assert!(!r.load_stats().in_panic());
    assert_eq!(r.load().get("a").unwrap().health(), Health::Healthy);
    assert_eq!(r.load().get("b").unwrap().health(), Health::Healthy);
    assert_eq!(r.load_stats().panics(), 1);
}

#[test]
fn members_down_only_until_their_first_probe_are_no_panic() {
    let r = Registry::new();
    for id in ["a", "b"] {
        r.insert(spec(id)).unwrap();
        // as a checker whose members start down marks them before any probe
        r.set_health_by(id, HealthSource::Probe, Health::Unhealthy)
            .unwrap();
    }
    // routing fails open over them, but operators are not told of a panic
    assert!(r.load().is_panic());
    assert!(!r.load_stats().in_panic());
    assert_eq!(r.load_stats().panics(), 0);
}
