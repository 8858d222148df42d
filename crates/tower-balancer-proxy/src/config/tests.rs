//! Configuration errors name the file, line and key; good files build.

use std::path::Path;

use super::*;

pub(super) const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
server_name = "wso2.com"

[balancer]
name = "wso2isbalancer"
lbmethod = "bybusyness"
stickysession = "JSESSIONID|jsessionid"
nofailover = false
maxattempts = 1
timeout = "30s"
failonstatus = [503]

[[balancer.member]]
url = "http://abc.com:9763"
route = "node1"
loadfactor = 2
resolve = ["127.0.0.1:9763"]

[[balancer.member]]
url = "http://xyz.com:9764"
route = "node2"
status = "+H"

[balancer.health]
uri = "/carbon/admin/login.jsp"
interval = "2s"
expect = "200-399"
"#;

pub(super) fn err(text: &str) -> ConfigError {
    ConfigFile::from_toml(text, Path::new("lb.toml")).unwrap_err()
}

#[test]
fn a_good_file_builds_its_members() {
    let config = ConfigFile::from_toml(GOOD, Path::new("lb.toml")).unwrap();
    let balancer = config.build().unwrap();
    let snap = balancer.registry().snapshot();
    assert_eq!(snap.len(), 2);
    let node1 = snap.get("node1").unwrap();
    assert_eq!(node1.weight(), 2);
    let node2 = snap.get("node2").unwrap();
    assert_eq!(node2.state(), tower_balancer::registry::AdminState::Standby);
    assert_eq!(balancer.info().strategy, "bybusyness");
    assert!(balancer.info().failover.contains("failonstatus=503"));
    assert_eq!(balancer.public_url().to_string(), "http://wso2.com:0/");
}

#[test]
fn a_bad_value_names_line_and_key() {
    let text = GOOD.replace("timeout = \"30s\"", "timeout = \"thirty\"");
    let e = err(&text);
    assert_eq!(e.key(), Some("balancer.timeout"));
    assert_eq!(e.line(), Some(12));
    assert!(e.message().contains("not a duration"), "{e}");
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let text = GOOD.replace("loadfactor = 2", "load_factor = 2");
    let e = err(&text);
    assert_eq!(e.line(), Some(18), "{e}");
    assert!(e.message().contains("load_factor"), "{e}");
    assert!(e.to_string().starts_with("lb.toml:18:"), "{e}");
}

#[test]
fn a_bad_status_names_the_member() {
    let text = GOOD.replace("status = \"+H\"", "status = \"+X\"");
    let e = err(&text);
    assert_eq!(e.key(), Some("balancer.member[1].status"));
    assert_eq!(e.line(), Some(24));
}

#[test]
fn duplicate_routes_are_refused_at_the_second() {
    let text = GOOD.replace("route = \"node2\"", "route = \"node1\"");
    let e = err(&text);
    assert_eq!(e.key(), Some("balancer.member[1].route"));
    assert_eq!(e.line(), Some(23));
    assert!(e.message().contains("two members"));
}

#[test]
fn syntax_errors_have_a_line() {
    let e = err("[server\nlisten = 1\n");
    assert_eq!(e.line(), Some(1), "{e}");
}

#[test]
fn missing_sections_are_named() {
    let e = err("[server]\nlisten = \"127.0.0.1:1\"\nserver_name = \"x\"\n");
    assert!(e.message().contains("balancer"), "{e}");
}

#[test]
fn an_unreadable_certificate_names_its_key_and_path() {
    let text = GOOD.replace(
        "server_name = \"wso2.com\"",
        "server_name = \"wso2.com\"\ncertificate = \"no/such.pem\"\nkey = \"no/such.key\"",
    );
    let config = ConfigFile::from_toml(&text, Path::new("/tmp/lb.toml")).unwrap();
    let e = config.build().unwrap_err();
    assert_eq!(e.key(), Some("server.certificate"));
    assert_eq!(e.line(), Some(5));
    assert!(e.message().contains("/tmp/no/such.pem"), "{e}");
}

#[test]
fn a_certificate_without_a_key_is_refused() {
    let text = GOOD.replace(
        "server_name = \"wso2.com\"",
        "server_name = \"wso2.com\"\ncertificate = \"a.pem\"",
    );
    let e = err(&text);
    assert!(e.message().contains("come together"), "{e}");
}

#[test]
fn a_bad_health_range_is_refused() {
    let text = GOOD.replace("expect = \"200-399\"", "expect = \"399-200\"");
    let e = err(&text);
    assert_eq!(e.key(), Some("balancer.health.expect"));
    assert!(e.message().contains("status range"), "{e}");
}

