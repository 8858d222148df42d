//! Unit tests of the etcd member rules.
#![allow(clippy::unwrap_used)]
use super::*;

fn ids(changes: &[Result<Change<MemberId, MemberSpec>, EtcdError>]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Ok(Change::Insert(id, s)) => format!("+{id}@{}", s.endpoint()),
            Ok(Change::Remove(id)) => format!("-{id}"),
            Err(e) => format!("!{e}"),
        })
        .collect()
}

#[test]
fn a_value_names_every_member_setting() {
    let v = br#"{"url": "https://10.0.0.1:9443", "route": "node1", "weight": 3, "lbset": 1, "status": "+H", "tls_name": "abc.com", "max": 200}"#;
    let s = parse_member("/lb/", b"/lb/x", v).unwrap();
    let expected = MemberSpec::new(
        MemberId::new("node1").unwrap(),
        "https://10.0.0.1:9443".parse().unwrap(),
    )
    .weight(3)
    .priority(1)
    .state(AdminState::Standby)
    .max_in_flight(200)
    .tls_name("abc.com");
    assert_eq!(s, expected);
    // the route defaults to the key's name; loadfactor is weight's Apache name
    let s = parse_member(
        "/lb/",
        b"/lb/node2",
        br#"{"url": "http://h:1", "loadfactor": 2}"#,
    )
    .unwrap();
    assert_eq!((s.id().as_str(), s.weight), ("node2", 2));
}

