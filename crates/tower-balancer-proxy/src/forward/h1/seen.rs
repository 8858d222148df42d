//! What an answer's fields say about its framing, noted while the head is read.
//!
//! Why apart from the head: the framing rules (RFC 9112 §6.3, in hyper's client's order)
//! are their own concern, and reading them in the same pass that builds the field map
//! spares a second look-up of each field.

use http::header::{self, HeaderName};
use http::{Method, StatusCode, Version};

use super::error::H1Error;
use super::head::Framing;

/// What the framing rules need from the fields, noted as the map is built (one pass, no
/// lookups after).
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Whether the last `Transfer-Encoding` field ends in `chunked`, if there is one.
    pub(super) chunked: Option<bool>,
    /// The `Content-Length` every value agrees on.
    pub(super) length: Option<u64>,
    /// Why the `Content-Length` fields are unusable, if they are.
    pub(super) bad_length: Option<&'static str>,
    /// `Connection` lists `close`.
    pub(super) close: bool,
    /// `Connection` lists `keep-alive`.
    pub(super) keep_alive: bool,
    /// `Transfer-Encoding` lists a coding other than `chunked` (which this path cannot undo).
    pub(super) other_coding: bool,
}

impl Seen {
    /// Notes one field; `true` when it is a `Connection` naming other fields (anything but
    /// `close` and `keep-alive`), which must go too.
    pub(super) fn note(&mut self, name: &HeaderName, v: &[u8]) -> bool {
        let mut others = false;
        if name == header::CONNECTION {
            for t in v.split(|&b| b == b',').map(trim) {
                let close = t.eq_ignore_ascii_case(b"close");
                let keep_alive = t.eq_ignore_ascii_case(b"keep-alive");
                self.close |= close;
                self.keep_alive |= keep_alive;
                others |= !(close || keep_alive || t.is_empty());
            }
        } else if name == header::TRANSFER_ENCODING {
            // empty list elements are ignored (RFC 9110 §5.6.1): `chunked,` is chunked
            let mut last = None;
            for t in v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty()) {
                let chunked = t.eq_ignore_ascii_case(b"chunked");
                self.other_coding |= !chunked;
                last = Some(chunked);
            }
            self.chunked = Some(last.unwrap_or(false));
        } else if name == header::CONTENT_LENGTH {
            for part in v.split(|&b| b == b',') {
                match parse_length(trim(part)) {
                    None => self.bad_length = Some("invalid Content-Length"),
                    Some(n) if self.length.is_some_and(|l| l != n) => {
                        self.bad_length = Some("differing Content-Lengths");
                    }
                    Some(n) => self.length = Some(n),
                }
            }
        }
        others
    }

    /// The body's framing, and whether the connection may be kept after it, by RFC 9112
    /// §6.3 in hyper's client's order.
    pub(super) fn framing(
        &self,
        status: StatusCode,
        method: &Method,
        version: Version,
    ) -> Result<(Framing, bool), H1Error> {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // not asked for on this path: the answer is refused above, and the connection
            // is no longer HTTP
            return Ok((Framing::Length(0), false));
        }
        if matches!(status.as_u16(), 204 | 304) || method == Method::HEAD {
            return Ok((Framing::Length(0), true));
        }
        if let Some(chunked) = self.chunked {
            if version == Version::HTTP_10 {
                return Err(H1Error::Framing("HTTP/1.0 cannot have Transfer-Encoding"));
            }
            // with a Content-Length beside it the answer may be a smuggling attempt: read
            // by its chunks, and the connection closed after it (RFC 9112 §6.3)
            if self.other_coding {
                // `gzip, chunked`: read by its chunks, the body would reach the client still
                // gzipped with nothing saying so (the field is hop-by-hop); refused, as nginx
                // refuses it
                return Err(H1Error::Framing("a transfer coding other than chunked"));
            }
            let alone = self.length.is_none() && self.bad_length.is_none();
            return Ok(if chunked {
                (Framing::Chunked, alone)
            } else {
                (Framing::Close, false)
            });
        }
        if let Some(why) = self.bad_length {
            return Err(H1Error::Framing(why));
        }
        Ok(match self.length {
            Some(n) => (Framing::Length(n), true),
            None => (Framing::Close, false),
        })
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// Decimal digits only (no sign, no spaces inside), at most what a u64 holds.
fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}
