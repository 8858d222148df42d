//! N: virtual hosts and routes from the file over real sockets: the host (and the name given
//! in TLS) chooses the virtual host, its routes are tried in order, a prefix is rewritten on
//! the way in and member redirects mapped back, fixed answers and redirects come from the
//! front, and each virtual host presents its own certificate.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use harness::{echo_member, lb, raw, raw_member};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);

fn get(host: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

const ROUTES: &str = r#"
[[vhost]]
names = ["wso2.com", "www.wso2.com"]
[[vhost.route]]
path = "/"
redirect = "https://wso2.com/carbon/"
[[vhost.route]]
prefix = "/carbon"
balancer = "b"
[[vhost.route]]
prefix = "/ping"
respond = 200
body = "pong"

[[vhost]]
names = ["*.api.test"]
[[vhost.route]]
prefix = "/"
header = { name = "x-canary", value = "1" }
respond = 503
body = "canary closed"
[[vhost.route]]
prefix = "/v1"
balancer = "b"
rewrite_prefix = "/api/v1"
[[vhost.route]]
prefix = "/old"
redirect = "/v1"
status = 308
"#;

#[tokio::test]
async fn the_host_chooses_the_virtual_host_and_its_routes_are_tried_in_order() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (url, seen) = echo_member().await;
        let lb = lb(&[url], "", "", ROUTES).await;
        let a = lb.addr;

        let res = raw(a, &get("wso2.com", "/", ""), LIMIT).await;
        assert!(res.starts_with("HTTP/1.1 302"), "{res}");
        assert!(
            res.contains("location: https://wso2.com/carbon/\r\n"),
            "{res}"
        );

        let res = raw(a, &get("WWW.wso2.com:443", "/carbon/admin?x=1", ""), LIMIT).await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert!(res.contains("GET /carbon/admin?x=1 "), "{res}");

        let res = raw(a, &get("wso2.com", "/ping", ""), LIMIT).await;
        assert!(
            res.starts_with("HTTP/1.1 200") && res.ends_with("pong"),
            "{res}"
        );

        // the first virtual host has no route for /v1; the second one rewrites it
        let res = raw(a, &get("wso2.com", "/v1/users", ""), LIMIT).await;
        assert!(res.starts_with("HTTP/1.1 404"), "{res}");
        let res = raw(a, &get("eu.api.test", "/v1/users?page=2", ""), LIMIT).await;
        assert!(res.contains("GET /api/v1/users?page=2 "), "{res}");

        // an unknown host goes to the first virtual host, as in Apache
        let res = raw(a, &get("unknown.example", "/ping", ""), LIMIT).await;
        assert!(res.ends_with("pong"), "{res}");

        // routes are tried in order: the header route comes first
        let res = raw(a, &get("eu.api.test", "/v1/x", "X-Canary: 1\r\n"), LIMIT).await;
        assert!(
            res.starts_with("HTTP/1.1 503") && res.ends_with("canary closed"),
            "{res}"
        );

        let res = raw(a, &get("eu.api.test", "/old/x?y", ""), LIMIT).await;
        assert!(res.starts_with("HTTP/1.1 308"), "{res}");
        assert!(res.contains("location: /v1/x?y\r\n"), "{res}");

        // only the two forwarded requests reached the member
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            ["GET /carbon/admin?x=1", "GET /api/v1/users?page=2"],
            "{seen:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn member_redirects_under_a_rewritten_prefix_are_mapped_back() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let member = raw_member(
            b"HTTP/1.1 302 Found\r\nLocation: /login?next=%2F\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        let tail = r#"
[[vhost]]
names = ["wso2.com"]
[[vhost.route]]
prefix = "/app"
balancer = "b"
strip_prefix = true
"#;
        let lb = lb(&[member], "", "", tail).await;
        let res = raw(lb.addr, &get("wso2.com", "/app/home", ""), LIMIT).await;
        assert!(res.starts_with("HTTP/1.1 302"), "{res}");
        assert!(res.contains("location: /app/login?next=%2F\r\n"), "{res}");
    })
    .await
    .unwrap();
}

/// A CA and, for each name, a certificate it signed: (CA DER, [(cert PEM, key PEM)]).
fn certificates(names: &[&str]) -> (Vec<u8>, Vec<(String, String)>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let pairs = names
        .iter()
        .map(|n| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![(*n).to_owned()])
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        })
        .collect();
    (ca.der().to_vec(), pairs)
}

