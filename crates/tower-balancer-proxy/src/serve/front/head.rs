//! Reading a client's request head: the requests the server serves itself, and the ones it
//! hands to hyper.
//!
//! Why so narrow: only a request with no body and nothing unusual in its head is served
//! here: HTTP/1.1, no `Content-Length` or `Transfer-Encoding`, no `Expect`, no protocol
//! switch, not `CONNECT`. With no body there is no length for two readers to disagree on, so
//! no smuggling; everything else (every framing rule, every error answer) stays hyper's,
//! which reads the head again from its first byte.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, Method, Request, Uri, Version};

use super::HeadLimits;
use crate::recent_values::RecentValues;
use crate::serve::client_body::ClientBody;

/// httparse's field slots: hyper's default limit, so a head with more goes to hyper.
const MAX_FIELDS: usize = 100;

/// Fields the stack typically adds to a request: `X-Forwarded-For`, `-Proto`, `-Host`,
/// `-Port`, `Forwarded`, `X-Request-Id`, `Via` and one spare. hyper sizes the map exactly, and
/// the first insert then grew it (~900 instructions a request).
const ADDED_FIELDS: usize = 8;

/// What the bytes read so far hold.
// returned once a request and taken apart at once: a box would be an allocation a request
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Head {
    /// The start of a head only.
    Partial,
    /// A request served here; `close`: its client asked to close the connection after it.
    Own {
        /// The request, its head's bytes shared by its fields.
        req: Request<ClientBody>,
        /// `Connection: close`.
        close: bool,
    },
    /// Anything else: hyper reads it, from its first byte.
    HandOver,
}

/// Where a field's name and value lie in the head.
type FieldAt = (usize, usize, usize, usize);

/// What reading heads keeps between one request and the next on a connection.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Where the head's fields lie (kept for its room).
    fields: Vec<FieldAt>,
    /// The last request's field values, so the next request's repeats are not checked
    /// again.
    recent: RecentValues,
}

/// Parses the head at the start of `buf`. A request served here is split off `buf`, which
/// keeps what follows it (a pipelined request); on [`Head::HandOver`] and
/// [`Head::Partial`], `buf` is as it was. A head over `limits` is hyper's (431). `scratch`
/// is kept between requests.
pub(crate) fn parse(buf: &mut BytesMut, limits: HeadLimits, scratch: &mut Scratch) -> Head {
    let Scratch { fields, recent } = scratch;
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        // bad bytes, too many fields, HTTP/2's preface: hyper answers or serves it
        Err(_) => return Head::HandOver,
    };
    // over a limit: hyper answers 431
    if parsed.version != Some(1) || parsed.headers.len() > limits.fields || len > limits.bytes {
        return Head::HandOver;
    }
    let Some(method) = parsed
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
    else {
        return Head::HandOver;
    };
    if method == Method::CONNECT {
        return Head::HandOver;
    }
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| s.as_ptr() as usize - base;
    let Some(path) = parsed.path.map(|p| (at(p.as_bytes()), p.len())) else {
        return Head::HandOver;
    };
    let mut close = false;
    fields.clear();
    for f in parsed.headers.iter() {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for token in f.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"upgrade") {
                    return Head::HandOver;
                }
                close |= token.eq_ignore_ascii_case(b"close");
            }
        } else if is_handed_over(name) {
            return Head::HandOver;
        }
        fields.push((at(name), name.len(), at(f.value), f.value.len()));
    }
    let head = buf.split_to(len).freeze();
    match build(&head, method, path, fields, recent) {
        Some(req) => Head::Own { req, close },
        None => {
            // a target or a field http will not take: hyper reads it and answers
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Head::HandOver
        }
    }
}

