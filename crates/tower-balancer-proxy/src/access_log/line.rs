//! The access log's line: Apache's "combined" format with the balancer's fields, or JSON.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;

use super::escape::{json_text, Clf};
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
                Clf(entry.line.as_bytes()),
                status,
                Clf(field(&entry.referer)),
                Clf(field(&entry.agent)),
                done.attempts,
                Millis(upstream),
                ms(total),
                Clf(field(&entry.request_id)),
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
                "referer": json_text(field(&entry.referer)),
                "user_agent": json_text(field(&entry.agent)),
                "member": done.member,
                "attempts": done.attempts,
                "upstream_ms": upstream,
                "total_ms": ms(total),
                "request_id": json_text(field(&entry.request_id)),
            });
            if cut {
                l["cut"] = serde_json::Value::Bool(true);
            }
            let mut l = escape_controls(l.to_string());
            l.push('\n');
            l
        }
    };
    entry.log.send(line);
}

/// A JSON line with the C1 controls and the line and paragraph separators a field may
/// carry written as `\u` escapes: JSON lets them stand raw, and a terminal showing the log
/// may act on a C1 control (CSI, U+009B, starts an escape sequence). The same text to a
/// JSON reader; a line of ASCII (nearly every line) is returned as it is.
fn escape_controls(line: String) -> String {
    let raw = |c: char| matches!(c, '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}');
    if line.is_ascii() || !line.contains(raw) {
        return line;
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A header's bytes as sent, or `-` for none (as Apache writes a missing one).
fn field(v: &Option<http::HeaderValue>) -> &[u8] {
    v.as_ref().map_or(b"-", |v| v.as_bytes())
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

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn c1_controls_and_separators_are_escaped_and_read_back_the_same() {
        let value = serde_json::json!({ "user_agent": "a\u{9b}31m b\u{2028}c é \u{85}" });
        let line = escape_controls(value.to_string());
        assert!(
            line.is_ascii() || !line.contains(['\u{9b}', '\u{2028}', '\u{85}']),
            "{line}"
        );
        assert!(line.contains("a\\u009b31m b\\u2028c é \\u0085"), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
        // a line of ASCII is the same line
        let plain = r#"{"user_agent":"curl/8.5"}"#.to_owned();
        assert_eq!(escape_controls(plain.clone()), plain);
    }
}
