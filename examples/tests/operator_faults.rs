//! Faults as operators meet them, against a balancer built from a configuration file with
//! every default untouched but the recipe's 1 s health probe: a member killed and restarted
//! under 64 concurrent clients, every client pinned to it by the balancer's own cookie, and
//! a member that hangs (SIGSTOP). Member processes are real; every loop is bounded in
//! requests and time.
#![allow(clippy::unwrap_used)]

#[path = "faults/harness.rs"]
#[allow(dead_code)] // Lb::start and its helpers serve faults.rs
mod harness;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{until, Errors, Http, Lb, Member};
use http::StatusCode;
use tower_balancer::registry::Health;

const LIMIT: Duration = Duration::from_secs(90);

/// The balancer's cookie that pins a session to `member`.
async fn cookie_for(lb: &Lb, http: &Http, member: &str) -> String {
    for _ in 0..20 {
        let r = http
            .get(&format!("http://{}/", lb.addr), None)
            .await
            .unwrap();
        if r.served_by.as_deref() == Some(member) {
            return r.cookie.expect("the balancer sets its route cookie");
        }
    }
    panic!("{member} never served");
}

/// `clients` tasks sending `per_client` GETs each, every one with `cookie`; `at` runs once
/// when the given fraction of requests is done. Returns the errors and the slowest answer.
async fn load(
    lb: &Lb,
    clients: usize,
    per_client: usize,
    cookie: Option<String>,
    mut at: Vec<(f64, Box<dyn FnOnce() + Send>)>,
) -> (Arc<Errors>, Duration, Arc<Mutex<Vec<Duration>>>) {
    let http = Http::new();
    let errors = Arc::new(Errors::default());
    let done = Arc::new(AtomicUsize::new(0));
    let times = Arc::new(Mutex::new(Vec::new()));
    let total = clients * per_client;
    let url = format!("http://{}/work", lb.addr);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, errors, done, url, cookie, times) = (
            http.clone(),
            errors.clone(),
            done.clone(),
            url.clone(),
            cookie.clone(),
            times.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let start = Instant::now();
                match http.get(&url, cookie.as_deref()).await {
                    Ok(r) if r.status == StatusCode::OK => {}
                    Ok(r) => errors.add(format!("status {}", r.status)),
                    Err(e) => errors.add(e),
                }
                times.lock().unwrap().push(start.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    at.sort_by(|a, b| b.0.total_cmp(&a.0));
    while done.load(Ordering::Relaxed) < total {
        #[allow(clippy::cast_precision_loss)]
        let progress = done.load(Ordering::Relaxed) as f64 / total as f64;
        while at.last().is_some_and(|(f, _)| progress >= *f) {
            (at.pop().unwrap().1)();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let slowest = times
        .lock()
        .unwrap()
        .iter()
        .copied()
        .max()
        .unwrap_or_default();
    (errors, slowest, times)
}

async fn kill_and_restart_under_load(pinned: bool) {
    let a = Member::spawn("node1", None, &[]);
    let b = Member::spawn("node2", None, &[]);
    let (lb, _serving) = Lb::from_file(&[&a, &b], "").await;
    let cookie = if pinned {
        Some(cookie_for(&lb, &Http::new(), "node1").await)
    } else {
        None
    };
    let a = Arc::new(Mutex::new(a));
    let (kill, restart) = (a.clone(), a.clone());
    // killed a fifth of the way in, started again 3 s later (the anchors' 3 s to 6 s), so
    // the 1 s probe sees it down and back
    let restarted = Arc::new(Mutex::new(None::<std::thread::JoinHandle<()>>));
    let handle = restarted.clone();
    let (errors, slowest, _) = load(
        &lb,
        64,
        250,
        cookie,
        vec![(
            0.2,
            Box::new(move || {
                kill.lock().unwrap().kill();
                *handle.lock().unwrap() = Some(std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(3));
                    restart.lock().unwrap().start();
                }));
            }),
        )],
    )
    .await;
    let restart = restarted.lock().unwrap().take().expect("the kill ran");
    tokio::task::spawn_blocking(move || restart.join().unwrap())
        .await
        .unwrap();
    let all = errors.all();
    assert!(
        all.is_empty(),
        "{} client errors: {:?}",
        all.len(),
        &all[..all.len().min(5)]
    );
    println!(
        "kill -9 and restart under 64 clients (pinned: {pinned}): 0 errors, slowest {slowest:?}"
    );
    // restarted on the same port: readmitted by the probe (two passes at 1 s), which saw it
    // down, ending its passive ejection too
    let back = until(Duration::from_secs(6), || {
        lb.registry.load().get("node1").unwrap().health() == Health::Healthy
    })
    .await;
    assert!(back.is_some(), "node1 never came back after its restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_under_64_clients_costs_no_error() {
    tokio::time::timeout(LIMIT, kill_and_restart_under_load(false))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_every_client_pinned_to_the_dead_member_costs_no_error() {
    tokio::time::timeout(LIMIT, kill_and_restart_under_load(true))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_pinned_member_costs_each_client_at_most_one_timeout() {
    tokio::time::timeout(LIMIT, async {
        let a = Member::spawn("node1", None, &[]);
        let b = Member::spawn("node2", None, &[]);
        // the attempt timeout shortened from 60 s so the test is quick
        let (lb, _serving) = Lb::from_file(&[&a, &b], "timeout = \"1s\"").await;
        let cookie = cookie_for(&lb, &Http::new(), "node1").await;
        let a = Arc::new(Mutex::new(a));
        let (stop, cont) = (a.clone(), a.clone());
        let clients = 16;
        let (errors, slowest, times) = load(
            &lb,
            clients,
            40,
            Some(cookie),
            vec![
                (0.25, Box::new(move || stop.lock().unwrap().signal("-STOP"))),
                (0.99, Box::new(move || cont.lock().unwrap().signal("-CONT"))),
            ],
        )
        .await;
        let all = errors.all();
        assert!(all.is_empty(), "{} client errors: {:?}", all.len(), &all[..all.len().min(5)]);
        assert!(slowest < Duration::from_millis(2500), "a client waited {slowest:?}");
        // each client met the hung member at most about once: then the ejection (five
        // failures in a row) or the probe took it out, and pinned requests went elsewhere
        let slow = times
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t >= Duration::from_millis(900))
            .count();
        assert!(slow <= clients * 2, "{slow} answers waited for the timeout");
        println!("SIGSTOP of the pinned member: 0 errors, {slow} answers waited ~1 s, slowest {slowest:?}");
    })
    .await
    .unwrap();
}
