//! Panic mode in metrics: whether each balancer routes to every member now, and how often it
//! went into that mode.
//!
//! Why: in panic mode (fewer members healthy than the panic threshold) requests go to members
//! the probes call down, so an operator's alert on it says "the checks are failing most of the
//! cluster" before clients' errors do; the manager page shows the mode, but nothing scraped it.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tower_balancer::registry::Registry;

use super::queue::balancer_label;
use super::{counter, gauge};

/// `lb_panic_mode` (1 while in panic mode) and `lb_panic_mode_entered_total`, a balancer each.
pub(super) fn encode(
    encoder: &mut DescriptorEncoder<'_>,
    registries: &[(String, Registry)],
) -> fmt::Result {
    let mut e = encoder.encode_descriptor(
        "lb_panic_mode",
        "1 while too few members are healthy and requests go to every member, healthy or not.",
        None,
        MetricType::Gauge,
    )?;
    for (name, r) in registries {
        // as the WARN says it: not for members only awaiting their first probe's result
        let panic = r.load_stats().in_panic();
        gauge(&mut e, &balancer_label(name), i64::from(panic))?;
    }
    let mut e = encoder.encode_descriptor(
        "lb_panic_mode_entered",
        "Times the balancer went into panic mode.",
        None,
        MetricType::Counter,
    )?;
    for (name, r) in registries {
        counter(&mut e, &balancer_label(name), r.load_stats().panics())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tower_balancer::registry::{Health, HealthSource, MemberId, MemberSpec, Registry};

    use crate::metrics::Metrics;

    #[test]
    fn panic_mode_reads_1_while_it_lasts_and_each_entry_is_counted() {
        let r = Registry::new();
        for (id, port) in [("m0", 9001), ("m1", 9002)] {
            let url = format!("http://127.0.0.1:{port}").parse().unwrap();
            r.insert(MemberSpec::new(MemberId::new(id).unwrap(), url))
                .unwrap();
        }
        let metrics = Metrics::balancers(vec![("b".into(), r.clone())]);
        let reads = |mode: u8, entered: u8| {
            let text = metrics.render();
            for line in [
                format!("lb_panic_mode{{balancer=\"b\"}} {mode}"),
                format!("lb_panic_mode_entered_total{{balancer=\"b\"}} {entered}"),
            ] {
                assert!(text.contains(&line), "{line} in\n{text}");
            }
        };
        reads(0, 0);
        // one of two down is not below the default threshold (0.5); both down is
        r.set_health("m0", Health::Unhealthy).unwrap();
        reads(0, 0);
        r.set_health("m1", Health::Unhealthy).unwrap();
        reads(1, 1);
        // a change that keeps it in panic mode is not another entry
        r.set_health("m1", Health::Unhealthy).unwrap();
        reads(1, 1);
        r.set_health("m0", Health::Healthy).unwrap();
        reads(0, 1);
        r.set_health("m0", Health::Unhealthy).unwrap();
        reads(1, 2);
        // members down only until a checker's first probe answers (as at a start) route as
        // in panic mode, but are no panic to the gauge, as to the WARN
        for id in ["m0", "m1"] {
            r.set_health(id, Health::Healthy).unwrap();
            r.set_health_by(id, HealthSource::Probe, Health::Unhealthy)
                .unwrap();
        }
        assert!(r.load().is_panic());
        reads(0, 2);
    }
}
