//! A cluster that is down fails every request: the binary's log must say so with examples
//! and a count, not a line a request (41 MB in 8 s at full load before the budget).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{config, dir, file, get, kill, Running, BIN};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_get_at_most_ten_warn_lines_a_second_and_a_count_of_the_rest() {
    let d = dir("log-flood");
    let cfg = file(&d, "lb.toml", &config(closed(), closed()));
    let err = d.join("stderr");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["--workers", "1"])
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

    // a burst of failures, then one more in a later second of the budget
    let burst = 200;
    let started = Instant::now();
    for _ in 0..burst {
        let answer = get(addr, "lb.test", "/").await;
        assert!(answer.starts_with("HTTP/1.1 50"), "{answer}");
    }
    let seconds = started.elapsed().as_secs() + 1;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let answer = get(addr, "lb.test", "/").await;
    assert!(answer.starts_with("HTTP/1.1 50"), "{answer}");
    kill(&child, "-TERM");
    let _ = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.0.wait()
    })
    .await;
    let text = std::fs::read_to_string(&err).unwrap();
    let _ = std::fs::remove_dir_all(&d);

    let logged = text
        .lines()
        .filter(|l| l.contains("request failed"))
        .count() as u64;
    let counts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("more requests failed than are logged at WARN"))
        .collect();
    let held: u64 = counts.iter().map(|l| field(l, "not_logged")).sum();
    // every failure is either a line of its own or counted in a later one
    assert_eq!(logged + held, burst + 1, "{text}");
    // at most ten lines in each second the burst took, and the late one
    assert!(logged <= 10 * seconds + 1, "{logged} lines in {seconds} s");
    assert!(held >= burst - 10 * seconds, "{text}");
    // the count came with the late failure's line, just before it
    let lines: Vec<&str> = text.lines().collect();
    let last = lines
        .iter()
        .rposition(|l| l.contains("request failed"))
        .unwrap();
    assert!(
        last > 0 && lines[last - 1].contains("more requests failed"),
        "{text}"
    );
}
