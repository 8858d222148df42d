//! Members from a real etcd (Debian's `etcd-server`, started here on loopback ports the test
//! picks): adds, updates and removes; etcd restarted mid-watch; etcd down for 10 s while
//! clients are served; a compaction past where the watch stopped; three balancers that
//! follow one etcd and agree on every member and route.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::Request;
use http_body_util::{BodyExt, Empty};
use tokio::net::{TcpListener, TcpStream};
use tower_balancer::discovery::{EtcdDiscovery, EtcdError};
use tower_balancer::registry::{AdminState, Registry};
use tower_balancer_proxy::config::ConfigFile;

mod named;
use named::{client, get, member, tempdir, Http};

mod etcd_server;
use etcd_server::{member_json, put, Etcd, PREFIX};

/// Waits until `check` holds on the registry, for at most `limit`; how long it took.
async fn until(
    registry: &Registry,
    limit: Duration,
    what: &str,
    check: impl Fn(&Registry) -> bool,
) -> Duration {
    let start = Instant::now();
    while !check(registry) {
        assert!(
            start.elapsed() < limit,
            "not within {limit:?}: {what} (members: {:?})",
            ids(registry)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

fn state(r: &Registry, id: &str) -> Option<(u32, AdminState, String)> {
    r.load()
        .get(id)
        .map(|m| (m.weight(), m.state(), m.endpoint().to_string()))
}

fn ids(r: &Registry) -> Vec<String> {
    let mut v: Vec<String> = r
        .load()
        .members()
        .iter()
        .map(|m| m.id().to_string())
        .collect();
    v.sort();
    v
}

fn fast(endpoint: String) -> EtcdDiscovery {
    EtcdDiscovery::builder([endpoint], PREFIX)
        .retry_max(Duration::from_millis(300))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_follow_puts_updates_and_deletes() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let (a, b) = (member("a").await, member("b").await);
    put(&mut c, "node1", &member_json(a, "")).await;
    put(
        &mut c,
        "node2",
        &member_json(b, r#", "weight": 2, "lbset": 1"#),
    )
    .await;

    let registry = Registry::new();
    let source = fast(etcd.endpoint());
    // what a balancer starts with
    let initial = source.read().await.unwrap();
    assert_eq!(initial.len(), 2);
    let _task = tokio::spawn(source.run(&registry, Duration::from_millis(300)));
    let s = |id| move |r: &Registry| state(r, id);
    until(&registry, Duration::from_secs(5), "both members", |r| {
        ids(r) == ["node1", "node2"]
    })
    .await;
    assert_eq!(s("node2")(&registry).unwrap().0, 2);

    // weight, drain, disable, address: each a put
    put(&mut c, "node1", &member_json(a, r#", "weight": 5"#)).await;
    until(&registry, Duration::from_secs(2), "weight 5", |r| {
        s("node1")(r).unwrap().0 == 5
    })
    .await;
    put(&mut c, "node2", &member_json(b, r#", "status": "+N""#)).await;
    until(&registry, Duration::from_secs(2), "node2 draining", |r| {
        s("node2")(r).unwrap().1 == AdminState::Draining
    })
    .await;
    put(
        &mut c,
        "node2",
        &member_json(b, r#", "status": "disabled""#),
    )
    .await;
    until(&registry, Duration::from_secs(2), "node2 disabled", |r| {
        s("node2")(r).unwrap().1 == AdminState::Disabled
    })
    .await;
    put(&mut c, "node2", &member_json(a, "")).await;
    until(
        &registry,
        Duration::from_secs(2),
        "node2 moved and enabled",
        |r| s("node2")(r) == Some((1, AdminState::Active, format!("http://{a}/"))),
    )
    .await;

    // a bad value changes nothing; a key outside the prefix is not a member
    put(&mut c, "node2", "{\"url\": 42}").await;
    c.put("/lb/test/other", member_json(b, ""), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s("node2")(&registry),
        Some((1, AdminState::Active, format!("http://{a}/")))
    );
    assert_eq!(ids(&registry), ["node1", "node2"]);

    // a delete drains the member, then it goes
    c.delete(format!("{PREFIX}node1"), None).await.unwrap();
    until(&registry, Duration::from_secs(2), "node1 draining", |r| {
        s("node1")(r).map(|m| m.1) == Some(AdminState::Draining)
    })
    .await;
    until(&registry, Duration::from_secs(3), "node1 gone", |r| {
        ids(r) == ["node2"]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restarted_mid_watch_is_followed_again() {
    let mut etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    put(&mut c, "node1", &member_json(member("a").await, "")).await;
    let registry = Registry::new();
    let _task = tokio::spawn(fast(etcd.endpoint()).run(&registry, Duration::from_millis(100)));
    until(&registry, Duration::from_secs(5), "node1", |r| {
        ids(r) == ["node1"]
    })
    .await;

    etcd.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ids(&registry),
        ["node1"],
        "the last good set stays while etcd is down"
    );
    etcd.run().await;
    let mut c = etcd.client().await;
    put(&mut c, "node2", &member_json(member("b").await, "")).await;
    c.delete(format!("{PREFIX}node1"), None).await.unwrap();
    let took = until(
        &registry,
        Duration::from_secs(5),
        "node2 only, after the restart",
        |r| ids(r) == ["node2"],
    )
    .await;
    println!("changes after an etcd restart applied within {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_wiped_and_written_anew_while_cut_off_is_read_again() {
    // the balancer reads up to a revision, loses etcd; etcd is wiped and written anew past
    // that revision; a balancer that resumed its watch would keep members etcd no longer
    // has and miss the first writes of the new history
    let mut etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let (a, b) = (member("a").await, member("b").await);
    for i in 0..6 {
        put(&mut c, &format!("old{i}"), &member_json(a, "")).await;
    }
    let relay = Relay::start(etcd.client_port).await;
    let registry = Registry::new();
    let _task = tokio::spawn(
        fast(format!("http://{}", relay.addr)).run(&registry, Duration::from_millis(100)),
    );
    until(&registry, Duration::from_secs(5), "the old members", |r| {
        ids(r).len() == 6
    })
    .await;

    relay.cut();
    etcd.wipe();
    etcd.run().await;
    let mut c = etcd.client().await;
    for i in 0..12 {
        put(&mut c, &format!("new{i:02}"), &member_json(b, "")).await;
    }
    relay.restore();
    let expected: Vec<String> = (0..12).map(|i| format!("new{i:02}")).collect();
    until(
        &registry,
        Duration::from_secs(5),
        "exactly the new etcd's members",
        |r| ids(r) == expected,
    )
    .await;
}

/// `requests` GETs through `lb`, one every `every`; the statuses that were not 200 and the
/// members that answered.
async fn traffic(
    client: Http,
    lb: SocketAddr,
    requests: usize,
    every: Duration,
) -> (Vec<String>, Vec<String>) {
    let (mut bad, mut served) = (Vec::new(), Vec::new());
    for _ in 0..requests {
        let req = Request::get(format!("http://{lb}/"))
            .body(Empty::new())
            .unwrap();
        match client.request(req).await {
            Ok(res) if res.status() == 200 => {
                let body = res.into_body().collect().await.unwrap().to_bytes();
                served.push(String::from_utf8_lossy(&body).into_owned());
            }
            Ok(res) => bad.push(res.status().to_string()),
            Err(e) => bad.push(e.to_string()),
        }
        tokio::time::sleep(every).await;
    }
    (bad, served)
}

/// A balancer from a file whose members come only from etcd; serving until the test ends.
async fn instance(dir: &Path, endpoint: &str, extra: &str) -> (SocketAddr, Registry) {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"wso2.com\"\n\
         [balancer]\nname = \"b\"\ndrain = \"1s\"\n{extra}\n\
         [balancer.etcd]\nendpoints = [\"{endpoint}\"]\nprefix = \"{PREFIX}\"\nretry_max = \"500ms\"\n"
    );
    let config = ConfigFile::from_toml(&text, &dir.join("lb.toml")).unwrap();
    let bound = config.build().unwrap().bind().await.unwrap();
    let addr = bound.local_addr().unwrap();
    let registry = bound.registry().clone();
    tokio::spawn(bound.serve(std::future::pending()));
    (addr, registry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_for_ten_seconds_loses_no_request() {
    let mut etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    put(&mut c, "node1", &member_json(member("a").await, "")).await;
    put(&mut c, "node2", &member_json(member("b").await, "")).await;
    let dir = tempdir("lb");
    let (lb, registry) = instance(&dir, &etcd.endpoint(), "").await;
    // bind read etcd's members: none of the first requests finds an empty balancer
    assert_eq!(ids(&registry), ["node1", "node2"]);
    let client = client();

    // 14 s of requests, 20 a second; etcd is down from 2 s to 12 s
    let load = tokio::spawn(traffic(client.clone(), lb, 280, Duration::from_millis(50)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    etcd.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    etcd.run().await;
    let (bad, served) = load.await.unwrap();
    assert!(
        bad.is_empty(),
        "requests that failed while etcd was down: {bad:?}"
    );
    assert!(served.iter().any(|m| m == "a") && served.iter().any(|m| m == "b"));
    println!(
        "{} requests served through a 10 s etcd outage, none failed",
        served.len()
    );

    // and it follows etcd again
    let mut c = etcd.client().await;
    put(&mut c, "node3", &member_json(member("c").await, "")).await;
    until(
        &registry,
        Duration::from_secs(5),
        "node3 after the outage",
        |r| ids(r).len() == 3,
    )
    .await;
    let (bad, served) = traffic(client, lb, 30, Duration::ZERO).await;
    assert!(bad.is_empty(), "{bad:?}");
    assert!(
        served.iter().any(|m| m == "c"),
        "the new member takes requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_another_prefix_or_without_etcd_drains_what_etcd_named() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let (a, b) = (member("a").await, member("b").await);
    put(&mut c, "node1", &member_json(a, "")).await;
    put(&mut c, "shared", &member_json(b, "")).await;
    c.put("/lb/other/node2", member_json(b, ""), None)
        .await
        .unwrap();
    c.put("/lb/other/shared", member_json(b, ""), None)
        .await
        .unwrap();
    let file = |prefix: &str, etcd_on: bool| {
        let section = if etcd_on {
            format!(
                "[balancer.etcd]\nendpoints = [\"{}\"]\nprefix = \"{prefix}\"\n",
                etcd.endpoint()
            )
        } else {
            format!("[[balancer.member]]\nurl = \"http://{a}\"\nroute = \"inline\"\n")
        };
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\
             [balancer]\nname = \"b\"\ndrain = \"200ms\"\n{section}"
        );
        ConfigFile::from_toml(&text, Path::new("lb.toml")).unwrap()
    };
    let bound = file(PREFIX, true).build().unwrap().bind().await.unwrap();
    let (reloader, registry) = (bound.reloader(), bound.registry().clone());
    tokio::spawn(bound.serve(std::future::pending()));
    assert_eq!(ids(&registry), ["node1", "shared"]);

    // another prefix: its members come, the old prefix's go, one named alike stays
    reloader.reload(file("/lb/other/", true)).await.unwrap();
    until(
        &registry,
        Duration::from_secs(3),
        "the other prefix's members only",
        |r| ids(r) == ["node2", "shared"],
    )
    .await;
    // no etcd at all: what etcd named drains and goes; the file's own member stays
    reloader.reload(file("", false)).await.unwrap();
    until(
        &registry,
        Duration::from_secs(3),
        "the inline member only",
        |r| ids(r) == ["inline"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_in_the_file_stands_over_etcd_and_etcd_takes_it_back_when_the_file_drops_it() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let (from_etcd, from_file) = (member("etcd").await, member("file").await);
    put(&mut c, "t", &member_json(from_etcd, "")).await;
    put(&mut c, "u", &member_json(from_etcd, "")).await;
    let file = |inline: bool| {
        let member = if inline {
            format!("[[balancer.member]]\nurl = \"http://{from_file}\"\nroute = \"t\"\n")
        } else {
            String::new()
        };
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\
             [balancer]\nname = \"b\"\ndrain = \"200ms\"\n{member}\
             [balancer.etcd]\nendpoints = [\"{}\"]\nprefix = \"{PREFIX}\"\n",
            etcd.endpoint()
        );
        ConfigFile::from_toml(&text, Path::new("lb.toml")).unwrap()
    };
    let endpoint = |r: &Registry| state(r, "t").map(|m| m.2);
    let bound = file(false).build().unwrap().bind().await.unwrap();
    let (reloader, registry) = (bound.reloader(), bound.registry().clone());
    tokio::spawn(bound.serve(std::future::pending()));
    assert_eq!(endpoint(&registry), Some(format!("http://{from_etcd}/")));

    // the file names t: the file's t stands, and a later write to etcd's t does not take it
    reloader.reload(file(true)).await.unwrap();
    until(&registry, Duration::from_secs(3), "the file's t", |r| {
        endpoint(r) == Some(format!("http://{from_file}/"))
    })
    .await;
    put(&mut c, "t", &member_json(from_etcd, r#", "weight": 7"#)).await;
    put(&mut c, "v", &member_json(from_etcd, "")).await;
    until(&registry, Duration::from_secs(3), "v from etcd", |r| {
        ids(r).contains(&"v".to_owned())
    })
    .await;
    assert_eq!(endpoint(&registry), Some(format!("http://{from_file}/")));

    // the file drops t: etcd's t comes back and stays after the file's drain
    reloader.reload(file(false)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(endpoint(&registry), Some(format!("http://{from_etcd}/")));
    assert_eq!(state(&registry, "t").map(|m| m.0), Some(7));
}

/// A TCP relay to `to` that the test can cut (closing every connection and refusing new
/// ones) and restore: a network partition between one balancer and etcd.
struct Relay {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Relay {
    async fn start(to: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (o, n) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let n = n.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", to)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        () = n.notified() => {}
                    }
                });
            }
        });
        Self { addr, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_past_the_watch_reads_the_prefix_again() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let (a, b) = (member("a").await, member("b").await);
    put(&mut c, "node1", &member_json(a, "")).await;
    put(&mut c, "node2", &member_json(a, "")).await;
    let relay = Relay::start(etcd.client_port).await;

    let registry = Registry::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut stream = Box::pin(fast(format!("http://{}", relay.addr)).into_stream());
    let r = registry.clone();
    let _task = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            match item {
                Ok(tower::discover::Change::Insert(_, spec)) => {
                    r.upsert(spec).unwrap();
                }
                Ok(tower::discover::Change::Remove(id)) => {
                    let _ = r.remove(id.as_str());
                }
                Err(e) => {
                    let _ = tx.send(e);
                }
            }
        }
    });
    until(&registry, Duration::from_secs(5), "both members", |r| {
        ids(r) == ["node1", "node2"]
    })
    .await;

    // the balancer loses etcd; meanwhile the members change and etcd compacts its history
    relay.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    put(&mut c, "node3", &member_json(b, "")).await;
    c.delete(format!("{PREFIX}node1"), None).await.unwrap();
    put(&mut c, "node2", &member_json(b, r#", "weight": 7"#)).await;
    let rev = c.get("x", None).await.unwrap().header().unwrap().revision();
    c.compact(rev, None).await.unwrap();
    assert_eq!(
        ids(&registry),
        ["node1", "node2"],
        "the last good set while cut off"
    );

    relay.restore();
    until(
        &registry,
        Duration::from_secs(5),
        "the members after the compaction",
        |r| ids(r) == ["node2", "node3"] && state(r, "node2").unwrap().0 == 7,
    )
    .await;
    let mut saw = Vec::new();
    while let Ok(e) = rx.try_recv() {
        saw.push(e);
    }
    assert!(
        saw.iter()
            .any(|e| matches!(e, EtcdError::Watch { .. } | EtcdError::Connect { .. })),
        "the source saw etcd go: {saw:?}"
    );
    assert!(
        !saw.iter().any(|e| matches!(e, EtcdError::Value { .. })),
        "{saw:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_balancers_on_one_etcd_converge_and_route_alike() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    for (name, m) in [
        ("m1", member("m1").await),
        ("m2", member("m2").await),
        ("m3", member("m3").await),
    ] {
        put(&mut c, name, &member_json(m, "")).await;
    }
    let dir = tempdir("lb3");
    std::fs::write(dir.join("k1.key"), [7u8; 32]).unwrap();
    let extra = "lbmethod = \"maglev\"\nhash_key = \"x-user\"\ncookie_key_files = [\"k1.key\"]";
    let mut lbs = Vec::new();
    let mut registries = Vec::new();
    for _ in 0..3 {
        let (lb, r) = instance(&dir, &etcd.endpoint(), extra).await;
        lbs.push(lb);
        registries.push(r);
    }
    let client = client();

    // a fourth member: every instance has it within 1 s of the write
    let written = Instant::now();
    put(&mut c, "m4", &member_json(member("m4").await, "")).await;
    let mut slowest = Duration::ZERO;
    for r in &registries {
        until(
            r,
            Duration::from_secs(1),
            "m4 on every instance within 1 s",
            |r| ids(r).len() == 4,
        )
        .await;
        slowest = slowest.max(written.elapsed());
    }
    println!("three balancers had the new member {slowest:?} after the write");
    // and a weight change
    let written = Instant::now();
    put(
        &mut c,
        "m2",
        &member_json(member("m2b").await, r#", "weight": 3"#),
    )
    .await;
    for r in &registries {
        until(
            r,
            Duration::from_secs(1),
            "m2's weight on every instance within 1 s",
            |r| state(r, "m2").unwrap().0 == 3,
        )
        .await;
    }
    println!(
        "and the weight change {:?} after the write",
        written.elapsed()
    );

    // 1,000 sessions, each begun on one instance and continued on the other two
    let mut moved = 0;
    for s in 0..1000usize {
        let (first, cookie) = get(&client, lbs[s % 3], None, None).await;
        let cookie = cookie.expect("the first response sets the route cookie");
        for r in 1..3 {
            let (m, _) = get(&client, lbs[(s + r) % 3], Some(&cookie), None).await;
            moved += usize::from(m != first);
        }
    }
    assert_eq!(
        moved, 0,
        "session requests that left their member on another instance"
    );
    // and hash keys land alike on all three
    for k in 0..1000 {
        let user = format!("user-{k}");
        let on = [
            get(&client, lbs[0], None, Some(&user)).await.0,
            get(&client, lbs[1], None, Some(&user)).await.0,
            get(&client, lbs[2], None, Some(&user)).await.0,
        ];
        assert!(on[0] == on[1] && on[1] == on[2], "key {user}: {on:?}");
    }
}
