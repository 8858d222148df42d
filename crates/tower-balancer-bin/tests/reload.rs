//! SIGHUP reloads the binary's whole file while clients keep sending: ten reloads that add,
//! remove and reweight members, disable one, change the strategy and swap the front's
//! certificate, under a load on keep-alive TLS connections: no client sees an error, and
//! after each reload the new members, weights and certificate are what a fresh client gets.
//! Then a broken file: refused, the old configuration serves on, the process lives.
//! Bounded: ten steps, each waiting at most 10 s; the load stops when the steps end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

mod common;
use common::{dir, kill, member, metrics, sample, start};

/// A self-signed certificate for `lb.test`: (certificate PEM, key PEM, certificate DER).
fn certificate() -> (String, String, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["lb.test".to_owned()]).unwrap();
    (
        made.cert.pem(),
        made.key_pair.serialize_pem(),
        made.cert.der().to_vec(),
    )
}

/// Writes `text` to `path` the way operators are told to: a complete file renamed over it.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The balancer file: a TLS front, the manager, and `members` as (address, route, weight,
/// status).
fn lb_file(members: &[(SocketAddr, &str, u32, &str)], lbmethod: &str) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\
         certificate = \"cert.pem\"\nkey = \"key.pem\"\ngraceful_timeout = \"5s\"\n\n\
         [balancer]\nname = \"cluster\"\nlbmethod = \"{lbmethod}\"\ndrain = \"1s\"\n\
         stickysession = \"\"\n"
    );
    for (addr, route, weight, status) in members {
        text.push_str(&format!(
            "\n[[balancer.member]]\nurl = \"http://{addr}\"\nroute = \"{route}\"\n\
             loadfactor = {weight}\nstatus = \"{status}\"\n"
        ));
    }
    text.push_str("\n[manager]\nlisten = \"127.0.0.1:0\"\n");
    text
}

/// A TLS client trusting `roots`.
fn client(roots: &[Vec<u8>]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(CertificateDer::from(r.clone())).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A keep-alive connection to the front, and the certificate it was shown.
async fn connect(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
) -> Result<(SendRequest<Empty<Bytes>>, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("lb.test").unwrap();
    let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let shown = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok((sender, shown))
}

/// One GET on `sender`: the member that served it, or what went wrong.
async fn served_by(sender: &mut SendRequest<Empty<Bytes>>) -> Result<String, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = http::Request::get("/")
        .header("host", "lb.test")
        .body(Empty::new())
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| "no answer in 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let by = res
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    res.into_body().collect().await.map_err(|e| e.to_string())?;
    if status == 200 {
        Ok(by)
    } else {
        Err(format!("status {status}"))
    }
}

/// Requests answered, client errors, and the client tasks.
type Load = (
    Arc<AtomicU64>,
    Arc<Mutex<Vec<String>>>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Clients sending until `stop`: each keeps a connection for 100 requests, then opens
/// another, so both old connections and new ones cross every reload.
fn load(addr: SocketAddr, tls: &tokio_rustls::TlsConnector, stop: &Arc<AtomicBool>) -> Load {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let tasks = (0..6)
        .map(|_| {
            let (tls, stop, ok, errors) = (tls.clone(), stop.clone(), ok.clone(), errors.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut sender = match connect(addr, &tls).await {
                        Ok((s, _)) => s,
                        Err(e) => {
                            errors.lock().unwrap().push(format!("connect: {e}"));
                            continue;
                        }
                    };
                    for _ in 0..100 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match served_by(&mut sender).await {
                            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                errors.lock().unwrap().push(e);
                                break;
                            }
                        };
                    }
                }
            })
        })
        .collect();
    (ok, errors, tasks)
}

