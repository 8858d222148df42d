//! What a health probe is: a tower `Service` from a member to a verdict.
//!
//! Why a `Service`: the members in the seed speak HTTPS with their own certificates; a probe
//! must use the same client, TLS settings and trust roots as forwarding, or it tests the wrong
//! thing. [`HttpProbe`] wraps any `Service<http::Request<_>>`; [`TcpProbe`] only connects.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Limited};
use tower_service::Service;

use super::failure::ProbeFailure;
use crate::registry::Member;
use crate::BoxError;

/// A probe's verdict on one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeResult {
    /// The member is fine.
    Pass,
    /// The member failed this probe (counts toward `fall`). The crate's probes report a
    /// failure as `Err(`[`ProbeFailure`]`)` instead, which counts the same and says why.
    Fail,
    /// The member asked to be taken out at once (a fail header, as Envoy's
    /// `x-envoy-immediate-health-check-fail`): down without waiting for `fall`.
    FailNow,
    /// The member is healthy but asked for no new sessions (HAProxy `disable-on-404`): it is
    /// set to draining, and back to active when it passes normally again.
    Drain,
}

/// The most response body an [`HttpProbe`] reads to match its body pattern.
pub const MAX_PROBE_BODY: usize = 64 * 1024;

/// Probes a member over HTTP with the client you give it.
///
/// A response passes when its status is expected (200–399 by default) and, if a body pattern
/// is set, the first 64 KiB of the body contain it. Anything else fails: other statuses,
/// errors, garbage, redirects (unless 3xx is expected), bodies that do not match. At most
/// [`MAX_PROBE_BODY`] bytes are read, so a 2 GiB body costs 64 KiB.
///
/// The request's URI is the member's endpoint and the path. Its `Host` is set only where it
/// differs from what the URI says: the client writes that one over HTTP/1.1 (hyper-util's
/// pooled client does), and over HTTP/2 the URI is the `:authority`, beside which a `Host`
/// gets 400 from nginx before 1.25.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_balancer::BoxError> {
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::{Empty, Full};
/// use tower::{service_fn, ServiceExt};
/// use tower_balancer::health::{HttpProbe, ProbeResult};
/// use tower_balancer::registry::{MemberId, MemberSpec, Registry};
///
/// // In production, the same pooled HTTPS client the balancer forwards with.
/// let client = service_fn(|req: Request<Empty<Bytes>>| async move {
///     assert_eq!(req.uri().path(), "/carbon/admin/login.jsp");
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("<title>WSO2 Management Console</title>"))))
/// });
/// let probe = HttpProbe::new(client)
///     .path("/carbon/admin/login.jsp")
///     .body_contains("Management Console")
///     .drain_on([StatusCode::NOT_FOUND]);
///
/// let registry = Registry::new();
/// let node1 = registry.insert(MemberSpec::new(MemberId::new("node1")?, "https://abc.com:9443".parse()?))?;
/// assert_eq!(probe.oneshot(node1).await?, ProbeResult::Pass);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpProbe<S> {
    client: S,
    method: Method,
    path: Arc<str>,
    host: Option<Arc<str>>,
    expect: (u16, u16),
    body_contains: Option<Arc<[u8]>>,
    fail_header: Option<HeaderName>,
    drain_statuses: Arc<[StatusCode]>,
}

impl<S> HttpProbe<S> {
    /// `GET /`, expecting 200–399, with `client`.
    pub fn new(client: S) -> Self {
        Self {
            client,
            method: Method::GET,
            path: Arc::from("/"),
            host: None,
            expect: (200, 399),
            body_contains: None,
            fail_header: None,
            drain_statuses: Arc::from([]),
        }
    }

    /// The request method (Apache `hcmethod`).
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The path and query probed (Apache `hcuri`), starting with `/`.
    #[must_use]
    pub fn path(mut self, path: impl Into<Arc<str>>) -> Self {
        self.path = path.into();
        self
    }

