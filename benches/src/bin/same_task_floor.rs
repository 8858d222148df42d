//! What a member connection driven from the client's own task would cost: hyper's server
//! and hyper's low-level HTTP/1 client (`hyper::client::conn::http1`), each client connection
//! with its own member connection polled by the same task, so a request's trip to the member
//! needs no pool checkout (hyper-util's pool hashes its key with SipHash three times a
//! request) and no wake-up of another task (hyper-util's client runs each member connection
//! as a task of its own).
//!
//! Why it exists: issue K asks whether the floor under a hyper-based balancer
//! (`hyper_floor`, hyper's server + hyper-util's pooled client) can move. This is the lower
//! bound of the member client the issue allows (a pool keyed by member, driven from the
//! request's task): `scripts/instructions.sh`-style counts of the two, in the same run, say
//! how much such a client could take off every request. Not a balancer: a member is chosen
//! round robin per client connection, not per request, and a member that closes the
//! connection ends the client's.
//!
//! ```sh
//! cargo run --profile bench -p benches --bin same_task_floor -- \
//!   --listen 127.0.0.1:8093 --member 127.0.0.1:9763 --member 127.0.0.1:9764 --seconds 60
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{header, HeaderValue, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

// the allocator the other floors run with, so they compare like for like
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../../crates/tower-balancer-proxy/examples/support/args.rs"]
mod args;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (listen, seconds, members) = args::common("127.0.0.1:8093")?;
    println!("same_task_floor on {listen}, one thread, for {seconds} s");
    benches::serve_for(seconds, serve(listen, members))
}

async fn serve(listen: SocketAddr, members: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let members: Arc<[(SocketAddr, HeaderValue)]> = members
        .iter()
        .map(|m| Ok((m.parse()?, HeaderValue::from_str(m)?)))
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?
        .into();
    let next = AtomicUsize::new(0);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (addr, host) = members[next.fetch_add(1, Ordering::Relaxed) % members.len()].clone();
        tokio::spawn(async move {
            let Ok(member) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let _ = member.set_nodelay(true);
            let Ok((sender, conn)) =
                hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(member)).await
            else {
                return;
            };
            let sender = Arc::new(Mutex::new(sender));
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.headers_mut().insert(header::HOST, host.clone());
                // origin-form, as hyper-util's client sends to a member
                let sent = sender
                    .lock()
                    .map(|mut s| s.send_request(req))
                    .map_err(|e| e.to_string());
                async move { sent?.await.map_err(|e| e.to_string()) }
            });
            let server = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            // both connections are polled by this one task
            tokio::select! {
                _ = server => {}
                _ = conn => {}
            }
        });
    }
}
