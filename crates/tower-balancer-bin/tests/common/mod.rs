//! What the binary's tests share: members on loopback, files, the process, plain GETs.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_tower-balancer");

/// A member on loopback that answers every request with its name, keep-alive.
pub async fn member(name: &'static str) -> SocketAddr {
    member_on("127.0.0.1:0".parse().unwrap(), name).await
}

/// [`member`] on `addr` (a port a test left closed until now).
pub async fn member_on(addr: SocketAddr, name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                // one request a read is enough for the balancer's small GETs
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let body = name.as_bytes();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-served-by: {name}\r\n\r\n",
                        body.len()
                    );
                    if s.write_all(head.as_bytes()).await.is_err()
                        || s.write_all(body).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    addr
}

pub fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn config(a: SocketAddr, b: SocketAddr) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\ngraceful_timeout = \"5s\"\n\n\
         [balancer]\nname = \"cluster\"\n\n\
         [[balancer.member]]\nurl = \"http://{a}\"\nroute = \"node1\"\n\n\
         [[balancer.member]]\nurl = \"http://{b}\"\nroute = \"node2\"\n"
    )
}

pub fn dir(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tower-balancer-cli-{test}-{}", std::process::id()))
}

/// Kills the binary if the test ends early.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `path` with `Host: host`, the whole answer.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// The binary serving `cfg` (with `args`), its front's address and its manager's (when the
/// file has one), read from its first lines of stdout within 30 s.
pub fn start(cfg: &Path, args: &[&str]) -> (Running, SocketAddr, Option<SocketAddr>) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Running(child);
    // stdout's lines, read on a thread so that every wait for one is bounded
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(30)).ok();
    let line = next().expect("a line within 30 s");
    let addr = line
        .strip_prefix("listening on ")
        .expect(&line)
        .parse()
        .unwrap();
    let manager = next().and_then(|line| {
        line.strip_prefix("manager on http://")
            .and_then(|l| l.strip_suffix("/balancer-manager"))
            .map(|a| a.parse().unwrap())
    });
    (child, addr, manager)
}

/// The manager's `/metrics` body.
pub async fn metrics(manager: SocketAddr) -> String {
    let page = get(manager, &manager.to_string(), "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    page.split("\r\n\r\n").nth(1).unwrap().to_owned()
}

/// The sum of the samples whose line starts with `prefix`.
pub fn sample(body: &str, prefix: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Sends `signal` (`-HUP`, `-TERM`) to the process.
pub fn kill(child: &Running, signal: &str) {
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
}

/// The process's exit status, waiting at most `limit` (`what` names the wait in the panic).
pub async fn exited(child: &mut Running, limit: Duration, what: &str) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < limit, "no exit after {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
