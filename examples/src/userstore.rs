//! The central user store both nodes check logins against.
//!
//! In the recipe node2 reads node1's embedded LDAP, so the store dies with node1, a single
//! point of failure. Here it is a separate object shared by both nodes that outlives either
//! of them: stopping a node never stops logins on the other.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

const ITERATIONS: NonZeroU32 = match NonZeroU32::new(10_000) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

#[derive(Debug, Clone)]
struct Credential {
    salt: [u8; 16],
    hash: [u8; 32],
}

/// Users and their salted password hashes (PBKDF2-SHA256), shared by every node.
#[derive(Debug, Clone, Default)]
pub struct UserStore {
    users: Arc<RwLock<HashMap<String, Credential>>>,
}

/// The system random generator failed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomError;

impl UserStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The store WSO2 IS starts with: `admin` / `admin`.
    ///
    /// # Errors
    /// [`RandomError`] if no salt can be made.
    pub fn with_default_admin() -> Result<Self, RandomError> {
        let store = Self::new();
        store.add_user("admin", "admin")?;
        Ok(store)
    }

    /// Adds or replaces a user.
    ///
    /// # Errors
    /// [`RandomError`] if no salt can be made.
    pub fn add_user(&self, name: &str, password: &str) -> Result<(), RandomError> {
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| RandomError)?;
        let mut hash = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            ITERATIONS,
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        self.users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), Credential { salt, hash });
        Ok(())
    }

    /// Whether `name` exists and `password` is its password (compared in constant time).
    #[must_use]
    pub fn verify(&self, name: &str, password: &str) -> bool {
        let users = self
            .users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        users.get(name).is_some_and(|c| {
            pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA256,
                ITERATIONS,
                &c.salt,
                password.as_bytes(),
                &c.hash,
            )
            .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_passwords() {
        let store = UserStore::with_default_admin().unwrap();
        assert!(store.verify("admin", "admin"));
        assert!(!store.verify("admin", "Admin"));
        assert!(!store.verify("nobody", "admin"));
        let shared = store.clone();
        shared.add_user("alice", "pw").unwrap();
        assert!(store.verify("alice", "pw"));
    }
}
