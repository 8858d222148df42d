//! The request id: kept from the client's `X-Request-Id` or made here, sent to the member,
//! and returned to the client unless the member answered with its own. An error from the
//! layers below becomes its status here (`serve::error_response`), so the 502, 503 or 504
//! the balancer makes itself carries the id too, and its log line names it.
//!
//! A client's id is kept when it is 1 to 200 bytes of visible ASCII and spaces; otherwise,
//! and when the client names `X-Request-Id` in `Connection` (a header for this hop only,
//! which would be stripped before the member), the balancer makes one.
//!
//! Why not tower-http's `SetRequestIdLayer` and `PropagateRequestIdLayer`, which did this
//! before: together they hashed the header's name five times, put a `RequestId` in the
//! request's and the response's extensions (two maps allocated, and the request's copied
//! again for every attempt by failover) and moved every request and response through two
//! more futures: 4,285 instructions a request, 6.6% of the binary's whole request. This
//! layer does the same for the header with one lookup and one insert each way.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{Entry, CONNECTION};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_balancer::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use crate::hygiene::connection_tokens;
use crate::serve::status::{error_response_with_id, BoxErrorHolder};
use crate::serve::ServeBody;

/// The header the id travels in.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: a random per-process prefix and a counter
/// (`5f3a9c1e2b7d4e60-0000000000001a2b`), unique across restarts and instances without a
/// random number per request.
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

    /// The next id, `prefix-counter` in hex, made on the stack: no formatting machinery.
    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 33];
        hex(&mut buf[..16], self.prefix);
        buf[16] = b'-';
        hex(&mut buf[17..], n);
        // 33 hex digits and a dash are always a valid value
        HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("-"))
    }
}

/// `v` as fixed-width lower-case hex in `out`.
fn hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[usize::try_from(v & 0xf).unwrap_or(0)];
        v >>= 4;
    }
}

/// Gives every request an `X-Request-Id` and every response the request's.
#[derive(Debug, Clone)]
pub(crate) struct RequestIdLayer {
    ids: ProcessRequestIds,
}

impl RequestIdLayer {
    pub(crate) const fn new(ids: ProcessRequestIds) -> Self {
        Self { ids }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIds<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIds {
            inner,
            ids: self.ids.clone(),
            refused: BoxErrorHolder::default(),
        }
    }
}

/// Longest client id kept, in bytes (longer ones are replaced, not cut).
const MAX_CLIENT_ID: usize = 200;

/// Whether a client's id is kept: 1 to [`MAX_CLIENT_ID`] bytes of visible ASCII or spaces,
/// so it reaches members and logs as sent.
fn usable(id: &HeaderValue) -> bool {
    let b = id.as_bytes();
    !b.is_empty() && b.len() <= MAX_CLIENT_ID && b.iter().all(|&c| (b' '..=b'~').contains(&c))
}

/// A client that names `X-Request-Id` in `Connection` makes its id a header for this hop,
/// which the forwarder would strip with the id the member should see: its id is dropped
/// (ours is made) and the name taken out of `Connection`, whose other names stay.
fn unlist_request_id(headers: &mut HeaderMap) {
    let is_id = |t: &str| t.eq_ignore_ascii_case(X_REQUEST_ID.as_str());
    let names_it = |v: &HeaderValue| connection_tokens(v).any(is_id);
    if !headers.get_all(CONNECTION).iter().any(names_it) {
        return;
    }
    headers.remove(X_REQUEST_ID);
    let kept: Vec<HeaderValue> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| {
            if !names_it(v) {
                return Some(v.clone());
            }
            let rest: Vec<&str> = connection_tokens(v).filter(|t| !is_id(t)).collect();
            // what is left was part of a valid value
            HeaderValue::from_str(&rest.join(", "))
                .ok()
                .filter(|v| !v.is_empty())
        })
        .collect();
    headers.remove(CONNECTION);
    for v in kept {
        headers.append(CONNECTION, v);
    }
}

/// The service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RequestIds<S> {
    inner: S,
    ids: ProcessRequestIds,
    /// The error `poll_ready` gave, answered to the next call.
    refused: BoxErrorHolder,
}

