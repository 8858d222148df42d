//! The chunked transfer coding of a member's answer, undone (RFC 9112 §7.1).
//!
//! Why strict, and why hyper's rules: a proxy that reads chunk boundaries differently from
//! the member can be made to take one answer for two. Sizes are hex digits (at most what a
//! u64 holds) followed only by blanks, an extension or CRLF; extensions end at CRLF and
//! never hold a bare LF; every chunk ends in CRLF; trailers are at most 16 KiB and 100
//! fields. These are hyper's decoder's rules, so both client paths read the same bytes the
//! same way.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::error::H1Error;

/// The most bytes of chunk extensions in one answer (hyper's limit).
const EXTENSIONS_LIMIT: u64 = 16 * 1024;
/// The most bytes of trailer fields (hyper's limit).
const TRAILERS_LIMIT: usize = 16 * 1024;
/// The most trailer fields.
const MAX_TRAILERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first digit of a size.
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Body(u64),
    BodyCr,
    BodyLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// What one step of decoding gave.
#[derive(Debug)]
pub(super) enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields; the body is complete.
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// The buffer is used up: read more.
    More,
}

/// A chunked body's decoder, fed from the connection's read buffer.
#[derive(Debug)]
pub(super) struct Chunked {
    state: State,
    size: u64,
    extensions: u64,
    trailers: Option<BytesMut>,
    trailer_fields: usize,
}

impl Chunked {
    pub(super) const fn new() -> Self {
        Self {
            state: State::Start,
            size: 0,
            extensions: 0,
            trailers: None,
            trailer_fields: 0,
        }
    }

    /// Whether the last chunk and its trailers have been read.
    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the front of `buf` until body bytes, the end, or the buffer's end.
    pub(super) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        loop {
            if let State::Body(rem) = self.state {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = usize::try_from(rem).unwrap_or(usize::MAX).min(buf.len());
                let rem = rem - n as u64;
                self.state = if rem == 0 {
                    State::BodyCr
                } else {
                    State::Body(rem)
                };
                return Ok(Step::Data(buf.split_to(n).freeze()));
            }
            if self.state == State::Done {
                return Ok(Step::End);
            }
            let Some(&b) = buf.first() else {
                return Ok(Step::More);
            };
            buf.advance(1);
            if let Some(end) = self.byte(b)? {
                return Ok(end);
            }
        }
    }

    /// One byte outside chunk data; `Some` when the body ends with it.
    fn byte(&mut self, b: u8) -> Result<Option<Step>, H1Error> {
        self.state = match (self.state, b) {
            (State::Start | State::Size, b) if b.is_ascii_hexdigit() => {
                let digit = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(H1Error::Framing("chunk size overflows"))?;
                State::Size
            }
            (State::Start, _) => return Err(H1Error::Framing("invalid chunk size")),
            (State::Size | State::SizeLws, b'\t' | b' ') => State::SizeLws,
            (State::Size | State::SizeLws, b';') => State::Extension,
            (State::Size | State::SizeLws | State::Extension, b'\r') => State::SizeLf,
            (State::Size | State::SizeLws, _) => {
                return Err(H1Error::Framing("invalid chunk size"))
            }
            (State::Extension, b'\n') => {
                return Err(H1Error::Framing("chunk extension holds a newline"))
            }
            (State::Extension, _) => {
                self.extensions += 1;
                if self.extensions >= EXTENSIONS_LIMIT {
                    return Err(H1Error::Framing("chunk extensions over the limit"));
                }
                State::Extension
            }
            (State::SizeLf, b'\n') if self.size == 0 => State::EndCr,
            (State::SizeLf, b'\n') => State::Body(std::mem::take(&mut self.size)),
            (State::SizeLf, _) => return Err(H1Error::Framing("invalid chunk size line end")),
            (State::BodyCr, b'\r') => State::BodyLf,
            (State::BodyLf, b'\n') => State::Start,
            (State::BodyCr | State::BodyLf, _) => {
                return Err(H1Error::Framing("chunk data not ended by CRLF"))
            }
            (State::EndCr, b'\r') => State::EndLf,
            (State::EndCr | State::Trailer, b) => {
                self.push_trailer(b)?;
                if b == b'\r' {
                    State::TrailerLf
                } else {
                    State::Trailer
                }
            }
            (State::TrailerLf, b'\n') => {
                self.trailer_fields += 1;
                if self.trailer_fields > MAX_TRAILERS {
                    return Err(H1Error::Framing("too many trailer fields"));
                }
                self.push_trailer(b'\n')?;
                State::EndCr
            }
            (State::TrailerLf, _) => return Err(H1Error::Framing("invalid trailer line end")),
            (State::EndLf, b'\n') => {
                self.state = State::Done;
                return Ok(Some(match self.trailers.take() {
                    Some(t) => Step::Trailers(trailers(&t)?),
                    None => Step::End,
                }));
            }
            (State::EndLf, _) => return Err(H1Error::Framing("invalid last chunk end")),
            (State::Body(_) | State::Done, _) => return Err(H1Error::Framing("chunk state")),
        };
        Ok(None)
    }

    fn push_trailer(&mut self, b: u8) -> Result<(), H1Error> {
        let t = self
            .trailers
            .get_or_insert_with(|| BytesMut::with_capacity(64));
        if t.len() >= TRAILERS_LIMIT {
            return Err(H1Error::Framing("trailers over the limit"));
        }
        t.extend_from_slice(&[b]);
        Ok(())
    }
}

