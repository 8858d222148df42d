//! What the server counts for metrics: connections accepted and open, TLS handshakes and
//! their failures, the answers its clients got by status class, and its WebSocket tunnels
//! and their bytes. Shared by every clone of
//! a [`ServeConfig`](super::ServeConfig), so the workers serving one front count together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::progress::Closed;

/// The server's counters; clones share them.
#[derive(Debug, Clone, Default)]
pub struct ServerStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    plain_http_on_tls: AtomicU64,
    refused_per_client: AtomicU64,
    rate_limited: AtomicU64,
    refused_malformed: AtomicU64,
    refused_too_large: AtomicU64,
    refused_timeout: AtomicU64,
    refused_framing: AtomicU64,
    refused_capacity: AtomicU64,
    refused_uploads: AtomicU64,
    closed: [AtomicU64; 5],
    tunnels: AtomicU64,
    tunnels_open: AtomicU64,
    tunnel_bytes: crate::forward::TunnelBytes,
    answers: Answers,
}

/// The answers by status class (1xx to 5xx): counted on every request, so on a cache line of
/// their own, apart from the per-connection counts above.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Answers([AtomicU64; 5]);

/// Why the server refused a request before the stack saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A head that is not HTTP (400, or closed when nothing can be answered).
    Malformed,
    /// A head or target over the limits (431, or 414 for the target alone).
    TooLarge,
    /// A head not complete within the header-read timeout (408).
    Timeout,
    /// A parsed head whose framing is ambiguous or unsafe (400, `check_framing`): a bad or
    /// repeated `Host`, `Transfer-Encoding` other than `chunked`, `CONNECT`, and the like.
    Framing,
    /// An HTTP/2 stream that found no place under the connection cap for its member
    /// connection (503).
    Capacity,
    /// An HTTP/2 request past its connection's uploads at once whose body was not whole
    /// within the read-ahead budgets and in time (`REFUSED_STREAM`, which a client may send
    /// again).
    Uploads,
}

