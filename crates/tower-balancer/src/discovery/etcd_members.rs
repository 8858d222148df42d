//! From etcd keys and their JSON values to member specs, and from one view of the prefix to
//! the next as registry changes.
//!
//! Kept apart from the client so the rules (a bad value keeps the key's last good one, the
//! first key in key order wins a route two keys claim, every instance derives the same set
//! from the same keys) are tested without an etcd.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use http::Uri;
use serde::Deserialize;
use tower::discover::Change;

use super::etcd::EtcdError;
use crate::registry::{AdminState, MemberId, MemberSpec, MAX_WEIGHT};

/// The largest value read as a member (a member's JSON is a few hundred bytes).
pub(crate) const MAX_VALUE_BYTES: usize = 16 * 1024;

/// One member's value, as an operator writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberValue {
    url: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default, alias = "loadfactor")]
    weight: Option<u32>,
    #[serde(default)]
    lbset: Option<u16>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    tls_name: Option<String>,
}

/// The member one key names: `value` is JSON such as
/// `{"url": "https://abc.com:9443", "route": "node1", "weight": 2, "lbset": 0, "status": "+H",
/// "tls_name": "abc.com"}`. Without `route`, the key's name after the prefix is the route.
pub(crate) fn parse_member(prefix: &str, key: &[u8], value: &[u8]) -> Result<MemberSpec, String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "the value is {} bytes, more than the {MAX_VALUE_BYTES} a member may take",
            value.len()
        ));
    }
    let v: MemberValue = serde_json::from_slice(value).map_err(|e| {
        format!("not a member's JSON ({e}); write {{\"url\": \"http://host:port\", \"route\": \"node1\"}}")
    })?;
    let route = match v.route {
        Some(r) => r,
        None => {
            let key = std::str::from_utf8(key).map_err(|_| "the key is not UTF-8".to_owned())?;
            key.strip_prefix(prefix).unwrap_or(key).to_owned()
        }
    };
    let id = MemberId::new(&route).map_err(|e| format!("route: {e}"))?;
    let url: Uri = v
        .url
        .parse()
        .map_err(|_| format!("url `{}` is not a URL", v.url))?;
    if let Some(problem) = MemberSpec::endpoint_problem(&url) {
        return Err(format!("url `{}` {problem}", v.url));
    }
    let weight = v.weight.unwrap_or(1);
    if !(1..=MAX_WEIGHT).contains(&weight) {
        return Err(format!("weight {weight} is outside 1..={MAX_WEIGHT}"));
    }
    let state = match v.status.as_deref() {
        None => AdminState::Active,
        Some(s) => AdminState::parse(s).ok_or_else(|| {
            format!("`{s}` is not a member status: use +D, +H, +N or active, disabled, standby, draining")
        })?,
    };
    let mut spec = MemberSpec::new(id, url)
        .weight(weight)
        .priority(v.lbset.unwrap_or(0))
        .state(state);
    if let Some(name) = v.tls_name {
        spec = spec.tls_name(name);
    }
    Ok(spec)
}

/// A key as logs show it: control characters escaped (a key cannot forge a log line or
/// drive a terminal), and at most 200 characters.
pub(crate) fn show_key(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    let mut shown: String = text.escape_debug().take(200).collect();
    if text.escape_debug().nth(200).is_some() {
        shown.push('…');
    }
    shown
}

/// The members under the prefix as last read, and what the registry was last told.
///
/// Changes are worked out for the routes the last events touched only, so a write costs
/// the same with three members or three thousand.
#[derive(Debug)]
pub(crate) struct Entries {
    prefix: String,
    /// Every key with a good value, in key order (the last good value when a newer one
    /// was refused).
    by_key: BTreeMap<Vec<u8>, MemberSpec>,
    /// The keys that name each route, in key order: the first one wins.
    claims: HashMap<MemberId, BTreeSet<Vec<u8>>>,
    /// Routes whose keys changed since the last [`changes`](Self::changes).
    dirty: BTreeSet<MemberId>,
    /// Keys whose route an earlier key took, as last said.
    shadowed: HashSet<Vec<u8>>,
    /// What the registry has been told, by member id; shared with the source that replaces
    /// this one (a reload with another prefix), so it removes what this one added.
    announced: Announced,
}

/// A key whose route an earlier key took, and what to say about it.
pub(crate) type Shadowed = (Vec<u8>, EtcdError);

/// What a source has told the registry, shared along a line of sources.
pub(crate) type Announced = Arc<Mutex<BTreeMap<MemberId, MemberSpec>>>;

fn shadowed_error(key: &[u8], id: &MemberId) -> EtcdError {
    EtcdError::Value {
        key: show_key(key),
        message: format!("route `{id}` is already taken by a key before this one; ignored"),
    }
}

impl Entries {
    pub(crate) fn new(prefix: &str, announced: Announced) -> Self {
        Self {
            prefix: prefix.to_owned(),
            by_key: BTreeMap::new(),
            claims: HashMap::new(),
            dirty: BTreeSet::new(),
            shadowed: HashSet::new(),
            announced,
        }
    }