/// Connects over TLS naming `sni`, verifying the certificate for that name against `ca`,
/// sends `req` and reads to the end; `Err` when the handshake fails.
async fn tls_get(addr: SocketAddr, ca: &[u8], sni: &str, req: &[u8]) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(harness::trusting(ca));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let mut s = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tb-routes-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn each_virtual_host_presents_its_own_certificate_and_host_must_agree_with_tls() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (ca, pairs) = certificates(&["a.test", "b.test"]);
        let dir = temp_dir("sni");
        let mut tail = String::new();
        for (i, (name, (cert, key))) in ["a.test", "b.test"].iter().zip(&pairs).enumerate() {
            std::fs::write(dir.join(format!("{i}.pem")), cert).unwrap();
            std::fs::write(dir.join(format!("{i}.key")), key).unwrap();
            tail.push_str(&format!(
                "[[vhost]]\nnames = [\"{name}\"]\ncertificate = \"{}\"\nkey = \"{}\"\n\
                 [[vhost.route]]\nprefix = \"/\"\nrespond = 200\nbody = \"{name}\"\n",
                dir.join(format!("{i}.pem")).display(),
                dir.join(format!("{i}.key")).display(),
            ));
        }
        let (url, _) = echo_member().await;
        let lb = lb(&[url], "", "", &tail).await;
        for name in ["a.test", "b.test"] {
            // the handshake verifies the certificate for the name given: the host's own
            let res = tls_get(lb.addr, &ca, name, &get(name, "/", ""))
                .await
                .unwrap();
            assert!(
                res.starts_with("HTTP/1.1 200") && res.ends_with(name),
                "{res}"
            );
        }
        // a.test's connection asking for b.test's routes: 421, as Apache answers
        let res = tls_get(lb.addr, &ca, "a.test", &get("b.test", "/", ""))
            .await
            .unwrap();
        assert!(res.starts_with("HTTP/1.1 421"), "{res}");
        // a Host no virtual host names stays on the host TLS chose
        let res = tls_get(lb.addr, &ca, "b.test", &get("other", "/", ""))
            .await
            .unwrap();
        assert!(res.ends_with("b.test"), "{res}");
        // a name no host has gets the first host's certificate, which does not verify for it
        let err = tls_get(lb.addr, &ca, "c.test", &get("c.test", "/", "")).await;
        assert!(err.is_err(), "{err:?}");
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_route_cannot_be_walked_around_and_redirects_keep_their_host() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (url, seen) = echo_member().await;
        let tail = r#"
[[vhost]]
names = ["site.test"]
[[vhost.route]]
prefix = "/admin"
respond = 403
body = "denied"
[[vhost.route]]
prefix = "/s"
redirect = "https://new.example.com"
[[vhost.route]]
prefix = "/r"
redirect = "/"
[[vhost.route]]
prefix = "/"
balancer = "b"
"#;
        let lb = lb(&[url], "", "", tail).await;
        let a = lb.addr;
        for walk in [
            "/public/../admin/",
            "/%61dmin/",
            "//admin/",
            "/./admin/",
            "/p/%2e%2e/admin/",
            "/admin;x",
            "/;x/admin",
        ] {
            let res = raw(a, &get("site.test", walk, ""), LIMIT).await;
            assert!(res.starts_with("HTTP/1.1 403"), "{walk}: {res}");
        }
        for refused in [
            "/x/..%2fadmin",
            "/x/..;/admin",
            "/x\\..\\admin",
            "/../admin",
            "/x/%2e%2e%3b/admin",
            "/admin%00",
        ] {
            let res = raw(a, &get("site.test", refused, ""), LIMIT).await;
            assert!(res.starts_with("HTTP/1.1 400"), "{refused}: {res}");
        }
        // whole segments: /s@evil.com is not /s's, and goes to the balancer
        let res = raw(a, &get("site.test", "/s@evil.com", ""), LIMIT).await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        let res = raw(a, &get("site.test", "/s/x", ""), LIMIT).await;
        assert!(
            res.contains("location: https://new.example.com/x\r\n"),
            "{res}"
        );
        let res = raw(a, &get("site.test", "/r//evil.com", ""), LIMIT).await;
        assert!(res.contains("location: /evil.com\r\n"), "{res}");
        // the member got the normalised path
        let res = raw(a, &get("site.test", "/a/./b/../c", ""), LIMIT).await;
        assert!(res.contains("GET /a/c "), "{res}");
        assert!(!seen.lock().unwrap().iter().any(|l| l.contains("admin")));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_member_redirect_to_the_public_host_goes_back_to_the_host_asked_for() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let member = raw_member(
            b"HTTP/1.1 302 Found\r\nLocation: /inner/z\r\nContent-Location: /inner/c\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        let tail = r#"
[[vhost]]
names = ["site.test"]
[[vhost.route]]
prefix = "/carbon"
balancer = "b"
rewrite_prefix = "/inner"
"#;
        // the member's absolute URL is rewritten to the public one (server_name lb.test) by
        // ProxyPassReverse; the router sends it back to site.test, which the client asked for
        let absolute = raw_member(
            b"HTTP/1.1 302 Found\r\nLocation: http://lb.test/inner/z\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        let lb1 = lb(&[member], "", "", tail).await;
        let res = raw(lb1.addr, &get("site.test", "/carbon/x", ""), LIMIT).await;
        assert!(res.contains("location: /carbon/z\r\n"), "{res}");
        assert!(res.contains("content-location: /carbon/c\r\n"), "{res}");
        let lb2 = lb(&[absolute], "", "public_url = \"http://lb.test\"", tail).await;
        let res = raw(lb2.addr, &get("site.test:8080", "/carbon/x", ""), LIMIT).await;
        assert!(res.contains("location: http://site.test:8080/carbon/z\r\n"), "{res}");
    })
    .await
    .unwrap();
}

