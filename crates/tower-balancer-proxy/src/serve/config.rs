//! Serving settings and the TLS front.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::limits::{ClientConnectionLimit, ConnectionCounts};
use crate::tls::TlsError;

/// How the balancer accepts clients.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub(crate) header_read_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) graceful_timeout: Duration,
    pub(crate) keep_alive_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) max_connections: Option<usize>,
    pub(crate) http2_max_uploads: u32,
    pub(crate) http2_max_streams: u32,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) stats: super::stats::ServerStats,
    pub(crate) client_connections: Option<ClientConnectionLimit>,
    /// Open connections by client, shared by every server of this front and kept by reloads.
    pub(crate) client_counts: Arc<ConnectionCounts>,
    /// The places under the connection cap, shared by every server of this front.
    pub(crate) places: Arc<super::server::SharedPlaces>,
    /// Body bytes read ahead for HTTP/2 requests past their connections' upload limits,
    /// shared by every server of this front (`upload_limit.rs`).
    pub(crate) read_ahead: Arc<std::sync::atomic::AtomicU64>,
}

/// Uploads at once on one HTTP/2 connection when none is set: more than the six
/// connections, each with one request at a time, that a browser opens over HTTP/1.1.
pub const DEFAULT_HTTP2_MAX_UPLOADS: u32 = 16;

/// Streams open at once on one HTTP/2 connection when none is set: HAProxy's
/// `tune.h2.fe.max-concurrent-streams` (nginx's `http2_max_concurrent_streams` is 128).
/// hyper's own default is 200.
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 100;

/// Descriptors kept for everything that is not a client or member connection: listeners,
/// probes, DNS, files, the manager.
const FD_RESERVE: u64 = 64;

/// The client connection cap when none is set: half of the open-file limit left after a
/// reserve, since every client connection may need a member connection of its own (HAProxy
/// derives its `maxconn` the same way). 1,024 descriptors give 480 connections, 4,096 give
/// 2,016. Where the limit cannot be read, 480.
#[must_use]
pub fn default_max_connections() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let cap = soft.saturating_sub(FD_RESERVE) / 2;
    usize::try_from(cap).unwrap_or(usize::MAX).max(1)
}

