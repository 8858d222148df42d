//! What the binary's log says when things go wrong. A cluster that is down fails every request:
//! the log must say so with examples and a count, not a line a request (41 MB in 8 s at
//! full load before the budget); and each thing is said once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{config, dir, file, get, kill, member, member_on, Running, BIN};

/// A port with nothing listening.
fn closed() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The number after `key=` in `line`.
fn field(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("{line}"))
        + key.len()
        + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// The binary serving members `a` and `b` (and the file's `more`) at the default log level: it, its front's
/// address and the file its stderr goes to.
async fn start(
    test: &str,
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
    more: &str,
) -> (Running, std::net::SocketAddr, std::path::PathBuf) {
    start_workers(test, a, b, more, 1).await
}

/// [`start`] with `workers` workers.
async fn start_workers(
    test: &str,
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
    more: &str,
    workers: u32,
) -> (Running, std::net::SocketAddr, std::path::PathBuf) {
    let d = dir(test);
    let cfg = file(&d, "lb.toml", &format!("{}{more}", config(a, b)));
    let err = d.join("stderr");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["--workers", &workers.to_string()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Running(child);
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .next()
            .unwrap()
            .unwrap()
    })
    .await
    .unwrap();
    let addr = line.strip_prefix("listening on ").unwrap().parse().unwrap();
    (child, addr, err)
}

