//! Passive outlier ejection through the balance layer, in paused time.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, Picked, ResponseBody};
use tower_balancer::health::{FailurePercentage, OutlierConfig, OutlierDetection};
use tower_balancer::registry::{Health, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};
use tower_balancer::BoxError;

type Body = Full<Bytes>;

/// Members answer with the status set for them; 0 means "the client's body failed", 1 "the
/// connection was refused".
#[derive(Clone)]
struct Members {
    status: Arc<Mutex<Vec<u16>>>,
    hits: Arc<Vec<AtomicUsize>>,
}

impl Members {
    fn new(statuses: &[u16]) -> Self {
        Self {
            status: Arc::new(Mutex::new(statuses.to_vec())),
            hits: Arc::new(statuses.iter().map(|_| AtomicUsize::new(0)).collect()),
        }
    }
    fn hits(&self, i: usize) -> usize {
        self.hits[i].load(Ordering::Relaxed)
    }
}

fn stack(
    r: &Registry,
    members: &Members,
    outliers: &OutlierDetection,
) -> impl Service<Request<Body>, Response = Response<ResponseBody<Body>>, Error = BoxError> + Clone
{
    let m = members.clone();
    ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()).observer(outliers.clone()))
        .service(service_fn(move |req: Request<_>| {
            let m = m.clone();
            async move {
                let id = req.extensions().get::<Picked>().unwrap().0.id().to_string();
                let i: usize = id[1..].parse().unwrap();
                m.hits[i].fetch_add(1, Ordering::Relaxed);
                let code = m.status.lock().unwrap()[i];
                if code == 0 {
                    return Err(UpstreamError::from_kind(UpstreamErrorKind::ClientBody));
                }
                if code == 1 {
                    return Err(UpstreamError::from_kind(UpstreamErrorKind::Connect));
                }
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::from_u16(code).unwrap();
                Ok(res)
            }
        }))
}

