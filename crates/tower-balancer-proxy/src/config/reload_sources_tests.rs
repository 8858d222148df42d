//! Reloads that stop or replace a members file: the members it added while the balancer
//! ran leave with it (they used to stay, serving, for ever), and members it was draining
//! when it stopped finish draining instead of staying half-gone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tower_balancer::registry::{MemberId, Registry};

use super::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tb-reload-sources-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_members(path: &Path, routes: &[&str]) {
    let text: String = routes
        .iter()
        .map(|r| format!("[[member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"{r}\"\n\n"))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn file(dir: &Path, members_file: Option<&str>) -> ConfigFile {
    file_with(dir, members_file, &[])
}

/// The balancer's file: member `static` and `more` (at port 2; members files' are at 1).
fn file_with(dir: &Path, members_file: Option<&str>, more: &[&str]) -> ConfigFile {
    let source = members_file.map_or_else(String::new, |f| {
        format!("members_file = \"{f}\"\nmembers_poll = \"50ms\"\n")
    });
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\n\
         [balancer]\nname = \"b\"\ndrain = \"1s\"\n{source}\n\
         [[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"static\"\n"
    );
    for route in more {
        text.push_str(&format!(
            "[[balancer.member]]\nurl = \"http://127.0.0.1:2\"\nroute = \"{route}\"\n"
        ));
    }
    ConfigFile::from_toml(&text, &dir.join("lb.toml")).unwrap()
}