/// Waits (at most 10 s) until the manager counts `n` reloads with `result`.
async fn reloads(manager: SocketAddr, result: &str, n: u64) -> String {
    let start = Instant::now();
    loop {
        let body = metrics(manager).await;
        let key = format!("lb_config_reloads_total{{result=\"{result}\"}}");
        if sample(&body, &key) == n {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reload {n} ({result}) not counted: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Who serves 60 requests of a new client, and the certificate it was shown.
async fn fresh_client(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
) -> (BTreeMap<String, u32>, Vec<u8>) {
    let (mut sender, shown) = connect(addr, tls).await.unwrap();
    let mut by = BTreeMap::new();
    for _ in 0..60 {
        *by.entry(served_by(&mut sender).await.unwrap()).or_insert(0) += 1;
    }
    (by, shown)
}

/// How many requests of the load each member served over the next half second, from the
/// metrics (a new client's own requests can alias with the load's on a shared round robin,
/// so who serves is judged on all of them).
async fn window(manager: SocketAddr) -> BTreeMap<String, u64> {
    let per_member = |body: &str| -> BTreeMap<String, u64> {
        body.lines()
            .filter_map(|l| l.strip_prefix("lb_member_requests_total{"))
            .filter_map(|l| {
                let (_, at_member) = l.split_once("member=\"")?;
                let (member, _) = at_member.split_once('"')?;
                Some((member.to_owned(), l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect()
    };
    let before = per_member(&metrics(manager).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = per_member(&metrics(manager).await);
    after
        .into_iter()
        .map(|(m, n)| {
            let was = before.get(&m).copied().unwrap_or(0);
            (m, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[allow(clippy::cast_precision_loss)]
fn share(window: &BTreeMap<String, u64>, member: &str) -> f64 {
    let total: u64 = window.values().sum();
    assert!(total > 50, "too little load to judge: {window:?}");
    window.get(member).copied().unwrap_or(0) as f64 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reloads_under_load_lose_no_request_and_take_effect_each_time() {
    let d = dir("reload");
    std::fs::create_dir_all(&d).unwrap();
    let n = [
        member("node1").await,
        member("node2").await,
        member("node3").await,
        member("node4").await,
    ];
    let (a, b) = (certificate(), certificate());
    let tls = client(&[a.2.clone(), b.2.clone()]);
    let use_cert = |c: &(String, String, Vec<u8>)| {
        write(&d.join("cert.pem"), &c.0);
        write(&d.join("key.pem"), &c.1);
    };
    use_cert(&a);
    let cfg = d.join("lb.toml");
    let on = "active";
    write(
        &cfg,
        &lb_file(
            &[(n[0], "node1", 1, on), (n[1], "node2", 1, on)],
            "byrequests",
        ),
    );
    let (mut child, addr, manager) = start(&cfg, &["--workers", "2"]);
    let manager = manager.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, errors, tasks) = load(addr, &tls, &stop);

    // (members, strategy, certificate, who a new client meets)
    type Step<'a> = (
        Vec<(SocketAddr, &'a str, u32, &'a str)>,
        &'a str,
        bool,
        &'a [&'a str],
    );
    let steps: Vec<Step<'_>> = vec![
        (
            vec![
                (n[0], "node1", 1, on),
                (n[1], "node2", 1, on),
                (n[2], "node3", 1, on),
            ],
            "byrequests",
            false,
            &["node1", "node2", "node3"],
        ),
        (
            vec![(n[1], "node2", 1, on), (n[2], "node3", 1, on)],
            "byrequests",
            false,
            &["node2", "node3"],
        ),
        (
            vec![(n[1], "node2", 3, on), (n[2], "node3", 1, on)],
            "byrequests",
            false,
            &["node2", "node3"],
        ),
        (
            vec![
                (n[1], "node2", 1, on),
                (n[2], "node3", 1, on),
                (n[3], "node4", 1, on),
            ],
            "byrequests",
            true,
            &["node2", "node3", "node4"],
        ),
        (vec![(n[3], "node4", 1, on)], "byrequests", true, &["node4"]),
        (
            vec![
                (n[0], "node1", 1, on),
                (n[1], "node2", 1, on),
                (n[3], "node4", 1, on),
            ],
            "p2c",
            true,
            &["node1", "node2", "node4"],
        ),
        (
            vec![
                (n[0], "node1", 1, on),
                (n[1], "node2", 1, on),
                (n[3], "node4", 1, on),
            ],
            "p2c",
            false,
            &["node1", "node2", "node4"],
        ),
        (
            vec![
                (n[0], "node1", 1, on),
                (n[1], "node2", 1, on),
                (n[3], "node4", 1, "disabled"),
            ],
            "random",
            false,
            &["node1", "node2"],
        ),
        (
            vec![
                (n[0], "node1", 1, on),
                (n[1], "node2", 1, on),
                (n[3], "node4", 2, on),
            ],
            "byrequests",
            false,
            &["node1", "node2", "node4"],
        ),
        (
            vec![(n[1], "node2", 1, on), (n[3], "node4", 1, on)],
            "byrequests",
            true,
            &["node2", "node4"],
        ),
    ];
    for (i, (members, method, second_cert, expect)) in steps.iter().enumerate() {
        use_cert(if *second_cert { &b } else { &a });
        write(&cfg, &lb_file(members, method));
        kill(&child, "-HUP");
        reloads(manager, "success", i as u64 + 1).await;
        // a new client is served, and shown the certificate now in force
        let (_, shown) = fresh_client(addr, &tls).await;
        let cert = if *second_cert { &b.2 } else { &a.2 };
        assert_eq!(&shown, cert, "reload {}: the certificate", i + 1);
        // the load is served by the members now in force, and only by them
        let served = window(manager).await;
        let met: BTreeSet<&str> = served.keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = expect.iter().copied().collect();
        assert_eq!(met, want, "reload {}: {served:?}", i + 1);
        if i == 2 {
            // loadfactor 3 against 1: three of every four requests of the load
            let share = share(&served, "node2");
            assert!((0.65..=0.85).contains(&share), "{share}");
        }
        if i == 8 {
            // loadfactor 2 against 1 and 1: half of them
            let share = share(&served, "node4");
            assert!((0.4..=0.6).contains(&share), "{share}");
        }
        // the manager page names the strategy in force
        let page = common::get(manager, &manager.to_string(), "/balancer-manager").await;
        assert!(
            page.contains(&format!("Strategy: <b>{method}</b>")),
            "reload {}",
            i + 1
        );
    }

    // a file with a mistake: refused, counted, the configuration in force serves on
    write(&cfg, "[server\nlisten = ");
    kill(&child, "-HUP");
    let body = reloads(manager, "failure", 1).await;
    assert_eq!(
        sample(&body, "lb_config_last_reload_successful"),
        0,
        "{body}"
    );
    assert_eq!(
        sample(&body, "lb_config_reloads_total{result=\"success\"}"),
        10
    );
    assert!(child.0.try_wait().unwrap().is_none(), "the process died");
    let (_, shown) = fresh_client(addr, &tls).await;
    assert_eq!(shown, b.2);
    let served = window(manager).await;
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        ["node2", "node4"],
        "{served:?}"
    );

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .unwrap()
            .unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    assert!(ok.load(Ordering::Relaxed) > 500, "{ok:?}");
    kill(&child, "-TERM");
    let start = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(&d).unwrap();
}