impl<S, B, RB> Service<Request<B>> for RequestIds<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ServeBody<RB>>;
    type Error = Infallible;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if let Err(e) = ready!(self.inner.poll_ready(cx)) {
            self.refused = BoxErrorHolder(Some(e.into()));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let headers = req.headers_mut();
        if headers.contains_key(CONNECTION) {
            unlist_request_id(headers);
        }
        let id = match headers.entry(X_REQUEST_ID) {
            Entry::Occupied(mut e) => {
                let kept = usable(e.get());
                if kept && e.iter().nth(1).is_none() {
                    e.get().clone()
                } else {
                    // one id reaches the member: the client's first if usable, else ours
                    let id = if kept {
                        e.get().clone()
                    } else {
                        self.ids.next()
                    };
                    e.insert(id.clone());
                    id
                }
            }
            Entry::Vacant(e) => e.insert(self.ids.next()).clone(),
        };
        if let Some(e) = self.refused.0.take() {
            return RequestIdFuture {
                inner: None,
                refused: Some(e),
                id,
            };
        }
        RequestIdFuture {
            inner: Some(self.inner.call(req)),
            refused: None,
            id,
        }
    }
}

pin_project! {
    /// The future of [`RequestIds`].
    #[derive(Debug)]
    pub(crate) struct RequestIdFuture<F> {
        #[pin]
        inner: Option<F>,
        refused: Option<BoxError>,
        id: HeaderValue,
    }
}

