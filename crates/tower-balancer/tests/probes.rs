//! The active health checker in paused time, with scripted probes.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::service_fn;
use tower_balancer::health::{HealthChange, HealthProbe, ProbeResult, ProbeSettings};
use tower_balancer::registry::{AdminState, Health, HealthSource, Member, Registry};
use tower_balancer::BoxError;

/// What each member's probe answers now; "hang" never answers.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<HashMap<String, Answer>>>);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    Pass,
    Fail,
    Alternate,
    Hang,
    HangOnceThenPass,
    FailNow,
    Drain,
    /// The probe's connect finds the balancer out of file descriptors.
    OutOfDescriptors,
}

impl Script {
    fn set(&self, id: &str, a: Answer) {
        self.0.lock().unwrap().insert(id.to_owned(), a);
    }

    fn probe(
        &self,
    ) -> impl tower::Service<Arc<Member>, Response = ProbeResult, Error = BoxError, Future = impl Send>
           + Clone {
        let script = self.clone();
        let flips: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
        service_fn(move |m: Arc<Member>| {
            let script = script.clone();
            let flips = flips.clone();
            async move {
                let id = m.id().to_string();
                let answer = script
                    .0
                    .lock()
                    .unwrap()
                    .get(&id)
                    .copied()
                    .unwrap_or(Answer::Pass);
                let result = match answer {
                    Answer::Pass => ProbeResult::Pass,
                    Answer::Fail => ProbeResult::Fail,
                    Answer::FailNow => ProbeResult::FailNow,
                    Answer::Drain => ProbeResult::Drain,
                    Answer::OutOfDescriptors => {
                        let emfile = std::io::Error::from_raw_os_error(24);
                        return Err(BoxError::from(emfile));
                    }
                    Answer::Alternate => {
                        let mut f = flips.lock().unwrap();
                        let v = f.entry(id).or_insert(false);
                        *v = !*v;
                        if *v {
                            ProbeResult::Fail
                        } else {
                            ProbeResult::Pass
                        }
                    }
                    Answer::Hang => {
                        std::future::pending::<()>().await;
                        ProbeResult::Pass
                    }
                    Answer::HangOnceThenPass => {
                        script.set(&id, Answer::Pass);
                        std::future::pending::<()>().await;
                        ProbeResult::Pass
                    }
                };
                Ok::<_, BoxError>(result)
            }
        })
    }
}

fn health(r: &Registry, id: &str) -> Health {
    r.load().get(id).unwrap().health()
}