/// Stops the binary; what it wrote to stderr.
async fn stop(child: Running, err: std::path::PathBuf) -> String {
    kill(&child, "-TERM");
    let _ = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.0.wait()
    })
    .await;
    let text = std::fs::read_to_string(&err).unwrap();
    let _ = std::fs::remove_dir_all(err.parent().unwrap());
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_get_at_most_ten_warn_lines_a_second_and_a_count_of_the_rest() {
    let (child, addr, err) = start("log-flood", closed(), closed(), "").await;
    let burst = 200;
    let started = Instant::now();
    for _ in 0..burst {
        let answer = get(addr, "lb.test", "/").await;
        assert!(answer.starts_with("HTTP/1.1 50"), "{answer}");
    }
    let seconds = started.elapsed().as_secs() + 1;
    // no later failure: the count of the last second's held lines comes by itself
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let text = stop(child, err).await;

    let logged = text
        .lines()
        .filter(|l| l.contains("request failed"))
        .count() as u64;
    let held: u64 = text
        .lines()
        .filter(|l| l.contains("failed requests beyond 10 a second were logged at DEBUG only"))
        .map(|l| field(l, "not_logged"))
        .sum();
    // every failure is either a line of its own or counted in a later one
    assert_eq!(logged + held, burst, "{text}");
    // at most ten lines in each second the burst took
    assert!(logged <= 10 * seconds, "{logged} lines in {seconds} s");
    assert!(held >= burst.saturating_sub(10 * seconds), "{text}");
    // the ejection says which balancer and why (members of two balancers may share a name)
    let ejected = text
        .lines()
        .find(|l| l.contains("outlier ejected"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        ejected.contains("balancer=\"cluster\"")
            && ejected.contains("reason=3 connect failures in a row"),
        "{ejected}"
    );
}

/// The seconds of the day a log line is stamped with (`2026-12-06T14:29:04.497380Z ...`).
fn stamp(line: &str) -> f64 {
    let t = line.get(11..26).unwrap_or_else(|| panic!("{line}"));
    let mut parts = t.split(':').map(|p| p.parse::<f64>().unwrap());
    let (h, m, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    h * 3600.0 + m * 60.0 + s
}

/// With two workers, a server each, the held lines are still counted once a second: a
/// reporter a server wrote a count line each, a millisecond apart, every second (a hostile
/// test under `wrk -c64`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_workers_held_lines_are_counted_once_a_second() {
    let (child, addr, err) = start_workers("log-flood-2w", closed(), closed(), "", 2).await;
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_millis(3_300) && sent < 50_000 {
        let answer = get(addr, "lb.test", "/").await;
        assert!(answer.starts_with("HTTP/1.1 50"), "{answer}");
        sent += 1;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let text = stop(child, err).await;
    let counts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("failed requests beyond 10 a second were logged at DEBUG only"))
        .collect();
    assert!(counts.len() >= 3, "{text}");
    for pair in counts.windows(2) {
        let gap = stamp(pair[1]) - stamp(pair[0]);
        assert!(
            gap > 0.9,
            "count lines {gap:.4} s apart:\n{}\n{}",
            pair[0],
            pair[1]
        );
    }
    let logged = text
        .lines()
        .filter(|l| l.contains("request failed"))
        .count() as u64;
    let held: u64 = counts.iter().map(|l| field(l, "not_logged")).sum();
    assert_eq!(logged + held, sent, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_clients_own_body_fails_is_logged_at_info_not_warn() {
    let (a, b) = (member("node1").await, member("node2").await);
    let (child, addr, err) = start("client-body", a, b, "").await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = "POST /x HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: chunked\r\n\r\n\
               zz\r\nnot a chunk\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut answer),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = stop(child, err).await;
    let line = text
        .lines()
        .find(|l| l.contains("request failed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("client"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_from_the_start_is_logged_once_with_the_probes_reason() {
    let up = member("node1").await;
    let health = "\n[balancer.health]\nuri = \"/\"\ninterval = \"100ms\"\n";
    let (child, addr, err) = start("down-at-start", up, closed(), health).await;
    // probes every 100 ms for a second: the down member fails ten of them
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..5 {
        let answer = get(addr, "lb.test", "/").await;
        assert!(answer.contains("node1"), "{answer}");
    }
    let text = stop(child, err).await;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("down at the start"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("member=node2"), "{}", lines[0]);
    assert!(lines[0].contains("reason="), "{}", lines[0]);
    // both start down until their first probe, but that is no panic: one passed, one failed
    assert!(!text.contains("panic mode"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_waits_for_a_restart_is_warned_of_once_a_reload() {
    let (a, b) = (member("node1").await, member("node2").await);
    let (child, _addr, err) = start("listen-change", a, b, "").await;
    // the same file with another listen address: it cannot move while the process runs
    let cfg = dir("listen-change").join("lb.toml");
    let text = config(a, b).replace("127.0.0.1:0", "127.0.0.1:1");
    std::fs::write(&cfg, text).unwrap();
    kill(&child, "-HUP");
    wait_for(&err, "configuration reloaded").await;
    let text = stop(child, err).await;
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("server.listen"))
        .collect();
    assert_eq!(warned.len(), 1, "{text}");
    assert!(warned[0].contains("WARN"), "{}", warned[0]);
    assert!(warned[0].contains("restarts"), "{}", warned[0]);
}

/// Waits up to 10 s for `text` in the file `err`.
async fn wait_for(err: &std::path::Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(err).unwrap().contains(text) {
        assert!(Instant::now() < deadline, "no {text:?} within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_is_said_once_going_in_and_once_coming_out() {
    let (a, b) = (closed(), closed());
    let health = "\n[balancer.health]\nuri = \"/\"\ninterval = \"100ms\"\n";
    let (child, _addr, err) = start("panic-mode", a, b, health).await;
    // both down: panic mode, said once however many probes fail after
    wait_for(&err, "panic mode:").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // one comes back: 1 healthy of 2 is not below the default threshold (0.5)
    member_on(a, "node1").await;
    wait_for(&err, "panic mode over").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = stop(child, err).await;
    let went_in: Vec<&str> = text.lines().filter(|l| l.contains("panic mode:")).collect();
    assert_eq!(went_in.len(), 1, "{text}");
    let line = went_in[0];
    assert!(line.contains("WARN") && line.contains("cluster"), "{line}");
    assert_eq!((field(line, "healthy"), field(line, "members")), (0, 2));
    let came_out: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("panic mode over"))
        .collect();
    assert_eq!(came_out.len(), 1, "{text}");
    let line = came_out[0];
    assert!(line.contains("INFO") && line.contains("cluster"), "{line}");
    assert_eq!((field(line, "healthy"), field(line, "members")), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_a_reload_ends_is_said_in_the_balancers_name() {
    let health = "\n[balancer.health]\nuri = \"/\"\ninterval = \"100ms\"\n";
    let (child, _addr, err) = start("panic-reload", closed(), closed(), health).await;
    wait_for(&err, "panic mode:").await;
    // the same file with panic mode turned off: the reload ends it
    let cfg = dir("panic-reload").join("lb.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "name = \"cluster\"\n",
        "name = \"cluster\"\npanic_threshold = 0.0\n",
    );
    std::fs::write(&cfg, text).unwrap();
    kill(&child, "-HUP");
    wait_for(&err, "panic mode over").await;
    let text = stop(child, err).await;
    let line = text
        .lines()
        .find(|l| l.contains("panic mode over"))
        .unwrap();
    assert!(line.contains("balancer{name=cluster}"), "{line}");
}