/// Fields that mean a body, a `100 Continue` or a protocol switch: hyper's to serve.
fn is_handed_over(name: &[u8]) -> bool {
    [CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT, UPGRADE]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

/// The request from its head's bytes: the target and the field values share them.
fn build(
    head: &Bytes,
    method: Method,
    (path, path_len): (usize, usize),
    fields: &[FieldAt],
    recent: &mut RecentValues,
) -> Option<Request<ClientBody>> {
    let uri = Uri::from_maybe_shared(head.slice(path..path + path_len)).ok()?;
    // room for what the stack adds (forwarding fields, a request id) without growing
    let mut headers = HeaderMap::with_capacity(fields.len() + ADDED_FIELDS);
    for (place, &(n, n_len, v, v_len)) in fields.iter().enumerate() {
        let name = HeaderName::from_bytes(&head[n..n + n_len]).ok()?;
        let value = recent.value(place, head, v, v + v_len).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(ClientBody::empty());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        bytes: 1 << 20,
        fields: MAX_FIELDS,
        time: std::time::Duration::from_secs(1),
    };

    fn parse_str(s: &str) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(s.as_bytes());
        let head = parse(&mut buf, LIMITS, &mut Scratch::default());
        (head, buf)
    }

    #[test]
    fn a_plain_get_is_served_here_and_the_next_request_stays() {
        let (head, rest) =
            parse_str("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nGET /next");
        let Head::Own { req, close } = head else {
            panic!("{head:?}")
        };
        assert!(!close);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "x");
        let xa: Vec<_> = req.headers().get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn requests_on_one_connection_keep_their_own_values() {
        let mut scratch = Scratch::default();
        let mut agents = Vec::new();
        for agent in ["a/1", "a/1", "b/2", "a/1"] {
            let text = format!("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: {agent}\r\n\r\n");
            let mut buf = BytesMut::from(text.as_bytes());
            let Head::Own { req, .. } = parse(&mut buf, LIMITS, &mut scratch) else {
                panic!("{text:?}")
            };
            assert_eq!(req.headers()["host"], "x");
            agents.push(req.headers()["user-agent"].to_str().unwrap().to_owned());
        }
        assert_eq!(agents, ["a/1", "a/1", "b/2", "a/1"]);
    }

    #[test]
    fn connection_close_is_noted_among_other_tokens() {
        let (head, _) =
            parse_str("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(matches!(head, Head::Own { close: true, .. }), "{head:?}");
    }

    #[test]
    fn what_hyper_serves_is_handed_over_untouched() {
        for s in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive,upgrade\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let (head, rest) = parse_str(s);
            assert!(matches!(head, Head::HandOver), "{s:?}: {head:?}");
            assert_eq!(&rest[..], s.as_bytes(), "{s:?}: bytes kept for hyper");
        }
    }

    #[test]
    fn a_target_http_refuses_is_handed_over_with_every_byte() {
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\nNEXT",
            "a".repeat(70_000)
        );
        let (head, rest) = parse_str(&long);
        assert!(matches!(head, Head::HandOver), "{head:?}");
        assert_eq!(&rest[..], long.as_bytes());
    }

    #[test]
    fn heads_over_a_limit_go_to_hyper() {
        let s = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        let fields = HeadLimits {
            fields: 2,
            ..LIMITS
        };
        let bytes = HeadLimits {
            bytes: s.len() - 1,
            ..LIMITS
        };
        for limits in [fields, bytes] {
            let mut buf = BytesMut::from(&s[..]);
            let head = parse(&mut buf, limits, &mut Scratch::default());
            assert!(matches!(head, Head::HandOver), "{limits:?}: {head:?}");
            assert_eq!(&buf[..], &s[..]);
        }
        let mut buf = BytesMut::from(&s[..]);
        let exact = HeadLimits {
            fields: 3,
            bytes: s.len(),
            ..LIMITS
        };
        assert!(matches!(
            parse(&mut buf, exact, &mut Scratch::default()),
            Head::Own { .. }
        ));
    }

    #[test]
    fn a_head_cut_short_is_partial() {
        for s in ["", "GET", "GET / HTTP/1.1\r\nHost: x\r\n"] {
            let (head, rest) = parse_str(s);
            assert!(matches!(head, Head::Partial), "{s:?}: {head:?}");
            assert_eq!(&rest[..], s.as_bytes());
        }
    }
}
