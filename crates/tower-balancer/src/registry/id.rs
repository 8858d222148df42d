//! Member ids: the names routes, cookies, URLs and logs carry.
//!
//! Why a checked type: an id is written into cookies, URLs, status pages and log lines, so
//! it is validated once, when made, and can never carry a separator, CR or LF after that.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use super::error::RegistryError;

/// The longest member id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// A member's id, which doubles as its route name (`node1`), as Apache's `route=` does.
///
/// Ids are 1 to [`MAX_ID_LEN`] bytes of `A-Z a-z 0-9 . _ ~ -`, so an id can be written into a
/// cookie, a URL or a log line without escaping, and can never carry CR, LF or a separator.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(Arc<str>);

impl MemberId {
    /// Validates `id` and makes a member id of it.
    ///
    /// # Errors
    /// [`RegistryError::InvalidId`] when `id` is empty, longer than [`MAX_ID_LEN`] or holds a
    /// byte outside `A-Z a-z 0-9 . _ ~ -`.
    pub fn new(id: impl AsRef<str>) -> Result<Self, RegistryError> {
        let id = id.as_ref();
        if Self::is_valid(id) {
            Ok(Self(Arc::from(id)))
        } else {
            Err(RegistryError::InvalidId(escape_for_message(id)))
        }
    }

    /// Whether `id` would be accepted by [`MemberId::new`].
    #[must_use]
    pub fn is_valid(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
    }

    /// An id from text the caller built only from valid characters, within the length.
    #[cfg_attr(not(feature = "dns"), allow(dead_code))]
    pub(crate) fn from_checked(id: String) -> Self {
        debug_assert!(Self::is_valid(&id), "{id}");
        Self(Arc::from(id))
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keeps error messages printable and short whatever the input was.
fn escape_for_message(id: &str) -> String {
    let mut out: String = id
        .chars()
        .take(MAX_ID_LEN)
        .flat_map(char::escape_default)
        .collect();
    if id.chars().count() > MAX_ID_LEN {
        out.push_str("...");
    }
    out
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MemberId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for MemberId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for MemberId {
    type Error = RegistryError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_route_characters_only() {
        assert!(MemberId::new("node1").is_ok());
        assert!(MemberId::new("a.b_c~d-e").is_ok());
        for bad in [
            "",
            "node 1",
            "node1\r\n",
            "n;1",
            "n=1",
            "nöde",
            "a\0b",
            "a,b",
            "\"q\"",
        ] {
            assert!(
                matches!(MemberId::new(bad), Err(RegistryError::InvalidId(_))),
                "{bad:?} accepted"
            );
        }
        assert!(MemberId::new("x".repeat(MAX_ID_LEN)).is_ok());
        assert!(MemberId::new("x".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn invalid_id_message_is_escaped_and_bounded() {
        let err = MemberId::new(format!("a\r\n{}", "x".repeat(5000))).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\r') && !msg.contains('\n'));
        assert!(msg.len() < 300, "{}", msg.len());
    }
}