impl<F, RB, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ServeBody<RB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let res = match (this.inner.as_mut().as_pin_mut(), this.refused.take()) {
            (Some(inner), _) => ready!(inner.poll(cx)).map_err(Into::into),
            (None, Some(e)) => Err(e),
            // polled again after it answered: nothing more to give
            (None, None) => return Poll::Pending,
        };
        this.inner.set(None);
        let id = std::mem::replace(this.id, HeaderValue::from_static(""));
        Poll::Ready(Ok(match res {
            Ok(mut res) => {
                // the member's own id, if it gave one, is what the client sees
                if let Entry::Vacant(e) = res.headers_mut().entry(X_REQUEST_ID) {
                    e.insert(id);
                }
                res.map(http_body_util::Either::Left)
            }
            Err(e) => error_response_with_id(&e, id),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Either;
    use tower::{service_fn, ServiceExt};
    use tower_balancer::balance::BalanceError;

    /// The member's body (what it saw as the id), or the balancer's page.
    fn seen<T: Clone>(res: &Response<ServeBody<T>>) -> Option<T> {
        match res.body() {
            Either::Left(b) => Some(b.clone()),
            Either::Right(_) => None,
        }
    }

    fn ids() -> ProcessRequestIds {
        ProcessRequestIds {
            prefix: 0x5f3a_9c1e_2b7d_4e60,
            next: Arc::new(AtomicU64::new(0x1a2b)),
        }
    }

    #[test]
    fn request_ids_are_the_prefix_then_the_counter_in_hex() {
        let ids = ids();
        assert_eq!(ids.next(), "5f3a9c1e2b7d4e60-0000000000001a2b");
        assert_eq!(ids.next(), "5f3a9c1e2b7d4e60-0000000000001a2c");
    }

    /// A member that echoes the id it was sent in the body, and answers with its own id
    /// when asked to.
    fn member(
        req: &Request<()>,
    ) -> impl Future<Output = Result<Response<String>, std::convert::Infallible>> {
        let seen = req.headers().get(X_REQUEST_ID).cloned();
        let own = req.uri().path() == "/own";
        async move {
            let mut res = Response::new(
                seen.map(|v| v.to_str().unwrap_or_default().to_owned())
                    .unwrap_or_default(),
            );
            if own {
                res.headers_mut()
                    .insert(X_REQUEST_ID, HeaderValue::from_static("member-made"));
            }
            Ok(res)
        }
    }

    #[tokio::test]
    async fn a_made_id_reaches_the_member_and_comes_back() {
        let svc = RequestIdLayer::new(ids()).layer(service_fn(|r: Request<()>| member(&r)));
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(seen(&res).unwrap(), "5f3a9c1e2b7d4e60-0000000000001a2b");
        assert_eq!(
            res.headers()[X_REQUEST_ID],
            "5f3a9c1e2b7d4e60-0000000000001a2b"
        );
    }

    #[tokio::test]
    async fn a_clients_id_is_kept_and_a_members_own_wins_on_the_way_back() {
        let svc = RequestIdLayer::new(ids()).layer(service_fn(|r: Request<()>| member(&r)));
        let req = Request::builder()
            .header(X_REQUEST_ID, "client-made")
            .body(())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(seen(&res).unwrap(), "client-made");
        assert_eq!(res.headers()[X_REQUEST_ID], "client-made");
        let req = Request::builder().uri("/own").body(()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], "member-made");
        assert_eq!(res.headers().get_all(X_REQUEST_ID).iter().count(), 1);
    }

    #[tokio::test]
    async fn the_balancers_own_error_answer_carries_the_id() {
        let svc = RequestIdLayer::new(ids()).layer(service_fn(|_: Request<()>| async {
            Err::<Response<String>, _>(BalanceError::NoEligibleMember)
        }));
        let res = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.status(), 503);
        assert!(seen(&res).is_none());
        assert_eq!(
            res.headers()[X_REQUEST_ID],
            "5f3a9c1e2b7d4e60-0000000000001a2b"
        );
        let req = Request::builder()
            .header(X_REQUEST_ID, "client-made")
            .body(())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], "client-made");
    }

    #[tokio::test]
    async fn an_id_named_in_connection_is_replaced_and_the_name_taken_out() {
        let svc = RequestIdLayer::new(ids()).layer(service_fn(|r: Request<()>| {
            let connection: Vec<String> = r
                .headers()
                .get_all(CONNECTION)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            let id = r.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
            async move { Ok::<_, std::convert::Infallible>(Response::new((id, connection))) }
        }));
        let req = Request::builder()
            .header(X_REQUEST_ID, "hop-only")
            .header(CONNECTION, "keep-alive, X-Request-Id , upgrade")
            .header(CONNECTION, "te")
            .body(())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        let (id, connection) = seen(&res).unwrap();
        assert_eq!(id, "5f3a9c1e2b7d4e60-0000000000001a2b");
        assert_eq!(connection, ["keep-alive, upgrade", "te"]);
        assert_eq!(res.headers()[X_REQUEST_ID], id.as_str());
        // named alone: Connection goes
        let req = Request::builder()
            .header(X_REQUEST_ID, "hop-only")
            .header(CONNECTION, "x-request-id")
            .body(())
            .unwrap();
        let (id, connection) = seen(&svc.clone().oneshot(req).await.unwrap()).unwrap();
        assert_eq!(id, "5f3a9c1e2b7d4e60-0000000000001a2c");
        assert!(connection.is_empty());
        // Connection without the name leaves the client's id alone
        let req = Request::builder()
            .header(X_REQUEST_ID, "x-request-ids")
            .header(CONNECTION, "keep-alive, x-request-ids")
            .body(())
            .unwrap();
        let (id, connection) = seen(&svc.oneshot(req).await.unwrap()).unwrap();
        assert_eq!(id, "x-request-ids");
        assert_eq!(connection, ["keep-alive, x-request-ids"]);
    }

    #[tokio::test]
    async fn unusable_or_repeated_client_ids_become_one_usable_id() {
        let svc = RequestIdLayer::new(ids()).layer(service_fn(|r: Request<()>| {
            let ids: Vec<Vec<u8>> = r
                .headers()
                .get_all(X_REQUEST_ID)
                .iter()
                .map(|v| v.as_bytes().to_vec())
                .collect();
            async move { Ok::<_, std::convert::Infallible>(Response::new(ids)) }
        }));
        let ours = |n: u64| format!("5f3a9c1e2b7d4e60-{n:016x}").into_bytes();
        let long = "a".repeat(MAX_CLIENT_ID + 1);
        let cases: [(&[&[u8]], Vec<u8>); 5] = [
            (&[b""], ours(0x1a2b)),
            (&[b"caf\xc3\xa9"], ours(0x1a2c)),
            (&[long.as_bytes()], ours(0x1a2d)),
            (&[b"first id", b"second"], b"first id".to_vec()),
            (&[b"", b"second"], ours(0x1a2e)),
        ];
        for (sent, want) in cases {
            let mut req = Request::new(());
            for v in sent {
                req.headers_mut()
                    .append(X_REQUEST_ID, HeaderValue::from_bytes(v).unwrap());
            }
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(seen(&res).unwrap(), std::slice::from_ref(&want), "{sent:?}");
            assert_eq!(res.headers()[X_REQUEST_ID].as_bytes(), want.as_slice());
        }
        let kept = "a".repeat(MAX_CLIENT_ID);
        let req = Request::builder()
            .header(X_REQUEST_ID, kept.as_str())
            .body(())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(seen(&res).unwrap(), [kept.into_bytes()]);
    }
}
