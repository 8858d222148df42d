//! The binary built with `--features etcd` follows `[balancer.etcd]`: members written to a
//! real etcd (Debian's `etcd-server`, started here on loopback) through etcd's JSON gateway
//! serve requests, and a member written later joins. Bounded in requests and time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{dir, file, get, member, start};

const PREFIX: &str = "/lb/bin/members/";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POST `body` to etcd's JSON gateway at `path`; the response.
async fn gateway(port: u16, path: &str, body: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn put(port: u16, name: &str, value: &str) {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let body = format!(
        r#"{{"key": "{}", "value": "{}"}}"#,
        b64(&format!("{PREFIX}{name}")),
        b64(value)
    );
    let res = gateway(port, "/v3/kv/put", &body).await.unwrap();
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
}

async fn etcd(data: &std::path::Path) -> (Etcd, u16) {
    let (port, peer) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "t", "--data-dir"])
        .arg(data)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("t={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd is needed for this test: apt-get install etcd-server");
    let etcd = Etcd(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gateway(port, "/v3/kv/range", r#"{"key": "eA=="}"#)
        .await
        .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
    {
        assert!(Instant::now() < deadline, "etcd did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (etcd, port)
}

fn body(response: &str) -> &str {
    response.split("\r\n\r\n").nth(1).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_members_etcd_names() {
    let d = dir("etcd");
    let (_etcd, port) = etcd(&d.join("etcd-data")).await;
    let (a, b): (SocketAddr, SocketAddr) = (member("node1").await, member("node2").await);
    put(port, "node1", &format!(r#"{{"url": "http://{a}"}}"#)).await;
    put(
        port,
        "node2",
        &format!(r#"{{"url": "http://{b}", "status": "+D"}}"#),
    )
    .await;
    let cfg = file(
        &d,
        "lb.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\n\
             [balancer]\nname = \"cluster\"\nstickysession = \"\"\n\n\
             [balancer.etcd]\nendpoints = [\"http://127.0.0.1:{port}\"]\nprefix = \"{PREFIX}\"\n\n\
             [manager]\nlisten = \"127.0.0.1:0\"\n"
        ),
    );
    let check = Command::new(common::BIN)
        .arg("--check")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let (_lb, addr, _) = start(&cfg, &["--workers", "1"]);
    // node2 is disabled: every request goes to node1, from the first one on
    for _ in 0..10 {
        let res = get(addr, "lb.test", "/").await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert_eq!(body(&res), "node1");
    }
    // enabling node2 in etcd reaches the running binary
    put(port, "node2", &format!(r#"{{"url": "http://{b}"}}"#)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = false;
    while !seen {
        assert!(
            Instant::now() < deadline,
            "node2 never served after it was enabled in etcd"
        );
        seen = body(&get(addr, "lb.test", "/").await) == "node2";
    }
    let _ = std::fs::remove_dir_all(&d);
}