#[test]
fn a_missing_file_is_named() {
    let e = ConfigFile::from_file("/nonexistent/lb.toml").unwrap_err();
    assert_eq!(e.path(), Path::new("/nonexistent/lb.toml"));
    assert!(e.message().contains("cannot read"));
}

#[test]
fn stickysession_splits_cookie_and_parameter() {
    let text = GOOD.replace("\"JSESSIONID|jsessionid\"", "\"SESSION\"");
    let config = ConfigFile::from_toml(&text, Path::new("lb.toml")).unwrap();
    let names = &config.file().balancer.stickysession;
    assert_eq!(names.cookie.as_deref(), Some("SESSION"));
    assert_eq!(names.url_param.as_deref(), Some("SESSION"));
}

#[test]
fn scale_out_keys_are_checked() {
    let base = "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"wso2.com\"\n[balancer]\nname = \"b\"\n";
    let e = err(&format!(
        "{base}lbmethod = \"maglev\"\n[[balancer.member]]\nurl = \"http://a\"\nroute = \"n\"\n"
    ));
    assert_eq!(e.key(), Some("balancer.lbmethod"), "{e}");
    let e = err(&format!("{base}lbmethod = \"ringhash\"\nhash_key = \"x user\"\n[[balancer.member]]\nurl = \"http://a\"\nroute = \"n\"\n"));
    assert_eq!(
        (e.line(), e.key()),
        (Some(7), Some("balancer.hash_key")),
        "{e}"
    );
    let e = err(&format!("{base}cookie_key_file = \"a\"\ncookie_key_files = [\"b\"]\n[[balancer.member]]\nurl = \"http://a\"\nroute = \"n\"\n"));
    assert_eq!(e.key(), Some("balancer.cookie_key_file"), "{e}");
    let e = err(&format!(
        "{base}[balancer.dns]\nname = \"svc.test\"\nsrv = \"_http._tcp.svc.test\"\n"
    ));
    assert_eq!(e.key(), Some("balancer.dns"), "{e}");
    let e = err(&format!("{base}[balancer.dns]\nname = \"svc.test\"\n"));
    assert!(e.to_string().contains("`name` and `port`"), "{e}");
    // members only from DNS: no inline members needed
    let c = ConfigFile::from_toml(
        &format!("{base}[balancer.dns]\nsrv = \"_http._tcp.svc.test\"\nname_servers = [\"127.0.0.1:5353\"]\n"),
        Path::new("lb.toml"),
    )
    .unwrap();
    assert!(c.build().unwrap().registry().load().is_empty());
    // a members file that is missing is an error at build, naming that file
    let c = ConfigFile::from_toml(
        &format!("{base}members_file = \"no-such-members.toml\"\n"),
        Path::new("/nonexistent/lb.toml"),
    )
    .unwrap();
    let e = c.build().unwrap_err();
    assert!(
        e.to_string().starts_with(
            "/nonexistent/lb.toml:6: `balancer.members_file`: /nonexistent/no-such-members.toml: cannot read"
        ),
        "{e}"
    );
}

#[test]
fn safe_defaults_need_no_key() {
    let text = GOOD.replace("timeout = \"30s\"\n", "");
    let balancer = ConfigFile::from_toml(&text, Path::new("lb.toml"))
        .unwrap()
        .build()
        .unwrap();
    // the per-try timeout is 60 s without the key, and the page says so
    assert!(
        balancer.info().failover.contains("timeout=1m"),
        "{}",
        balancer.info().failover
    );
    assert_eq!(
        balancer.lanes[0].stack.outliers,
        tower_balancer::health::OutlierConfig::new()
    );
    assert_eq!(
        balancer.lanes[0].stack.request_idle,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        balancer.lanes[0].stack.response_idle,
        std::time::Duration::from_secs(60)
    );
}

