//! axum-reverse-proxy's `BalancedProxy` (round robin over the members, its own hyper-util
//! client) served by axum on one current-thread runtime: the same shape as the
//! tower-balancer binary with `--workers 1`, built the way a deployment would (fat LTO,
//! mimalloc, as the project's `dist` profile).
//!
//! ```sh
//! cargo build --release --manifest-path benches/peers/axum-reverse-proxy/Cargo.toml
//! target/peers/release/axum-reverse-proxy-peer 127.0.0.1:8096 http://127.0.0.1:9763 http://127.0.0.1:9764
//! ```

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .ok_or("usage: axum-reverse-proxy-peer LISTEN MEMBER_URL...")?;
    let members: Vec<String> = args.collect();
    if members.is_empty() {
        return Err("give at least one member URL".into());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let proxy = axum_reverse_proxy::BalancedProxy::new("/".to_owned(), members);
            let app: axum::Router = proxy.into();
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            println!("axum-reverse-proxy BalancedProxy on {listen}");
            axum::serve(listener, app).await?;
            Ok(())
        })
}