/// A balancer serving `config` until the returned sender is dropped.
async fn serving(config: &ConfigFile) -> (Reloader, Registry, tokio::sync::oneshot::Sender<()>) {
    let bound = config.build().unwrap().bind().await.unwrap();
    let (reloader, registry) = (bound.reloader(), bound.registry().clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    (reloader, registry, stop)
}

/// The port of member `id`'s URL.
fn port(registry: &Registry, id: &str) -> Option<u16> {
    registry
        .load()
        .get(id)
        .and_then(|m| m.endpoint().port_u16())
}

/// The registry's members as `id:state`, sorted.
fn members(registry: &Registry) -> Vec<String> {
    let snapshot = registry.load();
    let mut v: Vec<String> = snapshot
        .members()
        .iter()
        .map(|m| format!("{}:{}", m.id(), m.state()))
        .collect();
    v.sort();
    v
}

/// Waits up to 10 s for the registry's members to be `want`.
async fn until(registry: &Registry, want: &[&str]) {
    let start = Instant::now();
    while members(registry) != want {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "members {:?}, waited for {want:?}",
            members(registry)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_members_file_a_reload_drops_takes_its_members_and_their_drains_with_it() {
    let dir = scratch("dropped");
    write_members(&dir.join("members.toml"), &["m1"]);
    let (reloader, registry, _stop) = serving(&file(&dir, Some("members.toml"))).await;
    // added while running, then one of them taken out again (draining for 1 s)
    write_members(&dir.join("members.toml"), &["m1", "m2", "m3"]);
    until(
        &registry,
        &["m1:active", "m2:active", "m3:active", "static:active"],
    )
    .await;
    write_members(&dir.join("members.toml"), &["m1", "m2"]);
    until(
        &registry,
        &["m1:active", "m2:active", "m3:draining", "static:active"],
    )
    .await;

    reloader.reload(file(&dir, None)).await.unwrap();
    until(
        &registry,
        &["m1:draining", "m2:draining", "m3:draining", "static:active"],
    )
    .await;
    until(&registry, &["static:active"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_members_file_replaced_by_another_hands_its_members_over() {
    let dir = scratch("replaced");
    write_members(&dir.join("a.toml"), &["m1"]);
    write_members(&dir.join("b.toml"), &["m2", "m3"]);
    let (reloader, registry, _stop) = serving(&file(&dir, Some("a.toml"))).await;
    write_members(&dir.join("a.toml"), &["m1", "m2", "m4"]);
    until(
        &registry,
        &["m1:active", "m2:active", "m4:active", "static:active"],
    )
    .await;

    // b.toml names m2 too: it stays active throughout; m1 and m4 drain and go
    reloader.reload(file(&dir, Some("b.toml"))).await.unwrap();
    let start = Instant::now();
    while members(&registry).contains(&"m4:active".to_owned()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "m4 never drained"
        );
        assert!(members(&registry).contains(&"m2:active".to_owned()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    until(&registry, &["m2:active", "m3:active", "static:active"]).await;
    // the new file is followed, and the members it adds are its own
    write_members(&dir.join("b.toml"), &["m3"]);
    until(&registry, &["m3:active", "static:active"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_member_the_file_declares_stays_whatever_its_members_file_does() {
    let dir = scratch("declared");
    write_members(&dir.join("members.toml"), &["m1", "m2"]);
    let (reloader, registry, _stop) = serving(&file(&dir, Some("members.toml"))).await;
    // m1 moves from the members file into the file itself
    write_members(&dir.join("members.toml"), &["m2"]);
    reloader
        .reload(file_with(&dir, Some("members.toml"), &["m1"]))
        .await
        .unwrap();
    until(&registry, &["m1:active", "m2:active", "static:active"]).await;
    // past the members file's drain: the file's m1 stays
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        members(&registry),
        ["m1:active", "m2:active", "static:active"]
    );
    assert_eq!(port(&registry, "m1"), Some(2));

    // a members file naming the file's member is said and left alone, and so is its leaving
    write_members(&dir.join("members.toml"), &["m2", "m1"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(port(&registry, "m1"), Some(2));
    write_members(&dir.join("members.toml"), &["m2"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        members(&registry),
        ["m1:active", "m2:active", "static:active"]
    );

    // the file drops m1 while the members file names it: the members file's m1 serves on
    write_members(&dir.join("members.toml"), &["m2", "m1"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    reloader
        .reload(file(&dir, Some("members.toml")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        members(&registry),
        ["m1:active", "m2:active", "static:active"]
    );
    assert_eq!(port(&registry, "m1"), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_member_the_file_adds_is_added_though_its_members_file_once_named_it() {
    let dir = scratch("readded");
    write_members(&dir.join("members.toml"), &["m1", "m2"]);
    let (reloader, registry, _stop) = serving(&file(&dir, Some("members.toml"))).await;
    write_members(&dir.join("members.toml"), &["m1"]);
    until(&registry, &["m1:active", "static:active"]).await;
    let done = reloader
        .reload(file_with(&dir, Some("members.toml"), &["m2"]))
        .await
        .unwrap();
    assert_eq!(
        done.added.iter().map(MemberId::as_str).collect::<Vec<_>>(),
        ["m2"]
    );
    until(&registry, &["m1:active", "m2:active", "static:active"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_members_file_put_back_while_its_members_drain_takes_them_back() {
    let dir = scratch("put-back");
    write_members(&dir.join("members.toml"), &["m1"]);
    let (reloader, registry, _stop) = serving(&file(&dir, Some("members.toml"))).await;
    reloader.reload(file(&dir, None)).await.unwrap();
    until(&registry, &["m1:draining", "static:active"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    reloader
        .reload(file(&dir, Some("members.toml")))
        .await
        .unwrap();
    until(&registry, &["m1:active", "static:active"]).await;
    // past the first drain's end: m1 stays
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(members(&registry), ["m1:active", "static:active"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_members_file_naming_a_member_of_the_file_starts_and_reloads_with_the_files() {
    let dir = scratch("overlap");
    write_members(&dir.join("members.toml"), &["m1", "m2"]);
    let config = file_with(&dir, Some("members.toml"), &["m1"]);
    let (reloader, registry, _stop) = serving(&config).await;
    assert_eq!(port(&registry, "m1"), Some(2));
    // an unrelated change reloads too, the overlap said, not refused
    reloader
        .reload(file_with(&dir, Some("members.toml"), &["m1", "m3"]))
        .await
        .unwrap();
    until(
        &registry,
        &["m1:active", "m2:active", "m3:active", "static:active"],
    )
    .await;
    assert_eq!(port(&registry, "m1"), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
