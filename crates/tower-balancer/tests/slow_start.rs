//! Slow start through the strategies, in paused time.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use tower_balancer::health::SlowStart;
use tower_balancer::registry::{Health, InFlight, Registry};
use tower_balancer::strategy::{
    LeastOutstanding, PickContext, Picker, PowerOfTwo, RoundRobin, Strategy, Tried, WeightedRandom,
};

/// The share of `picks` picks that go to `id`.
fn share<S: Strategy>(r: &Registry, p: &Picker<S>, id: &str, picks: usize) -> f64 {
    let tried = Tried::new();
    let mut hits = 0usize;
    for _ in 0..picks {
        let snap = r.load();
        if p.pick(&snap, &PickContext::new(None, &tried))
            .unwrap()
            .id()
            .as_str()
            == id
        {
            hits += 1;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let s = hits as f64 / picks as f64;
    s
}

#[tokio::test(start_paused = true)]
async fn a_returning_member_gets_at_most_a_tenth_of_traffic_in_the_first_tenth_of_the_window() {
    let r = common::registry(2);
    let _slow = SlowStart::new(Duration::from_secs(100)).spawn(r.clone());
    tokio::task::yield_now().await;
    r.set_health("m0", Health::Unhealthy).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.set_health("m0", Health::Healthy).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rr = Picker::new(&r, RoundRobin::new());
    let wr = Picker::new(&r, WeightedRandom::new());
    let lor = Picker::new(&r, LeastOutstanding::new());
    let p2c = Picker::new(&r, PowerOfTwo::new());
    // sample across the first tenth of the window
    let mut worst: f64 = 0.0;
    for _ in 0..9 {
        // round robin is exact; weighted random is sampled (expected 1/11 = 0.091, and
        // 20 000 picks put 0.10 about 4.5 standard deviations above it)
        worst = worst.max(share(&r, &rr, "m0", 1100));
        worst = worst.max(share(&r, &wr, "m0", 20_000));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        worst <= 0.10,
        "share {worst} in the first tenth of the window"
    );
    // least outstanding and P2C weigh load by effective weight: with one request in flight
    // on each member, the ramping member is the more loaded one
    let snap = r.snapshot();
    let _busy: Vec<InFlight> = snap
        .members()
        .iter()
        .map(|m| InFlight::start(m.clone()))
        .collect();
    assert_eq!(share(&r, &lor, "m0", 100), 0.0);
    assert_eq!(share(&r, &p2c, "m0", 100), 0.0);
    drop(_busy);
    // after the window it is back to an even share
    tokio::time::sleep(Duration::from_secs(100)).await;
    let even = share(&r, &rr, "m0", 1000);
    assert!((even - 0.5).abs() < 0.01, "{even}");
}

#[tokio::test(start_paused = true)]
async fn a_member_added_later_ramps_and_members_present_at_start_do_not() {
    let r = common::registry(1);
    let _slow = SlowStart::new(Duration::from_secs(60)).spawn(r.clone());
    tokio::task::yield_now().await;
    assert_eq!(r.load().get("m0").unwrap().ramp_permille(), 1000);
    r.insert(common::spec("new")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ramp = r.load().get("new").unwrap().ramp_permille();
    assert!(ramp <= 110, "{ramp}");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let ramp = r.load().get("new").unwrap().ramp_permille();
    assert!((450..=560).contains(&ramp), "{ramp}");
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(r.load().get("new").unwrap().ramp_permille(), 1000);
}