    /// A key was written. A bad value is refused and the key keeps its last good value.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        match parse_member(&self.prefix, key, value) {
            Ok(spec) => {
                let id = spec.id().clone();
                if let Some(old) = self.by_key.insert(key.to_vec(), spec) {
                    self.unclaim(key, old.id());
                }
                self.claims
                    .entry(id.clone())
                    .or_default()
                    .insert(key.to_vec());
                self.dirty.insert(id);
                Ok(())
            }
            Err(message) => Err(EtcdError::Value {
                key: show_key(key),
                message,
            }),
        }
    }

    /// A key was deleted.
    pub(crate) fn delete(&mut self, key: &[u8]) {
        if let Some(old) = self.by_key.remove(key) {
            self.unclaim(key, old.id());
        }
    }

    fn unclaim(&mut self, key: &[u8], id: &MemberId) {
        if let Some(keys) = self.claims.get_mut(id) {
            keys.remove(key);
            if keys.is_empty() {
                self.claims.remove(id);
            }
        }
        self.shadowed.remove(key);
        self.dirty.insert(id.clone());
    }

    /// The whole prefix as a fresh read lists it: keys missing from it are gone; a bad
    /// value keeps the key's last good one.
    pub(crate) fn replace<'a>(
        &mut self,
        kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Vec<EtcdError> {
        let mut old = std::mem::take(&mut self.by_key);
        // every route read before, now, or announced by a source this one replaced is
        // looked at again
        self.dirty.extend(old.values().map(|s| s.id().clone()));
        self.dirty.extend(
            self.announced
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .cloned(),
        );
        self.claims.clear();
        let mut errors = Vec::new();
        for (key, value) in kvs {
            let kept = old.remove(key);
            if let Err(e) = self.put(key, value) {
                errors.push(e);
                if let Some(spec) = kept {
                    self.claims
                        .entry(spec.id().clone())
                        .or_default()
                        .insert(key.to_vec());
                    self.by_key.insert(key.to_vec(), spec);
                }
            }
        }
        self.shadowed.retain(|k| self.by_key.contains_key(k));
        errors
    }

    /// The members the keys name now, by id; the first key in key order wins a route that
    /// two keys claim.
    pub(crate) fn members(&self) -> (BTreeMap<MemberId, MemberSpec>, Vec<Shadowed>) {
        let mut members = BTreeMap::new();
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        for (key, spec) in &self.by_key {
            if seen.insert(spec.id().clone()) {
                members.insert(spec.id().clone(), spec.clone());
            } else {
                errors.push((key.clone(), shadowed_error(key, spec.id())));
            }
        }
        (members, errors)
    }

    /// The registry changes since the last call, for the routes touched since: the keys
    /// newly refused a route, then inserts for new or changed members, then removes for
    /// members gone. A prefix that names no member at all changes nothing (a mistaken
    /// `etcdctl del --prefix` must not empty every balancer), as an empty members file does
    /// not; the changes wait until a member is written again.
    pub(crate) fn changes(&mut self) -> Vec<Result<Change<MemberId, MemberSpec>, EtcdError>> {
        let mut announced = self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.by_key.is_empty() && !announced.is_empty() {
            return vec![Err(EtcdError::Empty {
                prefix: self.prefix.clone(),
            })];
        }
        let (mut errors, mut inserts, mut removes) = (Vec::new(), Vec::new(), Vec::new());
        for id in std::mem::take(&mut self.dirty) {
            let mut keys = self.claims.get(&id).into_iter().flatten();
            let winner = keys.next().and_then(|k| {
                self.shadowed.remove(k);
                self.by_key.get(k)
            });
            // each key that loses its route is said once, not again at every other change
            for key in keys {
                if self.shadowed.insert(key.clone()) {
                    errors.push(Err(shadowed_error(key, &id)));
                }
            }
            match winner {
                Some(spec) => {
                    if announced.get(&id) != Some(spec) {
                        announced.insert(id.clone(), spec.clone());
                        inserts.push(Ok(Change::Insert(id, spec.clone())));
                    }
                }
                None => {
                    if announced.remove(&id).is_some() {
                        removes.push(Ok(Change::Remove(id)));
                    }
                }
            }
        }
        errors.extend(inserts);
        errors.extend(removes);
        errors
    }
}

#[cfg(test)]
mod tests {
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
        let v = br#"{"url": "https://10.0.0.1:9443", "route": "node1", "weight": 3, "lbset": 1, "status": "+H", "tls_name": "abc.com"}"#;
        let s = parse_member("/lb/", b"/lb/x", v).unwrap();
        let expected = MemberSpec::new(
            MemberId::new("node1").unwrap(),
            "https://10.0.0.1:9443".parse().unwrap(),
        )
        .weight(3)
        .priority(1)
        .state(AdminState::Standby)
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
        let long = show_key(&[b'k'; 5000]);
        assert_eq!(long.chars().count(), 201);
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
}
