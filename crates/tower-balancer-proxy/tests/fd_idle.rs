//! Descriptors held by idle member connections. When the process has none left for a new
//! member connection, the idle ones (to any member) are closed to make room and the connect
//! is tried again: a member whose traffic comes back after a burst to another must not find
//! every descriptor held by that one's idle connections, and have its requests (and their
//! sessions) fail over elsewhere. Idle connections in another balancer's pool (another
//! worker's) count as well: descriptors are the process's. And the manager's connections
//! stay within the descriptors the front's cap leaves aside. Its own test binary: it lowers
//! this process's limit and counts its descriptors, one test at a time.
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

/// One test at a time: each lowers the process's limit and takes its descriptors.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n";

/// The open-file limit lowered to leave `more` descriptors, until dropped (a failed test
/// too gives the next its descriptors back).
struct LowLimit(u64);

impl LowLimit {
    fn set(more: u64) -> Self {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        rlimit::setrlimit(rlimit::Resource::NOFILE, limit_for(more), hard).unwrap();
        Self(hard)
    }
}

impl Drop for LowLimit {
    fn drop(&mut self) {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, self.0.min(4096), self.0);
    }
}

/// Every descriptor this process can still open, but `spare`.
fn take_all_but(spare: usize) -> Vec<std::fs::File> {
    let mut taken = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        taken.push(f);
    }
    taken.truncate(taken.len() - spare);
    taken
}

/// Twenty requests at once through `lb`, whose member connections are then left idle in its
/// pool.
async fn burst(lb: &harness::Lb) {
    let burst = (0..20).map(|_| tokio::spawn(raw(lb.addr, GET, Duration::from_secs(5))));
    for answer in burst.collect::<Vec<_>>() {
        assert!(answer.await.unwrap().starts_with("HTTP/1.1 200"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_in_another_workers_pool_make_room_for_a_member_connection() {
    let _one = SERIAL.lock().await;
    let _low = LowLimit::set(200);
    let (a, _) = echo_member().await;
    let (b, seen_by_b) = echo_member().await;
    // two balancers in one process, each with its own pool, as the binary's workers are
    let manager = "[manager]\nlisten = \"127.0.0.1:0\"\n";
    let (first, second) = (lb(&[a], "", "", "").await, lb(&[b], "", "", manager).await);
    let counted = shortages(&second, "member_connect").await;
    burst(&first).await;
    // room for the client's socket and the second balancer's end of it, none for its member
    // connection: only the first's idle connections can give it one
    let taken = take_all_but(2);
    let out = raw(second.addr, GET, Duration::from_secs(5)).await;
    drop(taken);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen_by_b.lock().unwrap().len(), 1, "B answered it");
    assert!(
        shortages(&second, "member_connect").await > counted,
        "counted"
    );
}

/// The process's count of shortages met by `at`, from `lb`'s `/metrics`.
async fn shortages(lb: &harness::Lb, at: &str) -> u64 {
    let line = format!("lb_out_of_descriptors_total{{at=\"{at}\"}} ");
    harness::metrics(lb)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
        .expect("the count in /metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_out_of_descriptors_closes_a_member_connection_idle_past_a_second() {
    let _one = SERIAL.lock().await;
    let _low = LowLimit::set(200);
    let (a, seen_by_a) = echo_member().await;
    let lb = lb(&[a], "", "", "").await;
    burst(&lb).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // room for the client's socket alone: the balancer's accept finds none, and only the
    // burst's idle connections can give it one (and its member connection another)
    let taken = take_all_but(1);
    let started = std::time::Instant::now();
    let out = raw(lb.addr, GET, Duration::from_secs(5)).await;
    let took = started.elapsed();
    drop(taken);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(took < Duration::from_secs(1), "answered in {took:?}");
    assert_eq!(seen_by_a.lock().unwrap().len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_out_of_descriptors_leaves_the_warm_member_connections_alone() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _one = SERIAL.lock().await;
    let _low = LowLimit::set(200);
    let (a, seen_by_a) = echo_member().await;
    let lb = lb(&[a], "", "", "").await;
    // a keep-alive client, whose request leaves one warm member connection in the pool
    let keep_alive = b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n";
    let mut client = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    let mut answer = vec![0; 4096];
    client.write_all(keep_alive).await.unwrap();
    let n = client.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // a new client takes the last descriptor: the balancer's accepts of it fail
    let taken = take_all_but(1);
    let newcomer = tokio::spawn(raw(lb.addr, GET, Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // the keep-alive client is still served on the warm connection (closing it for the
    // accept left it none, and no descriptor to open one: 503)
    client.write_all(keep_alive).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    drop(taken);
    let again = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    // and the newcomer once descriptors are back
    assert!(newcomer.await.unwrap().starts_with("HTTP/1.1 200"));
    assert_eq!(seen_by_a.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_one_member_make_room_for_another_when_descriptors_run_out() {
    let _one = SERIAL.lock().await;
    let _low = LowLimit::set(200);
    let (a, _) = echo_member().await;
    let (b, seen_by_b) = echo_member().await;
    let lb = lb(&[a], "", "", "").await;
    // twenty connections to A at once, left idle in the pool when their answers are in
    burst(&lb).await;
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
    let taken = take_all_but(2);
    let out = raw(lb.addr, GET, Duration::from_secs(5)).await;
    drop(taken);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen_by_b.lock().unwrap().len(), 1, "B answered it");
}

/// This process's open descriptors.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managers_connections_are_capped_within_the_reserve() {
    let _one = SERIAL.lock().await;
    let (a, _) = echo_member().await;
    let lb = lb(&[a], "", "", "[manager]\nlisten = \"127.0.0.1:0\"\n").await;
    let manager = lb.manager.unwrap();
    let before = open_descriptors();
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(tokio::net::TcpStream::connect(manager).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // the clients' 40, and the manager's end of 16 (and of one it holds, unread, at its cap)
    let held = open_descriptors() - before - 40;
    assert!(
        held <= 17,
        "the manager holds {held} descriptors for 40 idle connections"
    );
    // served again once they go
    drop(idle);
    let m = format!("GET /metrics HTTP/1.1\r\nHost: {manager}\r\nConnection: close\r\n\r\n");
    let out = raw(manager, m.as_bytes(), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_hold_the_manager_for_two_seconds_at_most() {
    let _one = SERIAL.lock().await;
    let (a, _) = echo_member().await;
    let lb = lb(&[a], "", "", "[manager]\nlisten = \"127.0.0.1:0\"\n").await;
    let manager = lb.manager.unwrap();
    let mut silent = Vec::new();
    for _ in 0..16 {
        silent.push(tokio::net::TcpStream::connect(manager).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let m = format!("GET /metrics HTTP/1.1\r\nHost: {manager}\r\nConnection: close\r\n\r\n");
    let out = raw(manager, m.as_bytes(), Duration::from_secs(8)).await;
    let took = started.elapsed();
    drop(silent);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        took < Duration::from_secs(4),
        "waited {took:?} behind 16 silent connections"
    );
}