impl ServerStats {
    /// Client connections accepted so far.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.0.accepted.load(Ordering::Relaxed)
    }

    /// Client connections open now.
    #[must_use]
    pub fn open(&self) -> u64 {
        self.0.open.load(Ordering::Relaxed)
    }

    /// TLS handshakes completed.
    #[must_use]
    pub fn tls_handshakes(&self) -> u64 {
        self.0.handshakes.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed or timed out.
    #[must_use]
    pub fn tls_handshake_failures(&self) -> u64 {
        self.0.handshake_failures.load(Ordering::Relaxed)
    }

    /// Connections to the TLS port that sent plain HTTP (answered 400), counted apart from
    /// failed handshakes.
    #[must_use]
    pub fn plain_http_on_tls(&self) -> u64 {
        self.0.plain_http_on_tls.load(Ordering::Relaxed)
    }

    /// Connections closed at accept because their client was at its connection cap.
    #[must_use]
    pub fn refused_per_client(&self) -> u64 {
        self.0.refused_per_client.load(Ordering::Relaxed)
    }

    /// Requests answered 429 because their client was over its request rate.
    #[must_use]
    pub fn rate_limited(&self) -> u64 {
        self.0.rate_limited.load(Ordering::Relaxed)
    }

    /// Requests refused before the stack saw them: heads that are not HTTP (400), over the
    /// size limits (431 or 414), not complete in time (408), framing refused (400), and
    /// HTTP/2 streams with no place under the connection cap (`capacity`, 503), and HTTP/2
    /// uploads past their connection's `http2_max_uploads` (`uploads`, `REFUSED_STREAM`).
    #[must_use]
    pub fn refused_requests(&self) -> [(&'static str, u64); 6] {
        [
            (
                "malformed",
                self.0.refused_malformed.load(Ordering::Relaxed),
            ),
            (
                "too_large",
                self.0.refused_too_large.load(Ordering::Relaxed),
            ),
            ("timeout", self.0.refused_timeout.load(Ordering::Relaxed)),
            ("framing", self.0.refused_framing.load(Ordering::Relaxed)),
            ("capacity", self.0.refused_capacity.load(Ordering::Relaxed)),
            ("uploads", self.0.refused_uploads.load(Ordering::Relaxed)),
        ]
    }

    pub(crate) fn note_refused(&self, why: Refused) {
        let c = match why {
            Refused::Malformed => &self.0.refused_malformed,
            Refused::TooLarge => &self.0.refused_too_large,
            Refused::Timeout => &self.0.refused_timeout,
            Refused::Framing => &self.0.refused_framing,
            Refused::Capacity => &self.0.refused_capacity,
            Refused::Uploads => &self.0.refused_uploads,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Client connections a limit closed (or, over HTTP/2, asked to go away), by reason:
    /// frames that carried nothing (`flood`), requests abandoned as a pace (`resets`), an
    /// answer starved of flow-control window (`window`), writes not read (`send_timeout`),
    /// and HTTP/2's own limits, which end the connection with `ENHANCE_YOUR_CALM`
    /// (`enhance_your_calm`: streams reset before they were taken, and the like).
    #[must_use]
    pub fn closed_connections(&self) -> [(&'static str, u64); 5] {
        let n = |why: Closed| self.0.closed[why as usize].load(Ordering::Relaxed);
        [
            ("flood", n(Closed::Flood)),
            ("resets", n(Closed::Resets)),
            ("window", n(Closed::Window)),
            ("send_timeout", n(Closed::SendTimeout)),
            ("enhance_your_calm", n(Closed::Calm)),
        ]
    }

    pub(crate) fn note_closed(&self, why: Closed) {
        self.0.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The answers the stack gave clients, by status class: the members' own and the
    /// balancer's error pages (502, 503, 504), one a request whatever its attempts; as many as
    /// the access log's lines but its 499s. Requests refused before the stack are in
    /// [`refused_requests`](Self::refused_requests), and requests whose client went away
    /// before their answer are in neither.
    #[must_use]
    pub fn answers(&self) -> [(&'static str, u64); 5] {
        let n = |class: usize| self.0.answers.0[class].load(Ordering::Relaxed);
        [
            ("1xx", n(0)),
            ("2xx", n(1)),
            ("3xx", n(2)),
            ("4xx", n(3)),
            ("5xx", n(4)),
        ]
    }

    /// Counts an answer with `status`, as its head goes out.
    pub(crate) fn note_answer(&self, status: http::StatusCode) {
        // a `StatusCode` is 100..=999: classes 6xx to 9xx, which no client should get, count as 5xx
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.0.answers.0[class].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_plain_http_on_tls(&self) {
        self.0.plain_http_on_tls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refuse_per_client(&self) {
        self.0.refused_per_client.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_rate_limited(&self) {
        self.0.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// WebSocket tunnels opened, over HTTP/1.1 and HTTP/2.
    #[must_use]
    pub fn tunnels(&self) -> u64 {
        self.0.tunnels.load(Ordering::Relaxed)
    }

    /// WebSocket tunnels open now.
    #[must_use]
    pub fn tunnels_open(&self) -> u64 {
        self.0.tunnels_open.load(Ordering::Relaxed)
    }

    /// The bytes the tunnels passed, each way.
    #[must_use]
    pub fn tunnel_bytes(&self) -> &crate::forward::TunnelBytes {
        &self.0.tunnel_bytes
    }

    /// `tunnel`, counted as opened, and as open until it ends.
    pub(crate) fn open_tunnel(
        &self,
        tunnel: crate::forward::TunnelFuture,
    ) -> crate::forward::TunnelFuture {
        self.0.tunnels.fetch_add(1, Ordering::Relaxed);
        self.0.tunnels_open.fetch_add(1, Ordering::Relaxed);
        let open = OpenTunnel(self.0.clone());
        Box::pin(async move {
            let _open = open;
            tunnel.await;
        })
    }

    /// Counts an accepted connection, open until the guard is dropped.
    pub(crate) fn connection(&self) -> OpenConnection {
        self.0.accepted.fetch_add(1, Ordering::Relaxed);
        self.0.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.0.clone())
    }

    pub(crate) fn handshake(&self, ok: bool) {
        let c = if ok {
            &self.0.handshakes
        } else {
            &self.0.handshake_failures
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// One open client connection.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<Counters>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open tunnel.
struct OpenTunnel(Arc<Counters>);

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.tunnels_open.fetch_sub(1, Ordering::Relaxed);
    }
}
