//! The open-file limit the binary runs under: its soft limit raised to the hard one at start
//! (the connection cap is half of it), and a connection cap set past what the limit allows
//! warned of once (accepts, member connects and health probes fail at the limit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, dir, file, kill, member, Running, BIN};

/// What a process wrote to stderr so far, read on a thread of its own.
type Stderr = std::sync::Arc<std::sync::Mutex<String>>;

/// Where the front listens, and the soft and hard open-file limits the process runs under.
struct Limits {
    front: std::net::SocketAddr,
    soft: u64,
    hard: u64,
}

/// The binary serving `text`, started by `sh` after `ulimit -S -n {soft}`: it, its stderr,
/// and where it listens under which limits.
fn start_under(test: &str, text: &str, soft: u64) -> (Running, Stderr, Limits) {
    let cfg = file(&dir(test), "lb.toml", text);
    let script = format!("ulimit -S -n {soft} && exec \"$0\" --config \"$1\" --workers 1");
    let mut child = Command::new("sh")
        .args(["-c", &script, BIN])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let said = Stderr::default();
    let into = said.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let front = line
        .strip_prefix("listening on ")
        .expect(&line)
        .parse()
        .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect::<Vec<u64>>();
    let limits = Limits {
        front,
        soft: open[0],
        hard: open[1],
    };
    (Running(child), said, limits)
}

/// Waits up to 10 s for `text` on the process's stderr.
fn wait_for(said: &Stderr, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !said.lock().unwrap().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} within 10 s: {}",
            said.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the process; what it wrote to stderr.
fn stop(mut child: Running, said: &Stderr) -> String {
    kill(&child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "not stopped within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // the reader thread has the last lines once the pipe closed
    std::thread::sleep(Duration::from_millis(100));
    let text = said.lock().unwrap().clone();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let (a, b) = (member("node1").await, member("node2").await);
    let (child, said, Limits { soft, hard, .. }) = start_under("raise", &config(a, b), 512);
    let text = stop(child, &said);
    if hard <= 512 {
        // nothing to raise to here
        return;
    }
    assert_eq!(soft, hard.min(1 << 20), "{text}");
    assert!(text.contains("raised the open-file soft limit"), "{text}");
    assert!(text.contains("from=512"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cap_past_the_open_file_limit_is_warned_of() {
    let (a, b) = (member("node1").await, member("node2").await);
    // ten million connections need twenty million descriptors, past any limit
    let text = config(a, b).replace(
        "graceful_timeout",
        "max_connections = 10000000\ngraceful_timeout",
    );
    let (child, said, _) = start_under("cap", &text, 512);
    wait_for(&said, "needs more descriptors");
    let text = stop(child, &said);
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("server.max_connections needs more descriptors"))
        .collect();
    assert_eq!(warned.len(), 1, "{text}");
    assert!(warned[0].contains("WARN"), "{}", warned[0]);
    assert!(warned[0].contains("needed=20000064"), "{}", warned[0]);
    // unset, the cap is half the limit: nothing to warn of
    let (child, said, limits) = start_under("cap-unset", &config(a, b), 512);
    // the front serving, past where a warning would have been said
    let page = common::get(limits.front, "lb.test", "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let text = stop(child, &said);
    assert!(!text.contains("needs more descriptors"), "{text}");
}
