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
    // still waiting at the next reload, beside another such key
    let fifth = fourth.replace("[server]\n", "[server]\nmax_connections = 500\n");
    let done = reloader.reload(parse(&fifth)).await.unwrap();
    assert_eq!(done.at_restart, ["server.listen", "server.max_connections"]);
    // put back as the process runs: nothing waits
    let done = reloader.reload(parse(&third)).await.unwrap();
    assert!(done.at_restart.is_empty(), "{:?}", done.at_restart);
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
    // probes again: they start afresh, as at the start, so members whose port is closed
    // are down (they were up only because nothing probed them), not up until `fails` probes
    reloader
        .reload(parse(&(text(&members, "") + health)))
        .await
        .unwrap();
    assert_eq!(state(&registry, "node1").unwrap().2, Health::Unhealthy);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(state(&registry, "node1").unwrap().2, Health::Unhealthy);
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

/// A member on loopback answering every request with 200, keep-alive.
async fn live_member() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0
                        || s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// GET / with `cookie`: the status and the `Set-Cookie` answered, if any.
async fn get(addr: std::net::SocketAddr, cookie: Option<&str>) -> (u16, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    let req = format!("GET / HTTP/1.1\r\nHost: lb.test\r\n{cookie}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let set = out
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .map(|c| c.split(';').next().unwrap().to_owned());
    (status, set)
}

#[tokio::test]
async fn signed_cookies_without_a_key_file_survive_a_reload_and_the_log_reopens_even_when_refused()
{
    let dir = std::env::temp_dir().join(format!("lb-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (live_member().await, live_member().await);
    let members = format!(
        "[[balancer.member]]\nurl = \"http://{a}\"\nroute = \"node1\"\n\n\
         [[balancer.member]]\nurl = \"http://{b}\"\nroute = \"node2\"\n"
    );
    let log = dir.join("access.log");
    let good = text(&members, "").replace(
        "[balancer]",
        &format!("access_log = \"{}\"\n\n[balancer]", log.display()),
    );
    let path = dir.join("lb.toml");
    std::fs::write(&path, &good).unwrap();
    let bound = ConfigFile::from_file(&path)
        .unwrap()
        .build()
        .unwrap()
        .bind()
        .await
        .unwrap();
    let (reloader, addr) = (bound.reloader(), bound.local_addr().unwrap());
    tokio::spawn(bound.serve(std::future::pending()));
    let (status, cookie) = get(addr, None).await;
    assert_eq!(status, 200);
    let cookie = cookie.expect("a route cookie");
    // the same file again: the key that signed the cookie is the process's, not the build's
    reloader.reload_file(&path).await.unwrap();
    let (status, again) = get(addr, Some(&cookie)).await;
    assert_eq!(
        (status, again),
        (200, None),
        "the cookie was not recognised"
    );

    // logrotate moves the log and sends SIGHUP while the file is being edited
    std::fs::rename(&log, dir.join("access.log.1")).unwrap();
    std::fs::write(&path, "[server\nlisten = ").unwrap();
    assert!(reloader.reload_file(&path).await.is_err());
    get(addr, Some(&cookie)).await;
    let start = Instant::now();
    while !log.exists() || std::fs::read_to_string(&log).unwrap().lines().count() < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no new access.log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn workers_do_not_share_a_port_another_program_listens_on() {
    // another balancer with SO_REUSEPORT on the port: the kernel would let ours share it
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.set_reuseport(true).unwrap();
    other.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let taken = other.listen(16).unwrap();
    let port = taken.local_addr().unwrap().port();
    let file = text(&member("node1", 1), "").replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\"\nworkers = 2"),
    );
    let err = parse(&file).build().unwrap().bind().await.unwrap_err();
    assert!(
        err.to_string().contains("another program uses this port"),
        "{err}"
    );
}

#[tokio::test]
async fn a_key_taken_out_of_the_file_goes_back_to_its_default() {
    let members = member("node1", 1) + &member("node2", 1);
    let (reloader, registry, _stop) = serving(&text(&members, "")).await;
    // both down (the manager's doing): below the default threshold, panic mode
    for id in ["node1", "node2"] {
        registry.set_health(id, Health::Unhealthy).unwrap();
    }
    assert!(registry.load().is_panic());
    let off = text(&members, "panic_threshold = 0.0");
    reloader.reload(parse(&off)).await.unwrap();
    assert!(!registry.load().is_panic(), "panic mode turned off");
    // the line taken out again: the default (0.5), as a start with this file has
    reloader.reload(parse(&text(&members, ""))).await.unwrap();
    assert!(registry.load().is_panic(), "the default threshold is back");
}
