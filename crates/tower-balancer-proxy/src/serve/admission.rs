//! What the server decides of a request before its stack sees it: refused (framing,
//! too many fields, no place under the connection caps), or let through holding the places
//! it needs.
//!
//! Why apart from the connection's service: each rule here is a limit an attacker leans on
//! (smuggling through framing, fields past what members take, streams past the
//! descriptors), and each answers at once, counted as refused, with no access-log line, as
//! hyper's own 400s are.

use super::answer::InFlight;
use super::guard::check_framing;
use super::place::{MemberPlace, NoPlace};
use super::stats::Refused;
use super::status::ServeBody;
use super::stream_claim::stream_refused;
use super::timeout::Progress;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};

/// Why a request was answered before the stack.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    /// Its framing (400).
    Framing,
    /// More fields than the limit (431).
    TooManyFields,
    /// No place under the connection cap for its member connection (503).
    NoRoom,
    /// No place left in its client's share under the per-client cap (429).
    ClientCap,
}

impl Refusal {
    /// The answer that says so.
    pub(super) fn page<B>(self) -> Response<ServeBody<B>> {
        match self {
            Self::Framing => bad_request(),
            Self::TooManyFields => too_many_fields(),
            Self::NoRoom => no_room(),
            Self::ClientCap => client_cap(),
        }
    }
}

/// Refuses `req` (see [`Refusal`]), or lets it through: `Some` for an HTTP/2 tunnel, with
/// the places it holds for as long as it lasts; a request behind a trusted proxy holds its
/// client's on `guard`. (Any other HTTP/2 stream takes its place when it goes out on a
/// member connection of its own, `StreamClaim`.) HTTP/2 requests with more than `max_fields` fields are refused with 431, as
/// HTTP/1 ones are by the parser: HTTP/2 itself limits only their bytes.
pub(super) fn admit<B>(
    req: &Request<B>,
    progress: &Progress,
    max_fields: usize,
    guard: &mut InFlight,
) -> Result<Option<MemberPlace>, Refusal> {
    let h2 = req.version() == http::Version::HTTP_2;
    if let Err(why) = check_framing(req) {
        progress.refused();
        progress.note_refused(Refused::Framing, Some(&why));
        return Err(Refusal::Framing);
    }
    if h2 && h2_fields(req.headers()) > max_fields {
        progress.refused();
        progress.note_refused(Refused::TooLarge, Some(&"HTTP/2 fields over max_headers"));
        return Err(Refusal::TooManyFields);
    }
    if h2 {
        // what the request carried pays for frames (`flood.rs`); a refused one does not
        progress.overhead().head(req);
    }
    // behind a trusted proxy, the client the proxy names holds its places while answered
    let behind = progress
        .request_place(req.headers())
        .map_err(|()| client_refused(progress))?;
    if req.method() == http::Method::CONNECT {
        // an HTTP/2 WebSocket (extended CONNECT; a plain one was refused) holds a member
        // connection for as long as it lasts: it takes a place of its own under the cap
        return match progress.member_place() {
            Ok(place) => Ok(Some(place.with_client(behind))),
            Err(NoPlace::Server) => {
                stream_refused();
                progress.note_refused(Refused::Capacity, Some(&"an HTTP/2 WebSocket"));
                Err(Refusal::NoRoom)
            }
            Err(NoPlace::Client) => Err(client_refused(progress)),
        };
    }
    if behind.is_some() {
        guard.hold(MemberPlace::default().with_client(behind));
    }
    Ok(None)
}

/// 400 for a request whose framing is refused; `Connection: close` so nothing after it on
/// this connection is read as another request.
fn bad_request<B>() -> Response<ServeBody<B>> {
    page(
        StatusCode::BAD_REQUEST,
        b"400 Bad Request\n",
        (http::header::CONNECTION, "close"),
    )
}

/// 431 for an HTTP/2 request with more fields than `server.max_headers` (HTTP/1's are
/// hyper's and the own path's to refuse, as they parse).
fn too_many_fields<B>() -> Response<ServeBody<B>> {
    page(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        b"431 Request Header Fields Too Large\n",
        (http::header::CONTENT_TYPE, "text/plain"),
    )
}

/// 503 for an HTTP/2 tunnel or stream when the connection cap has no place for its member
/// connection.
fn no_room<B>() -> Response<ServeBody<B>> {
    let text = b"503 Service Unavailable\n";
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        text,
        (http::header::RETRY_AFTER, "1"),
    )
}

/// 429 for an HTTP/2 tunnel or stream past its client's share under the per-client cap, as
/// a request past its client's rate gets.
fn client_cap<B>() -> Response<ServeBody<B>> {
    page(
        StatusCode::TOO_MANY_REQUESTS,
        b"429 Too Many Requests\n",
        (http::header::RETRY_AFTER, "1"),
    )
}

/// A stream past its client's share: counted with the connections the per-client cap
/// refused (`lb_client_limited_total{limit="connections"}`), and said at DEBUG, as they are.
fn client_refused(progress: &Progress) -> Refusal {
    progress.stats().refuse_per_client();
    tracing::debug!(
        client = ?progress.peer.map(|p| p.ip()),
        "an HTTP/2 stream past its client's connection cap: 429"
    );
    Refusal::ClientCap
}

/// The server's own answer: `status`, `text` and one header.
fn page<B>(
    status: StatusCode,
    text: &'static [u8],
    (name, value): (http::HeaderName, &'static str),
) -> Response<ServeBody<B>> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from_static(text))));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(name, http::HeaderValue::from_static(value));
    res
}

/// An HTTP/2 request's fields as HTTP/1.1 would count them: its `cookie` crumbs, which
/// browsers send a pair a field (RFC 9113 §8.2.3) and members get joined, count as one.
fn h2_fields(headers: &http::HeaderMap) -> usize {
    let cookies = headers.get_all(http::header::COOKIE).iter().count();
    headers.len() - cookies.saturating_sub(1)
}
