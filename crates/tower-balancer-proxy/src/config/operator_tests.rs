//! What an operator gets wrong: settings that would do nothing or clash, values that cannot
//! be meant, and slow start from the file.

use std::path::Path;

use super::tests::{assert_refused, err};
use super::*;

#[test]
fn settings_that_would_do_nothing_or_clash_are_refused_at_their_key() {
    let member = "[[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"n\"\n";
    let file = |server: &str, balancer: &str, rest: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\nserver_name = \"lb\"\n{server}[balancer]\nname = \"b\"\n{balancer}{member}{rest}"
        )
    };
    assert_refused(vec![
        (
            file("", "hash_key = \"x-user\"\n", ""),
            "balancer.hash_key",
            "only lbmethod",
        ),
        (
            file("", "members_poll = \"5s\"\n", ""),
            "balancer.members_poll",
            "no members_file",
        ),
        (
            file("", "members_file = \"m.toml\"\nmembers_poll = \"0s\"\n", ""),
            "balancer.members_poll",
            "give 10ms or more",
        ),
        (
            file(
                "",
                "",
                "[balancer.dns]\nname = \"be.test\"\nport = 80\nttl_floor = \"1ms\"\n",
            ),
            "balancer.dns.ttl_floor",
            "give 100ms or more",
        ),
        (
            file(
                "",
                "",
                "[balancer.health]\nmethod = \"TCP\"\nexpect = \"200-299\"\n",
            ),
            "balancer.health.method",
            "TCP check only connects",
        ),
        (
            file("", "", "[balancer.health]\nbody_contains = \"\"\n"),
            "balancer.health.body_contains",
            "must not be empty",
        ),
        (
            file("", "", "[manager]\nlisten = \"127.0.0.1:8080\"\n"),
            "manager.listen",
            "its own port",
        ),
        (
            file(
                "",
                "",
                "[manager]\nlisten = \"127.0.0.1:9000\"\nnames = [\"bad name/\"]\n",
            ),
            "manager.names",
            "not a host name",
        ),
        (
            file(
                "",
                "",
                "[manager]\nlisten = \"127.0.0.1:9000\"\nnames = [\"lb:80\"]\n",
            ),
            "manager.names",
            "no port",
        ),
        (
            file("", "stickysession = \"|\"\n", ""),
            "balancer.stickysession",
            "names nothing",
        ),
        (
            file("", "stickysession = \"a|b|c\"\n", ""),
            "balancer.stickysession",
            "more than one",
        ),
    ]);
}

#[test]
fn values_that_cannot_be_meant_are_refused_with_words_an_operator_reads() {
    let member = "[[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"n\"\n";
    let file = |server: &str, balancer: &str, rest: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\nserver_name = \"lb\"\n{server}[balancer]\nname = \"b\"\n{balancer}{member}{rest}"
        )
    };
    assert_refused(vec![
        (
            file("", "maxattempts = 100000\n", ""),
            "balancer.maxattempts",
            "from 0 to 15",
        ),
        (
            file("", "maxattempts = -1\n", ""),
            "balancer.maxattempts",
            "from 0 to 15",
        ),
        (
            file("", "", "[balancer.dns]\nname = \"x\"\nport = 0\n"),
            "balancer.dns.port",
            "from 1 to 65535",
        ),
        (
            file("", "", "").replace("name = \"b\"", "name = \"my cluster\""),
            "balancer.name",
            "not a balancer name",
        ),
        (
            file("", "", "").replace("127.0.0.1:8080", "localhost:8080"),
            "server.listen",
            "such as localhost are not looked up",
        ),
        (
            file("", "", "").replace("route = \"n\"", "route = \"n\"\nresolve = [\"notanaddr\"]"),
            "balancer.member[0].resolve",
            "IP address and port",
        ),
        (
            file("", "", "").replace("route = \"n\"", "route = \"n\"\nlbset = -1"),
            "balancer.member[0].lbset",
            "whole number from 0 to 65535",
        ),
        (
            file("", "", "").replace("route = \"n\"", "route = \"n\"\nmax = -4"),
            "balancer.member[0].max",
            "whole number",
        ),
        (
            file("", "", "").replace("[[balancer.member]]", "[balancer.member]"),
            "balancer.member",
            "[[table]] (two brackets)",
        ),
    ]);
    // a duplicate key is named
    let e = err(&file("", "", "").replace("name = \"b\"", "name = \"b\"\nname = \"c\""));
    assert!(e.to_string().contains("`name` is given twice"), "{e}");
    // accepted: the rules refuse what cannot be meant, not what is merely unusual
    for ok in [
        file("", "stickysession = \"\"\n", ""),
        file("", "stickysession = \"sid\"\n", ""),
        file("", "", "[manager]\nlisten = \"127.0.0.1:9000\"\nnames = [\"lb.internal\", \"[::1]\", \"10.0.0.1\"]\n"),
        file("", "", "[balancer.health]\nmethod = \"TCP\"\n"),
    ] {
        ConfigFile::from_toml(&ok, Path::new("lb.toml")).unwrap();
    }
}

