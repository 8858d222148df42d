//! One client connection: its TLS handshake, HTTP/1.1 by the own path or hyper, HTTP/2,
//! the service each request is called through, and how it ends.
//!
//! Why apart from the accept loop (`server.rs`): everything here is per connection and runs
//! on the connection's own task, after the server has counted it under its caps.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{Builder, UpgradeableConnection};
use hyper_util::server::graceful::Watcher;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_balancer::client::{ClientAddr, ClientTls, ClientTlsName};
use tower_balancer::task_timer::TaskTimer;
use tower_balancer::BoxError;

use super::admission::admit;
use super::answer::{InFlight, Tracked};
use super::client_body::ClientBody;
use super::config::ServeConfig;
use super::front::{self, HeadLimits, Rewind};
use super::going_away;
use super::read_ahead::read_ahead;
use super::stack::Servable;
use super::stats::Refused;
use super::status::{error_response, RateRefusal, ServeBody};
use super::stream_claim::{self, StreamClaim};
use super::tasks::Tasks;
use super::timeout::{is_header_timeout, IdleLimits, Progress, Watched};
use super::upload_limit;
use super::window::Windowed;
use crate::forward::Tunnel;

/// How long writing a 408 to a client that timed out may take.
pub(super) const ANSWER_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// One client connection, from the TLS handshake (when the front has TLS) to its last
/// request; `held` (its slot under the caps, its count) is released when it ends. Its
/// HTTP/2 streams take places from `client`'s share under the per-client cap, if any.
pub(super) async fn connection<S: Servable>(
    sock: TcpStream,
    (peer, client): (SocketAddr, Option<super::place::ClientSide>),
    (stack, tasks): (S, Tasks),
    config: Arc<ServeConfig>,
    watchers: (Watcher, tokio::sync::watch::Receiver<()>),
    held: impl Send,
) {
    let _held = held;
    let progress = Arc::new(Progress::counting(
        config.stats.clone(),
        (peer, client),
        tasks.clone(),
        super::upload_limit::UploadLimit {
            max: config.http2_max_uploads,
            within: config.header_read_timeout,
            front: config.read_ahead.clone(),
        },
    ));
    let limits = IdleLimits {
        first: config.header_read_timeout,
        keep_alive: config.keep_alive_timeout,
        send: config.send_timeout,
    };
    // the connection's one timer: hyper's head deadlines and its requests' attempt deadlines
    let timer = TaskTimer::new();
    let builder = http_builder(&config, &timer, tasks.clone());
    let heads = HeadLimits {
        bytes: config.max_header_bytes,
        fields: config.max_headers,
        time: config.header_read_timeout,
    };
    let Some(tls) = config.tls.clone() else {
        let svc = connection_service(stack, peer, None, (progress.clone(), config.max_headers));
        let io = Watched::new(sock, progress.clone(), limits);
        let refused = timer
            .scope(drive(io, &builder, svc, watchers, Some(heads)))
            .await;
        if let Some(why) = refused {
            progress.note_refused(why, None);
        }
        progress.run_tunnel().await;
        return;
    };
    let Some(stream) = tls_handshake(sock, tls, &config, &progress, watchers.1.clone()).await
    else {
        return;
    };
    let sni = stream.get_ref().1.server_name().map(Arc::from);
    // HTTP/2 (by ALPN) is hyper's from the first byte
    let own = (stream.get_ref().1.alpn_protocol() != Some(b"h2")).then_some(heads);
    let svc = connection_service(
        stack,
        peer,
        Some(sni),
        (progress.clone(), config.max_headers),
    );
    let io = Watched::new(stream, progress.clone(), limits).over_tls();
    let refused = timer.scope(drive(io, &builder, svc, watchers, own)).await;
    if let Some(why) = refused {
        progress.note_refused(why, None);
    }
    // an HTTP/1.1 connection switched to a tunnel runs it here, holding its slot under the
    // caps, where the server's stop waits for it and closes it at the graceful timeout
    progress.run_tunnel().await;
}

