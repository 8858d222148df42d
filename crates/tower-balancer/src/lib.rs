//! An embeddable HTTP load balancer, as tower layers.
//!
//! tower-balancer does the job Apache's `mod_proxy_balancer` does in front of a cluster —
//! pick a member, keep sessions on their member, fail over when a member dies, probe health —
//! as [`tower`] layers you compose into your own hyper or axum server.
//!
//! A request flows through the stack from the outside in:
//!
//! ```text
//! client ─▶ Sticky ─▶ Failover ─▶ Balance ─▶ Forward (any per-member tower Service)
//! ```
//!
//! The parts: the [`registry`] (members, admin state, health, live stats, lock-free
//! snapshots), [`discovery`] (DNS, any stream of changes), the [`strategy`] trait with seven
//! strategies, and the layers [`sticky`], [`failover`] and [`balance`], with [`health`]
//! (active probes, passive ejection, slow start) beside them. Errors from any layer map to a
//! client status with [`error::error_status`]. HTTP forwarding, serving, the
//! balancer-manager and the configuration file are in the `tower-balancer-proxy` crate.

pub mod balance;
pub mod client;
pub mod discovery;
pub mod error;
pub mod failover;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod outcome;
pub mod registry;
pub mod sticky;
pub mod strategy;
pub mod upstream;

/// The boxed error type the layers return, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
