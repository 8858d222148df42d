//! Several balancer instances over the same members, with nothing shared but their
//! configuration: a client that alternates between them keeps its session, hash keys map
//! alike everywhere, a member added through the shared members file moves the same keys on
//! every instance, and a signing key is rotated without losing a session.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tower_balancer_proxy::config::ConfigFile;

mod named;
use named::{client, get, member, slow_member, tempdir, Http};

fn write_members(path: &Path, members: &[(&str, SocketAddr)]) {
    let mut text = String::new();
    for (route, addr) in members {
        text.push_str(&format!(
            "[[member]]\nurl = \"http://{addr}\"\nroute = \"{route}\"\n\n"
        ));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// One instance from `config`, serving until the test ends.
async fn instance(dir: &Path, keys: &[&str]) -> SocketAddr {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}.key\"")).collect();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"wso2.com\"\n\
         [balancer]\nname = \"b\"\nlbmethod = \"maglev\"\nhash_key = \"x-user\"\n\
         cookie_key_files = [{}]\nmembers_file = \"members.toml\"\nmembers_poll = \"50ms\"\ndrain = \"1s\"\n",
        keys.join(", ")
    );
    let config = ConfigFile::from_toml(&text, &dir.join("lb.toml")).unwrap();
    let bound = config.build().unwrap().bind().await.unwrap();
    let addr = bound.local_addr().unwrap();
    tokio::spawn(bound.serve(std::future::pending()));
    addr
}

/// `sessions` sessions of `requests` requests each, every request on the next instance;
/// returns how many requests left their session's member.
async fn sessions(client: &Http, lbs: &[SocketAddr], sessions: usize, requests: usize) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..20usize {
        let (client, lbs) = (client.clone(), lbs.to_vec());
        tasks.spawn(async move {
            let mut moved = 0;
            for s in (chunk..sessions).step_by(20) {
                let (first, cookie) = get(&client, lbs[s % lbs.len()], None, None).await;
                let cookie = cookie.expect("the first response sets the route cookie");
                for r in 1..requests {
                    let (m, _) = get(&client, lbs[(s + r) % lbs.len()], Some(&cookie), None).await;
                    moved += usize::from(m != first);
                }
            }
            moved
        });
    }
    let mut moved = 0;
    while let Some(m) = tasks.join_next().await {
        moved += m.unwrap();
    }
    moved
}

/// Which member each of `keys` goes to, asked of every instance.
async fn key_map(client: &Http, lbs: &[SocketAddr], keys: usize) -> Vec<Vec<String>> {
    let mut maps = Vec::new();
    for lb in lbs {
        let mut map = Vec::with_capacity(keys);
        for k in 0..keys {
            map.push(get(client, *lb, None, Some(&format!("user-{k}"))).await.0);
        }
        maps.push(map);
    }
    maps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_agree_with_nothing_shared() {
    let dir = tempdir("agree");
    std::fs::write(dir.join("k1.key"), [7u8; 32]).unwrap();
    let m = [member("m1").await, member("m2").await, member("m3").await];
    write_members(
        &dir.join("members.toml"),
        &[("m1", m[0]), ("m2", m[1]), ("m3", m[2])],
    );
    let lbs = [
        instance(&dir, &["k1"]).await,
        instance(&dir, &["k1"]).await,
        instance(&dir, &["k1"]).await,
    ];
    let client = client();

    // 1,000 sessions x 20 requests, each request on the next instance
    let moved = sessions(&client, &lbs, 1000, 20).await;
    assert_eq!(moved, 0, "requests that left their session's member");

    // hash keys map alike on all three
    const KEYS: usize = 3000;
    let before = key_map(&client, &lbs, KEYS).await;
    assert!(
        before.iter().all(|m| *m == before[0]),
        "instances disagree on key placement"
    );

    // a fourth member, added on all three through the shared members file
    let m4 = member("m4").await;
    write_members(
        &dir.join("members.toml"),
        &[("m1", m[0]), ("m2", m[1]), ("m3", m[2]), ("m4", m4)],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = key_map(&client, &lbs, KEYS).await;
    assert!(
        after.iter().all(|m| *m == after[0]),
        "instances disagree after the add"
    );
    let moved = before[0]
        .iter()
        .zip(&after[0])
        .filter(|(a, b)| a != b)
        .count();
    let share = moved as f64 / KEYS as f64;
    let to_new = before[0]
        .iter()
        .zip(&after[0])
        .filter(|(a, b)| a != b && *b == "m4")
        .count();
    println!("keys moved after adding a 4th member: {moved} of {KEYS} ({:.1}%), {to_new} to the new member", share * 100.0);
    assert!(share <= 0.25 + 0.02, "{share}");
    assert_eq!(moved, to_new, "keys only move to the new member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_signing_key_loses_no_session() {
    let dir = tempdir("agree");
    std::fs::write(dir.join("old.key"), [1u8; 32]).unwrap();
    std::fs::write(dir.join("new.key"), [2u8; 32]).unwrap();
    let m = [member("m1").await, member("m2").await, member("m3").await];
    write_members(
        &dir.join("members.toml"),
        &[("m1", m[0]), ("m2", m[1]), ("m3", m[2])],
    );
    let client = client();

    // the phases of a rolling rotation: accept the new key everywhere, then sign with it
    // everywhere, then drop the old one; one instance at a time moves to the next phase.
    // Live sessions get their cookie signed again with the first key when an older key
    // signed it, so by the time the old key goes, every session that was used carries a
    // new-key cookie.
    let phases: [&[&str]; 4] = [&["old"], &["old", "new"], &["new", "old"], &["new"]];
    let mut lbs = Vec::new();
    for _ in 0..3 {
        lbs.push(instance(&dir, phases[0]).await);
    }
    let mut live: Vec<(String, String)> = Vec::new(); // (cookie, member)
    let (mut lost, mut requests) = (0, 0);
    for (p, keys) in phases.iter().enumerate() {
        for i in 0..3 {
            if p > 0 {
                lbs[i] = instance(&dir, keys).await; // instance i restarts with the next keys
            }
            for s in 0..30 {
                let (member, cookie) = get(&client, lbs[s % 3], None, None).await;
                live.push((cookie.unwrap(), member));
            }
            // every live session, on every instance
            for (cookie, member) in &mut live {
                for lb in &lbs {
                    let (m, set) = get(&client, *lb, Some(cookie), None).await;
                    requests += 1;
                    lost += usize::from(m != *member);
                    if let Some(set) = set {
                        *cookie = set;
                    }
                }
            }
        }
    }
    println!(
        "{} sessions, {requests} session requests through a key rotation, {lost} off their member",
        live.len()
    );
    assert_eq!(
        lost, 0,
        "session requests that left their member during the rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaving_the_file_finishes_its_requests_in_flight() {
    let dir = tempdir("agree");
    std::fs::write(dir.join("k1.key"), [7u8; 32]).unwrap();
    let slow = slow_member("slow", Duration::from_millis(800)).await;
    let other = member("other").await;
    write_members(&dir.join("members.toml"), &[("slow", slow)]);
    let lb = instance(&dir, &["k1"]).await;
    let client = client();
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, lb, None, None).await.0 })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // the file now names only the other member; a broken rewrite in between changes nothing
    std::fs::write(dir.join("members.toml"), "[[member]]\nurl = \"http://").unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    write_members(&dir.join("members.toml"), &[("other", other)]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&client, lb, None, None).await.0, "other");
    assert_eq!(
        in_flight.await.unwrap(),
        "slow",
        "the request in flight finished on its member"
    );
}
