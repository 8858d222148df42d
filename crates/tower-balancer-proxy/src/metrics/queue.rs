//! The queue of requests waiting for a member with room, in metrics.
//!
//! Why apart: the queue is the balancer's, not a member's, so its families carry no member
//! label; only each member's limit does.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tower_balancer::registry::WaitQueue;

use super::{counter, family, gauge, id, labels, signed, Lane};

/// Each member's limit, then each balancer's queue: depth, counters and wait times.
pub(super) fn encode(
    encoder: &mut DescriptorEncoder<'_>,
    lanes: &[Lane],
    queues: &[(&str, &WaitQueue)],
) -> fmt::Result {
    family(
        encoder,
        "lb_member_max_in_flight",
        "The most requests the member may have in flight at once (max=); 0 for no limit.",
        MetricType::Gauge,
        lanes,
        |e, l, m| gauge(e, &labels(l, &id(m), &[]), i64::from(m.max_in_flight())),
    )?;
    let by = |name: &'static str| {
        move |q: &WaitQueue| match name {
            "depth" => q.depth(),
            "queued" => q.queued(),
            "timed_out" => q.timed_out(),
            _ => q.refused(),
        }
    };
    for (name, help, kind, value) in [
        (
            "lb_queue_depth",
            "Requests waiting now for a member with room.",
            MetricType::Gauge,
            by("depth"),
        ),
        (
            "lb_queue_requests",
            "Requests that found every member at its limit and waited.",
            MetricType::Counter,
            by("queued"),
        ),
        (
            "lb_queue_timeouts",
            "Requests that waited the whole queue timeout and were answered 503.",
            MetricType::Counter,
            by("timed_out"),
        ),
        (
            "lb_queue_refused",
            "Requests answered 503 at once because the queue was full.",
            MetricType::Counter,
            by("refused"),
        ),
    ] {
        let mut e = encoder.encode_descriptor(name, help, None, kind)?;
        for (balancer, q) in queues {
            let l = balancer_label(balancer);
            match kind {
                MetricType::Counter => counter(&mut e, &l, value(q))?,
                _ => gauge(&mut e, &l, signed(value(q)))?,
            }
        }
    }
    let mut e = encoder.encode_descriptor(
        "lb_queue_wait_seconds",
        "How long queued requests waited: until they got a member, their client went away, or the whole queue timeout (then also lb_queue_timeouts).",
        None,
        MetricType::Histogram,
    )?;
    for (balancer, q) in queues {
        let h = q.wait_times();
        e.encode_family(&balancer_label(balancer))?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum, h.count, &h.buckets, None,
            )?;
    }
    Ok(())
}

/// `balancer="name"`, or no label for an unnamed balancer.
pub(super) fn balancer_label(name: &str) -> Vec<(&str, &str)> {
    if name.is_empty() {
        Vec::new()
    } else {
        vec![("balancer", name)]
    }
}
