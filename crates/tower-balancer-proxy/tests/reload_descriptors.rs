//! A reload that finds the process out of file descriptors. Its own test binary: it takes
//! every descriptor the process has for a second and a half, which would fail any other
//! test starting meanwhile (a runtime needs descriptors to be built).
#![allow(clippy::unwrap_used)]

#[path = "safe/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use harness::echo_member;
use tower_balancer::registry::MemberId;

/// Every descriptor this process can still open.
fn take_all() -> Vec<std::fs::File> {
    let mut taken = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        taken.push(f);
    }
    taken
}

/// A reload that finds the process out of descriptors (its file cannot be opened) waits for
/// one and is applied, instead of being refused: a SIGHUP under exhaustion was lost, and
/// five in a row were five refusals (hostile round 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_out_of_descriptors_waits_for_one_instead_of_being_refused() {
    let (a, _) = echo_member().await;
    let (b, _) = echo_member().await;
    let text = |urls: &[&str]| {
        let mut t = String::from(
            "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\
             [balancer]\nname = \"b\"\n",
        );
        for (i, u) in urls.iter().enumerate() {
            t.push_str(&format!(
                "[[balancer.member]]\nurl = \"{u}\"\nroute = \"node{}\"\n",
                i + 1
            ));
        }
        t
    };
    let path = std::env::temp_dir().join(format!("fd-idle-reload-{}.toml", std::process::id()));
    std::fs::write(&path, text(&[&a])).unwrap();
    let config = tower_balancer_proxy::config::ConfigFile::from_file(&path).unwrap();
    let bound = config.build().unwrap().bind().await.unwrap();
    let (reloader, registry) = (bound.reloader(), bound.registry().clone());
    let _serving = tokio::spawn(bound.serve(std::future::pending()));
    std::fs::write(&path, text(&[&a, &b])).unwrap();
    let before = tower_balancer::descriptors::shortages()[3].1;
    let taken = take_all();
    let reload = tokio::spawn({
        let path = path.clone();
        async move { reloader.reload_file(&path).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(taken);
    let done = tokio::time::timeout(Duration::from_secs(15), reload)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let reloaded = done.expect("applied once a descriptor was free");
    assert_eq!(reloaded.added, [MemberId::new("node2").unwrap()]);
    assert!(registry.load().get("node2").is_some());
    assert!(
        tower_balancer::descriptors::shortages()[3].1 > before,
        "counted"
    );
}
