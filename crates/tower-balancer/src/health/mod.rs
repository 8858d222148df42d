//! Health: finding out that a member is down, and taking it back safely.
//!
//! Why two detectors: active probes find a dead member even when no request goes to it, and
//! tell when it is back; passive outlier detection reacts to the failures real requests see,
//! within a handful of requests. Each writes its own [`HealthSource`](crate::registry::HealthSource)
//! in the registry, so neither undoes the other, and the request path reads health from the
//! snapshot with no lock.

mod outlier;

pub use outlier::{OutlierConfig, OutlierDetection, ReadmissionTask};
mod probe;
pub use probe::{HttpProbe, ProbeResult, TcpProbe, MAX_PROBE_BODY};
mod checker;

pub use checker::{HealthChange, HealthEvent, HealthProbe, HealthProbeTask, ProbeSettings};
mod slow_start;

pub use slow_start::{SlowStart, SlowStartTask};