/// Starts a balancer from `text` (listening on a port the OS picks); its address and the
/// bound balancer's registries by name.
async fn start(
    text: &str,
) -> (
    SocketAddr,
    tower_balancer_proxy::config::Reloader,
    Vec<(String, tower_balancer::registry::Registry)>,
    tokio::task::JoinHandle<()>,
    Option<SocketAddr>,
) {
    let config =
        tower_balancer_proxy::config::ConfigFile::from_toml(text, std::path::Path::new("lb.toml"))
            .unwrap();
    let names: Vec<String> = config.file().balancers().map(|b| b.name.clone()).collect();
    let bound = config.build().unwrap().bind().await.unwrap();
    let registries = names
        .iter()
        .map(|n| (n.clone(), bound.registry_of(n).unwrap().clone()))
        .collect();
    let addr = bound.local_addr().unwrap();
    let manager = bound.manager_addr();
    let reloader = bound.reloader();
    let task = tokio::spawn(async move {
        let _ = bound.serve(std::future::pending()).await;
    });
    (addr, reloader, registries, task, manager)
}

/// Three balancers, each with one echo member that names itself in a header.
fn three_balancers(members: &[String]) -> String {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"www.test\"\n\
         [manager]\nlisten = \"127.0.0.1:0\"\n",
    );
    for (name, url) in ["web", "api", "admin"].iter().zip(members) {
        text.push_str(&format!(
            "[[balancer]]\nname = \"{name}\"\n[[balancer.member]]\nurl = \"{url}\"\nroute = \"{name}1\"\n"
        ));
    }
    text.push_str(
        r#"
[[vhost]]
names = ["www.test"]
[[vhost.route]]
prefix = "/admin"
balancer = "admin"
strip_prefix = true
[[vhost.route]]
prefix = "/"
balancer = "web"

[[vhost]]
names = ["api.test"]
[[vhost.route]]
prefix = "/v1"
balancer = "api"
rewrite_prefix = "/"
"#,
    );
    text
}

