//! A bodiless request's head out, and the member's answer head in.
//!
//! Why by hand: the head is most of what an HTTP/1.1 exchange costs, and a request without a
//! body needs none of a general client's machinery (body encoders, a connection task, a
//! channel to it). The rules are hyper's client rules, kept line by line so the two paths
//! frame every answer alike: `httparse` reads the head (at most 100 fields and
//! [`MAX_MEMBER_HEAD_BYTES`]), and RFC 9112 §6.3 decides how its body is framed.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::error::H1Error;
use super::seen::Seen;
use crate::forward::config::MAX_MEMBER_HEAD_BYTES;
use crate::hygiene::{is_hop_by_hop, strip_hop_by_hop_answer};
use crate::recent_values::RecentValues;

/// The most fields an answer head may have (hyper's default).
const MAX_FIELDS: usize = 100;

/// Writes `req`'s head in HTTP/1.1 form. The request has no body: a `Transfer-Encoding` it
/// carries would announce one, so it is left out (as hyper's client does).
pub(crate) fn encode<B>(req: &Request<B>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    match req.uri().path_and_query() {
        Some(pq) => out.extend_from_slice(pq.as_str().as_bytes()),
        None => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How an answer's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many bytes (zero for `HEAD`, 1xx, 204 and 304 answers).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the member closes.
    Close,
}

/// A complete answer head.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) response: Response<()>,
    pub(super) framing: Framing,
    /// Whether the connection may carry another request once the body is read.
    pub(super) keep_alive: bool,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub(super) enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An interim (1xx) answer, taken off the buffer: the final one follows.
    Informational,
    /// The final answer's head, taken off the buffer.
    Final(Head),
}

/// Where a field's name and value lie in an answer's head.
type FieldAt = (usize, usize, usize, usize);

/// What reading answers keeps between one answer and the next on a member connection.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// Where the head's fields lie (kept for its room: an allocation an answer less).
    at: Vec<FieldAt>,
    /// The last answer's field values, so the next answer's repeats are not checked again.
    recent: RecentValues,
}

/// Reads one answer head from the front of `buf` for a request with `method`.
pub(super) fn parse(
    buf: &mut BytesMut,
    method: &Method,
    scratch: &mut Scratch,
) -> Result<Parsed, H1Error> {
    // left uninitialised: filling 100 empty fields first costs more than reading the head
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_MEMBER_HEAD_BYTES => {
            return Err(H1Error::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(H1Error::Head(e)),
    };
    if len > MAX_MEMBER_HEAD_BYTES {
        return Err(H1Error::HeadTooLarge);
    }
    let code = res.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Status(code))?;
    let version = if res.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // where each field lies in the head, so the values can share the head's bytes
    let base = buf.as_ptr() as usize;
    let Scratch { at, recent } = scratch;
    at.clear();
    for f in res.headers.iter() {
        let name = f.name.as_ptr() as usize - base;
        let value = f.value.as_ptr() as usize - base;
        at.push((name, name + f.name.len(), value, value + f.value.len()));
    }
    let head = buf.split_to(len).freeze();
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Parsed::Informational);
    }
    let (headers, seen) = answer_fields(&head, at, status, recent)?;
    let (framing, mut keep_alive) = seen.framing(status, method, version)?;
    keep_alive &= match version {
        Version::HTTP_10 => seen.keep_alive,
        _ => !seen.close,
    };
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Parsed::Final(Head {
        response,
        framing,
        keep_alive,
    }))
}

