//! What the balancer-manager shows: a JSON view and an HTML page, everything escaped.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use tower_balancer::failover::FailoverConfig;
use tower_balancer::registry::{AdminState, Health, HealthSource, Snapshot, WaitQueue};
use tower_balancer::sticky::StickyConfig;

/// Descriptions the page shows about the balancer itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ManagerInfo {
    /// The balancer's name (Apache `balancer://name`).
    pub name: String,
    /// The strategy's name.
    pub strategy: String,
    /// Sticky settings, in words.
    pub sticky: String,
    /// Failover settings, in words.
    pub failover: String,
}

impl ManagerInfo {
    /// A balancer named `name`, described by nothing else yet.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Names the strategy (`byrequests`, `p2c`, …).
    #[must_use]
    pub fn with_strategy(mut self, name: impl Into<String>) -> Self {
        self.strategy = name.into();
        self
    }

    /// Describes the sticky settings in Apache's words, from the configuration in use.
    #[must_use]
    pub fn describe_sticky(mut self, config: &StickyConfig) -> Self {
        let form = if config.is_signed() {
            "signed"
        } else {
            "plain"
        };
        self.sticky = format!(
            "stickysession={}|{}, cookie {} ({form}), nofailover={}",
            config.session_cookies().join(","),
            config.url_params().join(","),
            config.cookie_name(),
            on_off(config.is_strict()),
        );
        self
    }

    /// Describes the failover settings in Apache's words, from the configuration in use.
    #[must_use]
    pub fn describe_failover(mut self, config: &FailoverConfig) -> Self {
        let timeout = config
            .attempt_timeout()
            .map_or_else(|| "none".to_owned(), duration_words);
        let mut words = format!("maxattempts={}, timeout={timeout}", config.retry_limit());
        let statuses: Vec<_> = config
            .failure_statuses()
            .iter()
            .map(|s| s.as_u16().to_string())
            .collect();
        if !statuses.is_empty() {
            let _ = write!(words, ", failonstatus={}", statuses.join(","));
        }
        self.failover = words;
        self
    }
}

/// `90s` → `90s`, `60s` → `1m`, `1.5s` → `1500ms`.
fn duration_words(t: Duration) -> String {
    match (t.subsec_nanos(), t.as_secs()) {
        (0, s) if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        (0, s) => format!("{s}s"),
        _ => format!("{}ms", t.as_millis()),
    }
}

const fn on_off(on: bool) -> &'static str {
    if on {
        "On"
    } else {
        "Off"
    }
}

/// One member as the JSON view and the page show it (Apache's columns plus health).
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Worker URL.
    pub url: String,
    /// Route.
    pub route: String,
    /// Factor (the configured weight).
    pub factor: u32,
    /// The weight in use now, in percent of the factor (slow start).
    pub ramp_percent: u16,
    /// Set (priority).
    pub set: u16,
    /// Admin state.
    pub status: &'static str,
    /// Health.
    pub health: &'static str,
    /// Who says the member is down.
    pub down_by: Vec<&'static str>,
    /// Elected: requests that reached an outcome.
    pub elected: u64,
    /// Busy: requests in flight.
    pub busy: u64,
    /// Max: the most requests in flight allowed at once (Apache `max=`); 0 for no limit.
    pub max: u32,
    /// Failures.
    pub failures: u64,
    /// Requests sent again on a new connection after the member closed a reused one as
    /// they arrived (keep-alive races; not in `elected` or `failures`).
    pub resends: u64,
    /// To: request bytes sent to the member.
    pub to: u64,
    /// From: response bytes received from it.
    pub from: u64,
    /// Peak-EWMA latency in milliseconds, if measured.
    pub latency_ms: Option<f64>,
}

/// The whole JSON view.
#[derive(Debug, Clone, Serialize)]
pub struct BalancerView<'a> {
    /// The balancer's descriptions.
    #[serde(flatten)]
    pub info: &'a ManagerInfo,
    /// The registry version shown.
    pub version: u64,
    /// Whether too few members are healthy and health is being ignored.
    pub panic: bool,
    /// The requests waiting for a member with room.
    pub queue: QueueView,
    /// The members, by route.
    pub members: Vec<MemberView>,
}

