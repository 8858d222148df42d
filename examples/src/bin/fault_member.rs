//! A member for the fault-injection suite (`examples/tests/faults.rs`): a separate process, so
//! the suite can `kill -9` it, `SIGSTOP` it and start it again on the same port.
//!
//! ```text
//! fault_member --name node1 --listen 127.0.0.1:0 [--ledger FILE] [--status 503]
//!              [--reset-after-body] [--close-mid-response]
//! ```
//!
//! It prints `ready ADDR` once listening. Routes:
//! - `GET /stats`: how many requests it received (this one and health probes excluded);
//! - `GET /health`: the health probe's page;
//! - `POST /ledger?id=ID`: appends `ID` to the ledger file, then answers `ok ID`;
//! - `GET /forwarded`: answers with the `X-Forwarded-For` and `-Proto` it received;
//! - `PUT /echo`: answers with the request body, byte for byte (with `--reset-after-body`
//!   it reads the whole body and drops the connection without answering);
//! - anything else: `NAME PATH` (with `--close-mid-response`, the body stops half-way and
//!   the connection closes).
//!
//! Every answer carries `x-served-by: NAME`; `--status` replaces every status but `/stats`'.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// A member that misbehaves on request.
#[derive(Debug, Parser)]
struct Args {
    /// The member's name (its route).
    #[arg(long)]
    name: String,
    /// Where to listen.
    #[arg(long)]
    listen: SocketAddr,
    /// The ledger file POST ids are appended to.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Answer every request with this status.
    #[arg(long)]
    status: Option<u16>,
    /// On `PUT /echo`: read the body, then drop the connection without answering.
    #[arg(long)]
    reset_after_body: bool,
    /// On plain requests: send half the body, then close the connection.
    #[arg(long)]
    close_mid_response: bool,
}

struct State {
    args: Args,
    requests: AtomicU64,
    ledger: Option<Mutex<std::fs::File>>,
}

type Body = http_body_util::Either<Full<Bytes>, StreamBody<futures_stream::Half>>;

mod futures_stream {
    //! A body that sends half its bytes, then fails: hyper closes the connection mid-response.
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use hyper::body::Frame;

    /// Sends `first`, then an error.
    pub(crate) struct Half {
        pub(crate) first: Option<Bytes>,
    }

    impl futures_core::Stream for Half {
        type Item = Result<Frame<Bytes>, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(Some(match self.first.take() {
                Some(b) => Ok(Frame::data(b)),
                None => Err(std::io::Error::other("closing mid-response")),
            }))
        }
    }
}

fn text(status: StatusCode, name: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(http_body_util::Either::Left(Full::new(body.into())));
    *res.status_mut() = status;
    if let Ok(v) = name.parse() {
        res.headers_mut().insert("x-served-by", v);
    }
    res
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Body>, std::io::Error> {
    let a = &state.args;
    let path = req.uri().path().to_owned();
    if path == "/stats" {
        let n = state.requests.load(Ordering::Relaxed);
        return Ok(text(StatusCode::OK, &a.name, n.to_string()));
    }
    let status = a
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    if path == "/health" {
        // health probes are answered but not counted
        return Ok(text(status, &a.name, "health\n"));
    }
    state.requests.fetch_add(1, Ordering::Relaxed);
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/ledger") => {
            let id = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("id="))
                .unwrap_or_default()
                .to_owned();
            let _ = req.into_body().collect().await;
            if status == StatusCode::OK {
                if let Some(ledger) = &state.ledger {
                    let mut f = ledger
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    writeln!(f, "{id}")?;
                    f.flush()?;
                }
            }
            Ok(text(status, &a.name, format!("ok {id}")))
        }
        (Method::GET, "/forwarded") => {
            // what the balancer said about the client
            let header = |n: &str| {
                req.headers()
                    .get_all(n)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let body = format!(
                "x-forwarded-for: {}\nx-forwarded-proto: {}\nx-request-id: {}\n",
                header("x-forwarded-for"),
                header("x-forwarded-proto"),
                header("x-request-id")
            );
            Ok(text(status, &a.name, body))
        }
        (Method::PUT, "/echo") => {
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            if a.reset_after_body {
                return Err(std::io::Error::other(
                    "dropping the connection after the body",
                ));
            }
            Ok(text(status, &a.name, body))
        }
        _ => {
            let line = format!("{} {path}\n", a.name);
            if a.close_mid_response {
                let half = Bytes::from(line.clone()).slice(..line.len() / 2);
                let mut res = Response::new(http_body_util::Either::Right(StreamBody::new(
                    futures_stream::Half { first: Some(half) },
                )));
                res.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, line.len().into());
                if let Ok(v) = a.name.parse() {
                    res.headers_mut().insert("x-served-by", v);
                }
                return Ok(res);
            }
            Ok(text(status, &a.name, line))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let ledger = match &args.ledger {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("ready {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let state = Arc::new(State {
        args,
        requests: AtomicU64::new(0),
        ledger,
    });
    loop {
        let (sock, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), svc)
                .await;
        });
    }
}
