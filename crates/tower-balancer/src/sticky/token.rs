//! Opaque, signed route tokens for the balancer's own cookie.
//!
//! Why: balancers that put a member's address in the cookie (Envoy: base64 `ip:port`; nginx:
//! MD5 of `ip:port`; Traefik: unsalted SHA-256 of the URL) tell every client the inside of the
//! cluster and let it aim at any member. Our token is a keyed HMAC-SHA256 of the member id,
//! truncated to 144 bits and base64url-encoded: it reveals no id, address or port, the same
//! member always gets the same token (so many balancer instances with the same keys agree),
//! and a forged or altered token matches no member and is ignored.
//!
//! Keys are a list: the first signs new cookies, all of them are accepted, so a key can be
//! rotated by putting the new key first and keeping the old one until its cookies expire.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::registry::{Member, MemberId, Registry, Snapshot, WeakBuilder};

/// Bytes of HMAC output kept in a token: 18 bytes, 24 base64url characters.
const TOKEN_BYTES: usize = 18;
/// Domain separation, so a key shared with another use of HMAC cannot mint our tokens.
const CONTEXT: &[u8] = b"tower-balancer route v1\0";

/// The shortest signing key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// A signing key list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No key was given.
    #[error("at least one cookie signing key is needed")]
    Empty,
    /// A key is shorter than [`MIN_KEY_LEN`] bytes.
    #[error("cookie signing key {index} has {len} bytes; at least {MIN_KEY_LEN} are needed")]
    TooShort {
        /// Position of the key in the list.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The system random generator failed while making a per-process key.
    #[error("the system random generator failed")]
    Random,
}

/// The keys route tokens are signed with.
#[derive(Clone)]
pub struct RouteKeys {
    keys: Arc<[hmac::Key]>,
}

impl fmt::Debug for RouteKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteKeys")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl RouteKeys {
    /// Signs with the first key and accepts all of them.
    ///
    /// # Errors
    /// [`KeyError`] when the list is empty or a key is shorter than 32 bytes.
    pub fn new<K: AsRef<[u8]>>(keys: &[K]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        let keys = keys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                let k = k.as_ref();
                if k.len() < MIN_KEY_LEN {
                    Err(KeyError::TooShort {
                        index,
                        len: k.len(),
                    })
                } else {
                    Ok(hmac::Key::new(hmac::HMAC_SHA256, k))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys: keys.into() })
    }

    /// A random key for this process only: cookies stop matching when the process restarts,
    /// and other balancer instances do not accept them. Configure keys for a real cluster.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the system random generator fails.
    pub fn random() -> Result<Self, KeyError> {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| KeyError::Random)?;
        Self::new(&[k])
    }

    fn token_with(key: &hmac::Key, id: &MemberId) -> String {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(CONTEXT);
        ctx.update(id.as_str().as_bytes());
        let tag = ctx.sign();
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..TOKEN_BYTES])
    }

    /// The token new cookies carry for `id`.
    #[must_use]
    pub fn token(&self, id: &MemberId) -> String {
        Self::token_with(&self.keys[0], id)
    }
}

/// What the table keeps per member: the cookie value and both `Set-Cookie` headers.
#[derive(Clone)]
struct Entry {
    value: Arc<str>,
    /// `[without Secure, with Secure]`
    set_cookie: [HeaderValue; 2],
}

/// The routes of one snapshot's members, so a request decodes a cookie with one hash lookup
/// and a new session gets a ready-made `Set-Cookie` header. Built when the registry
/// publishes (a member table of the snapshot), never on a request.
struct Table {
    /// The codec that built it: a registry may carry tables of several sticky layers.
    owner: usize,
    /// Token → member, and whether an older key (not the first) signed it.
    by_token: HashMap<Box<str>, (MemberId, bool)>,
    by_member: HashMap<MemberId, Entry>,
}

/// Writes a `Set-Cookie` value from a cookie value and whether the request came over TLS.
type FormatSetCookie = dyn Fn(&str, bool) -> String + Send + Sync;

/// Encodes members into cookie values and `Set-Cookie` headers and decodes signed tokens.
/// Its table of every member's token is one of the registry's member tables, rebuilt when
/// the registry publishes; what was computed for members already known (HMACs, headers) is
/// reused from the last table.
pub(crate) struct RouteCodec {
    keys: Option<RouteKeys>,
    format: Box<FormatSetCookie>,
    /// The last table built, whose entries the next build reuses (touched at publish only).
    last: Mutex<Option<Arc<Table>>>,
}

