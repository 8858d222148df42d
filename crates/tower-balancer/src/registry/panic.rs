//! When panic mode is said to operators: logged, counted and shown in metrics.
//!
//! Why apart from the snapshot's own flag: the snapshot routes by health as it stands, and a
//! health checker whose members start down has every member down for the few milliseconds
//! before its first probes answer; the snapshot fails open over them then, as it should, but
//! a WARN and a count at every start (and at every reload that turns checks on) would teach
//! operators to ignore the line. Here a member down only until its first probe counts as
//! healthy; once a probe has failed it, it counts as down.

use super::handle::Writer;
use super::{AdminState, Health, HealthSource, Member};

/// Whether the registry is in panic mode as operators are told: fewer members judged healthy
/// than the panic threshold, of those that take new requests. With the healthy count (members
/// healthy now) and that of the candidates.
pub(super) fn judged(writer: &Writer) -> (bool, usize, usize) {
    let candidates: Vec<&Member> = writer
        .members
        .values()
        .map(|m| &**m)
        .filter(|m| matches!(m.state(), AdminState::Active | AdminState::Standby))
        .collect();
    let healthy = candidates
        .iter()
        .filter(|m| m.health() == Health::Healthy)
        .count();
    let unprobed = candidates.iter().filter(|m| awaits_first_probe(m)).count();
    let n = candidates.len();
    #[allow(clippy::cast_precision_loss)]
    let panic = n > 0 && ((healthy + unprobed) as f64) < writer.panic_threshold * n as f64;
    (panic, healthy, n)
}

/// Down by the health checker alone, which has not had its first probe's result yet.
fn awaits_first_probe(m: &Member) -> bool {
    m.health() == Health::Unhealthy
        && m.is_down_by(HealthSource::Probe)
        && !m.is_down_by(HealthSource::Operator)
        && !m.is_down_by(HealthSource::Outlier)
        && !m.probe_memo().probed
}
