//! An access log: one line per request, Apache's "combined" format or JSON, with the member
//! that served it, the attempts it took and the member's time, written when the response
//! body ends.
//!
//! Why off the request path: a slow disk or a blocked stdout must never hold a request. Lines
//! go through a bounded channel to one writer task; when the channel is full the line is
//! counted as dropped ([`AccessLog::dropped`], `lb_access_log_dropped_total`) and the
//! request goes on, as are lines the writer fails to write (a closed stdout, a full disk:
//! one WARN a second says so).
//!
//! ```
//! use tower_balancer_proxy::access_log::{AccessLog, LogFormat, LogTarget};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! let (log, _writer) = AccessLog::start(&LogTarget::Stdout, LogFormat::Combined)?;
//! let layer = log.layer(); // outermost in the stack, inside the server
//! # let _ = layer; Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http::{header, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::sync::mpsc;
use tower_balancer::balance::{AttemptError, SentTo, ServedBy};
use tower_balancer::client::ClientAddr;
use tower_balancer::error::find_in_chain;
use tower_balancer::failover::{Attempts, FailoverError};
use tower_balancer::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use crate::serve::client_status;
use crate::serve::status::page_text;

mod body;
mod escape;
mod line;
mod time;
mod writer;
pub use body::LoggedBody;
use line::write;
pub use writer::AccessLogWriter;

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// A file, appended to (created when missing).
    File(PathBuf),
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How a line looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Apache's "combined" format, then `member=… attempts=… upstream_ms=… total_ms=…`.
    #[default]
    Combined,
    /// One JSON object a line.
    Json,
}

/// The log's sending side: cheap to clone, one per stack.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<String>,
    format: LogFormat,
    dropped: Arc<AtomicU64>,
    control: writer::Control,
}

/// How many lines an [`AccessLog`] dropped (for metrics).
#[derive(Debug, Clone)]
pub struct DroppedLines(Arc<AtomicU64>);

impl DroppedLines {
    /// Lines dropped so far.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl AccessLog {
    /// Opens `target` and starts the writer on the current Tokio runtime.
    ///
    /// # Errors
    /// The file's error (a directory that does not exist, no permission).
    pub fn start(target: &LogTarget, format: LogFormat) -> io::Result<(Self, AccessLogWriter)> {
        Self::start_counting(target, format, None)
    }

    /// As [`start`](Self::start), counting dropped lines on `dropped` (the log this one
    /// replaces) when given, so the metric goes on across a reload.
    pub(crate) fn start_counting(
        target: &LogTarget,
        format: LogFormat,
        dropped: Option<DroppedLines>,
    ) -> io::Result<(Self, AccessLogWriter)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = dropped.map(|d| d.0).unwrap_or_default();
        let (writer, control) = AccessLogWriter::start(target, rx, dropped.clone())?;
        let log = Self {
            tx,
            format,
            dropped,
            control,
        };
        Ok((log, writer))
    }

    /// Opens the file again by its name, for logrotate (which moves the file and sends the
    /// balancer SIGHUP or SIGUSR1); lines queued before go to the old file. Nothing for
    /// stdout.
    pub fn reopen(&self) {
        self.control.reopen();
    }

    /// Lines dropped because the writer could not keep up, or could not write them (a
    /// closed stdout, a full disk).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A reader of the dropped-lines count that does not keep the writer open.
    #[must_use]
    pub fn dropped_lines(&self) -> DroppedLines {
        DroppedLines(self.dropped.clone())
    }

    /// The layer that logs the requests of the service it wraps.
    #[must_use]
    pub fn layer(&self) -> AccessLogLayer {
        AccessLogLayer {
            log: Some(self.clone()),
        }
    }

    /// Counts the lines still queued, which a writer that did not finish in time
    /// ([`AccessLogWriter::finish`]) will never write, as dropped; how many.
    pub fn abandon_queued(&self) -> u64 {
        let queued = (self.tx.max_capacity() - self.tx.capacity()) as u64;
        self.dropped.fetch_add(queued, Ordering::Relaxed);
        queued
    }

    fn send(&self, line: String) {
        // the writer is behind (a blocked stdout, a slow disk): said once a second, counted
        static BEHIND: tower_balancer::log_budget::LogBudget =
            tower_balancer::log_budget::LogBudget::warn(1, "access log lines dropped");
        if self.tx.try_send(line).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if BEHIND.admit() {
                tracing::warn!(
                    dropped,
                    "the access log's writer is behind; lines are dropped"
                );
            }
        }
    }
}

/// See [`AccessLog::layer`].
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    log: Option<AccessLog>,
}

