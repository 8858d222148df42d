//! Descriptors held by idle member connections. When the process has none left for a new
//! member connection, the idle ones (to any member) are closed to make room and the connect
//! is tried again: a member whose traffic comes back after a burst to another must not find
//! every descriptor held by that one's idle connections, and have its requests (and their
//! sessions) fail over elsewhere. Its own test binary: it lowers this process's limit.
#![allow(clippy::unwrap_used)]

#[path = "safe/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use harness::{echo_member, lb, raw};
use tower_balancer::registry::{MemberId, MemberSpec};

/// The open-file limit under which this process can open exactly `more` descriptors: new
/// descriptors take the lowest free numbers, and the limit bounds the numbers.
fn limit_for(more: u64) -> u64 {
    let mut open = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        // the directory's own descriptor, closed once it is read
        if std::fs::read_link(entry.path()).is_ok_and(|t| t.ends_with("fd")) {
            continue;
        }
        open.insert(entry.file_name().to_str().unwrap().parse::<u64>().unwrap());
    }
    let (mut limit, mut free) = (0, 0);
    while free < more || open.contains(&limit) {
        if !open.contains(&limit) {
            free += 1;
        }
        limit += 1;
    }
    limit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_one_member_make_room_for_another_when_descriptors_run_out() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, limit_for(200), hard).unwrap();
    let (a, _) = echo_member().await;
    let (b, seen_by_b) = echo_member().await;
    let lb = lb(&[a], "", "", "").await;
    let get = b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n";
    // twenty connections to A at once, left idle in the pool when their answers are in
    let burst = (0..20).map(|_| tokio::spawn(raw(lb.addr, get, Duration::from_secs(5))));
    for answer in burst.collect::<Vec<_>>() {
        assert!(answer.await.unwrap().starts_with("HTTP/1.1 200"));
    }
    // traffic moves to B: A leaves, and its idle connections stay pooled until they time out
    lb.registry
        .insert(MemberSpec::new(
            MemberId::new("node2").unwrap(),
            b.parse().unwrap(),
        ))
        .unwrap();
    lb.registry.remove("node1").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // every descriptor taken but two, for the client's socket and the balancer's end of it:
    // the member connection to B needs one of the idle connections'
    let mut taken = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        taken.push(f);
    }
    taken.truncate(taken.len() - 2);
    let out = raw(lb.addr, get, Duration::from_secs(5)).await;
    drop(taken);
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(4096), hard).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen_by_b.lock().unwrap().len(), 1, "B answered it");
}
