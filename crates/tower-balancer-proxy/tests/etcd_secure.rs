//! `[balancer.etcd]` against a real etcd with its security on: a user with read access to
//! the prefix only (etcd's `--auth`), and TLS with client certificates
//! (`--client-cert-auth`). A wrong password or a missing client certificate is an error
//! the source reports and retries, never a member list.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use etcd_client::{ConnectOptions, Permission};
use futures_util::StreamExt;
use tower_balancer::discovery::{EtcdDiscovery, EtcdError, EtcdTls};
use tower_balancer::registry::Registry;
use tower_balancer_proxy::config::{ConfigFile, Reloader};

mod named;
use named::{client, get, member, tempdir};

mod etcd_server;
use etcd_server::{member_json, put, Etcd, Pki, PREFIX};

/// The file of a balancer with this `[balancer.etcd]` body.
fn config(dir: &Path, etcd: &str) -> ConfigFile {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\
         [balancer]\nname = \"b\"\nstickysession = \"\"\n\
         [balancer.etcd]\nprefix = \"{PREFIX}\"\nretry_max = \"300ms\"\n{etcd}"
    );
    ConfigFile::from_toml(&text, &dir.join("lb.toml")).unwrap()
}

/// A balancer from `lb.toml` in `dir` with this `[balancer.etcd]` body.
async fn instance(dir: &Path, etcd: &str) -> (SocketAddr, Registry, Reloader) {
    let bound = config(dir, etcd).build().unwrap().bind().await.unwrap();
    let addr = bound.local_addr().unwrap();
    let registry = bound.registry().clone();
    let reloader = bound.reloader();
    tokio::spawn(bound.serve(std::future::pending()));
    (addr, registry, reloader)
}

/// The first error `source` reports, within 10 s.
async fn first_error(source: EtcdDiscovery) -> EtcdError {
    let mut stream = Box::pin(source.into_stream());
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        match stream.next().await {
            Some(Err(e)) => e,
            Some(Ok(change)) => panic!("a member without the right credentials: {change:?}"),
            None => unreachable!("the stream never ends"),
        }
    });
    first.await.unwrap()
}

