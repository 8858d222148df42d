//! What the file's virtual hosts and routes refuse, each with its key and line.

use std::path::Path;

use super::ConfigFile;

const HEAD: &str = "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\
                    [balancer]\nname = \"b\"\n[[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"n1\"\n";

fn refused(tail: &str) -> (String, Option<String>) {
    let text = format!("{HEAD}{tail}");
    let e = ConfigFile::from_toml(&text, Path::new("lb.toml")).unwrap_err();
    (e.to_string(), e.key().map(str::to_owned))
}

fn vhost(route: &str) -> String {
    format!("[[vhost]]\nnames = [\"a.test\"]\n[[vhost.route]]\n{route}\n")
}

#[test]
fn a_route_needs_one_path_and_one_action() {
    let (m, k) = refused(&vhost("balancer = \"b\""));
    assert_eq!(k.as_deref(), Some("vhost[0].route[0]"), "{m}");
    assert!(m.contains("`prefix` or `path`"), "{m}");
    let (m, _) = refused(&vhost("prefix = \"/\"\nbalancer = \"b\"\nrespond = 200"));
    assert!(
        m.contains("one of `balancer`, `respond` or `redirect`"),
        "{m}"
    );
    let (m, k) = refused(&vhost("prefix = \"/\"\nbalancer = \"nope\""));
    assert_eq!(k.as_deref(), Some("vhost[0].route[0].balancer"), "{m}");
    assert!(
        m.contains("no balancer is named `nope`") && m.starts_with("lb.toml:13"),
        "{m}"
    );
}

#[test]
fn values_that_cannot_work_are_refused() {
    for (route, key, words) in [
        (
            "prefix = \"carbon\"\nbalancer = \"b\"",
            "vhost[0].route[0].prefix",
            "not a path",
        ),
        (
            "path = \"/\"\nbalancer = \"b\"\nstrip_prefix = true",
            "vhost[0].route[0].rewrite_prefix",
            "go with `prefix`",
        ),
        (
            "prefix = \"/\"\nrespond = 101",
            "vhost[0].route[0].respond",
            "200 to 599",
        ),
        (
            "prefix = \"/a\"\nredirect = \"/x\"\nstatus = 200",
            "vhost[0].route[0].status",
            "not a redirect status",
        ),
        (
            "prefix = \"/\"\nredirect = \"//evil.test/\"",
            "vhost[0].route[0].redirect",
            "is not a URL",
        ),
        (
            "prefix = \"/\"\nbalancer = \"b\"\nbody = \"x\"",
            "vhost[0].route[0].body",
            "go with `respond`",
        ),
        (
            "prefix = \"/\"\nheader = { name = \"a b\" }\nrespond = 200",
            "vhost[0].route[0].header.name",
            "not a header name",
        ),
    ] {
        let (m, k) = refused(&vhost(route));
        assert_eq!(k.as_deref(), Some(key), "{route}: {m}");
        assert!(m.contains(words), "{route}: {m}");
    }
}

#[test]
fn values_that_would_never_match_or_would_mislead_are_refused() {
    for (route, key, words) in [
        (
            "prefix = \"/\"\nheader = { name = \"Host\" }\nrespond = 200",
            "vhost[0].route[0].header.name",
            "[[vhost]] names",
        ),
        (
            "prefix = \"/\"\nrespond = 204\nbody = \"x\"",
            "vhost[0].route[0].body",
            "no body",
        ),
        (
            "prefix = \"/\"\nrespond = 302",
            "vhost[0].route[0].respond",
            "write `redirect = \"…\"` with `status = 302`",
        ),
        (
            "prefix = \"/\"\nredirect = \"/\\\\evil.test/\"",
            "vhost[0].route[0].redirect",
            "is not a URL",
        ),
        (
            "prefix = \"/\"\nredirect = \"javascript://x.test/\"",
            "vhost[0].route[0].redirect",
            "is not a URL",
        ),
        (
            "prefix = \"/%61dmin\"\nrespond = 403",
            "vhost[0].route[0].prefix",
            "write `/admin`",
        ),
        (
            "path = \"/a/../secret\"\nrespond = 403",
            "vhost[0].route[0].path",
            "write `/secret`",
        ),
        (
            "prefix = \"/p/\"\nbalancer = \"b\"\nrewrite_prefix = \"/inner\"",
            "vhost[0].route[0].rewrite_prefix",
            "end both with /",
        ),
        (
            "prefix = \"/q/\"\nredirect = \"https://n.test/base\"",
            "vhost[0].route[0].redirect",
            "end both with /",
        ),
        (
            "prefix = \"/\"\nredirect = \"https://n.test/a?b=1\"",
            "vhost[0].route[0].redirect",
            "is not a URL",
        ),
        (
            "prefix = \"/\"\nredirect = \"https://:443/\"",
            "vhost[0].route[0].redirect",
            "is not a URL",
        ),
        (
            "prefix = \"/\"\nrespond = 205\nbody = \"x\"",
            "vhost[0].route[0].body",
            "no body",
        ),
    ] {
        let (m, k) = refused(&vhost(route));
        assert_eq!(k.as_deref(), Some(key), "{route}: {m}");
        assert!(m.contains(words), "{route}: {m}");
    }
}

