//! A real etcd (Debian's `etcd-server`) for the tests: started on loopback ports picked
//! here, in a scratch data folder, plain or with TLS and client certificates; stopped,
//! restarted on the same ports and data, and killed when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use super::named::tempdir;

/// The prefix the tests' members are under.
pub const PREFIX: &str = "/lb/test/members/";

/// A private CA, etcd's server certificate (for `127.0.0.1` and `etcd.test`) and a client
/// certificate, all PEM.
pub struct Pki {
    pub ca: String,
    pub server: (String, String),
    pub client: (String, String),
}

impl Pki {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf = |names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        Self {
            server: leaf(vec!["127.0.0.1".to_owned(), "etcd.test".to_owned()]),
            client: leaf(vec!["lb".to_owned()]),
            ca: ca.pem(),
        }
    }

    /// What a client that trusts the CA and presents the client certificate connects with.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new().with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(&self.ca))
                .identity(Identity::from_pem(&self.client.0, &self.client.1)),
        )
    }
}

/// An etcd server on loopback, killed when dropped.
pub struct Etcd {
    pub dir: PathBuf,
    pub client_port: u16,
    peer_port: u16,
    tls: Option<Pki>,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Plain HTTP.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// With `tls`: HTTPS only, and clients must present a certificate the CA signed.
    pub async fn start_with(tls: Option<Pki>) -> Self {
        let mut e = Self {
            dir: tempdir("etcd-data"),
            client_port: free_port(),
            peer_port: free_port(),
            tls,
            child: None,
        };
        e.run().await;
        e
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Starts etcd on the same ports and data as before, and waits until it answers.
    pub async fn run(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--log-level", "warn"]);
        if let Some(pki) = &self.tls {
            let write = |name: &str, text: &str| {
                let p = self.dir.join(name);
                std::fs::write(&p, text).unwrap();
                p
            };
            cmd.arg("--cert-file")
                .arg(write("server.pem", &pki.server.0))
                .arg("--key-file")
                .arg(write("server.key", &pki.server.1))
                .arg("--trusted-ca-file")
                .arg(write("ca.pem", &pki.ca))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is needed for these tests: apt-get install etcd-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = self.try_client().await {
                // an answer, even a refusal (authentication on), means etcd serves
                match c.get("probe", None).await {
                    Ok(_) => return,
                    Err(e) if e.to_string().contains("etcdserver:") => return,
                    Err(_) => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start: see {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops etcd and deletes its data: the next `run` starts a new, empty cluster.
    pub fn wipe(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }

    async fn try_client(&self) -> Result<etcd_client::Client, String> {
        let options = self.tls.as_ref().map(Pki::options);
        let connect = etcd_client::Client::connect([self.endpoint()], options);
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timeout".to_owned()),
        }
    }

    /// A client with full access (the CA and client certificate when TLS is on).
    pub async fn client(&self) -> etcd_client::Client {
        self.try_client().await.unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes member `name` under the prefix.
pub async fn put(c: &mut etcd_client::Client, name: &str, value: &str) {
    c.put(format!("{PREFIX}{name}"), value, None).await.unwrap();
}

/// A member's JSON value for a plain HTTP member at `addr`, with `extra` keys.
pub fn member_json(addr: SocketAddr, extra: &str) -> String {
    format!(r#"{{"url": "http://{addr}"{extra}}}"#)
}