#[test]
fn reliability_keys_are_read() {
    let text = GOOD.replace(
        "failonstatus = [503]\n",
        "failonstatus = [503]\nresponse_body_timeout = \"5s\"\nupgrades = [\"websocket\", \"foo/2\"]\n\
         panic_threshold = 0.0\ncookie_accept_apache = false\n\
         [balancer.retry_budget]\nratio = 0.1\nper_second = 2\nwindow = \"5s\"\n\
         [balancer.ejection]\nconnect_failures = 1\nconsecutive_failures = 0\nbase_time = \"10s\"\n",
    )
    .replace(
        "server_name = \"wso2.com\"\n",
        "server_name = \"wso2.com\"\nrequest_body_timeout = \"20s\"\nmax_connections = 300\n",
    );
    let config = ConfigFile::from_toml(&text, Path::new("lb.toml")).unwrap();
    let b = &config.file().balancer;
    assert_eq!(
        b.upgrades.as_deref(),
        Some(&["websocket".to_owned(), "foo/2".to_owned()][..])
    );
    assert!(!b.cookie_accept_apache);
    let balancer = config.build().unwrap();
    assert_eq!(
        balancer.lanes[0].stack.outliers,
        tower_balancer::health::OutlierConfig::new()
            .consecutive_connect_failures(1)
            .consecutive_failures(0)
            .ejection_time(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(300)
            )
    );
    assert_eq!(
        balancer.lanes[0].stack.request_idle,
        std::time::Duration::from_secs(20)
    );
    assert_eq!(
        balancer.lanes[0].stack.response_idle,
        std::time::Duration::from_secs(5)
    );
    assert!(!balancer.registry().snapshot().is_panic());
}

#[test]
fn a_zero_timeout_or_a_fraction_past_one_is_refused_at_its_line() {
    let e = err(&GOOD.replace("timeout = \"30s\"", "timeout = \"0s\""));
    assert_eq!(e.key(), Some("balancer.timeout"));
    assert!(e.to_string().contains("longer than 0 s"), "{e}");
    let e = err(&GOOD.replace(
        "failonstatus = [503]",
        "failonstatus = [503]\npanic_threshold = 1.5",
    ));
    assert_eq!(e.key(), Some("balancer.panic_threshold"));
    assert!(e.to_string().contains("fraction"), "{e}");
    let e = err(&format!(
        "{GOOD}\n[balancer.ejection]\nmax_fraction = -1.0\n"
    ));
    assert_eq!(e.key(), Some("balancer.ejection.max_fraction"));
    let e = err(&format!(
        "{GOOD}\n[balancer.ejection]\nfailure_percentage = 101\n"
    ));
    assert_eq!(e.key(), Some("balancer.ejection.failure_percentage"));
    assert!(
        e.to_string().contains("percentage from 0 (off) to 100"),
        "{e}"
    );
}