/// The TLS handshake of a connection to the TLS front (`None`: it failed, was slow, sent
/// plain HTTP, which gets its 400 here, or the server stopped first).
async fn tls_handshake(
    sock: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    config: &ServeConfig,
    progress: &Arc<Progress>,
    mut stop: tokio::sync::watch::Receiver<()>,
) -> Option<tokio_rustls::server::TlsStream<super::under_tls::Counted>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    // the handshake gets no longer than a request head would: an operator shortening the
    // header-read timeout against idle sockets means the ones that never start TLS too
    let deadline = Instant::now() + config.handshake_timeout.min(config.header_read_timeout);
    // a stop ends a handshake under way at once: nothing was asked yet, so nothing is lost
    // (it waited out the handshake timeout, holding the stop up with it)
    let plain = tokio::time::timeout_at(deadline, super::plain_on_tls::is_plain_http(&sock));
    let plain = tokio::select! {
        plain = plain => plain,
        _ = stop.changed() => return None,
    };
    if let Ok(true) = plain {
        tracing::debug!(client = ?progress.peer, "plain HTTP sent to the TLS port: 400");
        config.stats.note_plain_http_on_tls();
        let limit = config.max_header_bytes;
        super::plain_on_tls::refuse(sock, limit, config.header_read_timeout).await;
        return None;
    }
    // counted under rustls: the send timeout judges what reached the client (`under_tls.rs`)
    let sock = super::under_tls::Counted::new(sock, progress.clone());
    // a failed or slow handshake: drop the connection
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(sock));
    let handshake = tokio::select! {
        done = handshake => done,
        _ = stop.changed() => return None,
    };
    let Ok(Ok(stream)) = handshake else {
        config.stats.handshake(false);
        return None;
    };
    config.stats.handshake(true);
    Some(stream)
}

/// What a connection's service answers: the stack's body or an error page, tracked.
type Answer<R> = Response<Tracked<ServeBody<R>>>;

/// The service called for each request of one connection (by the own HTTP/1.1 path, or by
/// hyper through [`drive`]'s adapter): marks the request's head
/// and response on the connection's progress (for its idle limits), tags the request with
/// the client's address, TLS and the name it gave in TLS (`tls`: `Some` over TLS), refuses bad framing with 400, and maps stack errors to
/// statuses; what is refused before the stack, and the places a request holds under the
/// connection cap, are [`admit`]'s.
fn connection_service<S: Servable>(
    stack: S,
    peer: SocketAddr,
    tls: Option<Option<Arc<str>>>,
    (heads, max_fields): (Arc<Progress>, usize),
) -> impl hyper::service::Service<
    Request<ClientBody>,
    Response = Answer<S::ResBody>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Answer<S::ResBody>, std::convert::Infallible>> + Send + 'static,
> + Clone
       + Send
       + 'static {
    hyper::service::service_fn(move |mut req: Request<ClientBody>| {
        heads.head_done(&req);
        let mut guard = InFlight::new(heads.clone());
        let conn_progress = heads.clone();
        let connect = req.method() == http::Method::CONNECT;
        tag_client(&mut req, peer, tls.as_ref());
        let admission = admit(&req, &conn_progress, max_fields, &mut guard);
        if matches!(admission, Ok(None)) && req.version() == http::Version::HTTP_2 {
            // a stream takes a place for its member connection only if it goes out on one of
            // its own, which the pick decides (`StreamClaim`)
            let claim = StreamClaim::new(heads.clone());
            req.extensions_mut().insert(claim.clone());
            guard.claims(claim);
        }
        let mut stack = stack.clone();
        async move {
            let place = match admission {
                Ok(place) => place,
                Err(refusal) => {
                    return Ok::<_, std::convert::Infallible>(
                        refusal.page().map(|b| Tracked::new(b, guard)),
                    )
                }
            };
            let ready: Result<(), BoxError> = std::future::poll_fn(|cx| stack.poll_ready(cx))
                .await
                .map_err(Into::into);
            let res = match ready {
                Ok(()) => stack.call(req).await.map_err(Into::into),
                Err(e) => Err(e),
            };
            let res = match res {
                Ok(r) => r.map(Either::Left),
                Err(e) => error_response(&e),
            };
            let status = res.status();
            if let Some(claim) = guard.claim() {
                stream_claim::count_refused(&conn_progress, claim, status);
            }
            conn_progress.stats().note_answer(status);
            if status == StatusCode::TOO_MANY_REQUESTS
                && res.extensions().get::<RateRefusal>().is_some()
            {
                conn_progress.stats().note_rate_limited();
            }
            if status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
                conn_progress.upgraded();
                let bytes = conn_progress.stats().tunnel_bytes();
                let tunnel = res.extensions().get::<Tunnel>();
                if let Some(mut tunnel) = tunnel.and_then(|t| t.take_counted(bytes)) {
                    // behind a trusted proxy, its client's place lasts as long as the tunnel
                    if let Some(held) = guard.take_place() {
                        tunnel = Box::pin(async move {
                            let _held = held;
                            tunnel.await;
                        });
                    }
                    // an HTTP/2 stream's runs beside the connection's other streams
                    conn_progress.take_tunnel(tunnel, place);
                }
            }
            Ok::<_, std::convert::Infallible>(res.map(|b| Tracked::new(b, guard)))
        }
    })
}

