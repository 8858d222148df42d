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

use super::etcd_settings::EtcdError;
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
    #[serde(default)]
    max: Option<u32>,
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
        .state(state)
        .max_in_flight(v.max.unwrap_or(0));
    if let Some(name) = v.tls_name {
        spec = spec.tls_name(name);
    }
    Ok(spec)
}

/// A key (or a message quoting a value) as logs show it: control characters escaped (a key cannot forge a log line or
/// drive a terminal), and at most 200 characters.
pub(crate) fn show_key(key: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(key);
    let mut shown = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == MAX {
            shown.push('…');
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
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
    /// Routes another source owns (the balancer file's own members): never taken from etcd.
    reserved: Arc<BTreeSet<MemberId>>,
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

fn reserved_error(key: &[u8], id: &MemberId) -> EtcdError {
    EtcdError::Value {
        key: show_key(key),
        message: format!(
            "route `{id}` is a member of the balancer's own file, which stands; ignored"
        ),
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
            reserved: Arc::default(),
        }
    }

    /// Never takes these routes from etcd: another source owns them.
    #[must_use]
    pub(crate) fn reserving(mut self, reserved: Arc<BTreeSet<MemberId>>) -> Self {
        self.reserved = reserved;
        self
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
                // the message quotes the value: escaped too, so a value cannot forge a line
                message: show_key(message.as_bytes()),
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
            if self.reserved.contains(spec.id()) {
                errors.push((key.clone(), reserved_error(key, spec.id())));
            } else if seen.insert(spec.id().clone()) {
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
            if self.reserved.contains(&id) {
                // the file's member of that name stands; this source forgets it ever had
                // one, so it never removes the file's
                announced.remove(&id);
                for key in self.claims.get(&id).into_iter().flatten() {
                    if self.shadowed.insert(key.clone()) {
                        errors.push(Err(reserved_error(key, &id)));
                    }
                }
                continue;
            }
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
#[path = "etcd_members_tests.rs"]
mod tests;
