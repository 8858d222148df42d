//! Where consistent-hash strategies get a request's key.
//!
//! Why pluggable: the right key depends on the application (a user header, a tenant in the
//! path, a session cookie). A one-method trait, with closures accepted, covers them all.

use http::{HeaderMap, HeaderName, Method, Uri};

use crate::strategy::hash_key;

/// Computes a request's hash key. Return `None` for requests without one (they are spread at
/// random by the hashing strategies).
pub trait HashKey: Send + Sync + 'static {
    /// The key of a request, from its head.
    fn key(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<u64>;
}

impl<F> HashKey for F
where
    F: Fn(&Method, &Uri, &HeaderMap) -> Option<u64> + Send + Sync + 'static,
{
    fn key(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<u64> {
        self(method, uri, headers)
    }
}

/// Hashes the value of one header (the first, if repeated).
#[derive(Debug, Clone)]
pub struct HeaderKey(HeaderName);

impl HeaderKey {
    /// Keys requests by `name`.
    #[must_use]
    pub const fn new(name: HeaderName) -> Self {
        Self(name)
    }
}

impl HashKey for HeaderKey {
    fn key(&self, _: &Method, _: &Uri, headers: &HeaderMap) -> Option<u64> {
        headers.get(&self.0).map(|v| hash_key(v.as_bytes()))
    }
}

/// Hashes the request path (without the query), like nginx `hash $uri consistent`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathKey;

impl HashKey for PathKey {
    fn key(&self, _: &Method, uri: &Uri, _: &HeaderMap) -> Option<u64> {
        Some(hash_key(uri.path().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_key_hashes_the_value_and_skips_requests_without_it() {
        let k = HeaderKey::new(HeaderName::from_static("x-user"));
        let mut h = HeaderMap::new();
        assert_eq!(k.key(&Method::GET, &Uri::from_static("/"), &h), None);
        h.insert("x-user", "42".parse().unwrap());
        assert_eq!(
            k.key(&Method::GET, &Uri::from_static("/"), &h),
            Some(hash_key(b"42"))
        );
    }

    #[test]
    fn path_key_ignores_the_query() {
        let h = HeaderMap::new();
        assert_eq!(
            PathKey.key(&Method::GET, &Uri::from_static("/a?x=1"), &h),
            PathKey.key(&Method::GET, &Uri::from_static("/a?x=2"), &h)
        );
    }
}