#[tokio::test]
async fn slow_start_ramps_a_member_that_joins_only_when_asked_for() {
    use tower_balancer::registry::{MemberId, MemberSpec};
    let base =
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb\"\n[balancer]\nname = \"b\"\n";
    let member = "[[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"n\"\n";
    for (extra, ramps) in [("slow_start = \"60s\"\n", true), ("", false)] {
        let text = format!("{base}{extra}{member}");
        let bound = ConfigFile::from_toml(&text, Path::new("lb.toml"))
            .unwrap()
            .build()
            .unwrap()
            .bind()
            .await
            .unwrap();
        // members present when the task starts serve at full weight: join after it runs
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let id = MemberId::new("late").unwrap();
        bound
            .registry()
            .insert(MemberSpec::new(id, "http://127.0.0.1:2".parse().unwrap()))
            .unwrap();
        // the ramp task runs every few hundred milliseconds
        let mut ramp = 1000;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            ramp = bound.registry().load().get("late").unwrap().ramp_permille();
            if ramp < 1000 {
                break;
            }
        }
        assert_eq!(ramp < 1000, ramps, "{extra:?}: ramp {ramp}");
    }
}

#[test]
fn an_access_log_that_cannot_be_opened_is_found_at_build_with_its_key() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb\"\naccess_log = \"/nonexistent/dir/access.log\"\n[balancer]\nname = \"b\"\n[[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"n\"\n";
    let e = ConfigFile::from_toml(text, Path::new("lb.toml"))
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(
        (e.line(), e.key()),
        (Some(4), Some("server.access_log")),
        "{e}"
    );
    assert!(
        e.message()
            .contains("cannot open `/nonexistent/dir/access.log`"),
        "{e}"
    );
}

/// A file with one member, and `server` and `balancer` lines added to their tables.
fn one_member(server: &str, balancer: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\nserver_name = \"lb\"\n{server}[balancer]\nname = \"b\"\n{balancer}[[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"n\"\n"
    )
}

