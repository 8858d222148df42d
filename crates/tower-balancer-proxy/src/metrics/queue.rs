//! The queue of requests waiting for a member with room, in metrics.
//!
//! Why apart: the queue is the balancer's, not a member's, so its families carry no member
//! label; only each member's limit does.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tower_balancer::registry::{Member, WaitQueue};

use super::{counter, family, gauge, id, signed};

/// Each member's limit, then the queue's depth, counters and wait times.
pub(super) fn encode(
    encoder: &mut DescriptorEncoder<'_>,
    members: &[Arc<Member>],
    queue: &WaitQueue,
) -> fmt::Result {
    family(
        encoder,
        "lb_member_max_in_flight",
        "The most requests the member may have in flight at once (max=); 0 for no limit.",
        MetricType::Gauge,
        members,
        |e, m| gauge(e, &[("member", &id(m))], i64::from(m.max_in_flight())),
    )?;
    let one = |encoder: &mut DescriptorEncoder<'_>, name, help, kind, v: u64| {
        let mut e = encoder.encode_descriptor(name, help, None, kind)?;
        match kind {
            MetricType::Counter => counter(&mut e, &[], v),
            _ => gauge(&mut e, &[], signed(v)),
        }
    };
    one(
        encoder,
        "lb_queue_depth",
        "Requests waiting now for a member with room.",
        MetricType::Gauge,
        queue.depth(),
    )?;
    one(
        encoder,
        "lb_queue_requests",
        "Requests that found every member at its limit and waited.",
        MetricType::Counter,
        queue.queued(),
    )?;
    one(
        encoder,
        "lb_queue_timeouts",
        "Requests that waited the whole queue timeout and were answered 503.",
        MetricType::Counter,
        queue.timed_out(),
    )?;
    one(
        encoder,
        "lb_queue_refused",
        "Requests answered 503 at once because the queue was full.",
        MetricType::Counter,
        queue.refused(),
    )?;
    let h = queue.wait_times();
    let mut e = encoder.encode_descriptor(
        "lb_queue_wait_seconds",
        "How long requests that got a member waited in the queue.",
        None,
        MetricType::Histogram,
    )?;
    let labels: [(&str, &str); 0] = [];
    e.encode_family(&labels)?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum, h.count, &h.buckets, None,
        )
}
