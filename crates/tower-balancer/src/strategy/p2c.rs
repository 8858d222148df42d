//! Power of two choices over peak-EWMA latency (tower's `p2c` + `PeakEwma`, linkerd, Envoy
//! `LEAST_REQUEST`).
//!
//! Why: scanning every member for the least loaded costs O(n) and herds every balancer
//! instance onto the same member; comparing two members chosen at random costs O(1), and is
//! provably almost as good ("the power of two choices"). The cost compared is latency × load,
//! so a member that slows down sheds traffic before it fails.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::pick::{first_available, two_below, PickContext, Strategy};
use crate::registry::stats_decay_factor as decay_factor;
use crate::registry::Member;

/// Power of two random choices; the member with the lower
/// `peak-EWMA latency × (in flight + 1) / weight` wins. A member with no latency sample yet
/// counts as `default_rtt`.
#[derive(Debug, Clone, Copy)]
pub struct PowerOfTwo {
    default_rtt_ns: f64,
}

impl Default for PowerOfTwo {
    fn default() -> Self {
        Self::new()
    }
}

impl PowerOfTwo {
    /// P2C with a default RTT of 1 ms for members without a sample.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            default_rtt_ns: 1_000_000.0,
        }
    }

    /// Sets the latency assumed for a member before its first response.
    #[must_use]
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt_ns = rtt.as_secs_f64() * 1e9;
        self
    }

    /// Requests in flight, plus this one, and the weight they are divided by.
    #[allow(clippy::cast_precision_loss)]
    fn load(m: &Member) -> (f64, f64) {
        (
            m.stats().in_flight() as f64 + 1.0,
            f64::from(m.effective_weight()),
        )
    }

    /// Whether `b` costs less than `a`, where cost is latency × (in flight + 1) / weight.
    /// Compared by cross-multiplying, without dividing.
    #[allow(clippy::cast_precision_loss)]
    fn prefers_b(&self, a: &Member, b: &Member) -> bool {
        let ((la, wa), (lb, wb)) = (Self::load(a), Self::load(b));
        match (a.stats().latency_sample(), b.stats().latency_sample()) {
            // Both estimates decay toward zero at one rate, so their ratio needs only the
            // difference of their stamps, not the clock.
            (Some((va, ta)), Some((vb, tb))) => {
                let va = if ta == tb {
                    va
                } else {
                    va * decay_factor(tb as f64 - ta as f64)
                };
                vb * lb * wa < va * la * wb
            }
            // neither answered yet: both cost the default RTT
            (None, None) => lb * wa < la * wb,
            _ => {
                let now = Instant::now();
                let rtt = |m: &Member| {
                    m.stats()
                        .latency_estimate_ns(now)
                        .unwrap_or(self.default_rtt_ns)
                };
                rtt(b) * lb * wa < rtt(a) * la * wb
            }
        }
    }
}

impl Strategy for PowerOfTwo {
    type Table = ();

    fn name(&self) -> &'static str {
        "p2c-peak-ewma"
    }

    fn build(&self, _members: &[Arc<Member>]) {}

    fn pick(&self, _table: &(), members: &[Arc<Member>], cx: &PickContext<'_>) -> Option<usize> {
        let n = members.len();
        match n {
            0 => return None,
            1 => return first_available(members, 0, cx),
            _ => {}
        }
        let (a, b) = two_below(n, n as u64 - 1);
        #[allow(clippy::cast_possible_truncation)]
        let mut b = b as usize;
        if b >= a {
            b += 1;
        }
        let (a, b) = if cx.excludes_nothing() {
            (a, b)
        } else {
            // Retries: take the next untried members after each random start.
            let a = first_available(members, a, cx)?;
            match first_available(members, b, cx).filter(|&b| b != a) {
                Some(b) => (a, b),
                None => match first_available(members, a + 1, cx) {
                    Some(b) if b != a => (a, b),
                    _ => return Some(a),
                },
            }
        };
        if self.prefers_b(&members[a], &members[b]) {
            Some(b)
        } else {
            Some(a)
        }
    }
}