/// Tags `req` with its client's address, and over TLS (`tls`: `Some`) with TLS and the name
/// the client gave in it.
fn tag_client<B>(req: &mut Request<B>, peer: SocketAddr, tls: Option<&Option<Arc<str>>>) {
    req.extensions_mut().insert(ClientAddr(peer));
    if let Some(sni) = tls {
        req.extensions_mut().insert(ClientTls);
        if let Some(name) = sni {
            req.extensions_mut().insert(ClientTlsName(name.clone()));
        }
    }
}

/// The header count hyper's HTTP/1 parser holds to when given no limit (hyper's
/// `DEFAULT_MAX_HEADERS`), which is also ours.
const HYPER_MAX_HEADERS: usize = 100;

/// hyper's server settings from ours: header limits and timers for HTTP/1.1, extended
/// CONNECT and the header list limit for HTTP/2.
fn http_builder(config: &ServeConfig, timer: &TaskTimer, tasks: Tasks) -> Builder<Tasks> {
    // HTTP/2 streams run on tasks the server owns, to cancel at its graceful timeout
    let mut builder = Builder::new(tasks);
    let mut http1 = builder.http1();
    http1
        // one tokio timer a connection for hyper's per-request header-read deadline
        .timer(super::head_timer::ConnectionTimer::new(timer.clone()))
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes);
    // hyper parses into a stack array of its default size when no limit is set, and fills a
    // fresh vector of the limit's size on every request when one is (~1,700 instructions a
    // request, scripts/instructions-check.sh): the default is left to hyper
    if config.max_headers != HYPER_MAX_HEADERS {
        http1.max_headers(config.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        // RFC 8441: WebSocket over HTTP/2, bridged to HTTP/1.1 upgrades to members
        .enable_connect_protocol()
        .max_concurrent_streams(config.http2_max_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Serves one connection, plain or TLS alike, until it closes or shutdown ends it: first by
/// the own HTTP/1.1 path when `own` gives its head limits, then by hyper from the first
/// request that path hands over. A client that stalled mid-headers gets its 408.
async fn drive<IO, S, B>(
    io: Watched<IO>,
    builder: &Builder<Tasks>,
    mut svc: S,
    (watcher, mut stop): (Watcher, tokio::sync::watch::Receiver<()>),
    own: Option<HeadLimits>,
) -> Option<Refused>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<ClientBody>,
            Response = Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut read = bytes::BytesMut::new();
    let alpn_h2 = own.is_none();
    if let Some(limits) = own {
        match front::serve(&mut io.clone(), &mut svc, limits, &stop).await {
            front::Ended::Closed => return None,
            front::Ended::HandOver(bytes) => read = bytes,
        }
    }
    if alpn_h2 || read.starts_with(b"PRI * HTTP/2") {
        // known before its first request, so a stop closes one that never makes any
        io.progress().speaks_h2();
    }
    let progress = io.progress_handle();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let http1 = req.version() < http::Version::HTTP_2;
        let head = req.method() == http::Method::HEAD;
        // over HTTP/2 the answer is watched while it waits on the client's window
        let h2 = (!http1).then(|| progress.clone());
        let answer = upload_limit::call(&svc, req, h2.as_ref());
        async move {
            let answer = match answer {
                Ok(answer) => answer,
                Err(past) => past.call().await?,
            };
            let res = match answer.await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            let res = read_ahead(res, http1, head).await;
            Ok::<_, h2::Error>(res.map(|b| Windowed::new(b, h2)))
        }
    });
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(Rewind::new(read, io.clone())), svc);
    // held to the end: the server's stop waits for every watcher to go
    let _watcher = watcher;
    // `None`: an HTTP/2 limit asked the connection to go away, and its grace ran out
    let shut = UpgradeableConnection::graceful_shutdown;
    let ended = going_away::serve(pin!(conn), shut, &mut stop, io.progress()).await?;
    if let Err(e) = &ended {
        super::flood::note_calm(&**e, io.progress());
    }
    // hyper's header timer fired, or the socket cut a first head that took too long
    if ended.as_ref().is_err_and(|e| is_header_timeout(&**e)) || io.progress().cut_mid_head() {
        io.answer_timeout(ANSWER_LIMIT).await;
        return None;
    }
    ended.err().and_then(|e| refused_head(&*e))
}

/// Whether hyper ended a connection on a request head it refused (and answered 400, 431 or
/// 414 itself, before the stack saw the request): why.
fn refused_head(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let e = tower_balancer::error::sources(e).find_map(|e| e.downcast_ref::<hyper::Error>())?;
    if e.is_parse_too_large() {
        Some(Refused::TooLarge)
    } else if e.is_parse() {
        Some(Refused::Malformed)
    } else {
        None
    }
}
