//! How a field a client sent is written in a line, so that no byte can pass for another
//! and none is lost: a `User-Agent` is the client's to choose, bytes that are not UTF-8
//! included, and an operator reading the log (or a tool parsing it) must see what was sent.
//!
//! The combined format escapes as Apache's `mod_log_config` does, so its readers need
//! nothing new; the JSON format keeps UTF-8 as it is (JSON's own escapes then apply) and
//! writes only what JSON cannot carry as `\xhh`.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// A field of a combined line, escaped as Apache's `ap_escape_logitem`: `"` and `\` with a
/// backslash, `\b`, `\n`, `\r`, `\t` and `\v` by name, every other byte outside printable
/// ASCII as `\xhh` (so UTF-8 `é` is `\xc3\xa9`, and a lone byte `0xe9` is `\xe9`).
pub(super) struct Clf<'a>(pub(super) &'a [u8]);

impl fmt::Display for Clf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while !rest.is_empty() {
            let plain = rest
                .iter()
                .position(|&b| !(0x20..=0x7e).contains(&b) || b == b'"' || b == b'\\')
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(plain);
            // printable ASCII only: a str without a check that could fail
            f.write_str(std::str::from_utf8(run).map_err(|_| fmt::Error)?)?;
            let Some((&b, tail)) = tail.split_first() else {
                break;
            };
            match b {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                0x08 => f.write_str("\\b")?,
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                b'\t' => f.write_str("\\t")?,
                0x0b => f.write_str("\\v")?,
                _ => write!(f, "\\x{b:02x}")?,
            }
            rest = tail;
        }
        Ok(())
    }
}

/// A field's text for a JSON line: UTF-8 as it is, each byte that is not part of UTF-8 as
/// the four characters `\xhh`, and so each `\` the client sent as `\x5c`, or a client could
/// send the text `\xff` to pass for the byte. A value of UTF-8 without a backslash (nearly
/// every one) is borrowed as it is.
pub(super) fn json_text(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.contains('\\') {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\x5c"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{json_text, Clf};

    #[test]
    fn the_combined_format_escapes_as_apache_does() {
        let clf = |b: &[u8]| Clf(b).to_string();
        assert_eq!(clf(b"curl/8.5 (x; y)"), "curl/8.5 (x; y)");
        assert_eq!(clf(b"a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(
            clf(b"\x08\n\r\t\x0b\x00\x1b\x7f"),
            "\\b\\n\\r\\t\\v\\x00\\x1b\\x7f"
        );
        // UTF-8 byte by byte, a lone byte as itself: never the same text
        assert_eq!(clf("é".as_bytes()), "\\xc3\\xa9");
        assert_eq!(clf(b"\xe9"), "\\xe9");
        // the text a client may send for a byte is not the byte's
        assert_eq!(clf(b"\\xe9"), "\\\\xe9");
        assert_eq!(clf(b""), "");
    }

    #[test]
    fn json_text_keeps_utf8_and_tells_every_other_byte_apart() {
        assert!(matches!(
            json_text(b"Mozilla/5.0"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(json_text("Mozilla é ü".as_bytes()), "Mozilla é ü");
        assert_eq!(json_text(b"sqlmap \xff\xe9"), "sqlmap \\xff\\xe9");
        // a lone byte, UTF-8's é and the text `\xe9` are three different strings
        assert_eq!(json_text(b"\xe9"), "\\xe9");
        assert_eq!(json_text("é".as_bytes()), "é");
        assert_eq!(json_text(b"\\xe9"), "\\x5cxe9");
        // a byte cut from a UTF-8 sequence, then UTF-8 again
        assert_eq!(json_text(b"a\xc3 b\xc3\xa9"), "a\\xc3 bé");
    }
}