/// Says, once a process, that a connection cap set to `cap` needs more descriptors than the
/// open-file limit gives: at the limit accepts fail, and so do member connects and health
/// probes (round 10: `max_connections = 1000` under a limit of 256 put both members down
/// and the balancer in panic mode; such probes now count for nothing, and the members'
/// health waits on them).
pub(crate) fn cap_past_descriptors(cap: usize) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return;
    };
    let needed = u64::try_from(cap)
        .unwrap_or(u64::MAX)
        .saturating_mul(2)
        .saturating_add(FD_RESERVE);
    if needed > soft && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            max_connections = cap,
            needed,
            open_file_limit = soft,
            "server.max_connections needs more descriptors than the open-file limit gives \
             (two a connection, and 64 besides): at the limit accepts fail, and so do member \
             connects and health probes (which then count for nothing, so the members' \
             health goes unchecked); raise the limit (LimitNOFILE=) or leave \
             max_connections unset (half the limit)"
        );
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl ServeConfig {
    /// Plain HTTP; a request's headers must arrive within 10 s (hyper's timeout is off unless
    /// set, which lets a slowloris client hold a connection forever); at most 16 KiB of
    /// headers and 100 header fields (431 beyond); 10 s for a TLS handshake; 30 s for
    /// in-flight requests to finish on shutdown. A connection is closed when its first request
    /// head is not complete within the header-read timeout of its start, whatever it sent
    /// (nothing, part of an HTTP/1 head, part of the HTTP/2 preface), and after 10 s idle
    /// between requests (keep-alive: over HTTP/1 hyper's header-read timer also runs while
    /// a connection waits for its next request, so the shorter of the two limits holds;
    /// over HTTP/2, the keep-alive limit of 15 s once no stream is open). At most [`default_max_connections`] client connections at
    /// once (more wait in the listen backlog).
    #[must_use]
    pub fn new() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            graceful_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(15),
            send_timeout: Duration::from_secs(60),
            max_connections: None,
            http2_max_uploads: DEFAULT_HTTP2_MAX_UPLOADS,
            http2_max_streams: DEFAULT_HTTP2_MAX_STREAMS,
            tls: None,
            stats: super::stats::ServerStats::default(),
            client_connections: None,
            client_counts: Arc::default(),
            places: Arc::default(),
            read_ahead: Arc::default(),
        }
    }

    /// How long a client may take to send a request's headers.
    #[must_use]
    pub const fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a client may take to finish the TLS handshake.
    #[must_use]
    pub const fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The most header bytes a request may carry (at least 8 KiB, hyper's floor).
    #[must_use]
    pub const fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = if bytes < 8192 { 8192 } else { bytes };
        self
    }

    /// The most header fields a request may carry.
    #[must_use]
    pub const fn max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }

    /// How long shutdown waits for in-flight requests.
    #[must_use]
    pub const fn graceful_timeout(mut self, timeout: Duration) -> Self {
        self.graceful_timeout = timeout;
        self
    }

    /// How long a connection may sit idle between requests (Apache `KeepAliveTimeout`,
    /// nginx `keepalive_timeout`; default 15 s). The header-read timeout also runs while a
    /// connection waits for its next request, so the shorter of the two holds (10 s with
    /// both at their defaults). Upgraded connections (WebSocket) are not subject to it.
    #[must_use]
    pub const fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.keep_alive_timeout = timeout;
        self
    }

    /// How long one write to the client may make no progress (nginx `send_timeout`, and
    /// like it timed between two successive writes, not over the whole response; default
    /// 60 s); then the connection is closed, and with it the member's exchange, so a client
    /// that never reads holds no member (nor a member's slot under its `max`) for ever. The
    /// kernel wakes a blocked write only once a good part of the socket's send buffer is
    /// free, so a client that reads a trickle may be cut off too: keep it long. Over HTTP/2
    /// it is also how long an answer may wait on the client's flow-control window with none
    /// of its bytes sent (a client that gives no window writes nothing to stall on); the
    /// connection is closed between one and two timeouts after that answer's last byte went
    /// out. Tunnels (WebSocket) are not subject to it.
    #[must_use]
    pub const fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// The most client connections served at once (HAProxy `maxconn`, nginx
    /// `worker_connections`); further connections wait in the listen backlog until one
    /// closes, so the process never runs out of descriptors for members and probes. The cap
    /// is kept in descriptors, two a connection (its own and its member connection's): an
    /// HTTP/2 stream beside others under way on its connection, or an HTTP/2 tunnel, holds
    /// one more while it lasts, and one that finds no room gets 503 with `Retry-After: 1`.
    /// Servers whose settings come from one `ServeConfig` (the workers on one port) share
    /// the cap: descriptors are the process's.
    /// Default: [`default_max_connections`], from the open-file limit when serving starts.
    #[must_use]
    pub const fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(if n == 0 { 1 } else { n });
        self
    }

    /// The most requests on one HTTP/2 connection that stream their bodies to members at
    /// once (default 16; at least 1). Each holds a member connection, and a place under
    /// [`max_connections`](Self::max_connections), for as long as its client takes to send
    /// the body: without a limit, a handful of connections each uploading a byte at a time
    /// on 200 streams fill the cap, and every other client gets 503. The body of one past
    /// it is read whole first, then sent whole; one not whole within 4 MiB (for a
    /// connection's together, 64 MiB for the front's) and the header-read timeout streams
    /// in a slot freed meanwhile, or with none free is reset with `REFUSED_STREAM` before
    /// anything reaches a member, which tells its client it may send it again (browsers
    /// and curl do so on their own). Requests without a body
    /// are not counted. gRPC clients with many client- or bidi-streaming calls open at
    /// once on one channel need it raised.
    #[must_use]
    pub const fn http2_max_uploads(mut self, n: u32) -> Self {
        self.http2_max_uploads = if n == 0 { 1 } else { n };
        self
    }

    /// The most streams one HTTP/2 connection may have open at once (default 100, as
    /// HAProxy's; at least 1), announced in `SETTINGS_MAX_CONCURRENT_STREAMS`: a client
    /// opening more has them refused unprocessed (`REFUSED_STREAM`), and client libraries
    /// queue their requests instead. Each open stream may hold a member exchange while it
    /// waits on its client (an answer waiting for the client's flow-control window, a
    /// WebSocket), so this bounds what one connection can hold.
    #[must_use]
    pub const fn http2_max_streams(mut self, n: u32) -> Self {
        self.http2_max_streams = if n == 0 { 1 } else { n };
        self
    }

    /// At most `limit`'s connections open at once from one client address, trusted proxies
    /// excepted (nginx `limit_conn`); a connection past it is closed as soon as it is
    /// accepted, before anything is read. Off by default: clients behind one NAT share an
    /// address.
    #[must_use]
    pub fn max_connections_per_client(mut self, limit: ClientConnectionLimit) -> Self {
        self.client_connections = Some(limit);
        self
    }

    /// Terminates TLS with this configuration (see [`server_tls_from_pem`]).
    #[must_use]
    pub fn tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A TLS front from a PEM certificate chain and private key (files read by the caller, or
/// certificates made in memory), offering HTTP/2 and HTTP/1.1 by ALPN, ring provider.
///
/// # Errors
/// [`TlsError`] if the chain or key cannot be parsed or rustls refuses them.
pub fn server_tls_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = chain_and_key(chain_pem, key_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A certificate chain (at least one certificate) and its private key from PEM.
pub(crate) fn chain_and_key(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    Ok((chain_from_pem(chain_pem)?, key_from_pem(key_pem)?))
}

/// A certificate chain (at least one certificate) from PEM.
pub(crate) fn chain_from_pem(chain_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(chain)
}

/// A private key from PEM.
pub(crate) fn key_from_pem(key_pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem(e.to_string()))
}
