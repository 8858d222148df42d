//! The members' families: traffic, state and counts, one series a member of every
//! balancer, labelled with the balancer (when named) and the member.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tower_balancer::registry::{AdminState, Health};

use super::{counter, family, gauge, id, labels, signed, Lane};

/// Requests, failures, in flight and response times, per member.
pub(super) fn member_traffic(encoder: &mut DescriptorEncoder<'_>, members: &[Lane]) -> fmt::Result {
    family(
        encoder,
        "lb_member_requests",
        "Requests that reached an outcome on the member.",
        MetricType::Counter,
        members,
        |e, l, m| counter(e, &labels(l, &id(m), &[]), m.stats().view().requests),
    )?;
    family(
        encoder,
        "lb_member_failures",
        "Attempts that failed on the member, by kind.",
        MetricType::Counter,
        members,
        |e, l, m| {
            for (kind, n) in m.stats().metrics().failures_by_kind() {
                counter(e, &labels(l, &id(m), &[("kind", kind)]), n)?;
            }
            Ok(())
        },
    )?;
    family(
        encoder,
        "lb_member_in_flight",
        "Requests on the member now, until their response bodies end.",
        MetricType::Gauge,
        members,
        |e, l, m| gauge(e, &labels(l, &id(m), &[]), signed(m.stats().in_flight())),
    )?;
    family(
        encoder,
        "lb_member_response_seconds",
        "Time from sending a request to the member's response headers.",
        MetricType::Histogram,
        members,
        |e, l, m| {
            let h = m.stats().metrics().latency();
            let id = id(m);
            let labels = labels(l, &id, &[]);
            let mut f = e.encode_family(&labels)?;
            f.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum, h.count, &h.buckets, None,
            )
        },
    )?;
    Ok(())
}

/// Health and admin state, per member.
pub(super) fn member_state(encoder: &mut DescriptorEncoder<'_>, members: &[Lane]) -> fmt::Result {
    family(
        encoder,
        "lb_member_healthy",
        "1 when the member is healthy (probes and passive ejection agree), else 0.",
        MetricType::Gauge,
        members,
        |e, l, m| {
            gauge(
                e,
                &labels(l, &id(m), &[]),
                i64::from(m.health() == Health::Healthy),
            )
        },
    )?;
    family(
        encoder,
        "lb_member_admin_state",
        "1 for the member's admin state: active, standby, draining or disabled.",
        MetricType::Gauge,
        members,
        |e, l, m| {
            for (state, name) in [
                (AdminState::Active, "active"),
                (AdminState::Standby, "standby"),
                (AdminState::Draining, "draining"),
                (AdminState::Disabled, "disabled"),
            ] {
                gauge(
                    e,
                    &labels(l, &id(m), &[("state", name)]),
                    i64::from(m.state() == state),
                )?;
            }
            Ok(())
        },
    )
}

/// Ejections, retries, refused retries and bytes, per member.
pub(super) fn member_counts(encoder: &mut DescriptorEncoder<'_>, members: &[Lane]) -> fmt::Result {
    family(
        encoder,
        "lb_member_ejections",
        "Times passive ejection took the member out.",
        MetricType::Counter,
        members,
        |e, l, m| counter(e, &labels(l, &id(m), &[]), m.stats().metrics().ejections()),
    )?;
    family(
        encoder,
        "lb_member_retries",
        "Attempts the member received after another member failed the request.",
        MetricType::Counter,
        members,
        |e, l, m| counter(e, &labels(l, &id(m), &[]), m.stats().metrics().retries()),
    )?;
    family(
        encoder,
        "lb_member_resends",
        "Requests sent to the member again on a new connection after it closed the reused one, with no answer, within 100 ms of the request (its keep-alive timeout racing it), and requests an HTTP/2 member refused unprocessed (a GOAWAY that crossed them, REFUSED_STREAM) sent again; not failures.",
        MetricType::Counter,
        members,
        |e, l, m| counter(e, &labels(l, &id(m), &[]), m.stats().metrics().resends()),
    )?;
    family(
        encoder,
        "lb_member_retry_budget_refusals",
        "Requests the member failed that the retry budget kept from going elsewhere.",
        MetricType::Counter,
        members,
        |e, l, m| {
            counter(
                e,
                &labels(l, &id(m), &[]),
                m.stats().metrics().budget_refusals(),
            )
        },
    )?;
    family(
        encoder,
        "lb_member_sent_bytes",
        "Request body bytes sent to the member.",
        MetricType::Counter,
        members,
        |e, l, m| counter(e, &labels(l, &id(m), &[]), m.stats().view().bytes_to_member),
    )?;
    family(
        encoder,
        "lb_member_received_bytes",
        "Response body bytes received from the member.",
        MetricType::Counter,
        members,
        |e, l, m| {
            counter(
                e,
                &labels(l, &id(m), &[]),
                m.stats().view().bytes_from_member,
            )
        },
    )?;
    Ok(())
}
