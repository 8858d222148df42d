//! The `Date` field of every answer (RFC 9110 §6.6.1: an origin server with a clock sends
//! one; hyper did for us), formatted once a second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// The second last formatted, and its text.
    static CACHED: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

/// Appends `date: <now>\r\n` to `out`.
pub(crate) fn put_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            text.clear();
            text.extend_from_slice(b"date: ");
            text.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            text.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_imf_fixdate_field() {
        let mut out = Vec::new();
        put_date(&mut out);
        let line = String::from_utf8(out).unwrap();
        let value = line
            .strip_prefix("date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        let when = httpdate::parse_http_date(value).unwrap();
        let off = SystemTime::now().duration_since(when).unwrap_or_default();
        assert!(off.as_secs() < 5, "{line:?}");
        assert!(value.ends_with(" GMT"), "{line:?}");
    }
}