/// Waits (in paused time) until `id`'s health is `want`; returns when that happened.
async fn until_health(r: &Registry, id: &str, want: Health, limit: Duration) -> Option<Instant> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if health(r, id) == want {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn no_jitter() -> ProbeSettings {
    ProbeSettings::default().jitter(0.0)
}

#[tokio::test(start_paused = true)]
async fn a_member_alternating_pass_and_fail_never_changes_state() {
    let r = common::registry(1);
    let script = Script::default();
    script.set("m0", Answer::Alternate);
    let checker = HealthProbe::new(r.clone(), script.probe(), no_jitter());
    let mut events = checker.subscribe();
    let _task = checker.spawn();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(health(&r, "m0"), Health::Healthy);
    assert!(
        events.try_recv().is_err(),
        "a flapping member changed state"
    );
}

#[tokio::test(start_paused = true)]
async fn a_single_timed_out_probe_never_marks_a_member_down() {
    let r = common::registry(1);
    let script = Script::default();
    script.set("m0", Answer::HangOnceThenPass);
    let _task = HealthProbe::new(r.clone(), script.probe(), no_jitter()).spawn();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(health(&r, "m0"), Health::Healthy);
}

#[tokio::test(start_paused = true)]
async fn detection_takes_at_most_fall_intervals_plus_the_timeout() {
    let r = common::registry(2);
    let script = Script::default();
    let _task = HealthProbe::new(r.clone(), script.probe(), no_jitter()).spawn();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let start = Instant::now();
    script.set("m0", Answer::Hang);
    let down = until_health(&r, "m0", Health::Unhealthy, Duration::from_secs(60))
        .await
        .unwrap();
    let bound = 3 * Duration::from_secs(2) + Duration::from_secs(1);
    assert!(down - start <= bound, "down after {:?}", down - start);
    assert!(r.load().get("m0").unwrap().is_down_by(HealthSource::Probe));
    assert_eq!(health(&r, "m1"), Health::Healthy);
    // recovery: at most rise intervals after it answers again
    let start = Instant::now();
    script.set("m0", Answer::Pass);
    let up = until_health(&r, "m0", Health::Healthy, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        up - start <= 2 * Duration::from_secs(2) + Duration::from_secs(1),
        "up after {:?}",
        up - start
    );
}

#[tokio::test(start_paused = true)]
async fn members_can_start_unhealthy_until_they_pass() {
    let r = common::registry(1);
    let script = Script::default();
    let checker = HealthProbe::new(
        r.clone(),
        script.probe(),
        no_jitter().initial(Health::Unhealthy),
    );
    let mut events = checker.subscribe();
    let start = Instant::now();
    let _task = checker.spawn();
    assert_eq!(health(&r, "m0"), Health::Unhealthy);
    // probed at once, and up at its first pass: not `rise` intervals of panic mode first
    let up = until_health(&r, "m0", Health::Healthy, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(up - start < Duration::from_millis(100), "{:?}", up - start);
    assert_eq!(events.recv().await.unwrap().change, HealthChange::Up);
}

#[tokio::test(start_paused = true)]
async fn a_member_that_fails_its_first_probe_needs_rise_passes_as_any_other() {
    let r = common::registry(1);
    let script = Script::default();
    script.set("m0", Answer::Fail);
    let checker = HealthProbe::new(
        r.clone(),
        script.probe(),
        no_jitter().initial(Health::Unhealthy),
    );
    let _task = checker.spawn();
    tokio::time::sleep(Duration::from_millis(10)).await;
    script.set("m0", Answer::Pass);
    let start = Instant::now();
    let up = until_health(&r, "m0", Health::Healthy, Duration::from_secs(60))
        .await
        .unwrap();
    // a first pass after the 2 s interval, the second after the 1 s fast one
    assert!(up - start >= Duration::from_secs(3), "{:?}", up - start);
}

#[tokio::test(start_paused = true)]
async fn a_member_added_while_probing_starts_down_as_the_first_ones_did() {
    let r = common::registry(1);
    let script = Script::default();
    let _task = HealthProbe::new(
        r.clone(),
        script.probe(),
        no_jitter().initial(Health::Unhealthy),
    )
    .spawn();
    until_health(&r, "m0", Health::Healthy, Duration::from_secs(1))
        .await
        .unwrap();
    // a reload or discovery adds a member that does not answer its probe
    script.set("late", Answer::Fail);
    r.insert(common::spec("late")).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(r
        .load()
        .get("late")
        .unwrap()
        .is_down_by(HealthSource::Probe));
    // and one that does is up at its first probe, at once
    r.insert(common::spec("later")).unwrap();
    // down from its insertion: no moment in which requests could pick it unprobed
    assert!(r
        .load()
        .get("later")
        .unwrap()
        .is_down_by(HealthSource::Probe));
    let start = Instant::now();
    let up = until_health(&r, "later", Health::Healthy, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(up - start < Duration::from_millis(100), "{:?}", up - start);
    // a restarted checker (a reload) leaves probed members as they are
    drop(_task);
    let _again = HealthProbe::new(
        r.clone(),
        script.probe(),
        no_jitter().initial(Health::Unhealthy),
    )
    .spawn();
    assert_eq!(health(&r, "m0"), Health::Healthy);
    assert_eq!(health(&r, "later"), Health::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_checker_restarted_faster_than_its_interval_still_takes_a_failing_member_down() {
    let r = common::registry(2);
    let script = Script::default();
    let spawn = || HealthProbe::new(r.clone(), script.probe(), no_jitter()).spawn();
    let mut task = spawn();
    tokio::time::sleep(Duration::from_secs(3)).await;
    script.set("m1", Answer::Fail);
    // a reload every 1.8 s restarts the checker (2 s interval, 3 failures take it down)
    let start = Instant::now();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(1_800)).await;
        drop(task);
        task = spawn();
    }
    assert!(
        r.load().get("m1").unwrap().is_down_by(HealthSource::Probe),
        "still up {:?} after it began failing",
        start.elapsed()
    );
    assert_eq!(health(&r, "m0"), Health::Healthy);
    // and back up the same way, its passes counted across restarts too
    script.set("m1", Answer::Pass);
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(1_800)).await;
        drop(task);
        task = spawn();
    }
    assert_eq!(health(&r, "m1"), Health::Healthy);
    drop(task);
}

#[tokio::test(start_paused = true)]
async fn checks_turned_off_and_on_again_start_afresh() {
    let r = common::registry(1);
    let script = Script::default();
    let settings = no_jitter().initial(Health::Unhealthy);
    let task = HealthProbe::new(r.clone(), script.probe(), settings).spawn();
    until_health(&r, "m0", Health::Healthy, Duration::from_secs(1))
        .await
        .unwrap();
    // checks removed (a reload), then the member fails, then checks come back
    drop(task);
    r.forget_probe_results();
    script.set("m0", Answer::Fail);
    let _task = HealthProbe::new(r.clone(), script.probe(), settings).spawn();
    // down from the checker's start, as at the first start: not up until `fall` failures
    assert!(r.load().get("m0").unwrap().is_down_by(HealthSource::Probe));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(r.load().get("m0").unwrap().is_down_by(HealthSource::Probe));
}

#[tokio::test(start_paused = true)]
async fn members_added_later_are_probed_and_removed_ones_are_not_resurrected() {
    let r = common::registry(1);
    let script = Script::default();
    let _task = HealthProbe::new(r.clone(), script.probe(), no_jitter()).spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.insert(common::spec("late")).unwrap();
    script.set("late", Answer::Fail);
    until_health(&r, "late", Health::Unhealthy, Duration::from_secs(30))
        .await
        .unwrap();
    // removed while its probe hangs; a new member of the same id must keep its own health
    script.set("m0", Answer::Hang);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    r.remove("m0").unwrap();
    r.insert(common::spec("m0")).unwrap();
    script.set("m0", Answer::Pass);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(health(&r, "m0"), Health::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_fail_header_takes_a_member_down_at_once_and_a_drain_status_drains_it() {
    let r = common::registry(2);
    let script = Script::default();
    let checker = HealthProbe::new(r.clone(), script.probe(), no_jitter());
    let mut events = checker.subscribe();
    let _task = checker.spawn();
    tokio::time::sleep(Duration::from_secs(5)).await;
    script.set("m0", Answer::FailNow);
    let start = Instant::now();
    let down = until_health(&r, "m0", Health::Unhealthy, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(down - start <= Duration::from_secs(2) + Duration::from_millis(20));
    assert_eq!(events.recv().await.unwrap().change, HealthChange::DownNow);

    script.set("m1", Answer::Drain);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.load().get("m1").unwrap().state(), AdminState::Draining);
    assert_eq!(health(&r, "m1"), Health::Healthy);
    script.set("m1", Answer::Pass);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.load().get("m1").unwrap().state(), AdminState::Active);
}

#[tokio::test(start_paused = true)]
async fn disabled_members_are_not_probed() {
    let r = common::registry(1);
    r.set_state("m0", AdminState::Disabled).unwrap();
    let script = Script::default();
    script.set("m0", Answer::Fail);
    let _task = HealthProbe::new(r.clone(), script.probe(), no_jitter()).spawn();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!r.load().get("m0").unwrap().is_down_by(HealthSource::Probe));
}

#[tokio::test(start_paused = true)]
async fn a_probe_out_of_descriptors_counts_neither_for_nor_against_a_member() {
    let r = common::registry(2);
    let script = Script::default();
    let checker = HealthProbe::new(r.clone(), script.probe(), no_jitter());
    let mut events = checker.subscribe();
    let _task = checker.spawn();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // m0 is up, m1 down; then every probe finds the process out of descriptors for a minute
    script.set("m1", Answer::Fail);
    until_health(&r, "m1", Health::Unhealthy, Duration::from_secs(60))
        .await
        .unwrap();
    while events.try_recv().is_ok() {}
    script.set("m0", Answer::OutOfDescriptors);
    script.set("m1", Answer::OutOfDescriptors);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(health(&r, "m0"), Health::Healthy, "not taken down");
    assert_eq!(health(&r, "m1"), Health::Unhealthy, "not brought up");
    assert!(events.try_recv().is_err(), "no change");
    // the verdicts count again once descriptors are back
    script.set("m1", Answer::Pass);
    until_health(&r, "m1", Health::Healthy, Duration::from_secs(10))
        .await
        .unwrap();
}