/// The queue of requests waiting for a member with room (members with `max=`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct QueueView {
    /// Waiting now.
    pub waiting: u64,
    /// Requests that ever waited.
    pub queued: u64,
    /// Requests answered 503 after the whole queue timeout.
    pub timed_out: u64,
    /// Requests answered 503 at once, the queue being full.
    pub refused: u64,
    /// The mean wait, in milliseconds (timed-out requests count their whole wait).
    pub mean_wait_ms: Option<f64>,
}

impl QueueView {
    pub(crate) fn new(queue: &WaitQueue) -> Self {
        let waits = queue.wait_times();
        #[allow(clippy::cast_precision_loss)]
        let mean_wait_ms = (waits.count > 0).then(|| waits.sum * 1000.0 / waits.count as f64);
        Self {
            waiting: queue.depth(),
            queued: queue.queued(),
            timed_out: queue.timed_out(),
            refused: queue.refused(),
            mean_wait_ms,
        }
    }
}

pub(crate) fn members(snapshot: &Snapshot) -> Vec<MemberView> {
    snapshot
        .members()
        .iter()
        .map(|m| {
            let s = m.stats().view();
            MemberView {
                url: m.endpoint().to_string(),
                route: m.id().to_string(),
                factor: m.weight(),
                ramp_percent: m.ramp_permille() / 10,
                set: m.priority(),
                status: m.state().as_str(),
                health: m.health().as_str(),
                down_by: [
                    (HealthSource::Operator, "operator"),
                    (HealthSource::Probe, "probe"),
                    (HealthSource::Outlier, "outlier"),
                ]
                .into_iter()
                .filter(|(src, _)| m.is_down_by(*src))
                .map(|(_, name)| name)
                .collect(),
                elected: s.requests,
                busy: s.in_flight,
                max: m.max_in_flight(),
                failures: s.failures,
                resends: m.stats().metrics().resends(),
                to: s.bytes_to_member,
                from: s.bytes_from_member,
                latency_ms: s.latency.map(|d: Duration| d.as_secs_f64() * 1000.0),
            }
        })
        .collect()
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}\
th{background:#eee}.down{color:#b00;font-weight:bold}.ok{color:#070}form{display:inline}\
button{margin:0 2px}input[type=number]{width:5em}";

/// Requests in flight, and the member's limit when it has one.
fn busy(m: &MemberView) -> String {
    if m.max == 0 {
        m.busy.to_string()
    } else {
        format!("{} / max {}", m.busy, m.max)
    }
}

/// The queue in words, when it was ever used.
fn queue_line(q: &QueueView, limited: bool) -> String {
    if !limited && q.queued == 0 && q.refused == 0 {
        return String::new();
    }
    let wait = q
        .mean_wait_ms
        .map_or_else(|| "&ndash;".to_owned(), |w| format!("{w:.1} ms"));
    format!(
        "<p>Queue: <b>{}</b> waiting &middot; {} queued in all, mean wait {wait} &middot; \
         {} timed out &middot; {} refused (queue full)</p>",
        q.waiting, q.queued, q.timed_out, q.refused
    )
}

/// The page for several balancers, one section each.
pub(crate) fn html_all(views: &[BalancerView<'_>], nonce: &str) -> String {
    let mut out = String::with_capacity(4096 * views.len().max(1));
    let title = views.first().map_or("", |v| v.info.name.as_str());
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=utf-8><title>Balancer manager: {name}</title>\
         <style>{STYLE}</style></head><body><h1>Balancer manager</h1>",
        name = escape(title),
    );
    for view in views {
        section(&mut out, view, nonce);
    }
    out.push_str("<p>Mount this page behind authentication: anyone who can reach it can drain the cluster.</p></body></html>");
    out
}

/// One balancer's heading, settings and member table.
fn section(out: &mut String, view: &BalancerView<'_>, nonce: &str) {
    let e = escape;
    let _ = write!(
        out,
        "<h2>balancer://{name}</h2><p>Strategy: <b>{strategy}</b> &middot; Sticky: {sticky} \
         &middot; Failover: {failover} &middot; Registry version {version}{panic}</p>{queue}\
         <table><tr><th>Worker URL</th><th>Route</th><th>Factor</th><th>Set</th><th>Status</th>\
         <th>Health</th><th>Elected</th><th>Busy</th><th>Load</th><th>To</th><th>From</th>\
         <th>Latency</th><th>Actions</th></tr>",
        name = e(&view.info.name),
        strategy = e(&view.info.strategy),
        sticky = e(&view.info.sticky),
        failover = e(&view.info.failover),
        version = view.version,
        queue = queue_line(&view.queue, view.members.iter().any(|m| m.max > 0)),
        panic = if view.panic {
            " &middot; <span class=down>PANIC: health ignored</span>"
        } else {
            ""
        },
    );
    for m in &view.members {
        let health = if m.health == Health::Healthy.as_str() {
            "<span class=ok>healthy</span>".to_owned()
        } else {
            format!(
                "<span class=down>unhealthy ({})</span>",
                e(&m.down_by.join(", "))
            )
        };
        let latency = m
            .latency_ms
            .map_or_else(|| "&ndash;".to_owned(), |l| format!("{l:.1} ms"));
        let route = e(&m.route);
        let _ = write!(
            out,
            "<tr><td>{url}</td><td>{route}</td><td>{factor}</td><td>{set}</td><td>{status}</td>\
             <td>{health}</td><td>{elected}</td><td>{busy}</td><td>{ramp}%</td><td>{to}</td>\
             <td>{from}</td><td>{latency}</td><td><form method=post>\
             <input type=hidden name=nonce value=\"{nonce}\"><input type=hidden name=balancer value=\"{balancer}\">\
             <input type=hidden name=member value=\"{route}\">",
            balancer = e(&view.info.name),
            url = e(&m.url),
            factor = m.factor,
            set = m.set,
            status = e(m.status),
            elected = m.elected,
            busy = busy(m),
            ramp = m.ramp_percent,
            to = m.to,
            from = m.from,
            nonce = e(nonce),
        );
        for (action, label, state) in [
            ("enable", "Enable", AdminState::Active),
            ("drain", "Drain", AdminState::Draining),
            ("standby", "Standby", AdminState::Standby),
            ("disable", "Disable", AdminState::Disabled),
        ] {
            let disabled = if m.status == state.as_str() {
                " disabled"
            } else {
                ""
            };
            let _ = write!(
                out,
                "<button name=action value={action}{disabled}>{label}</button>"
            );
        }
        let _ = write!(
            out,
            "<input type=number name=weight min=1 max=65535 value={factor}>\
             <button name=action value=weight>Set factor</button></form></td></tr>",
            factor = m.factor
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_come_from_the_configurations_in_use() {
        let sticky = StickyConfig::builder()
            .plain()
            .strict(true)
            .build()
            .unwrap();
        let failover = FailoverConfig::default().max_retries(2).fail_on_status(
            tower_balancer::balance::FailureStatuses::none()
                .with(http::StatusCode::SERVICE_UNAVAILABLE),
        );
        let info = ManagerInfo::new("c")
            .with_strategy("p2c")
            .describe_sticky(&sticky)
            .describe_failover(&failover);
        assert_eq!(info.strategy, "p2c");
        assert_eq!(
            info.sticky,
            "stickysession=JSESSIONID|jsessionid, cookie ROUTEID (plain), nofailover=On"
        );
        assert_eq!(info.failover, "maxattempts=2, timeout=1m, failonstatus=503");
        let unbounded = ManagerInfo::new("c")
            .describe_failover(&FailoverConfig::default().no_per_try_timeout());
        assert!(
            unbounded.failover.contains("timeout=none"),
            "{}",
            unbounded.failover
        );
    }

    #[test]
    fn everything_shown_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let info = ManagerInfo {
            name: "<img src=x onerror=alert(1)>".into(),
            ..ManagerInfo::default()
        };
        let page = html_all(
            &[BalancerView {
                info: &info,
                version: 1,
                panic: false,
                queue: QueueView::new(&WaitQueue::default()),
                members: vec![],
            }],
            "n\"once",
        );
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }
}
