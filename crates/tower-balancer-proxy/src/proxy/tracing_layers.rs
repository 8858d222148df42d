//! A span per request and a request id, with tower-http's own layers: the id is made here
//! (or kept from the client), sent to the member, returned to the client, written in the
//! access log, and named in the request's span; `Cookie` and `Authorization` are marked
//! sensitive so no log prints them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderValue, Request};
use tower_balancer::client::ClientAddr;
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::MakeSpan;

/// Request ids: a random per-process prefix and a counter
/// (`5f3a9c1e2b7d4e60-0000000000001a2b`), unique
/// across restarts and instances without a random number per request.
#[derive(Debug, Clone)]
pub(crate) struct ProcessRequestIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl ProcessRequestIds {
    pub(crate) fn new() -> Self {
        let mut bytes = [0u8; 8];
        // a clock-based prefix if the system random generator fails: still unique enough
        let prefix =
            match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
                Ok(()) => u64::from_le_bytes(bytes),
                Err(_) => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| {
                        u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or(0)
                    }),
            };
        Self {
            prefix,
            next: Arc::default(),
        }
    }
}

impl MakeRequestId for ProcessRequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // `prefix-counter` in hex on the stack: no formatting machinery per request
        let mut buf = [0u8; 33];
        hex(&mut buf[..16], self.prefix);
        buf[16] = b'-';
        hex(&mut buf[17..], n);
        HeaderValue::from_bytes(&buf).ok().map(RequestId::new)
    }
}

/// `v` as fixed-width lower-case hex in `out`.
fn hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[usize::try_from(v & 0xf).unwrap_or(0)];
        v >>= 4;
    }
}

/// The request's span: method, path, client and request id (at DEBUG, so it costs nothing
/// unless debug logging is on).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &Request<B>) -> tracing::Span {
        let client = req.extensions().get::<ClientAddr>().map(|a| a.0);
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::debug_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            client = ?client,
            request_id = %id,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_the_prefix_then_the_counter_in_hex() {
        let mut ids = ProcessRequestIds {
            prefix: 0x5f3a_9c1e_2b7d_4e60,
            next: Arc::new(AtomicU64::new(0x1a2b)),
        };
        let req = Request::new(());
        let id = ids.make_request_id(&req).unwrap();
        assert_eq!(id.header_value(), "5f3a9c1e2b7d4e60-0000000000001a2b");
        let next = ids.make_request_id(&req).unwrap();
        assert_eq!(next.header_value(), "5f3a9c1e2b7d4e60-0000000000001a2c");
    }
}
