//! The `tower-balancer` binary as a process: `--version`, `--help`, `--check` on good and
//! bad files, and `--config` with two workers in front of two members on loopback, stopped
//! by SIGTERM with its requests answered. Bounded in requests and time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{config, dir, exited, file, get, kill, member, metrics, sample, start, BIN};

#[test]
fn version_and_help_say_what_it_is() {
    let v = Command::new(BIN).arg("--version").output().unwrap();
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("tower-balancer "));
    let h = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&h.stdout);
    assert!(
        help.contains("--config") && help.contains("--check") && help.contains("--workers"),
        "{help}"
    );
    // neither file: a usage error, not a panic
    let none = Command::new(BIN).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
}

#[tokio::test]
async fn check_says_good_or_names_the_line_and_key() {
    let d = dir("check");
    let good = file(
        &d,
        "good.toml",
        &config(member("node1").await, member("node2").await),
    );
    let out = Command::new(BIN)
        .arg("--check")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("the configuration is good"));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a host that does not resolve (`.invalid` never does) is not a mistake in the file, but
    // is said, at its line
    let unresolved_text = config(member("node1").await, member("node2").await).replacen(
        "url = \"http://127.0.0.1",
        "url = \"http://no-such-host.invalid",
        1,
    );
    let unresolved = file(&d, "unresolved.toml", &unresolved_text);
    let out = Command::new(BIN)
        .arg("--check")
        .arg(&unresolved)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: ")
            && err.contains("`balancer.member[0].url`")
            && err.contains("no-such-host.invalid does not resolve"),
        "{err}"
    );
    let bad_text = config(member("node1").await, member("node2").await)
        .replace("route = \"node2\"", "route = \"node 2\"");
    let bad = file(&d, "bad.toml", &bad_text);
    let out = Command::new(BIN).arg("--check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:15: `balancer.member[1].route`"),
        "{err}"
    );
    // every mistake at once, each at its line, then how many
    let many = file(
        &d,
        "many.toml",
        &bad_text
            .replace(
                "name = \"cluster\"",
                "name = \"cluster\"\nmaxattempts = \"x\"\ncolour = 1",
            )
            .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1\""),
    );
    let out = Command::new(BIN)
        .arg("--check")
        .arg(&many)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 5, "{err}");
    for (line, key) in [
        (2, "server.listen"),
        (8, "balancer.maxattempts"),
        (9, "balancer.colour"),
        (17, "balancer.member[1].route"),
    ] {
        assert!(
            err.contains(&format!("many.toml:{line}: `{key}`")),
            "{line} {key}: {err}"
        );
    }
    assert!(lines[4].starts_with("error: 4 mistakes in "), "{err}");
    // and starting on it says the same, not only the first mistake the load meets
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&many)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let started = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = started
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(said, lines, "{started}");
    // a file the configuration names is read at check time
    let missing_text = config(member("node1").await, member("node2").await).replace(
        "name = \"cluster\"\n",
        "name = \"cluster\"\ncookie_key_file = \"no-such.key\"\n",
    );
    let missing = file(&d, "missing.toml", &missing_text);
    let out = Command::new(BIN)
        .arg("--check")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`balancer.cookie_key_file`: cannot read"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_serves_with_two_workers_counts_in_metrics_and_drains_on_sigterm() {
    let d = dir("run");
    let text = config(member("node1").await, member("node2").await);
    let cfg = file(
        &d,
        "lb.toml",
        &format!(
            "{}\n[manager]\nlisten = \"127.0.0.1:0\"\n",
            text.replace("[balancer]", "access_log = \"access.log\"\n\n[balancer]")
        ),
    );
    let (mut child, addr, manager) = start(&cfg, &["--workers", "2"]);
    let manager = manager.expect("a manager line");

    // 200 connections, one request each: both members serve, every request answered
    let mut served = std::collections::HashMap::new();
    for _ in 0..200 {
        let out = get(addr, "lb.test", "/").await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let by = out
            .lines()
            .find_map(|l| l.strip_prefix("x-served-by: "))
            .unwrap()
            .to_owned();
        *served.entry(by).or_insert(0) += 1;
    }
    assert_eq!(served.len(), 2, "{served:?}");
    // the second worker is a thread of its own
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", child.0.id()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect();
    assert!(threads.iter().any(|t| t == "lb-worker-1"), "{threads:?}");

    // /metrics on the manager's port counts what was sent, whichever worker served it
    let body = metrics(manager).await;
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    let value = |name: &str| sample(&body, name);
    assert_eq!(value("lb_member_requests_total{"), 200, "{body}");
    assert_eq!(value("lb_client_connections_total"), 200, "{body}");
    assert_eq!(value("lb_member_response_seconds_count{"), 200, "{body}");
    assert_eq!(value("lb_member_failures_total{"), 0, "{body}");
    assert_eq!(value("lb_member_healthy{"), 2, "{body}");
    for l in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
    // the manager page links to it
    let html = get(manager, &manager.to_string(), "/balancer-manager").await;
    assert!(html.contains("href=\"/metrics\""), "{html}");

    // SIGTERM: a clean exit, soon
    kill(&child, "-TERM");
    let status = exited(&mut child, Duration::from_secs(10), "SIGTERM").await;
    assert!(status.success(), "{status:?}");
    // one access log line a request, written by the time the process is gone
    let log = std::fs::read_to_string(d.join("access.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 200, "{log}");
    for l in &lines {
        assert!(l.starts_with("127.0.0.1 - - ["), "{l}");
        assert!(
            l.contains("] \"GET / HTTP/1.1\" 200 5 \"-\" \"-\" member=node"),
            "{l}"
        );
        assert!(l.contains(" attempts=1 upstream_ms="), "{l}");
    }
    // each line carries its own request id
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.rsplit_once(" request_id=").map(|(_, id)| id))
        .collect();
    assert_eq!(ids.len(), 200, "{log}");
    let node1 = lines.iter().filter(|l| l.contains("member=node1 ")).count();
    assert_eq!(
        Some(&node1),
        served.get("node1"),
        "the log names the member that served"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// The binary with `RUST_LOG` set to `level` (unset for `None`) serving one request that
/// carries a cookie and a password; what it wrote to stderr, once stopped.
async fn stderr_with_rust_log(test: &str, level: Option<&str>) -> String {
    let (a, b) = (member("node1").await, member("node2").await);
    stderr_of_one_request(test, level, a, b, "HTTP/1.1 200").await
}

/// The binary run on `cfg` with one worker, its stderr in `err` (`RUST_LOG` from `level`,
/// else unset), and its first line on stdout (`listening on …`).
async fn spawn_logging_to(
    cfg: &std::path::Path,
    err: &std::path::Path,
    level: Option<&str>,
) -> (common::Running, String) {
    use std::io::{BufRead, BufReader};
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(cfg)
        .args(["--workers", "1"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(err).unwrap());
    if let Some(level) = level {
        cmd.env("RUST_LOG", level);
    }
    let mut child = common::Running(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().next().unwrap().unwrap()
    })
    .await
    .unwrap();
    (child, line)
}

/// What the binary logs for one request to members `a` and `b` whose answer starts with
/// `status`.
async fn stderr_of_one_request(
    test: &str,
    level: Option<&str>,
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
    status: &str,
) -> String {
    let d = dir(test);
    let cfg = file(&d, "lb.toml", &config(a, b));
    let err = d.join("stderr");
    let (mut child, line) = spawn_logging_to(&cfg, &err, level).await;
    let addr: std::net::SocketAddr = line.strip_prefix("listening on ").unwrap().parse().unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = "GET /x HTTP/1.1\r\nHost: lb.test\r\nCookie: secret=abc123\r\n\
               Authorization: Bearer topsecret\r\nConnection: close\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_string(&mut s, &mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(answer.starts_with(status), "{answer}");
    kill(&child, "-TERM");
    let _ = tokio::task::spawn_blocking(move || child.0.wait()).await;
    let text = std::fs::read_to_string(&err).unwrap();
    let _ = std::fs::remove_dir_all(&d);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_line_of_a_bad_gateway_names_its_request_id() {
    // two ports with nothing listening: the balancer answers 502 itself
    let closed = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let text =
        stderr_of_one_request("bad-gateway-id", None, closed(), closed(), "HTTP/1.1 502").await;
    let line = text
        .lines()
        .find(|l| l.contains("request failed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("request_id="), "{line}");
    assert!(line.contains("status=502"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_debug_shows_each_requests_span_and_never_its_secrets() {
    let debug = stderr_with_rust_log("rust-log-debug", Some("debug")).await;
    assert!(debug.contains("member picked"), "{debug}");
    assert!(debug.contains("request_id="), "{debug}");
    assert!(
        !debug.contains("abc123") && !debug.contains("topsecret"),
        "{debug}"
    );
    let info = stderr_with_rust_log("rust-log-info", None).await;
    assert!(!info.contains("member picked"), "{info}");
    let bad = stderr_with_rust_log("rust-log-bad", Some("=[nonsense")).await;
    assert!(bad.contains("RUST_LOG not understood"), "{bad}");
    assert!(!bad.contains("member picked"), "{bad}");
}

#[test]
fn check_says_whether_this_build_follows_etcd() {
    let d = dir("check-etcd");
    let cfg = file(
        &d,
        "etcd.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\n\
         [balancer]\nname = \"cluster\"\n\n\
         [balancer.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/lb/members/\"\n",
    );
    let out = Command::new(BIN).arg("--check").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "etcd") {
        assert!(out.status.success(), "{err}");
    } else {
        // not a silent start without members: the build says what it lacks
        assert_eq!(out.status.code(), Some(1));
        assert!(
            err.contains("`balancer.etcd`") && err.contains("--features etcd"),
            "{err}"
        );
    }
}

#[test]
fn check_warns_of_a_balancer_no_route_sends_to() {
    let d = dir("check-unrouted");
    let text = |second: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\n\
             [[balancer]]\nname = \"web\"\n[[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"n1\"\n\n\
             [[balancer]]\nname = \"spare\"\n[[balancer.member]]\nurl = \"http://127.0.0.1:2\"\nroute = \"n2\"\n\n\
             [[vhost]]\nnames = [\"lb.test\"]\n\
             [[vhost.route]]\nprefix = \"/api\"\nbalancer = \"{second}\"\n\
             [[vhost.route]]\nprefix = \"/\"\nbalancer = \"web\"\n"
        )
    };
    // a typo'd route that still names a balancer: the spare one serves nothing, said
    let unrouted = file(&d, "unrouted.toml", &text("web"));
    let out = Command::new(BIN)
        .arg("--check")
        .arg(&unrouted)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("no route sends requests to balancer `spare`"),
        "{err}"
    );
    let routed = file(&d, "routed.toml", &text("spare"));
    let out = Command::new(BIN)
        .arg("--check")
        .arg(&routed)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("no route sends"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancers_background_tasks_log_in_its_name() {
    let up = member("node1").await;
    // a port with nothing listening: its health probe fails and says so
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = dir("background-log-names");
    let text = format!(
        "{}\n[balancer.health]\nmethod = \"TCP\"\ninterval = \"100ms\"\nfails = 1\ninitial = \"up\"\n",
        config(up, closed)
    );
    let cfg = file(&d, "lb.toml", &text);
    let err = d.join("stderr");
    let mut child = common::Running(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["--workers", "1"])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&err).unwrap();
        if let Some(l) = text.lines().find(|l| l.contains("health probe")) {
            break l.to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no probe line: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    kill(&child, "-TERM");
    let _ = tokio::task::spawn_blocking(move || child.0.wait()).await;
    let _ = std::fs::remove_dir_all(&d);
    assert!(line.contains("balancer{name=cluster}"), "{line}");
    assert!(line.contains("member=node2"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_answer_body_that_fails_is_logged_with_the_member() {
    // members that promise 100 bytes, send 5 and close a moment later (once the answer has
    // been handed on: a member that has closed by the time its head is read fails before
    // its body, and the request goes to the other member)
    async fn short() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
                    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello";
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut sock, answer.as_bytes()).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                });
            }
        });
        addr
    }
    // the client gets a 502 (nothing of the answer had gone out) or a cut answer
    let text = stderr_of_one_request("short-body", None, short().await, short().await, "").await;
    let line = text
        .lines()
        .find(|l| l.contains("the member's answer body failed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("member=node"), "{line}");
    assert!(line.contains("error="), "{line}");
}

/// A second SIGTERM during the drain exits at once (code 1), where the first would wait the
/// whole graceful timeout on a member that never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_the_drain_at_once() {
    use tokio::io::AsyncWriteExt;
    // a member that takes requests and never answers
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = hung.accept().await {
            held.push(sock);
        }
    });
    let d = dir("second-term");
    // a manager: its line on stdout ends the wait for the front's address
    let text = config(hung_addr, hung_addr).replace("\"5s\"", "\"60s\"")
        + "[manager]\nlisten = \"127.0.0.1:0\"\n";
    assert!(text.contains("graceful_timeout = \"60s\""), "{text}");
    let cfg = file(&d, "lb.toml", &text);
    let (mut child, addr, _) = start(&cfg, &["--workers", "1"]);
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(&child, "-TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(child.0.try_wait().unwrap().is_none(), "drains, not gone");
    kill(&child, "-TERM");
    let status = exited(&mut child, Duration::from_secs(5), "the second SIGTERM").await;
    assert_eq!(status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&d);
}

/// A reload refused for a file with several mistakes logs each of them, as `--check` lists
/// them: the refusal's own line names only the first the load met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_logs_every_mistake_in_the_file() {
    let d = dir("reload-mistakes");
    let good = config(member("node1").await, member("node2").await);
    let cfg = file(&d, "lb.toml", &good);
    let err = d.join("stderr");
    let (mut child, line) = spawn_logging_to(&cfg, &err, None).await;
    assert!(line.starts_with("listening on "), "{line}");
    let bad = good.replace(
        "name = \"cluster\"",
        "name = \"cluster\"\nmaxattempts = \"x\"\ncolour = 1",
    );
    assert_ne!(bad, good);
    std::fs::write(&cfg, bad).unwrap();
    kill(&child, "-HUP");
    let mut text = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = std::fs::read_to_string(&err).unwrap();
        if text.contains("reload refused") {
            break;
        }
    }
    kill(&child, "-TERM");
    let _ = tokio::task::spawn_blocking(move || child.0.wait()).await;
    let mistakes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("a mistake in the reloaded file"))
        .collect();
    assert_eq!(mistakes.len(), 2, "{text}");
    assert!(mistakes[0].contains("balancer.maxattempts"), "{text}");
    assert!(mistakes[1].contains("balancer.colour"), "{text}");
    let _ = std::fs::remove_dir_all(&d);
}

/// A `pass_headers` list without `cookie` under sticky sessions is said by `--check` (the
/// members would never see their session cookies), and not once `cookie` is listed.
#[tokio::test]
async fn check_warns_of_a_pass_headers_list_that_drops_the_session_cookie() {
    let d = dir("pass-headers");
    let base = config(member("node1").await, member("node2").await);
    let mut said = Vec::new();
    for list in ["[\"accept\"]", "[\"accept\", \"Cookie\"]"] {
        let text = base.replace(
            "name = \"cluster\"",
            &format!("name = \"cluster\"\npass_headers = {list}"),
        );
        let cfg = file(&d, "lb.toml", &text);
        let out = Command::new(BIN).arg("--check").arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        said.push(err.contains("pass_headers leaves out \"cookie\"") && err.contains("JSESSIONID"));
    }
    assert_eq!(said, [true, false]);
    let _ = std::fs::remove_dir_all(&d);
}