#[test]
fn virtual_hosts_need_names_routes_and_both_halves_of_a_certificate() {
    let (m, _) = refused("[[vhost]]\nnames = []\n");
    assert!(m.contains("at least one name"), "{m}");
    for bad in [
        "a.test:443",
        ".a.com",
        "a..com",
        "-a.com",
        "*",
        "web?.a.com",
    ] {
        let (m, _) = refused(&format!("[[vhost]]\nnames = [\"{bad}\"]\n"));
        assert!(m.contains("not a host name"), "{bad}: {m}");
    }
    // a trailing dot names the same host: a duplicate
    let dotted = format!(
        "{}{}",
        vhost("prefix = \"/\"\nrespond = 200"),
        "[[vhost]]\nnames = [\"A.TEST.\"]\n[[vhost.route]]\nprefix = \"/\"\nrespond = 200\n"
    );
    let (m, _) = refused(&dotted);
    assert!(m.contains("also a name of vhost[0]"), "{m}");
    let (m, k) = refused("[[vhost]]\nnames = [\"a.test\"]\n");
    assert_eq!(k.as_deref(), Some("vhost[0]"), "{m}");
    let (m, k) = refused(&format!(
        "[[vhost]]\nnames = [\"a.test\"]\ncertificate = \"x.pem\"\n{}",
        "[[vhost.route]]\nprefix = \"/\"\nrespond = 200\n"
    ));
    assert_eq!(k.as_deref(), Some("vhost[0].certificate"), "{m}");
    let twice = format!(
        "{}{}",
        vhost("prefix = \"/\"\nrespond = 200"),
        vhost("prefix = \"/\"\nrespond = 204")
    );
    let (m, k) = refused(&twice);
    assert_eq!(k.as_deref(), Some("vhost[1].names"), "{m}");
    assert!(m.contains("also a name of vhost[0]"), "{m}");
}

#[test]
fn a_route_an_earlier_one_covers_is_refused() {
    let routes =
        "[[vhost]]\nnames = [\"a.test\"]\n[[vhost.route]]\nprefix = \"/\"\nbalancer = \"b\"\n\
                  [[vhost.route]]\nprefix = \"/api\"\nrespond = 404\n";
    let (m, k) = refused(routes);
    assert_eq!(k.as_deref(), Some("vhost[0].route[1]"), "{m}");
    assert!(m.contains("never matches: vhost[0].route[0]"), "{m}");
    // a header route does not cover, and a longer path first is fine
    let ok = format!(
        "{HEAD}[[vhost]]\nnames = [\"a.test\"]\n[[vhost.route]]\nprefix = \"/\"\nheader = {{ name = \"x\" }}\nrespond = 200\n\
         [[vhost.route]]\nprefix = \"/api\"\nrespond = 404\n[[vhost.route]]\nprefix = \"/\"\nbalancer = \"b\"\n"
    );
    assert!(ConfigFile::from_toml(&ok, Path::new("lb.toml")).is_ok());
}

#[test]
fn a_good_table_builds_and_names_are_lowercased() {
    let text = format!("{HEAD}[[vhost]]\nnames = [\"A.Test\", \"*.B.test\"]\n[[vhost.route]]\nprefix = \"/\"\nbalancer = \"b\"\n");
    let c = ConfigFile::from_toml(&text, Path::new("lb.toml")).unwrap();
    assert_eq!(c.file().vhosts[0].names, ["a.test", "*.b.test"]);
    assert!(c.build().is_ok());
}