/// The trailer fields, each line already ended by CRLF.
fn trailers(lines: &[u8]) -> Result<HeaderMap, H1Error> {
    let mut block = Vec::with_capacity(lines.len() + 2);
    block.extend_from_slice(lines);
    block.extend_from_slice(b"\r\n");
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    match httparse::parse_headers(&block, &mut fields) {
        Ok(httparse::Status::Complete((_, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for f in fields {
                let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| H1Error::Field)?;
                let value = HeaderValue::from_bytes(f.value).map_err(|_| H1Error::Field)?;
                map.append(name, value);
            }
            Ok(map)
        }
        Ok(httparse::Status::Partial) => Err(H1Error::Framing("incomplete trailers")),
        Err(e) => Err(H1Error::Head(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `wire` fed in pieces of `piece` bytes: the body, the trailers, and whether
    /// it ended.
    fn decode(wire: &[u8], piece: usize) -> Result<(Vec<u8>, Option<HeaderMap>, bool), H1Error> {
        let mut d = Chunked::new();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for part in wire.chunks(piece.max(1)) {
            buf.extend_from_slice(part);
            loop {
                match d.step(&mut buf)? {
                    Step::Data(b) => body.extend_from_slice(&b),
                    Step::Trailers(t) => return Ok((body, Some(t), true)),
                    Step::End => return Ok((body, None, true)),
                    Step::More => break,
                }
            }
        }
        Ok((body, None, false))
    }

    #[test]
    fn chunks_extensions_and_trailers_decode() {
        let wire = b"5;a=b\r\nhello\r\n1 \r\n!\r\n0\r\nX-Sum: 1\r\nX-Two: 2\r\n\r\n";
        for piece in [1, 2, 3, 7, 100] {
            let (body, t, end) = decode(wire, piece).unwrap();
            assert_eq!(body, b"hello!");
            let t = t.unwrap();
            assert_eq!(t["x-sum"], "1");
            assert_eq!(t["x-two"], "2");
            assert!(end);
        }
        let (body, t, end) = decode(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!((body.len(), t.is_none(), end), (10, true, true));
        let (_, _, end) = decode(b"5\r\nhel", 100).unwrap();
        assert!(!end);
    }

    #[test]
    fn what_a_smuggler_would_send_is_refused() {
        for bad in [
            &b"\r\n"[..],
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"0\r\n\rX",
        ] {
            assert!(
                decode(bad, 100).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long = b"1;".to_vec();
        long.resize(20_000, b'x');
        assert!(decode(&long, 1000).is_err());
    }

    proptest! {
        /// Whatever the chunk sizes and however the bytes arrive, the body comes out whole.
        #[test]
        fn any_chunking_round_trips(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(1usize..80, 1..10),
            piece in 1usize..50,
        ) {
            let mut wire = Vec::new();
            let mut rest = &body[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                wire.extend_from_slice(&rest[..n]);
                wire.extend_from_slice(b"\r\n");
                rest = &rest[n..];
                i += 1;
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let (out, t, end) = decode(&wire, piece).unwrap();
            prop_assert_eq!(out, body);
            prop_assert!(t.is_none());
            prop_assert!(end);
        }
    }
}
