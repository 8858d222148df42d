//! DNS discovery against a real DNS server on loopback whose records the test changes.
#![allow(clippy::unwrap_used)]

#[path = "dns/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use server::{DnsServer, Mode};
use tower_balancer::discovery::DnsDiscovery;
use tower_balancer::registry::{AdminState, Registry};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// id → (endpoint, state, weight, priority), sorted.
fn members(r: &Registry) -> BTreeMap<String, (String, AdminState, u32, u16)> {
    r.load()
        .members()
        .iter()
        .map(|m| {
            (
                m.id().to_string(),
                (
                    m.endpoint().to_string(),
                    m.state(),
                    m.weight(),
                    m.priority(),
                ),
            )
        })
        .collect()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn quick(d: tower_balancer::discovery::DnsDiscoveryBuilder, server: &DnsServer) -> DnsDiscovery {
    d.name_servers([server.addr])
        .ttl_floor(Duration::from_millis(100))
        .retry_interval(Duration::from_millis(100))
        .remove_after(Duration::from_millis(300))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

#[tokio::test]
async fn addresses_become_members_and_follow_the_records() {
    let server = DnsServer::start().await;
    server.set_addresses(
        "svc.test.",
        0,
        &[ip("127.0.0.1"), ip("127.0.0.2"), ip("::1")],
    );
    let registry = Registry::new();
    let dns = quick(DnsDiscovery::addresses("svc.test.", 9763), &server);
    let task = tokio::spawn(dns.run(&registry, Duration::from_millis(300)));

    until("three members", || registry.load().len() == 3).await;
    let m = members(&registry);
    assert_eq!(m["127-0-0-1-9763"].0, "http://127.0.0.1:9763/");
    assert_eq!(m["--1-9763"].0, "http://[::1]:9763/");
    let first = registry.load().get("127-0-0-1-9763").unwrap().serial();

    // .2 leaves, .3 arrives: .2 drains, then goes; .1 keeps its id and its member
    server.set_addresses(
        "svc.test.",
        0,
        &[ip("127.0.0.1"), ip("127.0.0.3"), ip("::1")],
    );
    until(".3 added", || {
        registry.load().get("127-0-0-3-9763").is_some()
    })
    .await;
    until(".2 draining", || {
        registry
            .load()
            .get("127-0-0-2-9763")
            .is_some_and(|m| m.state() == AdminState::Draining)
    })
    .await;
    until(".2 removed", || {
        registry.load().get("127-0-0-2-9763").is_none()
    })
    .await;
    assert_eq!(
        registry.load().get("127-0-0-1-9763").unwrap().serial(),
        first
    );
    assert_eq!(registry.load().len(), 3);
    task.abort();
}

#[tokio::test]
async fn https_members_found_by_address_carry_the_name_for_tls() {
    let server = DnsServer::start().await;
    server.set_addresses("is.test.", 0, &[ip("127.0.0.1")]);
    let registry = Registry::new();
    let dns = quick(
        DnsDiscovery::addresses("is.test.", 9443).scheme("https"),
        &server,
    );
    let task = tokio::spawn(dns.run(&registry, Duration::from_millis(300)));
    until("one member", || registry.load().len() == 1).await;
    let snapshot = registry.load();
    let m = snapshot.get("127-0-0-1-9443").unwrap();
    assert_eq!(m.endpoint(), "https://127.0.0.1:9443/");
    // addressed by IP, verified as the name looked up
    assert_eq!(m.tls_name(), Some("is.test"));
    task.abort();
}

#[tokio::test]
async fn srv_records_give_ports_weights_and_priorities() {
    let server = DnsServer::start().await;
    server.set_srv(
        "_http._tcp.svc.test.",
        30,
        &[
            (0, 3, 9763, "node1.svc.test."),
            (0, 1, 9764, "node2.svc.test."),
            (1, 0, 9765, "backup.svc.test."),
        ],
    );
    // the targets' addresses, known only to this name server
    server.set_addresses("node1.svc.test.", 30, &[ip("127.0.0.11")]);
    server.set_addresses("node2.svc.test.", 30, &[ip("127.0.0.12")]);
    server.set_addresses("backup.svc.test.", 30, &[ip("127.0.0.13")]);
    let registry = Registry::new();
    let dns = quick(
        DnsDiscovery::srv("_http._tcp.svc.test.").id_prefix("is"),
        &server,
    );
    let task = tokio::spawn(dns.run(&registry, Duration::ZERO));
    until("three members", || registry.load().len() == 3).await;
    let m = members(&registry);
    assert_eq!(
        m["is-node1-svc-test-9763"],
        ("http://127.0.0.11:9763/".into(), AdminState::Active, 3, 0)
    );
    assert_eq!(m["is-node2-svc-test-9764"].2, 1);
    assert_eq!(m["is-backup-svc-test-9765"].2, 1, "weight 0 counts as 1");
    assert_eq!(
        m["is-backup-svc-test-9765"].3, 1,
        "SRV priority is the priority set"
    );
    // a weight change updates the member in place
    server.set_srv(
        "_http._tcp.svc.test.",
        30,
        &[
            (0, 5, 9763, "node1.svc.test."),
            (0, 1, 9764, "node2.svc.test."),
        ],
    );
    // TTL 30 s: the next query is only due then, so nothing changes for now
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(members(&registry)["is-node1-svc-test-9763"].2, 3);
    task.abort();
}

#[tokio::test]
async fn srv_targets_are_resolved_by_the_name_servers_given_not_the_systems() {
    let server = DnsServer::start().await;
    server.set_srv(
        "_https._tcp.svc.test.",
        0,
        &[
            (0, 1, 9443, "node1.svc.test."),
            // known to no one: left out, not handed to the system's resolver
            (0, 1, 9444, "ghost.svc.test."),
        ],
    );
    server.set_addresses("node1.svc.test.", 0, &[ip("127.0.0.21")]);
    let registry = Registry::new();
    let dns = quick(
        DnsDiscovery::srv("_https._tcp.svc.test.").scheme("https"),
        &server,
    );
    let task = tokio::spawn(dns.run(&registry, Duration::ZERO));
    until("one member", || registry.load().len() == 1).await;
    let snapshot = registry.load();
    let m = snapshot.get("node1-svc-test-9443").unwrap();
    assert_eq!(m.endpoint(), "https://127.0.0.21:9443/");
    // addressed by IP, verified as the SRV target
    assert_eq!(m.tls_name(), Some("node1.svc.test"));
    // the target moves: the member (same id) follows it
    server.set_addresses("node1.svc.test.", 0, &[ip("127.0.0.22")]);
    until("the new address", || {
        registry
            .load()
            .get("node1-svc-test-9443")
            .is_some_and(|m| m.endpoint() == "https://127.0.0.22:9443/")
    })
    .await;
    assert_eq!(registry.load().len(), 1);
    task.abort();
}

#[tokio::test]
async fn ttls_are_honoured_within_the_floor_and_ceiling() {
    // TTL 0: the floor (300 ms) bounds the query rate
    let server = DnsServer::start().await;
    server.set_addresses("svc.test.", 0, &[ip("127.0.0.1")]);
    let registry = Registry::new();
    let dns = DnsDiscovery::addresses("svc.test.", 80)
        .name_servers([server.addr])
        .ttl_floor(Duration::from_millis(300))
        .build()
        .unwrap();
    let task = tokio::spawn(dns.run(&registry, Duration::ZERO));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    task.abort();
    let q = server.queries();
    // one lookup_ip is an A and an AAAA query
    assert!(
        (6..=14).contains(&q),
        "{q} queries in 1.5 s with a 300 ms floor"
    );

    // TTL one hour: the ceiling (300 ms) makes it re-resolve anyway
    let server = DnsServer::start().await;
    server.set_addresses("svc.test.", 3600, &[ip("127.0.0.1")]);
    let dns = DnsDiscovery::addresses("svc.test.", 80)
        .name_servers([server.addr])
        .ttl_floor(Duration::from_millis(100))
        .ttl_ceiling(Duration::from_millis(300))
        .build()
        .unwrap();
    let task = tokio::spawn(dns.run(&registry, Duration::ZERO));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    task.abort();
    let q = server.queries();
    assert!(
        (6..=14).contains(&q),
        "{q} queries in 1.5 s with a 300 ms ceiling"
    );
}

#[tokio::test]
async fn failures_empty_and_huge_answers_keep_the_last_good_members() {
    let server = DnsServer::start().await;
    server.set_addresses("svc.test.", 0, &[ip("127.0.0.1"), ip("127.0.0.2")]);
    let registry = Registry::new();
    let dns = quick(DnsDiscovery::addresses("svc.test.", 80), &server);
    let task = tokio::spawn(dns.run(&registry, Duration::ZERO));
    until("two members", || registry.load().len() == 2).await;
    let good = members(&registry);

    for mode in [Mode::ServFail, Mode::Silent] {
        server.set_mode(mode);
        let before = server.queries();
        until("a few failed lookups", || server.queries() >= before + 4).await;
        assert_eq!(members(&registry), good, "{mode:?}");
    }
    server.set_mode(Mode::Normal);

    // an empty answer (NOERROR, no records)
    server.set_addresses("svc.test.", 0, &[]);
    let before = server.queries();
    until("a few empty answers", || server.queries() >= before + 6).await;
    assert_eq!(members(&registry), good, "empty answer");

    // 1,000 records: too large for UDP (truncated, fetched again over TCP), and more than
    // the 256 members allowed
    let huge: Vec<IpAddr> = (0..1000u32)
        .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    server.set_addresses("svc.test.", 0, &huge);
    let before = server.tcp_queries();
    until("answers over TCP", || server.tcp_queries() >= before + 4).await;
    assert_eq!(members(&registry), good, "1,000 records");
    task.abort();

    // with room for them, the same huge answer is taken whole (over TCP)
    let big = Registry::new();
    let dns = DnsDiscovery::addresses("svc.test.", 80)
        .name_servers([server.addr])
        .max_members(1000)
        .build()
        .unwrap();
    let task = tokio::spawn(dns.run(&big, Duration::ZERO));
    until("1,000 members", || big.load().len() == 1000).await;
    task.abort();
}

#[tokio::test]
async fn an_answer_flipping_every_interval_does_not_churn_the_members() {
    let server = DnsServer::start().await;
    let a = [ip("127.0.0.1"), ip("127.0.0.2")];
    let b = [ip("127.0.0.3"), ip("127.0.0.4")];
    server.set_addresses("svc.test.", 0, &a);
    let registry = Registry::new();
    let dns = DnsDiscovery::addresses("svc.test.", 80)
        .name_servers([server.addr])
        .ttl_floor(Duration::from_millis(50))
        .remove_after(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut changes = registry.subscribe();
    let task = tokio::spawn(dns.run(&registry, Duration::ZERO));
    until("first set", || registry.load().len() == 2).await;
    // flip every 100 ms (the "every second" of a real zone, ten times faster)
    for i in 0..15 {
        server.set_addresses("svc.test.", 0, if i % 2 == 0 { &b } else { &a });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        registry.load().len(),
        4,
        "the union of both sets, nothing removed"
    );
    let version = changes.mark_seen();
    assert!(version <= 4, "{version} registry versions for 4 inserts");
    task.abort();
}
