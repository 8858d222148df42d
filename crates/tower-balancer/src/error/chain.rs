//! Walking an error's `source()` chain: the one place that does it.

use std::error::Error;

/// `err`, then its source, then that one's source, and so on.
pub fn sources<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
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