#[test]
fn limits_that_cannot_be_meant_are_refused_at_their_key() {
    let file = |server: &str, balancer: &str, _: &str| one_member(server, balancer);
    assert_refused(vec![
        (
            file("[server.per_client]\nrate = 0\n", "", ""),
            "server.per_client.rate",
            "not a rate",
        ),
        (
            file("[server.per_client]\nrate = \"fast\"\n", "", ""),
            "server.per_client.rate",
            "",
        ),
        (
            file("[server.per_client]\nburst = 5\n", "", ""),
            "server.per_client.burst",
            "set server.per_client.rate too",
        ),
        (
            file("[server.per_client]\nconnections = 0\n", "", ""),
            "server.per_client.connections",
            "at least 1",
        ),
        (
            file("[server.per_client]\nrate = 5\nclients = 0\n", "", ""),
            "server.per_client.clients",
            "from 1 to",
        ),
        (
            file("[server.per_client]\nrat = 5\n", "", ""),
            "server.per_client.rat",
            "expected one of `rate`",
        ),
        (
            file("", "queue_timeout = \"18446744073709551615s\"\n", ""),
            "balancer.queue_timeout",
            "longer than a year",
        ),
        (
            file("", "timeout = \"292471208677y\"\n", ""),
            "balancer.timeout",
            "",
        ),
        (
            file("", "queue_timeout = \"0s\"\n", ""),
            "balancer.queue_timeout",
            "",
        ),
        (
            file("", "queue_length = 1.5\n", ""),
            "balancer.queue_length",
            "",
        ),
    ]);
    for ok in [
        file(
            "[server.per_client]\nrate = 0.5\nburst = 3\nconnections = 64\nclients = 1000\n",
            "",
            "",
        ),
        file("", "queue_timeout = \"250ms\"\nqueue_length = 0\n", "")
            .replace("route = \"n\"", "route = \"n\"\nmax = 4"),
    ] {
        ConfigFile::from_toml(&ok, Path::new("lb.toml")).unwrap_or_else(|e| panic!("{e}\n{ok}"));
    }
}

#[test]
fn counts_out_of_their_range_are_refused_in_their_own_words() {
    let file = |server: &str| one_member(server, "");
    assert_refused(vec![
        (
            // a key whose least value is 1 must not be described as "0 or more"
            file("http2_max_uploads = -1\n"),
            "server.http2_max_uploads",
            "whole number, not negative",
        ),
        (
            file("http2_max_streams = 0\n"),
            "server.http2_max_streams",
            "at least 1",
        ),
        (
            // cut to 32 bits, this was silently no limit
            file("http2_max_streams = 99999999999\n"),
            "server.http2_max_streams",
            "over 4294967295",
        ),
        (
            file("http2_max_uploads = 4294967296\n"),
            "server.http2_max_uploads",
            "over 4294967295",
        ),
        (
            file("max_connections = 18446744073709551616\n"),
            "server.max_connections",
            "integer `18446744073709551616` is too large, expected a whole number",
        ),
    ]);
}

#[test]
fn a_broken_members_file_says_which_key_of_which_balancer_named_it() {
    let dir = std::env::temp_dir().join(format!("lb-members-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let members = dir.join("members.toml");
    std::fs::write(
        &members,
        "[[member]]\nurl = \"http://127.0.0.1:1\"\nroute = = \"n\"\n",
    )
    .unwrap();
    let lane =
        |name: &str| format!("[[balancer]]\nname = \"{name}\"\nmembers_file = \"members.toml\"\n");
    let server = "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb\"\n";
    let one = format!("{server}[balancer]\nname = \"b\"\nmembers_file = \"members.toml\"\n");
    let two = format!(
        "{server}[[balancer]]\nname = \"a\"\n[[balancer.member]]\nurl = \"http://127.0.0.1:1\"\nroute = \"n\"\n{}\n[[vhost]]\nnames = [\"lb\"]\n[[vhost.route]]\nprefix = \"/a\"\nbalancer = \"a\"\n[[vhost.route]]\nprefix = \"/\"\nbalancer = \"c\"\n",
        lane("c")
    );
    for (text, key) in [
        (one, "`balancer.members_file`"),
        (two, "`balancer[1].members_file`"),
    ] {
        let path = dir.join("lb.toml");
        let e = ConfigFile::from_toml(&text, &path)
            .and_then(|f| f.build().map(|_| ()))
            .unwrap_err();
        // the mistake's own file and line, then what named the file
        assert_eq!((e.path(), e.line()), (members.as_path(), Some(3)), "{e}");
        assert!(
            e.message()
                .contains(&format!("named by {key} in {}", path.display())),
            "{e}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