/// Each file must be refused at `key` with a message containing `says`.
pub(super) fn assert_refused(cases: Vec<(String, &str, &str)>) {
    for (text, key, says) in cases {
        let e = err(&text);
        assert_eq!(e.key(), Some(key), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
}

#[test]
fn front_and_forwarding_values_that_would_half_work_are_refused_at_their_key() {
    let server = |line: &str| {
        GOOD.replace(
            "server_name = \"wso2.com\"\n",
            &format!("server_name = \"wso2.com\"\n{line}\n"),
        )
    };
    let balancer = |line: &str| {
        GOOD.replace(
            "failonstatus = [503]\n",
            &format!("failonstatus = [503]\n{line}\n"),
        )
    };
    assert_refused(vec![
        (
            server("header_read_timeout = \"0s\""),
            "server.header_read_timeout",
            "longer than 0 s",
        ),
        (
            server("max_headers = 0"),
            "server.max_headers",
            "at least 1",
        ),
        (
            server("max_header_bytes = 0"),
            "server.max_header_bytes",
            "below 8192",
        ),
        (
            server("max_connections = 0"),
            "server.max_connections",
            "at least 1",
        ),
        (
            balancer("connection_timeout = \"0s\""),
            "balancer.connection_timeout",
            "longer than 0 s",
        ),
        (
            balancer("upgrades = [\"h2c\", \"websocket\"]"),
            "balancer.upgrades",
            "h2c is never",
        ),
        (
            balancer("upgrades = [\"web socket\"]"),
            "balancer.upgrades",
            "not a protocol name",
        ),
    ]);
}

#[test]
fn probe_and_reliability_values_that_would_half_work_are_refused_at_their_key() {
    let health = |line: &str| {
        GOOD.replace(
            "expect = \"200-399\"\n",
            &format!("expect = \"200-399\"\n{line}\n"),
        )
    };
    assert_refused(vec![
        (
            GOOD.replace("interval = \"2s\"", "interval = \"0s\""),
            "balancer.health.interval",
            "shorter than 100ms",
        ),
        (
            GOOD.replace("interval = \"2s\"", "interval = \"1ns\""),
            "balancer.health.interval",
            "shortest probe interval",
        ),
        (
            health("timeout = \"0ms\""),
            "balancer.health.timeout",
            "longer than 0 s",
        ),
        (health("passes = 0"), "balancer.health.passes", "at least 1"),
        (health("fails = 0"), "balancer.health.fails", "at least 1"),
        (
            GOOD.replace(
                "uri = \"/carbon/admin/login.jsp\"",
                "uri = \"health with space\"",
            ),
            "balancer.health.uri",
            "not a path",
        ),
        (
            GOOD.replace(
                "uri = \"/carbon/admin/login.jsp\"",
                "uri = \"http://127.0.0.1/health\"",
            ),
            "balancer.health.uri",
            "not a path",
        ),
        (
            format!("{GOOD}\n[balancer.retry_budget]\nwindow = \"1h\"\n"),
            "balancer.retry_budget.window",
            "1 s to 60 s",
        ),
        (
            format!("{GOOD}\n[balancer.retry_budget]\nratio = -1.0\n"),
            "balancer.retry_budget.ratio",
            "not a ratio",
        ),
        (
            format!("{GOOD}\n[balancer.ejection]\nbase_time = \"0s\"\n"),
            "balancer.ejection.base_time",
            "longer than 0 s",
        ),
        (
            format!("{GOOD}\n[balancer.ejection]\nbase_time = \"60s\"\nmax_time = \"10s\"\n"),
            "balancer.ejection.max_time",
            "shorter than base_time",
        ),
    ]);
}

#[test]
fn names_and_urls_that_would_half_work_are_refused_at_their_key() {
    let balancer = |line: &str| {
        GOOD.replace(
            "failonstatus = [503]\n",
            &format!("failonstatus = [503]\n{line}\n"),
        )
    };
    // checked when the sticky layer is built: named at its own key, not stickysession
    let e = ConfigFile::from_toml(&balancer("cookie = \"\""), Path::new("lb.toml"))
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(e.key(), Some("balancer.cookie"), "{e}");
    assert_eq!(e.line(), Some(14), "{e}");
    for url in ["http://user:pw@abc.com:9763", "http://abc.com:9763/app?x=1"] {
        let e = err(&GOOD.replace("http://abc.com:9763", url));
        assert_eq!(e.key(), Some("balancer.member[0].url"), "{e}");
        assert!(e.to_string().contains("never sent"), "{e}");
    }
    for (text, key) in [
        (
            GOOD.replace(
                "server_name = \"wso2.com\"",
                "server_name = \"evil.com/path?x\"",
            ),
            "server.server_name",
        ),
        (
            GOOD.replace("server_name = \"wso2.com\"", "server_name = \"\""),
            "server.server_name",
        ),
        (
            GOOD.replace("name = \"wso2isbalancer\"", "name = \"\""),
            "balancer.name",
        ),
    ] {
        assert_eq!(err(&text).key(), Some(key));
    }
}

#[test]
fn a_missing_or_short_cookie_key_says_how_to_make_one() {
    let dir = std::env::temp_dir().join(format!("tb-key-hint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = |keys: &str| {
        format!("[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n[balancer]\nname = \"b\"\n{keys}\n[[balancer.member]]\nurl = \"http://a\"\nroute = \"n\"\n")
    };
    let build = |keys: &str| {
        ConfigFile::from_toml(&text(keys), &dir.join("lb.toml"))
            .and_then(|c| c.build())
            .unwrap_err()
            .to_string()
    };
    let hint = "head -c 32 /dev/urandom";
    let missing = build("cookie_key_file = \"cookie.key\"");
    assert!(
        missing.contains("cannot read") && missing.contains(hint),
        "{missing}"
    );
    std::fs::write(dir.join("short.key"), b"0123456789").unwrap();
    std::fs::write(dir.join("good.key"), [7u8; 32]).unwrap();
    let empty = build("cookie_key_files = []");
    assert!(
        empty.contains("cookie_key_files") && empty.contains("an empty list"),
        "{empty}"
    );
    let short = build("cookie_key_files = [\"good.key\", \"short.key\"]");
    // which file, and its place in the list
    assert!(short.contains("short.key` has 10 bytes"), "{short}");
    assert!(short.contains("cookie_key_files[1]"), "{short}");
    assert!(
        short.contains("at least 32") && short.contains(hint),
        "{short}"
    );
    ConfigFile::from_toml(
        &text("cookie_key_file = \"good.key\""),
        &dir.join("lb.toml"),
    )
    .and_then(|c| c.build())
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