async fn send_n<S>(svc: &S, n: usize)
where
    S: Service<Request<Body>, Response = Response<ResponseBody<Body>>, Error = BoxError> + Clone,
{
    for _ in 0..n {
        let _ = svc
            .clone()
            .oneshot(Request::new(Full::new(Bytes::new())))
            .await;
        // requests arrive on their own tasks: the ejection task runs between them
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_fifth_consecutive_failure_ejects_and_no_sixth_request_reaches_the_member() {
    let r = common::registry(2);
    let members = Members::new(&[503, 200]);
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    send_n(&svc, 100).await;
    assert_eq!(members.hits(0), 5);
    assert_eq!(members.hits(1), 95);
    assert_eq!(
        outliers
            .ejected()
            .iter()
            .map(tower_balancer::registry::MemberId::as_str)
            .collect::<Vec<_>>(),
        ["m0"]
    );
    assert_eq!(r.load().get("m0").unwrap().health(), Health::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn an_ejected_member_returns_on_probation_and_one_failure_ejects_it_for_longer() {
    let r = common::registry(2);
    let members = Members::new(&[503, 200]);
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    send_n(&svc, 20).await;
    assert_eq!(members.hits(0), 5);
    // 30 s later it is back, on probation: its first failure ejects it again
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(outliers.ejected().is_empty());
    send_n(&svc, 20).await;
    assert_eq!(members.hits(0), 6, "probation allows one request");
    // second ejection lasts 60 s: still out after 31 s, back after 61 s
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(outliers.ejected().len(), 1);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(outliers.ejected().is_empty());
    // now healthy: a success on probation ends it, and five failures are needed again
    members.status.lock().unwrap()[0] = 200;
    send_n(&svc, 4).await;
    members.status.lock().unwrap()[0] = 503;
    send_n(&svc, 8).await;
    assert_eq!(
        outliers.ejected().len(),
        0,
        "ejected before five failures in a row"
    );
}

#[tokio::test(start_paused = true)]
async fn at_most_the_configured_fraction_is_ejected_but_always_one() {
    let r = common::registry(10);
    let members = Members::new(&[503; 10]);
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    r.set_panic_threshold(0.0);
    send_n(&svc, 200).await;
    assert_eq!(outliers.ejected().len(), 1, "10% of 10 members");
    let half = OutlierDetection::new(
        r.clone(),
        OutlierConfig::default().max_ejected_fraction(0.5),
    );
    let svc = stack(&r, &members, &half);
    send_n(&svc, 200).await;
    assert_eq!(half.ejected().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_fraction_of_zero_ejects_no_member() {
    let r = common::registry(2);
    let members = Members::new(&[503, 200]);
    let outliers = OutlierDetection::new(
        r.clone(),
        OutlierConfig::default().max_ejected_fraction(0.0),
    );
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    send_n(&svc, 100).await;
    assert!(outliers.ejected().is_empty());
    assert_eq!(members.hits(0), 50, "the failing member kept its share");
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_4xx_never_eject() {
    let r = common::registry(2);
    let members = Members::new(&[0, 404]);
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    send_n(&svc, 100).await;
    assert!(outliers.ejected().is_empty());
    assert_eq!(members.hits(0) + members.hits(1), 100);
}

#[tokio::test(start_paused = true)]
async fn ejection_times_are_capped() {
    let r = common::registry(2);
    let members = Members::new(&[503, 200]);
    let config =
        OutlierConfig::default().ejection_time(Duration::from_secs(30), Duration::from_secs(60));
    let outliers = OutlierDetection::new(r.clone(), config);
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    for _ in 0..4 {
        send_n(&svc, 20).await; // eject (again)
        assert_eq!(outliers.ejected().len(), 1);
        tokio::time::sleep(Duration::from_secs(61)).await; // never longer than 60 s
        assert!(outliers.ejected().is_empty());
    }
}

/// Active probes that pass for every member, every 2 s.
fn always_passing_probe(r: &Registry) -> tower_balancer::health::HealthProbeTask {
    use tower_balancer::health::{HealthProbe, ProbeResult, ProbeSettings};
    let probe = service_fn(|_m: Arc<tower_balancer::registry::Member>| async {
        Ok::<_, BoxError>(ProbeResult::Pass)
    });
    HealthProbe::new(r.clone(), probe, ProbeSettings::default().jitter(0.0)).spawn()
}

#[tokio::test(start_paused = true)]
async fn a_passing_active_probe_readmits_a_member_ejected_for_connect_failures_early() {
    let r = common::registry(2);
    let members = Members::new(&[1, 200]);
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    // the probe connects (the member restarted, say) though requests were refused before
    let _probes = always_passing_probe(&r);
    send_n(&svc, 20).await;
    assert_eq!(outliers.ejected().len(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await; // one probe interval, not 30 s
    assert!(outliers.ejected().is_empty());
    assert_eq!(r.load().get("m0").unwrap().health(), Health::Healthy);
    // and it can be ejected again
    send_n(&svc, 20).await;
    assert_eq!(outliers.ejected().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_passing_probe_does_not_end_an_ejection_for_failed_requests() {
    let r = common::registry(2);
    let members = Members::new(&[503, 200]);
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    // the health page passes while the application answers 503
    let _probes = always_passing_probe(&r);
    send_n(&svc, 20).await;
    assert_eq!(outliers.ejected().len(), 1);
    tokio::time::sleep(Duration::from_secs(20)).await; // many passing probes
    assert_eq!(
        outliers.ejected().len(),
        1,
        "a passing probe ended the ejection"
    );
    send_n(&svc, 20).await;
    assert_eq!(members.hits(0), 5, "the ejected member got requests");
    tokio::time::sleep(Duration::from_secs(11)).await; // 30 s are up
    assert!(outliers.ejected().is_empty());
}

#[tokio::test(start_paused = true)]
async fn three_connect_failures_in_a_row_eject_a_member() {
    let r = common::registry(2);
    let members = Members::new(&[1, 200]);
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    send_n(&svc, 100).await;
    assert_eq!(members.hits(0), 3, "the fourth request must not reach it");
    assert_eq!(outliers.ejected().len(), 1);
    assert_eq!(r.load().get("m0").unwrap().health(), Health::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn connect_ejection_can_be_turned_off_and_a_reset_breaks_the_run() {
    let r = common::registry(2);
    let members = Members::new(&[1, 200]);
    let off = OutlierConfig::default()
        .consecutive_connect_failures(0)
        .consecutive_failures(0);
    let outliers = OutlierDetection::new(r.clone(), off);
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    send_n(&svc, 40).await;
    assert!(outliers.ejected().is_empty());
    assert_eq!(members.hits(0), 20);
    // two connect failures, a 503, one more: never three connect failures in a row
    // (round robin: every other request reaches m0)
    let r = common::registry(2);
    let members = Members::new(&[1, 200]);
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    send_n(&svc, 4).await;
    members.status.lock().unwrap()[0] = 503;
    send_n(&svc, 2).await;
    members.status.lock().unwrap()[0] = 1;
    send_n(&svc, 2).await;
    assert!(outliers.ejected().is_empty(), "4 failures of mixed kinds");
    send_n(&svc, 2).await;
    assert_eq!(outliers.ejected().len(), 1, "the fifth failure in a row");
}

#[tokio::test(start_paused = true)]
async fn the_registry_write_is_left_to_the_task_not_the_response_future() {
    let r = common::registry(2);
    let members = Members::new(&[1, 200]);
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let svc = stack(&r, &members, &outliers);
    let version = r.load().version();
    for _ in 0..6 {
        let _ = svc
            .clone()
            .oneshot(Request::new(Full::new(Bytes::new())))
            .await;
    }
    // decided on the request path, but no snapshot was published from it
    assert_eq!(outliers.ejected().len(), 1);
    assert_eq!(r.load().version(), version);
    assert_eq!(r.load().get("m0").unwrap().health(), Health::Healthy);
    let _task = outliers.spawn();
    tokio::task::yield_now().await;
    assert_eq!(r.load().get("m0").unwrap().health(), Health::Unhealthy);
}

/// m0 fails one request in four, never two in a row; m1 never fails. 96 requests, 48 each.
async fn one_in_four_fails_on_m0<S>(svc: &S, members: &Members)
where
    S: Service<Request<Body>, Response = Response<ResponseBody<Body>>, Error = BoxError> + Clone,
{
    for _ in 0..12 {
        members.status.lock().unwrap()[0] = 503;
        send_n(svc, 2).await;
        members.status.lock().unwrap()[0] = 200;
        send_n(svc, 6).await;
    }
}

/// The failure-percentage rule (opt-in) with `percent`, over 40 requests, every 10 s.
fn by_share(r: &Registry, percent: u8) -> OutlierDetection {
    let rule = FailurePercentage::new(percent, 40, Duration::from_secs(10));
    OutlierDetection::new(r.clone(), OutlierConfig::default().failure_percentage(rule))
}

#[tokio::test(start_paused = true)]
async fn a_member_failing_a_quarter_of_its_requests_is_ejected_by_its_share() {
    let r = common::registry(2);
    let members = Members::new(&[200, 200]);
    let outliers = by_share(&r, 20);
    let _task = outliers.spawn();
    let svc = stack(&r, &members, &outliers);
    one_in_four_fails_on_m0(&svc, &members).await;
    assert_eq!(members.hits(0), 48);
    // never five in a row: only the share, judged at the interval's end, ejects it
    assert!(outliers.ejected().is_empty());
    // the interval ends 10 s after the detector started
    tokio::time::sleep(Duration::from_secs(11)).await;
    let ejected: Vec<String> = outliers.ejected().iter().map(ToString::to_string).collect();
    assert_eq!(ejected, ["m0"]);
    assert_eq!(r.load().get("m0").unwrap().health(), Health::Unhealthy);
    send_n(&svc, 10).await;
    assert_eq!(members.hits(0), 48, "out of rotation");
    // the next interval counts afresh: m0 had no requests, and is not judged again
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(outliers.ejected().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_share_under_the_threshold_or_without_the_rule_ejects_nobody() {
    for percent in [Some(30), None] {
        let r = common::registry(2);
        let outliers = match percent {
            Some(p) => by_share(&r, p),
            None => OutlierDetection::new(r.clone(), OutlierConfig::default()),
        };
        let members = Members::new(&[200, 200]);
        let _task = outliers.spawn();
        let svc = stack(&r, &members, &outliers);
        one_in_four_fails_on_m0(&svc, &members).await;
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(outliers.ejected().is_empty());
        assert_eq!(members.hits(0), 48);
    }
}

/// A reload with new ejection settings: the new detector keeps the old one's ejections (the
/// member stays out for the rest of its time and its count goes on), where it used to put
/// every ejected member back at once.
#[tokio::test(start_paused = true)]
async fn new_settings_keep_the_ejections_and_their_count() {
    let r = common::registry(2);
    let members = Members::new(&[503, 200]);
    let old = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let old_task = old.spawn();
    send_n(&stack(&r, &members, &old), 20).await;
    assert_eq!(old.ejected().len(), 1);
    // ten seconds into its 30 s, the settings change
    tokio::time::sleep(Duration::from_secs(10)).await;
    let new = OutlierDetection::new(r.clone(), OutlierConfig::default().consecutive_failures(4));
    new.adopt_ejections(&old);
    drop(old_task);
    let _task = new.spawn();
    assert!(old.ejected().is_empty());
    let svc = stack(&r, &members, &new);
    send_n(&svc, 20).await;
    assert_eq!(members.hits(0), 5, "still out");
    assert_eq!(r.load().get("m0").unwrap().health(), Health::Unhealthy);
    // out until 30 s from its ejection, then on probation: one failure, out for 60 s
    tokio::time::sleep(Duration::from_secs(21)).await;
    assert!(new.ejected().is_empty());
    send_n(&svc, 4).await;
    assert_eq!(members.hits(0), 6);
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(new.ejected().len(), 1, "its second ejection is 60 s");
}
