//! Members as child processes (so they can be killed with SIGKILL and stopped with SIGSTOP),
//! a balancer in this process built from the library's parts, and a small client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower_balancer::balance::BalanceLayer;
use tower_balancer::failover::{FailoverConfig, FailoverLayer};
use tower_balancer::health::{HealthProbe, HealthProbeTask, HttpProbe, ProbeSettings};
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::sticky::{StickyConfig, StickyLayer};
use tower_balancer::strategy::RoundRobin;
use tower_balancer_proxy::config::ConfigFile;
use tower_balancer_proxy::forward::ForwardConfig;
use tower_balancer_proxy::serve::{ServeConfig, Server};

/// A member process.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) ledger: Option<PathBuf>,
    args: Vec<String>,
    child: Option<Child>,
}

impl Member {
    /// Starts `fault_member` on a port the OS picks.
    pub(crate) fn spawn(name: &str, ledger: Option<PathBuf>, args: &[&str]) -> Self {
        let mut m = Self {
            name: name.to_owned(),
            addr: "127.0.0.1:0".parse().unwrap(),
            ledger,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        m.start();
        m
    }

    /// Starts (again) on the member's address.
    pub(crate) fn start(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fault_member"));
        cmd.args(["--name", &self.name, "--listen", &self.addr.to_string()])
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(l) = &self.ledger {
            cmd.arg("--ledger").arg(l);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.addr = line.trim().strip_prefix("ready ").unwrap().parse().unwrap();
        self.child = Some(child);
    }

    /// `kill -9`.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `kill -STOP` or `kill -CONT`.
    pub(crate) fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success());
    }

    /// The requests the member received, asked directly.
    pub(crate) async fn received(&self) -> u64 {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let res = client
            .get(format!("http://{}/stats", self.addr).parse().unwrap())
            .await
            .unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        std::str::from_utf8(&body).unwrap().trim().parse().unwrap()
    }

    /// The ids in the member's ledger.
    pub(crate) fn ledger_ids(&self) -> Vec<String> {
        std::fs::read_to_string(self.ledger.as_ref().unwrap())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // a stopped process must be continued to die promptly
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// The balancer: sticky, failover, balance, forward, with fast HTTP probes.
pub(crate) struct Lb {
    pub(crate) addr: SocketAddr,
    pub(crate) registry: Registry,
    /// The suite's own fast probes (none for a balancer from a file: it runs its own).
    _probe: Option<HealthProbeTask>,
}

/// The probe settings the suite uses: every 100 ms, down after 1 failure, up after 2 passes.
pub(crate) fn fast_probes() -> ProbeSettings {
    ProbeSettings::new()
        .interval(Duration::from_millis(100))
        .fast_interval(Duration::from_millis(100))
        .timeout(Duration::from_millis(300))
        .rise(2)
        .fall(1)
}

impl Lb {
    /// A balancer built from a configuration file as operators write it: the members, the
    /// recipe's probe of `/health` every second, and `extra` lines in `[balancer]`; every
    /// other setting at its default.
    pub(crate) async fn from_file(members: &[&Member], extra: &str) -> (Self, FileLb) {
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\
             [balancer]\nname = \"recipe\"\n{extra}\n"
        );
        for m in members {
            text.push_str(&format!(
                "[[balancer.member]]\nurl = \"http://{}\"\nroute = \"{}\"\n",
                m.addr, m.name
            ));
        }
        text.push_str("[balancer.health]\nuri = \"/health\"\ninterval = \"1s\"\n");
        let config = ConfigFile::from_toml(&text, std::path::Path::new("lb.toml")).unwrap();
        let bound = config.build().unwrap().bind().await.unwrap();
        let addr = bound.local_addr().unwrap();
        let registry = bound.registry().clone();
        let task = tokio::spawn(async move {
            let _ = bound.serve(std::future::pending()).await;
        });
        // members start down until they pass their first probe
        let healthy = || {
            registry
                .load()
                .members()
                .iter()
                .all(|m| m.health() == tower_balancer::registry::Health::Healthy)
        };
        assert!(until(Duration::from_secs(10), healthy).await.is_some());
        (
            Self {
                addr,
                registry,
                _probe: None,
            },
            FileLb(task),
        )
    }

    pub(crate) async fn start(
        members: &[&Member],
        failover: FailoverConfig,
        serve: ServeConfig,
    ) -> Self {
        let registry = Registry::new();
        for m in members {
            registry
                .insert(MemberSpec::new(
                    MemberId::new(&m.name).unwrap(),
                    format!("http://{}", m.addr).parse().unwrap(),
                ))
                .unwrap();
        }
        let forward = ForwardConfig::new().connect_timeout(Duration::from_millis(500));
        let probe = HttpProbe::new(forward.probe_client(&registry).unwrap()).path("/health");
        let checker = HealthProbe::new(registry.clone(), probe, fast_probes()).spawn();
        let sticky = StickyConfig::builder().plain().build().unwrap();
        let stack = ServiceBuilder::new()
            .layer(StickyLayer::new(registry.clone(), sticky))
            .layer(FailoverLayer::new(registry.clone(), failover))
            .layer(BalanceLayer::new(registry.clone(), RoundRobin::new()))
            .service(forward.build(registry.clone()).unwrap());
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), serve)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.serve(stack, std::future::pending()));
        Self {
            addr,
            registry,
            _probe: Some(checker),
        }
    }

    /// The balancer's own count of requests that reached `member`.
    pub(crate) fn requests_to(&self, member: &str) -> u64 {
        self.registry
            .snapshot()
            .get(member)
            .map_or(0, |m| m.stats().view().requests)
    }
}

/// The task serving a balancer built from a file; it stops when dropped.
pub(crate) struct FileLb(tokio::task::JoinHandle<()>);

impl Drop for FileLb {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One response as the suite looks at it.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) served_by: Option<String>,
    pub(crate) cookie: Option<String>,
    pub(crate) body: Bytes,
}

/// A plain HTTP client.
#[derive(Clone)]
pub(crate) struct Http(Client<HttpConnector, Full<Bytes>>);

impl Http {
    pub(crate) fn new() -> Self {
        Self(
            Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(64)
                .build_http(),
        )
    }

    /// Sends a request; `Err` when no complete response came back (a client-visible error).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        cookie: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, String> {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let req = req.body(Full::new(body)).unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), self.0.request(req))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = res.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .map_err(|_| "body timeout".to_owned())?
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        let header = |n: &str| {
            parts
                .headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Reply {
            status: parts.status,
            served_by: header("x-served-by"),
            cookie: header("set-cookie").and_then(|c| c.split(';').next().map(str::to_owned)),
            body,
        })
    }

    pub(crate) async fn get(&self, url: &str, cookie: Option<&str>) -> Result<Reply, String> {
        self.send(Method::GET, url, cookie, Bytes::new()).await
    }
}

/// Waits until `f` holds, checking every 10 ms, for at most `limit`; returns how long it took.
pub(crate) async fn until(limit: Duration, f: impl Fn() -> bool) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// A shared counter of client-visible errors with their first few reasons.
#[derive(Default)]
pub(crate) struct Errors(std::sync::Mutex<Vec<String>>);

impl Errors {
    pub(crate) fn add(&self, why: String) {
        self.0.lock().unwrap().push(why);
    }
    pub(crate) fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}
