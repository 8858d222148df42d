//! The floor under any hyper-based balancer: a reverse proxy with nothing but hyper's server,
//! hyper-util's pooled client and round robin over the members. No hygiene, no forwarding
//! headers, no timeouts, no failover: not something to deploy, only a yardstick.
//!
//! It lives in the benches crate, beside `pick_count`, so CI's instruction check
//! (`scripts/instructions-check.sh`) builds it without the proxy's dev-dependencies.
//! `scripts/instructions.sh` counts its instructions per request beside `lb_bench` (the whole
//! tower-balancer stack) and nginx, so what the project's own code costs, and what a balancer
//! built on hyper costs at least, can be told apart.
//!
//! ```sh
//! cargo run --profile perf -p benches --bin hyper_floor -- \
//!   --listen 127.0.0.1:8092 --member 127.0.0.1:9763 --member 127.0.0.1:9764 --seconds 60
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::uri::{self, Authority};
use http::{header, HeaderValue, Request, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

// the allocator lb_bench runs with, so the two compare like for like
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// the flags lb_bench takes, so scripts start either the same way
#[path = "../../../crates/tower-balancer-proxy/examples/support/args.rs"]
mod args;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (listen, seconds, members) = args::common("127.0.0.1:8092")?;
    println!("hyper_floor on {listen}, one thread, for {seconds} s");
    benches::serve_for(seconds, serve(listen, members))
}

async fn serve(listen: SocketAddr, members: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    // each member's authority and Host value, made once
    let members: Arc<[(Authority, HeaderValue)]> = members
        .iter()
        .map(|m| Ok((m.parse()?, HeaderValue::from_str(m)?)))
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?
        .into();
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, members, next) = (client.clone(), members.clone(), next.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let (authority, host) =
                    &members[next.fetch_add(1, Ordering::Relaxed) % members.len()];
                let mut parts = uri::Parts::default();
                parts.scheme = Some(uri::Scheme::HTTP);
                parts.authority = Some(authority.clone());
                parts.path_and_query = req.uri().path_and_query().cloned();
                let uri = Uri::from_parts(parts);
                req.headers_mut().insert(header::HOST, host.clone());
                let client = client.clone();
                async move {
                    *req.uri_mut() = uri.map_err(|e| e.to_string())?;
                    client.request(req).await.map_err(|e| e.to_string())
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