#[tokio::test]
async fn two_virtual_hosts_route_to_three_balancers_and_a_reload_adds_and_drops_one() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut members = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (url, log) = echo_member().await;
            members.push(url);
            seen.push(log);
        }
        let text = three_balancers(&members);
        let (a, reloader, registries, _task, manager) = start(&text).await;
        assert_eq!(registries.len(), 3);
        // each balancer has its own route cookie: one never pins a client in another
        let res = raw(a, &get("api.test", "/v1/c", ""), LIMIT).await;
        assert!(res.contains("set-cookie: ROUTEID_api="), "{res}");
        let res = raw(a, &get("www.test", "/c", ""), LIMIT).await;
        assert!(res.contains("set-cookie: ROUTEID="), "{res}");
        for s in &seen {
            s.lock().unwrap().clear();
        }
        for (host, path, member, line) in [
            ("www.test", "/index.html", 0, "GET /index.html"),
            ("www.test", "/admin/users", 2, "GET /users"),
            ("api.test", "/v1/items?x=1", 1, "GET /items?x=1"),
        ] {
            let res = raw(a, &get(host, path, ""), LIMIT).await;
            assert!(res.starts_with("HTTP/1.1 200"), "{host}{path}: {res}");
            let got = seen[member].lock().unwrap().clone();
            assert!(
                got.iter().any(|l| l == line),
                "{host}{path}: member {member} saw {got:?}"
            );
        }
        // each balancer counts its own member's requests
        for (name, r) in &registries {
            let m = r.load();
            let requests: u64 = m.members().iter().map(|m| m.stats().view().requests).sum();
            // the cookie checks above went to web and api once each
            let want = if name == "admin" { 1 } else { 2 };
            assert_eq!(requests, want, "{name}");
        }
        // the manager shows the three, and metrics name them
        let m = manager.unwrap();
        let page = raw(m, &get("127.0.0.1", "/balancer-manager", ""), LIMIT).await;
        for name in ["web", "api", "admin"] {
            assert!(page.contains(&format!("balancer://{name}")), "{page}");
        }
        let metrics = raw(m, &get("127.0.0.1", "/metrics", ""), LIMIT).await;
        assert!(
            metrics.contains("lb_member_requests_total{balancer=\"api\",member=\"api1\"} 2"),
            "{metrics}"
        );

        // a reload drops `admin` and adds `search`, routed under /search on www.test
        let mut next = text
            .replace("name = \"admin\"", "name = \"search\"")
            .replace("route = \"admin1\"", "route = \"search1\"");
        next = next.replace(&members[2], &members[3]).replace(
            "prefix = \"/admin\"\nbalancer = \"admin\"",
            "prefix = \"/search\"\nbalancer = \"search\"",
        );
        let config = tower_balancer_proxy::config::ConfigFile::from_toml(
            &next,
            std::path::Path::new("lb.toml"),
        )
        .unwrap();
        let done = reloader.reload(config).await.unwrap();
        assert_eq!(done.balancers_added, ["search"]);
        assert_eq!(done.balancers_removed, ["admin"]);
        let res = raw(a, &get("www.test", "/search/q", ""), LIMIT).await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert!(seen[3].lock().unwrap().iter().any(|l| l == "GET /q"));
        // /admin now goes to `web`, the routes' next match
        let res = raw(a, &get("www.test", "/admin/x", ""), LIMIT).await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert!(seen[0].lock().unwrap().iter().any(|l| l == "GET /admin/x"));
        let page = raw(m, &get("127.0.0.1", "/balancer-manager", ""), LIMIT).await;
        assert!(
            page.contains("balancer://search") && !page.contains("balancer://admin"),
            "{page}"
        );
    })
    .await
    .unwrap();
}

#[test]
fn several_balancers_need_routes_and_distinct_names() {
    let members = [
        "http://127.0.0.1:1".to_owned(),
        "http://127.0.0.1:2".to_owned(),
        "http://127.0.0.1:3".to_owned(),
    ];
    let text = three_balancers(&members);
    let no_routes = &text[..text.find("[[vhost]]").unwrap()];
    let e = tower_balancer_proxy::config::ConfigFile::from_toml(
        no_routes,
        std::path::Path::new("lb.toml"),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("several balancers need [[vhost]] routes"),
        "{e}"
    );
    let twice = text
        .replace("name = \"admin\"", "name = \"web\"")
        .replace("balancer = \"admin\"", "balancer = \"web\"");
    let e = tower_balancer_proxy::config::ConfigFile::from_toml(
        &twice,
        std::path::Path::new("lb.toml"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("`web` names two balancers"), "{e}");
    let shared = text
        .replace("name = \"api\"\n", "name = \"api\"\ncookie = \"SHARED\"\n")
        .replace(
            "name = \"admin\"\n",
            "name = \"admin\"\ncookie = \"SHARED\"\n",
        );
    let e = tower_balancer_proxy::config::ConfigFile::from_toml(
        &shared,
        std::path::Path::new("lb.toml"),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("another balancer's cookie too"),
        "{e}"
    );
    // a mistake in the third balancer is named at its own key and line
    let bad = text.replace(&members[2], "ftp://x");
    let e =
        tower_balancer_proxy::config::ConfigFile::from_toml(&bad, std::path::Path::new("lb.toml"))
            .unwrap_err();
    assert_eq!(e.key(), Some("balancer[2].member[0].url"), "{e}");
    assert_eq!(e.line(), Some(19), "{e}");
}
