//! How much of what an HTTP/2 client sends is requests, and a limit on the rest.
//!
//! Why: HTTP/2 lets a client send frames that ask for no answer and cost the server work to
//! read: `WINDOW_UPDATE`s of one byte, `PRIORITY`, frames of unknown types, `PING`s. hyper's
//! HTTP/2 limits resets, `SETTINGS` and `CONTINUATION`, not these, and while a stream was
//! open (so the connection was not idle) a hostile test fed one connection 4.2 GB of
//! one-byte `WINDOW_UPDATE`s in 40 s, a whole core of the balancer's time, and 23.6 GB of
//! unknown frames in 20 s. As nginx does (CVE-2019-9511 to 9518), the connection counts
//! what it read against what it carried: request heads the server took (as their fields'
//! size, up to 2 KiB a head), request bodies, and a share of the answers' data sent (whose
//! window updates and acknowledgements are the client's due). Past eight times that and
//! 8 MiB more, the connection is closed. A connection's first bytes count too, before it
//! has a request: a client that floods before asking for anything is closed at the same
//! 8 MiB instead of at the header-read timeout.

use std::sync::atomic::{AtomicU64, Ordering};

use http::Request;

use super::progress::{Closed, Progress};

/// What may be read beyond eight times the payload.
pub(crate) const ALLOWANCE: u64 = 8 << 20;

/// The most one request head counts as payload: eight times it (16 KiB) covers any head a
/// client sends without HPACK's indexing, and a head that names big stored fields in a few
/// bytes earns no more.
const HEAD_CREDIT: usize = 2048;

/// Bytes of answers sent that earn one byte of payload credit (a client acknowledges what
/// it gets with `WINDOW_UPDATE`s, 13 bytes each, typically one per 16 KiB or more).
const SENT_PER_CREDIT: u64 = 16;

/// A connection's bytes read, and the payload among them.
#[derive(Debug, Default)]
pub(crate) struct Overhead {
    read: AtomicU64,
    payload: AtomicU64,
}

impl Overhead {
    /// An HTTP/2 request's head arrived and was taken: its fields (HPACK counts each as its
    /// name, its value and 32), method and target are payload, up to [`HEAD_CREDIT`]: HPACK
    /// lets a head of a few bytes on the wire name kilobytes of fields it stored before, so a
    /// head's decoded size would let a client earn a flood with cheap requests.
    pub(crate) fn head<B>(&self, req: &Request<B>) {
        let fields: usize = req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let uri = req.uri();
        let target = uri.scheme_str().map_or(0, str::len)
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path_and_query().map_or(0, |p| p.as_str().len());
        let line = req.method().as_str().len() + target + 3 * 32;
        let credit = (fields + line).min(HEAD_CREDIT) as u64;
        self.payload.fetch_add(credit, Ordering::Relaxed);
    }

    /// `n` bytes of a request's body arrived.
    pub(crate) fn body(&self, n: usize) {
        self.payload.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` bytes of an answer's data were handed to HTTP/2 for the client.
    pub(crate) fn sent(&self, n: usize) {
        self.payload
            .fetch_add(n as u64 / SENT_PER_CREDIT, Ordering::Relaxed);
    }

    /// The bytes read so far that no request paid for (read less payload).
    pub(crate) fn unpaid(&self) -> u64 {
        self.read
            .load(Ordering::Relaxed)
            .saturating_sub(self.payload.load(Ordering::Relaxed))
    }

    /// `n` more bytes were read: whether the connection is now past its limit.
    pub(crate) fn read(&self, n: usize) -> bool {
        let read = self.read.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        read > ALLOWANCE
            && read - ALLOWANCE > self.payload.load(Ordering::Relaxed).saturating_mul(8)
    }
}

/// Counts and logs a connection that hyper's HTTP/2 library ended itself with
/// `ENHANCE_YOUR_CALM` (`e`, what the connection ended with), as the limits here are:
/// its own limits on streams the client reset before they were taken, on empty `DATA`
/// frames and the like. They were neither logged nor counted.
pub(super) fn note_calm(e: &(dyn std::error::Error + 'static), progress: &Progress) {
    let calm = tower_balancer::error::sources(e)
        .filter_map(|e| e.downcast_ref::<h2::Error>())
        .any(|e| e.is_library() && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM));
    if calm {
        progress.note_closed(
            Closed::Calm,
            "the client went past a limit of the HTTP/2 library (GOAWAY ENHANCE_YOUR_CALM): connection closed",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_eight_times_the_payload_and_the_allowance_are_too_many() {
        let o = Overhead::default();
        assert!(
            !o.read(ALLOWANCE as usize),
            "the allowance, with nothing asked"
        );
        assert!(o.read(1), "a byte more");
        let o = Overhead::default();
        let req = Request::get("https://lb.test/index.html")
            .header("user-agent", "x")
            .body(())
            .unwrap();
        o.head(&req);
        let head = o.payload.load(Ordering::Relaxed);
        // "user-agent" + "x" + 32, "GET" + https, lb.test, /index.html + 3 × 32
        assert_eq!(head, 10 + 1 + 32 + 3 + 5 + 7 + 11 + 96);
        o.body(1000);
        o.sent(16_000);
        let payload = head + 1000 + 1000;
        assert!(!o.read((ALLOWANCE + payload * 8) as usize));
        assert!(o.read(1));
    }
}