    /// The `Host` header to send (default: the member's endpoint authority).
    #[must_use]
    pub fn host(mut self, host: impl Into<Arc<str>>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The statuses that pass, inclusive.
    #[must_use]
    pub const fn expect_status(mut self, low: u16, high: u16) -> Self {
        self.expect = (low, high);
        self
    }

    /// Passes only if the body's first 64 KiB contain `pattern` (Apache `hcexpr` on the body).
    #[must_use]
    pub fn body_contains(mut self, pattern: impl Into<Vec<u8>>) -> Self {
        self.body_contains = Some(pattern.into().into());
        self
    }

    /// A response header whose presence takes the member down at once.
    #[must_use]
    pub fn fail_header(mut self, name: HeaderName) -> Self {
        self.fail_header = Some(name);
        self
    }

    /// Statuses that set the member to draining instead of failing it (HAProxy
    /// `disable-on-404`; e.g. 404 or 503 on the probe path).
    #[must_use]
    pub fn drain_on(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.drain_statuses = statuses.into_iter().collect();
        self
    }

    fn request(&self, member: &Member) -> Result<Request<Empty<Bytes>>, BoxError> {
        let endpoint = member.endpoint();
        let mut uri = Uri::builder().path_and_query(&*self.path);
        if let (Some(scheme), Some(authority)) = (endpoint.scheme(), endpoint.authority()) {
            uri = uri.scheme(scheme.clone()).authority(authority.clone());
        }
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(uri.build()?);
        // the configured Host, else the one requests to the member carry; left to the
        // client when the URI says the same: over HTTP/1.1 it writes it from the URI, and
        // over HTTP/2 the URI is the `:authority`, which a `Host` beside it contradicts for
        // servers such as nginx before 1.25 (400, "duplicate host header": every member
        // that speaks HTTP/2 was marked down, hostile round 12)
        let host = match &self.host {
            Some(h) => Some(HeaderValue::from_str(h)?),
            None => member.host_header().cloned(),
        };
        if let Some(h) = host.filter(|h| !names_the_uri(h, endpoint)) {
            req = req.header(http::header::HOST, h);
        }
        Ok(req.body(Empty::new())?)
    }
}

/// Whether `host` is what an HTTP client writes for `uri`: its host, and its port unless it
/// is the scheme's default, in any case.
fn names_the_uri(host: &HeaderValue, uri: &Uri) -> bool {
    let Some(name) = uri.host() else {
        return false;
    };
    let default = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    let written = match uri.port_u16() {
        Some(port) if Some(port) != default => format!("{name}:{port}"),
        _ => name.to_owned(),
    };
    host.as_bytes().eq_ignore_ascii_case(written.as_bytes())
}

/// Judges a response.
async fn verdict<B>(
    res: Response<B>,
    expect: (u16, u16),
    body_contains: Option<Arc<[u8]>>,
    fail_header: Option<HeaderName>,
    drain: Arc<[StatusCode]>,
) -> Result<ProbeResult, ProbeFailure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if fail_header.is_some_and(|h| res.headers().contains_key(h)) {
        return Ok(ProbeResult::FailNow);
    }
    let status = res.status();
    if drain.contains(&status) {
        return Ok(ProbeResult::Drain);
    }
    if !(expect.0..=expect.1).contains(&status.as_u16()) {
        return Err(ProbeFailure::Status {
            status: status.as_u16(),
            low: expect.0,
            high: expect.1,
        });
    }
    let Some(pattern) = body_contains else {
        return Ok(ProbeResult::Pass);
    };
    // read at most MAX_PROBE_BODY bytes, then stop
    let mut body = std::pin::pin!(Limited::new(res.into_body(), MAX_PROBE_BODY));
    let mut seen: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // over the limit or a broken body: judge what was read
            break;
        };
        if let Ok(data) = frame.into_data() {
            use bytes::Buf;
            let mut data = data;
            while data.has_remaining() {
                let chunk = data.chunk();
                seen.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
            if seen.windows(pattern.len().max(1)).any(|w| w == &*pattern) {
                return Ok(ProbeResult::Pass);
            }
        }
    }
    if pattern.is_empty() {
        Ok(ProbeResult::Pass)
    } else {
        Err(ProbeFailure::Body)
    }
}

impl<S, B> Service<Arc<Member>> for HttpProbe<S>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = ProbeResult;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProbeResult, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.client.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, member: Arc<Member>) -> Self::Future {
        // Probes run in the background every few seconds, off the request path: a boxed
        // future keeps the probe type simple for users.
        let req = match self.request(&member) {
            Ok(r) => r,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let fut = self.client.call(req);
        let (expect, body, header, drain) = (
            self.expect,
            self.body_contains.clone(),
            self.fail_header.clone(),
            self.drain_statuses.clone(),
        );
        Box::pin(async move {
            let res = fut.await.map_err(|e| ProbeFailure::Unreachable(e.into()))?;
            Ok(verdict(res, expect, body, header, drain).await?)
        })
    }
}

/// Probes a member by opening a TCP connection to its endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpProbe;

impl Service<Arc<Member>> for TcpProbe {
    type Response = ProbeResult;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProbeResult, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, member: Arc<Member>) -> Self::Future {
        Box::pin(async move {
            let endpoint = member.endpoint();
            let Some(host) = endpoint.host() else {
                return Err(ProbeFailure::NoHost.into());
            };
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = endpoint.port_u16().unwrap_or(
                if endpoint.scheme() == Some(&http::uri::Scheme::HTTPS) {
                    443
                } else {
                    80
                },
            );
            match tokio::net::TcpStream::connect((host.as_str(), port)).await {
                Ok(_) => Ok(ProbeResult::Pass),
                Err(source) => Err(ProbeFailure::Connect {
                    addr: format!("{host}:{port}"),
                    source,
                }
                .into()),
            }
        })
    }
}