async fn wait_for(registry: &Registry, n: usize) {
    let start = Instant::now();
    while registry.load().len() != n {
        assert!(start.elapsed() < Duration::from_secs(5), "{n} members");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_read_access_follows_an_etcd_with_auth_on() {
    let mut etcd = Etcd::start().await;
    let mut root = etcd.client().await;
    let (a, b) = (member("a").await, member("b").await);
    put(&mut root, "node1", &member_json(a, "")).await;
    // the operator's setup: root, and a user that may only read the members' prefix
    let _ = root.role_add("root").await;
    root.user_add("root", "root-pw", None).await.unwrap();
    root.user_grant_role("root", "root").await.unwrap();
    root.role_add("lb-read").await.unwrap();
    root.role_grant_permission("lb-read", Permission::read(PREFIX).with_prefix())
        .await
        .unwrap();
    root.user_add("lb", "lb-pw", None).await.unwrap();
    root.user_grant_role("lb", "lb-read").await.unwrap();
    root.auth_enable().await.unwrap();
    let mut root = etcd_client::Client::connect(
        [etcd.endpoint()],
        Some(ConnectOptions::new().with_user("root", "root-pw")),
    )
    .await
    .unwrap();

    let dir = tempdir("etcd-auth");
    std::fs::write(dir.join("etcd.pass"), "lb-pw\n").unwrap();
    let section = format!(
        "endpoints = [\"{}\"]\nuser = \"lb\"\npassword_file = \"etcd.pass\"\n",
        etcd.endpoint()
    );
    let (lb, registry, reloader) = instance(&dir, &section).await;
    assert_eq!(registry.load().len(), 1, "read at bind, as the user");
    let http = client();
    assert_eq!(get(&http, lb, None, None).await.0, "a");
    put(&mut root, "node2", &member_json(b, "")).await;
    wait_for(&registry, 2).await;

    // the password rotated: a new one in etcd and in the file, then a reload; after etcd
    // restarts (old sessions gone), the balancer logs in with the new one
    root.user_change_password("lb", "lb-pw-2").await.unwrap();
    std::fs::write(dir.join("etcd.pass"), "lb-pw-2\n").unwrap();
    reloader.reload(config(&dir, &section)).await.unwrap();
    etcd.stop();
    etcd.run().await;
    let mut root = etcd_client::Client::connect(
        [etcd.endpoint()],
        Some(ConnectOptions::new().with_user("root", "root-pw")),
    )
    .await
    .unwrap();
    put(&mut root, "node3", &member_json(b, "")).await;
    wait_for(&registry, 3).await;

    // a wrong password: an error, retried; no members
    let wrong = EtcdDiscovery::builder([etcd.endpoint()], PREFIX)
        .user("lb", "not-the-password")
        .build()
        .unwrap();
    let e = first_error(wrong).await;
    assert!(
        matches!(&e, EtcdError::Connect { message, .. } if message.contains("authentication failed")),
        "{e}"
    );
    // a user who may not read the prefix: refused
    root.user_add("nobody", "pw", None).await.unwrap();
    let nobody = EtcdDiscovery::builder([etcd.endpoint()], PREFIX)
        .user("nobody", "pw")
        .build()
        .unwrap();
    let e = first_error(nobody).await;
    assert!(
        matches!(&e, EtcdError::Read { message, .. } if message.contains("permission denied")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_follows_an_etcd_that_asks_for_one() {
    let pki = Pki::new();
    let (ca, cert, key) = (pki.ca.clone(), pki.client.0.clone(), pki.client.1.clone());
    let etcd = Etcd::start_with(Some(pki)).await;
    let mut c = etcd.client().await;
    put(&mut c, "node1", &member_json(member("a").await, "")).await;

    let dir = tempdir("etcd-tls");
    std::fs::write(dir.join("ca.pem"), &ca).unwrap();
    std::fs::write(dir.join("lb.pem"), &cert).unwrap();
    std::fs::write(dir.join("lb.key"), &key).unwrap();
    // by IP, checked against the certificate's IP name
    let (lb, registry, _) = instance(
        &dir,
        &format!(
            "endpoints = [\"{}\"]\nca = \"ca.pem\"\ncertificate = \"lb.pem\"\nkey = \"lb.key\"\n",
            etcd.endpoint()
        ),
    )
    .await;
    assert_eq!(registry.load().len(), 1);
    assert_eq!(get(&client(), lb, None, None).await.0, "a");
    // given without a scheme and checked against another name the certificate carries
    let (_, registry, _) = instance(
        &dir,
        &format!(
            "endpoints = [\"127.0.0.1:{}\"]\nca = \"ca.pem\"\ncertificate = \"lb.pem\"\nkey = \"lb.key\"\ntls_name = \"etcd.test\"\n",
            etcd.client_port
        ),
    )
    .await;
    assert_eq!(registry.load().len(), 1);

    // no client certificate: refused by etcd, an error, no members
    let e = first_error(
        EtcdDiscovery::builder([etcd.endpoint()], PREFIX)
            .tls(EtcdTls::new(ca.clone()))
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(e, EtcdError::Connect { .. } | EtcdError::Read { .. }),
        "{e}"
    );
    // a name the certificate does not carry: refused by the balancer
    let e = first_error(
        EtcdDiscovery::builder([etcd.endpoint()], PREFIX)
            .tls(
                EtcdTls::new(ca)
                    .client_certificate(cert.into_bytes(), key.into_bytes())
                    .domain_name("other.test"),
            )
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(e, EtcdError::Connect { .. } | EtcdError::Read { .. }),
        "{e}"
    );
    // plain HTTP to a TLS-only etcd: an error too
    let e = first_error(
        EtcdDiscovery::builder([format!("127.0.0.1:{}", etcd.client_port)], PREFIX)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(e, EtcdError::Connect { .. } | EtcdError::Read { .. }),
        "{e}"
    );
}
