//! Reloads through the library: only what the file changed changes, a refused file changes
//! nothing, probes resume without marking members down. The binary's test
//! (`crates/tower-balancer-bin/tests/reload.rs`) reloads under load over real sockets.

use std::path::Path;
use std::time::{Duration, Instant};

use tower_balancer::registry::{AdminState, Health, Registry};

use super::*;

fn text(members: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\n\
         [balancer]\nname = \"b\"\ndrain = \"200ms\"\n{extra}\n{members}"
    )
}

fn member(route: &str, weight: u32) -> String {
    format!("[[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"{route}\"\nloadfactor = {weight}\n\n")
}

fn parse(text: &str) -> ConfigFile {
    ConfigFile::from_toml(text, Path::new("lb.toml")).unwrap()
}

/// A balancer serving `text` until the sender is dropped.
async fn serving(text: &str) -> (Reloader, Registry, tokio::sync::oneshot::Sender<()>) {
    let bound = parse(text).build().unwrap().bind().await.unwrap();
    let (reloader, registry) = (bound.reloader(), bound.registry().clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    (reloader, registry, stop)
}

fn ids(list: &[tower_balancer::registry::MemberId]) -> Vec<&str> {
    list.iter()
        .map(tower_balancer::registry::MemberId::as_str)
        .collect()
}

fn state(registry: &Registry, id: &str) -> Option<(u32, AdminState, Health)> {
    let snapshot = registry.load();
    let m = snapshot.get(id)?;
    Some((m.weight(), m.state(), m.health()))
}

#[tokio::test]
async fn a_reload_changes_what_the_file_changed_and_nothing_else() {
    let first = text(&(member("node1", 1) + &member("node2", 1)), "");
    let (reloader, registry, _stop) = serving(&first).await;
    // what an operator did in the manager stays: the file did not change node2
    registry.set_state("node2", AdminState::Disabled).unwrap();
    let second = text(
        &(member("node1", 5) + &member("node2", 1) + &member("node3", 1)),
        "",
    );
    let done = reloader.reload(parse(&second)).await.unwrap();
    assert_eq!(ids(&done.added), ["node3"]);
    assert_eq!(ids(&done.changed), ["node1"]);
    assert!(done.draining.is_empty());
    assert_eq!(
        state(&registry, "node1"),
        Some((5, AdminState::Active, Health::Healthy))
    );
    assert_eq!(state(&registry, "node2").unwrap().1, AdminState::Disabled);
    assert!(state(&registry, "node3").is_some());

    // dropped: drains for the drain period, then leaves
    let third = text(&(member("node1", 5) + &member("node2", 1)), "");
    let done = reloader.reload(parse(&third)).await.unwrap();
    assert_eq!(ids(&done.draining), ["node3"]);
    assert_eq!(state(&registry, "node3").unwrap().1, AdminState::Draining);
    let start = Instant::now();
    while state(&registry, "node3").is_some() {
        assert!(start.elapsed() < Duration::from_secs(5), "node3 never left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // keys a running process cannot change are reported, the rest is in force
    let fourth = third.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"");
    let done = reloader.reload(parse(&fourth)).await.unwrap();
    assert_eq!(done.at_restart, ["server.listen"]);
}

#[tokio::test]
async fn a_refused_file_changes_nothing_and_is_counted() {
    let first = text(&(member("node1", 1) + &member("node2", 1)), "");
    let bound = parse(&first).build().unwrap().bind().await.unwrap();
    let (reloader, registry, stats) = (bound.reloader(), bound.registry().clone(), bound.reloads());
    tokio::spawn(bound.serve(std::future::pending()));
    // builds only where a file it names can be read: refused at that key
    let missing = text(&member("node3", 1), "cookie_key_file = \"/no/such/key\"\n");
    let err = reloader.reload(parse(&missing)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("`balancer.cookie_key_file`: cannot read"),
        "{err}"
    );
    // unreadable from the start
    let err = reloader.reload_file("/no/such/lb.toml").await.unwrap_err();
    assert!(err.to_string().contains("cannot read the file"), "{err}");
    assert_eq!((stats.failed(), stats.succeeded()), (2, 0));
    let ids: Vec<String> = registry
        .load()
        .members()
        .iter()
        .map(|m| m.id().to_string())
        .collect();
    assert_eq!(ids, ["node1", "node2"]);
    reloader.reload(parse(&first)).await.unwrap();
    assert_eq!((stats.failed(), stats.succeeded()), (2, 1));
}

#[tokio::test]
async fn probes_resume_on_reload_and_leave_nothing_down_when_removed() {
    // a TCP check against a closed port, members down from the start
    let health = "[balancer.health]\nmethod = \"TCP\"\ninterval = \"1s\"\ninitial = \"down\"\n";
    let members = member("node1", 1) + &member("node2", 1);
    let (reloader, registry, _stop) = serving(&(text(&members, "") + health)).await;
    assert_eq!(state(&registry, "node1").unwrap().2, Health::Unhealthy);
    // no probe any more: nothing would ever bring them back, so they are up
    reloader.reload(parse(&text(&members, ""))).await.unwrap();
    assert_eq!(state(&registry, "node1").unwrap().2, Health::Healthy);
    assert_eq!(state(&registry, "node2").unwrap().2, Health::Healthy);
    // probes again: `initial = "down"` is for the start, not for a reload
    reloader
        .reload(parse(&(text(&members, "") + health)))
        .await
        .unwrap();
    assert_eq!(state(&registry, "node1").unwrap().2, Health::Healthy);
}

#[tokio::test]
async fn a_stopped_balancer_says_so() {
    let first = text(&member("node1", 1), "");
    let bound = parse(&first).build().unwrap().bind().await.unwrap();
    let reloader = bound.reloader();
    drop(bound);
    let err = reloader.reload(parse(&first)).await.unwrap_err();
    assert!(matches!(err, ReloadError::Stopped), "{err}");
}
