//! Walking an error's `source()` chain: the one place that does it.

use std::error::Error;

/// `err`, then its source, then that one's source, and so on.
pub fn sources<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// An error with its causes, for logs: `connect failed: connection refused`. A cause whose
/// words its effect already says (`#[error("… {0}")]`) is not said twice.
///
/// ```
/// use tower_balancer::error::DisplayChain;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("member node1 failed")]
/// struct Outer(#[source] std::io::Error);
///
/// let e = Outer(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"));
/// assert_eq!(DisplayChain(&e).to_string(), "member node1 failed: connection refused");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DisplayChain<'a>(pub &'a (dyn Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = String::new();
        for (i, e) in sources(self.0).enumerate() {
            let text = e.to_string();
            if i > 0 && said.contains(&text) {
                continue;
            }
            if i > 0 {
                f.write_str(": ")?;
            }
            f.write_str(&text)?;
            said = text;
        }
        Ok(())
    }
}

/// The first error of type `T` in `err`'s chain of sources, `err` included.
///
/// ```
/// use tower_balancer::balance::BalanceError;
/// use tower_balancer::error::find_in_chain;
/// use tower_balancer::BoxError;
///
/// let e: BoxError = Box::new(BalanceError::NoEligibleMember);
/// assert!(find_in_chain::<BalanceError>(&*e).is_some());
/// assert!(find_in_chain::<std::io::Error>(&*e).is_none());
/// ```
#[must_use]
pub fn find_in_chain<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    sources(err).find_map(|e| e.downcast_ref::<T>())
}
