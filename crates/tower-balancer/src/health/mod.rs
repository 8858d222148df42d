//! Health: finding out that a member is down, and taking it back safely.
//!
//! Why two detectors: active probes find a dead member even when no request goes to it, and
//! tell when it is back; passive outlier detection reacts to the failures real requests see,
//! within a handful of requests. Each writes its own [`HealthSource`](crate::registry::HealthSource)
//! in the registry, so neither undoes the other, and the request path reads health from the
//! snapshot with no lock.
//!
//! - [`HealthProbe`] probes every member that is not disabled (members added later too) with a
//!   probe that is a tower `Service`: [`HttpProbe`] over your own HTTP client, or
//!   [`TcpProbe`]. HAProxy's defaults: every 2 s (1 s while a member changes state), 1 s
//!   timeout, rise 2, fall 3. A fail header takes a member down at once; a drain status
//!   (HAProxy `disable-on-404`) sets it to draining. Changes go to the registry, to
//!   `tracing`, and to [`HealthProbe::subscribe`]rs.
//! - [`OutlierDetection`] is an [`OutcomeObserver`](crate::outcome::OutcomeObserver) for the
//!   balance layer: Envoy's outlier ejection (5 failures in a row; 30 s × n, at most 300 s;
//!   at most 10% ejected but always one; back on probation), and opt-in, Envoy's failure
//!   percentage ([`FailurePercentage`]).
//! - [`SlowStart`] ramps members that join or recover (Envoy's formula).
//! - Panic mode lives in the registry:
//!   [`Registry::set_panic_threshold`](crate::registry::Registry::set_panic_threshold).
//!
//! | Apache / HAProxy / Envoy | here |
//! |---|---|
//! | `hcmethod`, `hcuri`, `hcexpr` | [`HttpProbe::method`], [`HttpProbe::path`], [`HttpProbe::expect_status`], [`HttpProbe::body_contains`] |
//! | `hcinterval` / `inter`, `fastinter`, `timeout check` | [`ProbeSettings::interval`], [`ProbeSettings::fast_interval`], [`ProbeSettings::timeout`] |
//! | `hcpasses` / `rise`, `hcfails` / `fall` | [`ProbeSettings::rise`], [`ProbeSettings::fall`] |
//! | `disable-on-404` | [`HttpProbe::drain_on`] |
//! | `x-envoy-immediate-health-check-fail` | [`HttpProbe::fail_header`] |
//! | `observe layer7`, outlier detection | [`OutlierDetection`] |
//! | `slowstart`, `slow_start_config` | [`SlowStart`] |
//! | panic threshold; Apache `forcerecovery` | `Registry::set_panic_threshold` (fails open below 50% healthy) |

mod failure_rate;
mod outlier;

pub use failure_rate::FailurePercentage;
pub use outlier::{OutlierConfig, OutlierDetection, ReadmissionTask};
mod failure;
mod probe;
pub use failure::ProbeFailure;
pub use probe::{HttpProbe, ProbeResult, TcpProbe, MAX_PROBE_BODY};
mod checker;
mod settings;

pub use checker::{HealthChange, HealthEvent, HealthProbe, HealthProbeTask, ProbeSettings};
mod slow_start;

pub use slow_start::{SlowStart, SlowStartTask};