/// The answer's fields as the client is to get them, made fit to forward as they are read
/// (what `strip_hop_by_hop_answer` and `ForwardSettings::finish` would do after): hop-by-hop
/// fields are not put in the map, and `Content-Length` goes in once, as the one value every
/// field agreed on. A 101 is refused later, and a `Connection` naming other fields is
/// handled after the loop. `at` is where each field's name and value lie in `head`.
fn answer_fields(
    head: &Bytes,
    at: &[FieldAt],
    status: StatusCode,
    recent: &mut RecentValues,
) -> Result<(HeaderMap, Seen), H1Error> {
    // room for what the layers add on the way back (a request id, a route cookie, one
    // spare): sized exactly, the map grew at the first of them (~690 instructions a
    // request in callgrind's profile of the binary under load)
    let mut headers = HeaderMap::with_capacity(at.len() + 3);
    let mut seen = Seen::default();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut length = None;
    let mut length_fields = 0_usize;
    let mut names_others = false;
    let mut close_field = false;
    for (place, &(n0, n1, v0, v1)) in at.iter().enumerate() {
        let name = HeaderName::from_bytes(&head[n0..n1]).map_err(|_| H1Error::Field)?;
        // httparse has refused a value http would (control bytes but tab, DEL): one that
        // is not forwarded need not become a `HeaderValue`
        let others = seen.note(&name, &head[v0..v1]);
        let mut value = || {
            recent
                .value(place, head, v0, v1)
                .map_err(|_| H1Error::Field)
        };
        if !switching {
            if name == header::CONTENT_LENGTH {
                length_fields += 1;
                if length.is_none() {
                    length = Some(value()?);
                }
                continue;
            }
            if is_hop_by_hop(name.as_str()) && !others {
                continue;
            }
            names_others |= others;
            close_field |= name.as_str() == "close";
        }
        headers.append(name, value()?);
    }
    if !switching {
        // a 204 has no body and a chunked answer is framed by its chunks: a Content-Length
        // beside either must not reach the client (RFC 9110 §8.6, RFC 9112 §6.3); else the
        // one value, `42` for `42, 42`
        if status != StatusCode::NO_CONTENT && seen.chunked.is_none() {
            // (a `HEAD` or 304 answer's lengths are not read for framing, so one that is
            // not a single agreed number, `bad_length`, is dropped here rather than refused)
            match (length, seen.length, seen.bad_length) {
                (Some(v), _, None)
                    if length_fields == 1
                        && v.as_bytes().iter().all(u8::is_ascii_digit)
                        && (v.len() == 1 || v.as_bytes()[0] != b'0') =>
                {
                    headers.append(header::CONTENT_LENGTH, v);
                }
                (Some(_), Some(n), None) => {
                    headers.append(header::CONTENT_LENGTH, HeaderValue::from(n));
                }
                _ => {}
            }
        }
        if close_field && seen.close {
            // a field called `close` goes with `Connection: close`, as `strip_hop_by_hop`
            // has it (the `Connection` field itself was left out above)
            headers.remove("close");
        }
        if names_others {
            // the `Connection` fields naming others are in the map: they and what they name
            // go now
            strip_hop_by_hop_answer(&mut headers, false);
        }
    }
    Ok((headers, seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &[u8], method: &Method) -> Result<Parsed, H1Error> {
        let mut buf = BytesMut::from(text);
        parse(&mut buf, method, &mut Scratch::default())
    }

    fn head(text: &[u8]) -> Head {
        match parse_all(text, &Method::GET) {
            Ok(Parsed::Final(h)) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_on_one_connection_keep_their_own_values() {
        let mut scratch = Scratch::default();
        let mut read = |text: &[u8]| {
            let mut buf = BytesMut::from(text);
            match parse(&mut buf, &Method::GET, &mut scratch) {
                Ok(Parsed::Final(h)) => h.response,
                other => panic!("{other:?}"),
            }
        };
        let mut seen = Vec::new();
        for n in ["1", "2", "2", "10"] {
            let text = format!(
                "HTTP/1.1 200 OK\r\nserver: m\r\nx-n: {n}\r\nconnection: keep-alive\r\n\
                 content-length: {}\r\n\r\n",
                n.len()
            );
            let res = read(text.as_bytes());
            assert_eq!(res.headers()["server"], "m");
            assert_eq!(
                res.headers()["content-length"],
                n.len().to_string().as_str()
            );
            assert!(!res.headers().contains_key("connection"));
            seen.push(res.headers()["x-n"].to_str().unwrap().to_owned());
        }
        assert_eq!(seen, ["1", "2", "2", "10"]);
    }

    #[test]
    fn an_answer_has_room_for_the_fields_the_layers_add() {
        let h = head(b"HTTP/1.1 200 OK\r\nserver: m\r\ncontent-length: 0\r\n\r\n");
        let fields = h.response.headers();
        assert_eq!(fields.len(), 2);
        assert!(
            fields.capacity() >= fields.len() + 3,
            "{}",
            fields.capacity()
        );
    }

    #[test]
    fn the_request_head_is_written_without_transfer_encoding() {
        let req = Request::builder()
            .method(Method::DELETE)
            .uri("/a?b=c")
            .header("host", "m.test")
            .header("transfer-encoding", "chunked")
            .header("x-two", "1")
            .header("x-two", "2")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        encode(&req, &mut out);
        assert_eq!(
            out,
            b"DELETE /a?b=c HTTP/1.1\r\nhost: m.test\r\nx-two: 1\r\nx-two: 2\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        for coded in [&b"gzip, chunked"[..], b"chunked, gzip", b"chunked;q=1"] {
            let mut text = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ".to_vec();
            text.extend_from_slice(coded);
            text.extend_from_slice(b"\r\n\r\n");
            assert!(
                matches!(parse_all(&text, &Method::GET), Err(H1Error::Framing(_))),
                "{}",
                String::from_utf8_lossy(coded)
            );
        }
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        let h = head(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = head(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), true));
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: x, Close\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.keep_alive);
        match parse_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            &Method::HEAD,
        ) {
            Ok(Parsed::Final(h)) => assert_eq!(h.framing, Framing::Length(0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broken_lengths_and_heads_are_errors() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
        ] {
            assert!(
                parse_all(bad, &Method::GET).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn interim_answers_are_taken_off_and_partial_heads_wait() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"[..]);
        assert!(matches!(
            parse(&mut buf, &Method::GET, &mut Scratch::default()),
            Ok(Parsed::Informational)
        ));
        assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(
            parse(&mut buf, &Method::GET, &mut Scratch::default()),
            Ok(Parsed::Partial)
        ));
        let mut big = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX: "[..]);
        big.resize(MAX_MEMBER_HEAD_BYTES + 1, b'a');
        assert!(matches!(
            parse(&mut big, &Method::GET, &mut Scratch::default()),
            Err(H1Error::HeadTooLarge)
        ));
    }

    #[test]
    fn the_body_stays_in_the_buffer_and_values_keep_their_bytes() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX-A: one two\r\n\r\nbody"[..]);
        let Ok(Parsed::Final(h)) = parse(&mut buf, &Method::GET, &mut Scratch::default()) else {
            panic!()
        };
        assert_eq!(&buf[..], b"body");
        assert_eq!(h.response.headers()["x-a"], "one two");
        assert_eq!(h.response.status(), StatusCode::OK);
    }
}
