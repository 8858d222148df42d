//! Slow start: a member that joins or comes back gets its share of traffic gradually.
//!
//! Why: a member that just started has cold caches, JIT and connection pools; a member that
//! just recovered may fall over again under a full share at once (a thundering herd). As in
//! Envoy, its effective weight ramps over a window:
//! `weight × max(min_weight, (elapsed / window) ^ (1 / aggression))`. Round robin, weighted
//! random, least outstanding and P2C use the effective weight; consistent hashing keeps the
//! configured weight so keys do not move twice.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;
use tracing::Instrument;

use tokio::time::Instant;

use crate::registry::{Health, MemberId, Registry};

/// Slow-start settings.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use tower_balancer::health::SlowStart;
/// use tower_balancer::registry::Registry;
///
/// let registry = Registry::new();
/// // members that join or recover reach full weight over 60 s (HAProxy `slowstart 60s`)
/// let _slow_start = SlowStart::new(Duration::from_secs(60)).spawn(registry.clone());
/// assert!((SlowStart::new(Duration::from_secs(60)).factor(Duration::from_secs(30)) - 0.5).abs() < 1e-9);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    window: Duration,
    aggression: f64,
    min_weight: f64,
}

impl SlowStart {
    /// Ramps over `window`, linearly (aggression 1.0), from at least 10% of the weight.
    #[must_use]
    pub const fn new(window: Duration) -> Self {
        Self {
            window,
            aggression: 1.0,
            min_weight: 0.1,
        }
    }

    /// Envoy's aggression: above 1.0 the ramp is steeper at the start, below 1.0 gentler.
    #[must_use]
    pub fn aggression(mut self, aggression: f64) -> Self {
        self.aggression = if aggression.is_finite() && aggression > 0.0 {
            aggression
        } else {
            1.0
        };
        self
    }

    /// The least fraction of the weight a ramping member gets (0.0–1.0).
    #[must_use]
    pub fn min_weight(mut self, fraction: f64) -> Self {
        self.min_weight = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.1
        };
        self
    }

    /// The fraction of its weight a member gets `elapsed` after it started ramping.
    #[must_use]
    pub fn factor(&self, elapsed: Duration) -> f64 {
        if self.window.is_zero() {
            return 1.0;
        }
        let t = (elapsed.as_secs_f64() / self.window.as_secs_f64()).clamp(0.0, 1.0);
        t.powf(1.0 / self.aggression).max(self.min_weight)
    }

    fn tick(&self) -> Duration {
        (self.window / 20).max(Duration::from_millis(100))
    }

    /// Spawns [`run`](Self::run) on the current tokio runtime; stops when the handle drops.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    #[must_use]
    pub fn spawn(self, registry: Registry) -> SlowStartTask {
        SlowStartTask(tokio::spawn(self.run(registry).in_current_span()))
    }

    /// Watches `registry`: members added after this starts, and members that become healthy
    /// again, ramp up over the window. Runs until dropped or until the registry is dropped.
    // spelled out so the signature promises `Send + 'static` to whoever spawns it
    #[allow(clippy::manual_async_fn)]
    pub fn run(self, registry: Registry) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let mut changes = registry.subscribe();
            changes.mark_seen();
            // members present at the start serve at full weight
            let mut known: HashMap<u64, Health> = registry
                .load()
                .members()
                .iter()
                .map(|m| (m.serial(), m.health()))
                .collect();
            let mut ramping: HashMap<u64, (MemberId, Instant)> = HashMap::new();
            loop {
                let now = Instant::now();
                let snapshot = registry.snapshot();
                for m in snapshot.members() {
                    let was = known.insert(m.serial(), m.health());
                    let joined = was.is_none();
                    let came_back = was == Some(Health::Unhealthy) && m.health() == Health::Healthy;
                    if joined || came_back {
                        tracing::info!(member = %m.id(), "slow start");
                        ramping.insert(m.serial(), (m.id().clone(), now));
                    }
                }
                known.retain(|serial, _| snapshot.members().iter().any(|m| m.serial() == *serial));
                ramping.retain(|serial, _| known.contains_key(serial));
                let mut ramps = Vec::with_capacity(ramping.len());
                ramping.retain(|_, (id, start)| {
                    let f = self.factor(now.saturating_duration_since(*start));
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    ramps.push((id.clone(), (f * 1000.0).round() as u16));
                    f < 1.0
                });
                if !ramps.is_empty() {
                    registry.set_ramps(&ramps);
                    changes.mark_seen();
                }
                let waiting = !ramping.is_empty();
                let mut changed = pin!(changes.changed());
                let mut tick = pin!(tokio::time::sleep(self.tick()));
                let closed = std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = changed.as_mut().poll(cx) {
                        return Poll::Ready(r.is_err());
                    }
                    if waiting && tick.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                    Poll::Pending
                })
                .await;
                if closed {
                    return;
                }
            }
        }
    }
}

/// The spawned slow-start watcher; dropping it stops it (ramps in progress stay where they
/// are until the member's next change).
#[derive(Debug)]
pub struct SlowStartTask(tokio::task::JoinHandle<()>);

impl Drop for SlowStartTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_follows_envoys_formula() {
        let s = SlowStart::new(Duration::from_secs(100));
        assert!((s.factor(Duration::ZERO) - 0.1).abs() < 1e-9);
        assert!((s.factor(Duration::from_secs(50)) - 0.5).abs() < 1e-9);
        assert!((s.factor(Duration::from_secs(200)) - 1.0).abs() < 1e-9);
        let steep = s.aggression(2.0);
        assert!((steep.factor(Duration::from_secs(25)) - 0.5).abs() < 1e-9);
        assert!((SlowStart::new(Duration::ZERO).factor(Duration::ZERO) - 1.0).abs() < 1e-9);
    }
}