#[test]
fn bad_values_say_what_is_wrong() {
    let cases: [(&[u8], &str); 11] = [
        (b"not json", "not a member's JSON"),
        (br#"{"route": "n"}"#, "missing field `url`"),
        (br#"{"url": "ftp://h"}"#, "not an http:// or https://"),
        (
            br#"{"url": "http://h", "weight": 0}"#,
            "weight 0 is outside",
        ),
        (
            br#"{"url": "http://h", "status": "sleepy"}"#,
            "not a member status",
        ),
        (
            br#"{"url": "http://h", "route": "a b"}"#,
            "invalid member id",
        ),
        (
            br#"{"url": "http://h", "colour": 1}"#,
            "unknown field `colour`",
        ),
        (br#"{"url": "/relative"}"#, "with a host"),
        (br#"{"url": "http://u:pw@h"}"#, "user name or password"),
        (br#"{"url": "http://h:0"}"#, "port outside"),
        (br#"{"url": "http://h:99999"}"#, "port outside"),
    ];
    for (value, says) in cases {
        let e = parse_member("/lb/", b"/lb/n", value).unwrap_err();
        assert!(e.contains(says), "{e}");
    }
    let big = format!(
        r#"{{"url": "http://h", "route": "{}"}}"#,
        "a".repeat(MAX_VALUE_BYTES)
    );
    assert!(parse_member("/lb/", b"/lb/n", big.as_bytes())
        .unwrap_err()
        .contains("more than"));
}

#[test]
fn changes_follow_puts_deletes_and_relists() {
    let mut e = Entries::new("/lb/", Announced::default());
    e.put(b"/lb/a", br#"{"url": "http://h:1"}"#).unwrap();
    e.put(b"/lb/b", br#"{"url": "http://h:2"}"#).unwrap();
    assert_eq!(ids(&e.changes()), ["+a@http://h:1/", "+b@http://h:2/"]);
    assert!(e.changes().is_empty(), "nothing changed, nothing said");
    // a bad value keeps the last good one
    assert!(e.put(b"/lb/a", b"{").is_err());
    assert!(e.changes().is_empty());
    e.put(b"/lb/a", br#"{"url": "http://h:3"}"#).unwrap();
    e.delete(b"/lb/b");
    assert_eq!(ids(&e.changes()), ["+a@http://h:3/", "-b"]);
    // a relist drops what is gone, keeps a bad key's last good value
    e.put(b"/lb/c", br#"{"url": "http://h:4"}"#).unwrap();
    e.changes();
    let errors = e.replace([
        (&b"/lb/a"[..], &b"{oops"[..]),
        (b"/lb/d", br#"{"url": "http://h:5"}"#),
    ]);
    assert_eq!(errors.len(), 1);
    assert_eq!(ids(&e.changes()), ["+d@http://h:5/", "-c"]);
}

#[test]
fn an_emptied_prefix_keeps_the_last_members() {
    let mut e = Entries::new("/lb/", Announced::default());
    e.put(b"/lb/a", br#"{"url": "http://h:1"}"#).unwrap();
    e.changes();
    e.delete(b"/lb/a");
    let c = ids(&e.changes());
    assert_eq!(c.len(), 1);
    assert!(c[0].contains("keeping the last good members"), "{c:?}");
    // and once a member is back, the set follows again
    e.put(b"/lb/b", br#"{"url": "http://h:2"}"#).unwrap();
    assert_eq!(ids(&e.changes()), ["+b@http://h:2/", "-a"]);
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8, u8),
    Bad(u8),
    Delete(u8),
    Relist(Vec<(u8, u8, u8)>),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let kv = (0..8u8, 0..4u8, 0..3u8);
    prop_oneof![
        4 => kv.clone().prop_map(|(k, r, p)| Op::Put(k, r, p)),
        1 => (0..8u8).prop_map(Op::Bad),
        2 => (0..8u8).prop_map(Op::Delete),
        1 => proptest::collection::vec(kv, 0..6).prop_map(Op::Relist),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("/lb/k{k}").into_bytes()
}

fn value(r: u8, port: u8) -> Vec<u8> {
    format!(
        r#"{{"url": "http://h:{}", "route": "r{r}"}}"#,
        u16::from(port) + 1
    )
    .into_bytes()
}

proptest::proptest! {
    /// Working out changes for the touched routes only gives what working them out
    /// from every key gives, and the changes said bring the registry there.
    #[test]
    fn touched_routes_only_agree_with_every_key(ops in proptest::collection::vec(op(), 1..40)) {
        let announced = Announced::default();
        let mut e = Entries::new("/lb/", announced.clone());
        let mut registry: BTreeMap<MemberId, MemberSpec> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(k, r, p) => drop(e.put(&key(k), &value(r, p))),
                Op::Bad(k) => drop(e.put(&key(k), b"{")),
                Op::Delete(k) => e.delete(&key(k)),
                Op::Relist(kvs) => {
                    let owned: Vec<(Vec<u8>, Vec<u8>)> =
                        kvs.iter().map(|&(k, r, p)| (key(k), value(r, p))).collect();
                    drop(e.replace(owned.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))));
                }
            }
            for c in e.changes() {
                match c {
                    Ok(Change::Insert(id, spec)) => drop(registry.insert(id, spec)),
                    Ok(Change::Remove(id)) => {
                        proptest::prop_assert!(registry.remove(&id).is_some());
                    }
                    Err(_) => {}
                }
            }
            let (full, _) = e.members();
            if full.is_empty() {
                // an emptied prefix keeps the last members
                continue;
            }
            proptest::prop_assert_eq!(&registry, &full);
            proptest::prop_assert_eq!(&*announced.lock().unwrap(), &full);
        }
    }
}

#[test]
fn keys_are_shown_escaped_and_short() {
    assert_eq!(show_key(b"/lb/a\nINFO forged"), "/lb/a\\nINFO forged");
    assert_eq!(show_key(b"\x1b[31m"), "\\u{1b}[31m");
    assert_eq!(show_key(b"a member's \"url\""), "a member's \"url\"");
    let long = show_key(&[b'k'; 5000]);
    assert_eq!(long.chars().count(), 201);
    // a value quoted in an error cannot forge a line or drive a terminal either
    let mut e = Entries::new("/lb/", Announced::default());
    for value in [
        &br#"{"url": "http://h\n2026 INFO forged \u001b[2J"}"#[..],
        br#"{"url": "http://h", "status": "x\ny"}"#,
        br#"{"nope\nFORGED\u001b[2J": 1}"#,
    ] {
        let err = e.put(b"/lb/v", value).unwrap_err().to_string();
        assert!(!err.contains('\n') && !err.contains('\x1b'), "{err}");
    }
}

#[test]
fn the_first_key_wins_a_route_two_keys_claim() {
    let mut e = Entries::new("/lb/", Announced::default());
    e.put(b"/lb/b", br#"{"url": "http://h:2", "route": "n"}"#)
        .unwrap();
    e.put(b"/lb/a", br#"{"url": "http://h:1", "route": "n"}"#)
        .unwrap();
    let c = ids(&e.changes());
    assert_eq!(c.len(), 2);
    assert!(
        c[0].contains("/lb/b") && c[0].contains("already taken"),
        "{c:?}"
    );
    assert_eq!(c[1], "+n@http://h:1/");
    // an unrelated change does not repeat the warning
    e.put(b"/lb/c", br#"{"url": "http://h:3"}"#).unwrap();
    assert_eq!(ids(&e.changes()), ["+c@http://h:3/"]);
    // the winner leaves: the other key's member takes the route
    e.delete(b"/lb/a");
    assert_eq!(ids(&e.changes()), ["+n@http://h:2/"]);
}

#[test]
fn a_route_the_file_owns_is_never_taken_nor_removed() {
    let t = MemberId::new("t").unwrap();
    // an earlier source had announced t from etcd; now the file names t
    let announced = Announced::default();
    let old = MemberSpec::new(t.clone(), "http://h:1".parse().unwrap());
    announced.lock().unwrap().insert(t.clone(), old);
    let reserved = Arc::new(BTreeSet::from([t.clone()]));
    let mut e = Entries::new("/lb/", announced.clone()).reserving(reserved);
    let errors = e.replace([
        (&b"/lb/t"[..], &br#"{"url": "http://h:2"}"#[..]),
        (b"/lb/u", br#"{"url": "http://h:3"}"#),
    ]);
    assert!(errors.is_empty());
    let c = ids(&e.changes());
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c[0].contains("balancer's own file"), "{c:?}");
    assert_eq!(c[1], "+u@http://h:3/", "no remove of the file's t: {c:?}");
    assert!(!announced.lock().unwrap().contains_key(&t));
    // said again when the key is written again, not at other changes
    e.put(b"/lb/t", br#"{"url": "http://h:4"}"#).unwrap();
    assert_eq!(e.changes().len(), 1);
    e.put(b"/lb/u", br#"{"url": "http://h:5"}"#).unwrap();
    assert_eq!(ids(&e.changes()), ["+u@http://h:5/"]);
    assert!(!e.members().0.contains_key(&t));
}