impl AccessLogLayer {
    /// `log`'s layer, or one that logs nothing (and costs next to nothing) for `None`.
    #[must_use]
    pub fn new(log: Option<AccessLog>) -> Self {
        Self { log }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLogService {
            inner,
            log: self.log.clone(),
        }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLogService<S> {
    inner: S,
    log: Option<AccessLog>,
}

/// What is known of a request before its response.
#[derive(Debug)]
struct Entry {
    /// The status the server answered instead of the stack's (0: none), see [`Replaced`].
    replaced: AtomicU16,
    log: AccessLog,
    start: Instant,
    wall: SystemTime,
    client: Option<SocketAddr>,
    line: String,
    /// The client's headers as sent (`None`: absent, `-` in the line), escaped as the
    /// line's format writes them ([`escape`]).
    referer: Option<http::HeaderValue>,
    agent: Option<http::HeaderValue>,
    request_id: Option<http::HeaderValue>,
    /// A `HEAD` request: its answer has no body.
    head: bool,
    /// The attempts the balancer sent, for a line written with no answer (499).
    sent: SentTo,
}

impl Entry {
    /// The request's sends to members, resends included; `fallback` for a stack that
    /// counts none (no balancer below the log, or the request reached no member).
    fn sends_or(&self, fallback: impl FnOnce() -> usize) -> usize {
        match self.sent.count() {
            0 => fallback(),
            sent => sent,
        }
    }
}

impl<S, B, RB> Service<Request<B>> for AccessLogService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<LoggedBody<RB>>;
    type Error = BoxError;
    type Future = LoggedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(log) = &self.log else {
            return LoggedFuture {
                inner: self.inner.call(req),
                entry: None,
                logging: false,
            };
        };
        let header = |n: header::HeaderName| req.headers().get(n).cloned();
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let entry = Arc::new(Entry {
            replaced: AtomicU16::new(0),
            log: log.clone(),
            start: Instant::now(),
            wall: SystemTime::now(),
            client: req.extensions().get::<ClientAddr>().map(|a| a.0),
            line: format!("{} {target} {:?}", req.method(), req.version()),
            referer: header(header::REFERER),
            agent: header(header::USER_AGENT),
            request_id: header(header::HeaderName::from_static("x-request-id")),
            head: req.method() == http::Method::HEAD,
            sent: SentTo::new(),
        });
        req.extensions_mut().insert(entry.sent.clone());
        LoggedFuture {
            inner: self.inner.call(req),
            entry: Some(entry),
            logging: true,
        }
    }
}

pin_project! {
    /// The future of [`AccessLogService`].
    #[derive(Debug)]
    pub struct LoggedFuture<F> {
        #[pin]
        inner: F,
        // boxed: the future and its answer are moved layer by layer, and without a log an
        // inline entry was ~220 bytes of copying a move
        entry: Option<Arc<Entry>>,
        logging: bool,
    }

    impl<F> PinnedDrop for LoggedFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // dropped before its answer: the client went away (closed its connection, reset
            // its stream) while the request waited on a member; nginx's 499, so the requests
            // of a "members slow, clients give up" incident are in the log too. Or the
            // server's graceful timeout ran out with the request under way: 444, nginx's
            // "closed without an answer", so a stop's cost is told apart from clients'
            if let Some(entry) = this.project().entry.take() {
                let status = if crate::serve::dropped_at_stop() {
                    SERVER_DROPPED
                } else {
                    CLIENT_CLOSED
                };
                // the member that held the request, if it got one
                let (attempts, member) = entry.sent.get();
                let done = Done {
                    status,
                    member: member.map(|m| m.as_str().to_owned()),
                    attempts,
                    upstream: entry.start.elapsed(),
                    cut: false,
                };
                write(&entry, &done, 0);
            }
        }
    }
}

/// The status written for a request its client abandoned before its answer (nginx's).
const CLIENT_CLOSED: u16 = 499;

/// The status written for a request under way when the server's graceful timeout ran out: it
/// closed the connection without an answer (nginx's 444).
const SERVER_DROPPED: u16 = 444;

impl<F, RB, E> Future for LoggedFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<LoggedBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        let Some(entry) = this.entry.take() else {
            // not logging: pass the answer through
            return Poll::Ready(match out {
                Ok(res) if !*this.logging => Ok(res.map(|inner| LoggedBody {
                    inner,
                    pending: None,
                    bytes: 0,
                })),
                Ok(_) => Err("polled after completion".into()),
                Err(e) => Err(e.into()),
            });
        };
        let upstream = entry.start.elapsed();
        Poll::Ready(match out {
            Ok(res) => {
                let done = Done {
                    status: res.status().as_u16(),
                    member: res
                        .extensions()
                        .get::<ServedBy>()
                        .map(|s| s.0.id().to_string()),
                    // every send, a member client's resend after a keep-alive race too
                    attempts: entry
                        .sends_or(|| res.extensions().get::<Attempts>().map_or(1, |a| a.0)),
                    upstream,
                    cut: false,
                };
                let mut res = res.map(|body| LoggedBody {
                    inner: body,
                    pending: None,
                    bytes: 0,
                });
                res.extensions_mut().insert(Replaced(entry.clone()));
                res.body_mut().pending = Some((entry, done));
                Ok(res)
            }
            Err(e) => {
                let e = e.into();
                // what failover tried, from the error it gave up with
                let done = Done {
                    status: client_status(&*e).as_u16(),
                    member: find_in_chain::<AttemptError>(&*e).map(|a| a.member().id().to_string()),
                    attempts: entry.sends_or(|| {
                        find_in_chain::<FailoverError>(&*e).map_or(
                            usize::from(find_in_chain::<AttemptError>(&*e).is_some()),
                            FailoverError::attempts,
                        )
                    }),
                    upstream,
                    cut: false,
                };
                // the server answers with its page for the status (`serve::status`)
                let page = if entry.head {
                    0
                } else {
                    page_text(StatusCode::from_u16(done.status).unwrap_or_default()).len() as u64
                };
                write(&entry, &done, page);
                Err(e)
            }
        })
    }
}

/// Carried in a logged answer's extensions: the server tells the log through it when it
/// answered something else than the stack's answer (a 502 for a body that failed before any
/// of it was sent), so the line says what the client got, not what the member said.
#[derive(Debug, Clone)]
pub(crate) struct Replaced(Arc<Entry>);

impl Replaced {
    /// The client is answered `status` instead.
    pub(crate) fn with(&self, status: StatusCode) {
        self.0.replaced.store(status.as_u16(), Ordering::Relaxed);
    }
}

/// What the response said.
#[derive(Debug)]
struct Done {
    status: u16,
    member: Option<String>,
    attempts: usize,
    upstream: Duration,
    /// The member's answer body failed after its head was sent, or the server's stop cut
    /// it: the client got it cut short.
    cut: bool,
}

#[cfg(test)]
mod tests;
