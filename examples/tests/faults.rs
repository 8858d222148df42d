//! The fault-injection suite: real member processes on loopback, killed, stopped and made to
//! misbehave under load, with the balancer in this process. Every scenario is bounded in
//! requests and time. Run it alone with `cargo test -p tower-balancer-examples --test faults`.
#![allow(clippy::unwrap_used)]

#[path = "faults/harness.rs"]
#[allow(dead_code)] // Lb::from_file serves operator_faults.rs
mod harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::{until, Errors, Http, Lb, Member};
use http::{Method, StatusCode};
use tower_balancer::balance::FailureStatuses;
use tower_balancer::failover::FailoverConfig;
use tower_balancer::registry::HealthSource;
use tower_balancer_proxy::serve::ServeConfig;

const LIMIT: Duration = Duration::from_secs(60);

/// Load from `clients` tasks, `per_client` GETs each; `sticky` clients keep the balancer's
/// cookie. Calls `at_third` once a third of the requests are done.
async fn load(
    lb: &Lb,
    clients: usize,
    per_client: usize,
    sticky: bool,
    at_third: impl FnOnce() + Send + 'static,
) -> (Arc<Errors>, HashMap<String, usize>) {
    let http = Http::new();
    let errors = Arc::new(Errors::default());
    let done = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let total = clients * per_client;
    let url = format!("http://{}/work", lb.addr);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, errors, done, served, url) = (
            http.clone(),
            errors.clone(),
            done.clone(),
            served.clone(),
            url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut cookie: Option<String> = None;
            for _ in 0..per_client {
                match http.get(&url, cookie.as_deref()).await {
                    Ok(r) if r.status == StatusCode::OK => {
                        let by = r.served_by.unwrap_or_default();
                        *served.lock().unwrap().entry(by).or_default() += 1;
                        if sticky && r.cookie.is_some() {
                            cookie = r.cookie;
                        }
                    }
                    Ok(r) => errors.add(format!("status {}", r.status)),
                    Err(e) => errors.add(e),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut at_third = Some(at_third);
    while done.load(Ordering::Relaxed) < total {
        if done.load(Ordering::Relaxed) >= total / 3 {
            if let Some(f) = at_third.take() {
                f();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let served = served.lock().unwrap().clone();
    (errors, served)
}

async fn kill_under_load(sticky: bool) {
    let a = Member::spawn("node1", None, &[]);
    let b = Member::spawn("node2", None, &[]);
    let lb = Lb::start(&[&a, &b], FailoverConfig::default(), ServeConfig::new()).await;
    assert!(until(Duration::from_secs(5), || lb
        .registry
        .snapshot()
        .members()
        .len()
        == 2)
    .await
    .is_some());
    let a = Arc::new(std::sync::Mutex::new(a));
    let killed_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let (a2, k2) = (a.clone(), killed_at.clone());
    let (errors, served) = load(&lb, 16, 150, sticky, move || {
        a2.lock().unwrap().kill();
        *k2.lock().unwrap() = Some(Instant::now());
    })
    .await;
    assert!(
        errors.all().is_empty(),
        "client-visible errors: {:?}",
        errors.all()
    );
    assert!(served.get("node1").copied().unwrap_or(0) > 0, "{served:?}");
    assert!(served.get("node2").copied().unwrap_or(0) > 0, "{served:?}");

    // marked down by the probe, and given nothing new from then on
    let down = || {
        lb.registry
            .snapshot()
            .get("node1")
            .unwrap()
            .is_down_by(HealthSource::Probe)
    };
    assert!(
        until(Duration::from_secs(2), down).await.is_some(),
        "node1 was never marked down"
    );
    let before = lb.requests_to("node1");
    let (errors, _) = load(&lb, 8, 50, sticky, || {}).await;
    assert!(errors.all().is_empty(), "{:?}", errors.all());
    assert_eq!(
        lb.requests_to("node1"),
        before,
        "a member marked down got requests"
    );

    // restarted on the same port: back within rise x interval (2 x 100 ms) plus one probe
    a.lock().unwrap().start();
    let up = until(Duration::from_secs(5), || !down())
        .await
        .expect("node1 never came back");
    assert!(up <= Duration::from_millis(600), "readmitted after {up:?}");
    let (errors, served) = load(&lb, 8, 50, false, || {}).await;
    assert!(errors.all().is_empty(), "{:?}", errors.all());
    assert!(
        served.get("node1").copied().unwrap_or(0) > 0,
        "node1 serves again: {served:?}"
    );
    println!(
        "kill -9 (sticky: {sticky}): 0 errors, readmitted after {} ms",
        up.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_round_robin_load() {
    tokio::time::timeout(LIMIT, kill_under_load(false))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_sticky_load() {
    tokio::time::timeout(LIMIT, kill_under_load(true))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_during_a_kill_are_recorded_at_most_once() {
    tokio::time::timeout(LIMIT, async {
        let dir = std::env::temp_dir().join(format!("faults-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = Member::spawn("node1", Some(dir.join("node1")), &[]);
        let b = Member::spawn("node2", Some(dir.join("node2")), &[]);
        let lb = Lb::start(&[&a, &b], FailoverConfig::default(), ServeConfig::new()).await;
        let a = Arc::new(std::sync::Mutex::new(a));
        let http = Http::new();
        let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (http, acked, next, url) = (http.clone(), acked.clone(), next.clone(), lb.addr);
            tasks.push(tokio::spawn(async move {
                for _ in 0..100 {
                    let id = format!("id{}", next.fetch_add(1, Ordering::Relaxed));
                    let r = http
                        .send(Method::POST, &format!("http://{url}/ledger?id={id}"), None, Bytes::from_static(b"x"))
                        .await;
                    if matches!(&r, Ok(r) if r.status == StatusCode::OK && r.body == format!("ok {id}")) {
                        acked.lock().unwrap().push(id);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        a.lock().unwrap().kill();
        for t in tasks {
            t.await.unwrap();
        }
        let a = a.lock().unwrap();
        let mut seen = HashMap::<String, usize>::new();
        for id in a.ledger_ids().into_iter().chain(b.ledger_ids()) {
            *seen.entry(id).or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "recorded twice: {twice:?}");
        let acked = acked.lock().unwrap();
        let missing: Vec<_> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
        assert!(missing.is_empty(), "acknowledged but in no ledger: {missing:?}");
        assert!(acked.len() > 1000, "only {} of 1600 acknowledged", acked.len());
        println!("ledger: {} acknowledged, {} recorded, 0 twice", acked.len(), seen.len());
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_503_keeps_retries_within_the_budget() {
    tokio::time::timeout(LIMIT, async {
        let a = Member::spawn("node1", None, &["--status", "503"]);
        let b = Member::spawn("node2", None, &["--status", "503"]);
        let failover = FailoverConfig::default()
            .fail_on_status(FailureStatuses::none().with(StatusCode::SERVICE_UNAVAILABLE));
        let lb = Lb::start(&[&a, &b], failover, ServeConfig::new()).await;
        let http = Http::new();
        let start = Instant::now();
        let requests = 3000;
        for i in 0..requests {
            let r = http.get(&format!("http://{}/x{i}", lb.addr), None).await.unwrap();
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        }
        let secs = start.elapsed().as_secs_f64().ceil();
        // the members' own counts (health probes are not counted)
        let attempts = a.received().await + b.received().await;
        // each request once, 20% of them again, and the reserve (10 s at 10/s), which
        // comes back once its slice has left the 10 s window (after 9 s at the earliest)
        let limit = 1.2 * f64::from(requests) + 100.0 * (1.0 + (secs / 9.0).floor());
        assert!(
            attempts as f64 <= limit,
            "{attempts} attempts for {requests} requests in {secs} s, limit {limit}"
        );
        println!("503 storm: {requests} requests, {attempts} attempts at members in {secs} s, limit {limit}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_replayed_byte_for_byte() {
    tokio::time::timeout(LIMIT, async {
        let a = Member::spawn("node1", None, &["--reset-after-body"]);
        let b = Member::spawn("node2", None, &[]);
        let lb = Lb::start(&[&a, &b], FailoverConfig::default(), ServeConfig::new()).await;
        let http = Http::new();
        let url = format!("http://{}/echo", lb.addr);
        for size in [8, 64, 2048, 4096, 65536] {
            let body: Bytes = (0..size)
                .map(|i| (i * 7 + size) as u8)
                .collect::<Vec<u8>>()
                .into();
            let before = a.received().await;
            // pinned to node1, which reads the body and drops the connection
            let r = http
                .send(Method::PUT, &url, Some("ROUTEID=.node1"), body.clone())
                .await
                .unwrap();
            assert_eq!(
                a.received().await,
                before + 1,
                "node1 did not see the first attempt"
            );
            assert_eq!(r.status, StatusCode::OK, "{size} B");
            assert_eq!(r.served_by.as_deref(), Some("node2"), "{size} B");
            assert!(r.body == body, "{size} B body differs after replay");
        }
        // over the replay cap, after it was sent: not retried, and said so
        let body = Bytes::from(vec![7u8; 65537]);
        let before = b.received().await;
        let r = http
            .send(Method::PUT, &url, Some("ROUTEID=.node1"), body)
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            b.received().await,
            before,
            "a body over the cap was sent again"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stay_put_and_new_sessions_split_evenly() {
    tokio::time::timeout(LIMIT, async {
        let a = Member::spawn("node1", None, &[]);
        let b = Member::spawn("node2", None, &[]);
        let lb = Lb::start(&[&a, &b], FailoverConfig::default(), ServeConfig::new()).await;
        let http = Http::new();
        let next = Arc::new(AtomicUsize::new(0));
        let first_on = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
        let errors = Arc::new(Errors::default());
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (http, next, first_on, errors, addr) = (
                http.clone(),
                next.clone(),
                first_on.clone(),
                errors.clone(),
                lb.addr,
            );
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < 1000 {
                    let r = http.get(&format!("http://{addr}/s"), None).await.unwrap();
                    let node = r.served_by.unwrap();
                    let cookie = r.cookie.unwrap();
                    *first_on.lock().unwrap().entry(node.clone()).or_default() += 1;
                    for _ in 1..20 {
                        let r = http
                            .get(&format!("http://{addr}/s"), Some(&cookie))
                            .await
                            .unwrap();
                        if r.served_by.as_deref() != Some(node.as_str()) {
                            errors.add(format!("session on {node} moved to {:?}", r.served_by));
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            errors.all().is_empty(),
            "{:?}",
            &errors.all()[..errors.all().len().min(5)]
        );
        let first_on = first_on.lock().unwrap();
        let n1 = first_on.get("node1").copied().unwrap_or(0);
        let share = n1 as f64 / 1000.0;
        assert!(
            (0.45..=0.55).contains(&share),
            "node1 got {share:.3} of new sessions: {first_on:?}"
        );
        println!("1000 sessions x 20: none moved; new sessions on node1 {share:.3}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_costs_bounded_latency() {
    tokio::time::timeout(LIMIT, async {
        let a = Member::spawn("node1", None, &[]);
        let b = Member::spawn("node2", None, &[]);
        let failover = FailoverConfig::default().per_try_timeout(Duration::from_millis(300));
        let lb = Lb::start(&[&a, &b], failover, ServeConfig::new()).await;
        a.signal("-STOP");
        let http = Http::new();
        let mut worst = Duration::ZERO;
        for i in 0..200 {
            let start = Instant::now();
            let r = http
                .get(&format!("http://{}/id/{i}", lb.addr), None)
                .await
                .unwrap();
            worst = worst.max(start.elapsed());
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(
                r.body,
                format!("node2 /id/{i}\n"),
                "a response for another request"
            );
        }
        a.signal("-CONT");
        assert!(worst < Duration::from_secs(1), "worst latency {worst:?}");
        println!(
            "SIGSTOP: 200 requests, worst latency {} ms",
            worst.as_millis()
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_closing_mid_response_mixes_nothing_up() {
    tokio::time::timeout(LIMIT, async {
        let a = Member::spawn("node1", None, &["--close-mid-response"]);
        let b = Member::spawn("node2", None, &[]);
        let lb = Lb::start(&[&a, &b], FailoverConfig::default(), ServeConfig::new()).await;
        let http = Http::new();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (http, addr) = (http.clone(), lb.addr);
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut cut, mut worst) = (0, 0, Duration::ZERO);
                for i in 0..50 {
                    let path = format!("/id/{t}-{i}");
                    let start = Instant::now();
                    match http.get(&format!("http://{addr}{path}"), None).await {
                        Ok(r) if r.status == StatusCode::OK => {
                            let node = r.served_by.clone().unwrap();
                            assert_eq!(r.body, format!("{node} {path}\n"), "mixed up");
                            ok += 1;
                        }
                        Ok(r) => assert!(r.status.is_server_error(), "{r:?}"),
                        Err(_) => cut += 1,
                    }
                    worst = worst.max(start.elapsed());
                }
                (ok, cut, worst)
            }));
        }
        let mut seen_ok = 0;
        for t in tasks {
            let (ok, _cut, worst) = t.await.unwrap();
            seen_ok += ok;
            assert!(worst < Duration::from_secs(2), "worst latency {worst:?}");
        }
        assert!(seen_ok >= 150, "only {seen_ok} complete responses of 400");
    })
    .await
    .unwrap();
}

/// The test process's resident memory, in KiB (the balancer runs in it).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_oversize_headers_against_the_tls_front() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(LIMIT, async {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["wso2.com".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let tls = tower_balancer_proxy::serve::server_tls_from_pem(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .unwrap();
        let a = Member::spawn("node1", None, &[]);
        let serve = ServeConfig::new().tls(tls).header_read_timeout(Duration::from_millis(800));
        let lb = Lb::start(&[&a], FailoverConfig::default(), serve).await;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls::pki_types::ServerName::try_from("wso2.com").unwrap();
        let connect = || {
            let (connector, name, addr) = (connector.clone(), name.clone(), lb.addr);
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                connector.connect(name, tcp).await.unwrap()
            }
        };

        let rss_before = rss_kib();
        // 200 clients that start a request and never finish its headers
        let mut slow = Vec::new();
        for _ in 0..200 {
            let mut s = connect().await;
            s.write_all(b"GET / HTTP/1.1\r\nHost: wso2.com\r\nX-Slow: ").await.unwrap();
            slow.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut answer = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
                (String::from_utf8_lossy(&answer).to_string(), start.elapsed())
            }));
        }
        // meanwhile, another client is served promptly, again and again
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let start = Instant::now();
            let mut s = connect().await;
            s.write_all(b"GET /ok HTTP/1.1\r\nHost: wso2.com\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await.unwrap();
            assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
            worst = worst.max(start.elapsed());
        }
        let rss_during = rss_kib();
        for t in slow {
            let (answer, waited) = t.await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
            assert!(waited < Duration::from_secs(3), "held {waited:?}");
        }
        // oversize headers: 431
        let mut s = connect().await;
        let big = format!("GET / HTTP/1.1\r\nHost: wso2.com\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
        let _ = s.write_all(big.as_bytes()).await;
        let mut answer = vec![0u8; 64];
        let n = s.read(&mut answer).await.unwrap_or(0);
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 431"));
        assert!(worst < Duration::from_secs(1), "other clients waited {worst:?}");
        let growth = rss_during.saturating_sub(rss_before);
        assert!(growth < 64 * 1024, "RSS grew {growth} KiB with 200 slow TLS clients");
        println!("slowloris over TLS: 200 clients answered 408, others served within {} ms, RSS +{growth} KiB", worst.as_millis());
    })
    .await
    .unwrap();
}