impl RouteCodec {
    /// `keys: None` is plain mode (`.node1`); `format(value, secure)` writes the header.
    pub(crate) fn new(
        keys: Option<RouteKeys>,
        format: impl Fn(&str, bool) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            keys,
            format: Box::new(format),
            last: Mutex::new(None),
        }
    }

    /// Has `registry` build this codec's table whenever it publishes; the table goes when
    /// the codec does.
    pub(crate) fn attach(self: &Arc<Self>, registry: &Registry) {
        registry.attach_member_table(Arc::new(WeakBuilder {
            strategy: Arc::downgrade(self),
            build: |codec: &Self, members: &[Arc<Member>]| codec.build_table(members),
        }));
    }

    /// Whether cookies carry signed tokens.
    pub(crate) fn is_signed(&self) -> bool {
        self.keys.is_some()
    }

    fn owner(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    fn entry_for(&self, id: &MemberId) -> Option<Entry> {
        let value: Arc<str> = match &self.keys {
            Some(keys) => keys.token(id).into(),
            None => format!(".{id}").into(),
        };
        // member ids and checked attributes only: a header value can always be made
        let plain = HeaderValue::from_str(&(self.format)(&value, false)).ok()?;
        let secure = HeaderValue::from_str(&(self.format)(&value, true)).ok()?;
        Some(Entry {
            value,
            set_cookie: [plain, secure],
        })
    }

    fn build_table(&self, members: &[Arc<Member>]) -> Arc<Table> {
        let mut last = match self.last.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let known = last.as_ref().map(|t| &t.by_member);
        let extra_keys = self.keys.as_ref().map_or(&[][..], |k| &k.keys[1..]);
        let mut by_token = HashMap::with_capacity(members.len() * (1 + extra_keys.len()));
        let mut by_member = HashMap::with_capacity(members.len());
        for m in members {
            let id = m.id();
            let reused = known.and_then(|k| k.get(id)).cloned();
            let Some(entry) = reused.or_else(|| self.entry_for(id)) else {
                continue;
            };
            if self.keys.is_some() {
                for key in extra_keys {
                    by_token.insert(RouteKeys::token_with(key, id).into(), (id.clone(), true));
                }
                // last, so a key listed twice counts as the current one
                by_token.insert(Box::from(&*entry.value), (id.clone(), false));
            }
            by_member.insert(id.clone(), entry);
        }
        let table = Arc::new(Table {
            owner: self.owner(),
            by_token,
            by_member,
        });
        *last = Some(table.clone());
        table
    }

    /// This codec's table in `snapshot`; built on the spot for a snapshot of a registry the
    /// codec was never attached to (no sticky layer over it).
    fn with_table<T>(&self, snapshot: &Snapshot, f: impl FnOnce(&Table) -> T) -> T {
        let found = snapshot
            .member_tables()
            .iter()
            .filter_map(|t| t.downcast_ref::<Arc<Table>>())
            .find(|t| t.owner == self.owner());
        match found {
            Some(table) => f(table),
            None => f(&self.build_table(snapshot.members())),
        }
    }

    /// The member a signed token names, if it is a valid token of a registered member, and
    /// whether an older key signed it (so the cookie is worth signing again).
    pub(crate) fn decode(&self, token: &str, snapshot: &Snapshot) -> Option<(MemberId, bool)> {
        if self.keys.is_none() || token.len() != TOKEN_BYTES / 3 * 4 {
            return None;
        }
        self.with_table(snapshot, |t| t.by_token.get(token).cloned())
    }

    /// The `Set-Cookie` header naming `id`.
    pub(crate) fn set_cookie(
        &self,
        id: &MemberId,
        snapshot: &Snapshot,
        secure: bool,
    ) -> Option<HeaderValue> {
        let i = usize::from(secure);
        self.with_table(snapshot, |t| {
            t.by_member.get(id).map(|e| e.set_cookie[i].clone())
        })
        .or_else(|| self.entry_for(id).map(|e| e.set_cookie[i].clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::MemberSpec;

    #[test]
    fn the_table_is_built_when_the_registry_publishes_and_goes_with_the_codec() {
        let registry = Registry::new();
        let keys = RouteKeys::new(&[[7u8; 32]]).unwrap();
        let codec = Arc::new(RouteCodec::new(Some(keys.clone()), |v, _| format!("R={v}")));
        codec.attach(&registry);
        let id = MemberId::new("node1").unwrap();
        registry
            .insert(MemberSpec::new(id.clone(), "http://a".parse().unwrap()))
            .unwrap();
        let snapshot = registry.load();
        let tables = snapshot.member_tables();
        assert_eq!(tables.len(), 1);
        let table = tables[0].downcast_ref::<Arc<Table>>().unwrap();
        let token = keys.token(&id);
        // built before any request, and the one a request reads
        assert_eq!(
            table.by_token.get(token.as_str()),
            Some(&(id.clone(), false))
        );
        assert_eq!(codec.decode(&token, &snapshot), Some((id, false)));
        drop(snapshot);
        drop(codec);
        registry.rebuild();
        assert!(registry.load().member_tables().is_empty());
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(RouteKeys::new::<&[u8]>(&[]).unwrap_err(), KeyError::Empty);
        assert!(matches!(
            RouteKeys::new(&[[0u8; 31]]),
            Err(KeyError::TooShort { index: 0, len: 31 })
        ));
        assert!(RouteKeys::new(&[[0u8; 32]]).is_ok());
    }

    #[test]
    fn tokens_are_opaque_stable_and_keyed() {
        let a = RouteKeys::new(&[[1u8; 32]]).unwrap();
        let b = RouteKeys::new(&[[2u8; 32]]).unwrap();
        let id = MemberId::new("node1").unwrap();
        let t = a.token(&id);
        assert_eq!(t.len(), 24);
        assert!(!t.contains("node"));
        assert_eq!(t, a.token(&id));
        assert_ne!(t, b.token(&id));
        assert_ne!(t, a.token(&MemberId::new("node2").unwrap()));
        assert!(t
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
