//! The access log's line: Apache's "combined" format with the balancer's fields, or JSON.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;

use super::time::{clf_time, rfc3339};
use super::{Done, Entry, LogFormat};
use crate::serve::status::page_text;

/// Formats the line and hands it to the writer.
pub(super) fn write(entry: &Entry, done: &Done, bytes: u64) {
    // the server answered its own page instead (`Replaced`): that is what the client got
    let (status, bytes) = match entry.replaced.load(Ordering::Relaxed) {
        0 => (done.status, bytes),
        s => {
            let page = StatusCode::from_u16(s).map_or(0, |s| page_text(s).len() as u64);
            (s, if entry.head { 0 } else { page })
        }
    };
    let total = entry.start.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let client = entry
        .client
        .map_or_else(|| "-".to_owned(), |a| a.ip().to_string());
    let member = done.member.as_deref().unwrap_or("-");
    // a request that reached no member (it waited in the queue, or was refused) has no
    // member time, as nginx's `$upstream_response_time` is `-`: its wait is in `total_ms`
    let upstream = (done.attempts > 0).then(|| ms(done.upstream));
    // the member's head went out, then its body failed (not replaced by the server's page)
    let cut = done.cut && entry.replaced.load(Ordering::Relaxed) == 0;
    let line = match entry.log.format {
        LogFormat::Combined => {
            let mut l = String::with_capacity(256);
            let _ = writeln!(
                l,
                "{client} - - [{}] \"{}\" {} {bytes} \"{}\" \"{}\" member={member} attempts={} upstream_ms={} total_ms={:.3} request_id=\"{}\"",
                clf_time(entry.wall),
                entry.line.escape_default(),
                status,
                entry.referer.escape_default(),
                entry.agent.escape_default(),
                done.attempts,
                Millis(upstream),
                ms(total),
                entry.request_id.escape_default(),
            );
            if cut {
                l.insert_str(l.len() - 1, " cut=1");
            }
            l
        }
        LogFormat::Json => {
            let mut l = serde_json::json!({
                "time": rfc3339(entry.wall),
                "client": client,
                "request": entry.line,
                "status": status,
                "bytes": bytes,
                "referer": entry.referer,
                "user_agent": entry.agent,
                "member": done.member,
                "attempts": done.attempts,
                "upstream_ms": upstream,
                "total_ms": ms(total),
                "request_id": entry.request_id,
            });
            if cut {
                l["cut"] = serde_json::Value::Bool(true);
            }
            let mut l = l.to_string();
            l.push('\n');
            l
        }
    };
    entry.log.send(line);
}

/// Milliseconds with three decimals, or `-` for none.
struct Millis(Option<f64>);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ms) => write!(f, "{ms:.3}"),
            None => f.write_str("-"),
        }
    }
}
