//! Every member connection pool in the process, for closing their idle connections when
//! the process is out of file descriptors.
//!
//! Why process-wide: descriptors are the process's, but pools are not. Each worker of the
//! binary serves its own stack with its own pool (and a library user may build several
//! balancers). Under `ulimit -n 256` with two workers, one worker's burst left its member
//! connections idle in its pool; the other worker's connects then failed with `EMFILE` and
//! closed nothing, since its own pool was empty, and its accepts failed for seconds (a
//! hostile tester's round 11). So a connect that finds no descriptor closes an idle
//! connection of any pool, and so does an accept, one idle past a second (see
//! `serve::server`).

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// A pool whose idle connections can be closed.
pub(super) trait CloseIdle: Send + Sync {
    /// Closes up to `most` of the pool's idle HTTP/1.1 member connections idle for
    /// `idle_for` or longer, the longest idle first, and says how many.
    fn close_idle(&self, most: usize, idle_for: Duration) -> usize;
}

/// The live pools (a dropped one is forgotten at the next registration).
static POOLS: Mutex<Vec<Weak<dyn CloseIdle>>> = Mutex::new(Vec::new());

/// Adds `pool` to the pools closed when descriptors run out.
pub(super) fn register(pool: Weak<dyn CloseIdle>) {
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    // a reload builds new stacks and so new pools: the dropped ones go
    pools.retain(|p| p.strong_count() > 0);
    pools.push(pool);
}

/// Closes up to `most` idle HTTP/1.1 member connections idle for `idle_for` or longer, the
/// longest idle first within each pool, across every pool in the process, and says how
/// many: for when it is out of file descriptors, where a connection a request needs now
/// matters more than one kept for later. Connections of the balancer's own HTTP/1.1 path close here; hyper's close when
/// their tasks next run (a worker's are on its own thread).
pub(crate) fn close_idle_member_connections(most: usize, idle_for: Duration) -> usize {
    let live: Vec<Arc<dyn CloseIdle>> = POOLS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    // closed outside the registry's lock: a pool dropped here must not wait on it
    close_in(&live, most, idle_for)
}

/// Closes up to `most` idle connections of `pools`, in order, and says how many.
fn close_in(pools: &[Arc<dyn CloseIdle>], most: usize, idle_for: Duration) -> usize {
    let mut closed = 0;
    for pool in pools {
        if closed == most {
            break;
        }
        closed += pool.close_idle(most - closed, idle_for);
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counted(AtomicUsize);

    impl CloseIdle for Counted {
        fn close_idle(&self, most: usize, _: Duration) -> usize {
            let had = self.0.load(Ordering::Relaxed);
            self.0.store(had - had.min(most), Ordering::Relaxed);
            had.min(most)
        }
    }

    fn counted(n: usize) -> Arc<dyn CloseIdle> {
        Arc::new(Counted(AtomicUsize::new(n)))
    }

    #[test]
    fn every_pool_is_closed_up_to_the_most_asked_and_the_rest_stay() {
        let (a, b) = (counted(3), counted(4));
        assert_eq!(close_in(&[a.clone(), b.clone()], 10, Duration::ZERO), 7);
        assert_eq!(
            a.close_idle(1, Duration::ZERO) + b.close_idle(1, Duration::ZERO),
            0,
            "both were closed"
        );
        let (c, d) = (counted(2), counted(5));
        assert_eq!(close_in(&[c.clone(), d.clone()], 4, Duration::ZERO), 4);
        assert_eq!(c.close_idle(usize::MAX, Duration::ZERO), 0);
        assert_eq!(
            d.close_idle(usize::MAX, Duration::ZERO),
            3,
            "past the relief, the rest stay"
        );
    }

    #[test]
    fn a_live_pool_stays_registered_and_a_dropped_one_is_forgotten() {
        let (kept, gone) = (counted(1), counted(100));
        register(Arc::downgrade(&kept));
        let gone_weak = Arc::downgrade(&gone);
        // (its weak reference kept here keeps its address from being taken by another)
        register(gone_weak.clone());
        drop(gone);
        register(Arc::downgrade(&counted(0)));
        // (not closed through the registry here: that would close other tests' pools)
        let pools = POOLS.lock().unwrap();
        assert!(!pools.iter().any(|p| p.ptr_eq(&gone_weak)), "forgotten");
        assert!(
            pools.iter().any(|p| p.ptr_eq(&Arc::downgrade(&kept))),
            "kept"
        );
    }
}
