//! The process out of file descriptors: how a failure says so, and how often it happened.
//!
//! Why a module of its own: running out of descriptors is the balancer's own shortage,
//! never a member's fault, whether a request's connect, a health probe or an accept met
//! it; each must recognise it the same way, and an operator must see it in the metrics.
//! A hostile test (round 12) held a process at its limit for 35 s: a dead member's probes
//! could not be made, so it stayed healthy, and nothing exported said why.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether an error, or one in its chain of sources, is the process (`EMFILE`) or the
/// system (`ENFILE`) out of file descriptors.
#[must_use]
pub fn out_of_descriptors(err: &(dyn StdError + 'static)) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    let mut cause = Some(err);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(ENFILE | EMFILE)) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// What found the process out of descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shortage {
    /// An accept of a client connection.
    Accept,
    /// A connect to a member for a request.
    MemberConnect,
    /// A health probe, which then counted neither for nor against its member.
    Probe,
    /// A configuration reload (its file, a file it names, a new access log), which then
    /// waited and was tried again.
    Reload,
}

impl Shortage {
    /// Every kind, in the order [`shortages`] gives them.
    pub const ALL: [Self; 4] = [Self::Accept, Self::MemberConnect, Self::Probe, Self::Reload];

    /// Its name as a metric label: `accept`, `member_connect`, `probe`, `reload`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::MemberConnect => "member_connect",
            Self::Probe => "probe",
            Self::Reload => "reload",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::Accept => 0,
            Self::MemberConnect => 1,
            Self::Probe => 2,
            Self::Reload => 3,
        }
    }
}

/// The process's counts, one a kind: descriptors are the process's, whatever balancer or
/// worker met the shortage.
static COUNTS: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

/// Counts one shortage met by `at`.
pub fn count(at: Shortage) {
    COUNTS[at.index()].fetch_add(1, Ordering::Relaxed);
}

/// How many shortages each kind met since the process started.
#[must_use]
pub fn shortages() -> [(Shortage, u64); 4] {
    Shortage::ALL.map(|at| (at, COUNTS[at.index()].load(Ordering::Relaxed)))
}

/// Whether the process is out of descriptors now: a descriptor opened (`/dev/null`) and
/// closed at once tells. For a failure whose error no longer carries its cause (a
/// configuration error's text): a reload refused while this holds is worth trying again
/// once a descriptor is free.
#[must_use]
pub fn short_now() -> bool {
    std::fs::File::open("/dev/null").is_err_and(|e| out_of_descriptors(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connector's error around an `io::Error`, as hyper-util's `ConnectError` is.
    #[derive(Debug, thiserror::Error)]
    #[error("tcp connect error")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn out_of_descriptors_is_found_through_wrappers_and_a_refusal_is_not_it() {
        for errno in [23, 24] {
            assert!(out_of_descriptors(&Wrapped(
                std::io::Error::from_raw_os_error(errno)
            )));
            assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(
                errno
            )));
        }
        let refused = Wrapped(std::io::ErrorKind::ConnectionRefused.into());
        assert!(!out_of_descriptors(&refused));
    }

    #[test]
    fn each_kind_is_counted_apart() {
        let before = shortages();
        count(Shortage::Probe);
        count(Shortage::Probe);
        let after = shortages();
        // other tests may count too, never down
        assert!(after[2].1 >= before[2].1 + 2);
        assert_eq!(
            after.map(|(at, _)| at.name()),
            ["accept", "member_connect", "probe", "reload"]
        );
    }
}
