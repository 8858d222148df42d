//! The balancer-manager: an operator page and JSON view, with actions to drain, disable,
//! enable, set standby and change weight.
//!
//! Why careful: Apache's balancer-manager had CSRF and XSS holes (CVE-2007-6420,
//! CVE-2007-6421, CVE-2012-4558). Here every state change is a POST that must carry this
//! process's random nonce and come from the same origin (`Origin`, or `Referer`, naming the
//! host the page was served from; `Sec-Fetch-Site` other than `same-origin` is refused), all
//! output is escaped, and responses forbid framing and scripts. It answers only requests
//! whose `Host` is one of its own names (`localhost`, `127.0.0.1`, `::1` and those you add
//! with [`ManagerService::allow_hosts`]; 421 otherwise), so a DNS-rebinding page at
//! `evil.test` that resolves to the manager's address can neither read the page and its
//! nonce nor post an action; and only at its own paths, `/` and `/balancer-manager` (404
//! elsewhere). It is off unless you mount it, and it must be mounted behind authentication
//! (and best on a loopback-only port): anyone who can use it can take members out of
//! service.

mod view;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use ring::rand::{SecureRandom, SystemRandom};
use tower_balancer::registry::{AdminState, Registry};
use tower_service::Service;

pub use view::{BalancerView, ManagerInfo, MemberView, QueueView};

/// The largest action form accepted.
const MAX_FORM: usize = 16 * 1024;

/// The balancer-manager as a tower `Service`: `GET` serves the page (or JSON with `?json` or
/// `Accept: application/json`), `POST` runs an action and redirects back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use http::Request;
/// use http_body_util::{BodyExt, Full};
/// use tower::ServiceExt;
/// use tower_balancer::registry::{MemberId, MemberSpec, Registry};
/// use tower_balancer_proxy::manager::{ManagerService, ManagerInfo};
///
/// let registry = Registry::new();
/// registry.insert(MemberSpec::new(MemberId::new("node1")?, "https://abc.com:9443".parse()?))?;
/// let manager = ManagerService::new(registry, ManagerInfo { name: "wso2-cluster".into(), ..Default::default() })?;
/// let req = Request::get("/balancer-manager?json").header("host", "localhost:9000");
/// let res = manager.oneshot(req.body(Full::new(Bytes::new()))?).await?;
/// let json: serde_json::Value = serde_json::from_slice(&res.into_body().collect().await?.to_bytes())?;
/// assert_eq!(json["members"][0]["route"], "node1");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ManagerService {
    inner: Arc<ManagerState>,
}

#[derive(Clone)]
struct ManagerState {
    /// Each balancer's registry and description; replaced when the configuration is
    /// reloaded.
    lanes: Arc<ArcSwap<Vec<(Registry, ManagerInfo)>>>,
    nonce: String,
    /// Host names (lower case, IPv6 without brackets) requests may carry.
    hosts: Vec<String>,
    /// Served at `/metrics` when set.
    metrics: Option<crate::metrics::Metrics>,
}

/// What `?json` shows: the first balancer as before, then the others.
#[derive(serde::Serialize)]
struct Page<'a, 'b> {
    #[serde(flatten)]
    first: &'b BalancerView<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    balancers: &'b [BalancerView<'a>],
}

/// The paths the manager answers at.
const PATHS: [&str; 2] = ["/", "/balancer-manager"];

impl std::fmt::Debug for ManagerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerService")
            .field(
                "balancers",
                &self
                    .inner
                    .lanes
                    .load()
                    .iter()
                    .map(|(_, i)| i.name.clone())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The system random generator failed while making the nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random generator failed")]
pub struct NonceError;

impl ManagerService {
    /// A manager for `registry` with a fresh random nonce.
    ///
    /// # Errors
    /// [`NonceError`] if the system random generator fails.
    pub fn new(registry: Registry, info: ManagerInfo) -> Result<Self, NonceError> {
        Self::balancers(vec![(registry, info)])
    }

    /// A manager for several balancers, each shown in its own section and acted on by its
    /// name (the form's `balancer` field; the first when it is absent).
    ///
    /// # Errors
    /// [`NonceError`] if the system random generator fails.
    pub fn balancers(lanes: Vec<(Registry, ManagerInfo)>) -> Result<Self, NonceError> {
        let mut bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| NonceError)?;
        let nonce = bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        Ok(Self {
            inner: Arc::new(ManagerState {
                lanes: Arc::new(ArcSwap::from_pointee(lanes)),
                nonce,
                hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
                metrics: None,
            }),
        })
    }

    /// Replaces what the page says about the balancer (its strategy, stickiness and
    /// failover), on every clone: a reloaded configuration describes itself.
    pub fn set_info(&self, info: ManagerInfo) {
        let mut lanes = (**self.inner.lanes.load()).clone();
        if let Some(first) = lanes.first_mut() {
            first.1 = info;
        }
        self.inner.lanes.store(Arc::new(lanes));
    }

    /// The metrics served at `/metrics`, when any.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn metrics(&self) -> Option<crate::metrics::Metrics> {
        self.inner.metrics.clone()
    }

    /// Replaces the balancers shown and acted on, on every clone (a reload that adds or
    /// removes one).
    pub fn set_balancers(&self, lanes: Vec<(Registry, ManagerInfo)>) {
        self.inner.lanes.store(Arc::new(lanes));
    }

    /// Also serves `metrics` at `/metrics` (the page links to it), behind the same host check.
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        Arc::make_mut(&mut self.inner).metrics = Some(metrics);
        self
    }

    /// Also answers requests whose `Host` names one of `hosts` (a name or an address,
    /// without the port): the address the manager is bound to, the name operators reach
    /// it by. `localhost`, `127.0.0.1` and `::1` are always allowed.
    #[must_use]
    pub fn allow_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let inner = Arc::make_mut(&mut self.inner);
        for h in hosts {
            let h = h
                .as_ref()
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let h = h.to_ascii_lowercase();
            if !h.is_empty() && !inner.hosts.contains(&h) {
                inner.hosts.push(h);
            }
        }
        self
    }

    /// The nonce action forms must carry (for tests and scripted clients).
    #[must_use]
    pub fn nonce(&self) -> &str {
        &self.inner.nonce
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    res
}

/// The host part (`host[:port]`) of a URL string.
fn authority_of(url: &str) -> Option<String> {
    url.parse::<Uri>()
        .ok()?
        .authority()
        .map(|a| a.as_str().to_ascii_lowercase())
}

/// The host name of a `Host` value or authority, without the port and brackets.
fn host_name(value: &str) -> &str {
    match value.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => value.split(':').next().unwrap_or(value),
    }
}

impl ManagerState {
    /// Whether the request names this manager as its host (DNS rebinding defence).
    fn own_host<B>(&self, req: &Request<B>) -> bool {
        // the request target's authority wins over Host, as it does for forwarding
        let value = match req.uri().authority() {
            Some(a) => Some(a.as_str()),
            None => req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok()),
        };
        value.is_some_and(|v| {
            let name = host_name(v.trim());
            self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
        })
    }

    fn view<'a>(registry: &Registry, info: &'a ManagerInfo) -> BalancerView<'a> {
        let snapshot = registry.load();
        BalancerView {
            info,
            version: snapshot.version(),
            panic: snapshot.is_panic(),
            queue: view::QueueView::new(registry.load_stats().queue()),
            members: view::members(&snapshot),
        }
    }

    fn get<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let wants_json = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "json"))
            || req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/json"));
        let lanes = self.lanes.load_full();
        let views: Vec<BalancerView<'_>> = lanes.iter().map(|(r, i)| Self::view(r, i)).collect();
        let Some((first, more)) = views.split_first() else {
            return respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "no balancer\n",
            );
        };
        let view = Page {
            first,
            balancers: more,
        };
        if wants_json {
            match serde_json::to_vec_pretty(&view) {
                Ok(json) => respond(StatusCode::OK, "application/json", json),
                Err(_) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "500\n",
                ),
            }
        } else {
            let mut page = view::html_all(&views, &self.nonce);
            if self.metrics.is_some() {
                page = page.replacen(
                    "<h1>Balancer manager</h1>",
                    "<h1>Balancer manager</h1><p><a href=\"/metrics\">Prometheus metrics</a></p>",
                    1,
                );
            }
            respond(StatusCode::OK, "text/html; charset=utf-8", page)
        }
    }

    /// Whether a state-changing request comes from a page this server served.
    fn same_origin<B>(req: &Request<B>) -> bool {
        let h = req.headers();
        if let Some(site) = h.get("sec-fetch-site") {
            if site.as_bytes() != b"same-origin" {
                return false;
            }
        }
        let Some(host) = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
        else {
            return false;
        };
        let claimed = h
            .get(header::ORIGIN)
            .or_else(|| h.get(header::REFERER))
            .and_then(|v| v.to_str().ok())
            .and_then(authority_of);
        claimed.is_some_and(|a| a == host)
    }

    fn act(&self, form: &[u8]) -> Result<(), (StatusCode, &'static str)> {
        let mut nonce = None;
        let mut member = None;
        let mut action = None;
        let mut weight = None;
        let mut balancer = None;
        for (k, v) in form_urlencoded::parse(form) {
            match &*k {
                "balancer" => balancer = Some(v.into_owned()),
                "nonce" => nonce = Some(v.into_owned()),
                "member" => member = Some(v.into_owned()),
                "action" => action = Some(v.into_owned()),
                "weight" => weight = Some(v.into_owned()),
                _ => {}
            }
        }
        if nonce.as_deref() != Some(self.nonce.as_str()) {
            return Err((StatusCode::FORBIDDEN, "403 missing or wrong nonce\n"));
        }
        let member = member.ok_or((StatusCode::BAD_REQUEST, "400 no member\n"))?;
        let lanes = self.lanes.load();
        let lane = match &balancer {
            Some(name) => lanes.iter().find(|(_, i)| i.name == *name),
            // with several, which one is never guessed
            None if lanes.len() == 1 => lanes.first(),
            None => None,
        };
        let r = &lane
            .ok_or((StatusCode::BAD_REQUEST, "400 unknown balancer\n"))?
            .0;
        let done = match action.as_deref() {
            Some("enable") => r.set_state(&member, AdminState::Active),
            Some("drain") => r.set_state(&member, AdminState::Draining),
            Some("standby") => r.set_state(&member, AdminState::Standby),
            Some("disable") => r.set_state(&member, AdminState::Disabled),
            Some("weight") => {
                let w: u32 = weight
                    .as_deref()
                    .and_then(|w| w.trim().parse().ok())
                    .ok_or((StatusCode::BAD_REQUEST, "400 the weight must be a number\n"))?;
                r.set_weight(&member, w)
            }
            _ => return Err((StatusCode::BAD_REQUEST, "400 unknown action\n")),
        };
        done.map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                "400 unknown member or invalid value\n",
            )
        })?;
        tracing::info!(member = %member.escape_default(), action = ?action, "balancer-manager action");
        Ok(())
    }
}

impl<B> Service<Request<B>> for ManagerService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // An operator page, off the request path: a boxed future keeps it simple.
        let inner = self.inner.clone();
        Box::pin(async move {
            if !inner.own_host(&req) {
                return Ok(respond(
                    StatusCode::MISDIRECTED_REQUEST,
                    "text/plain; charset=utf-8",
                    "421 this is not a host the balancer-manager answers for\n",
                ));
            }
            if let (Some(metrics), "/metrics") = (&inner.metrics, req.uri().path()) {
                if matches!(*req.method(), Method::GET | Method::HEAD) {
                    let text = metrics.render();
                    return Ok(respond(StatusCode::OK, crate::metrics::CONTENT_TYPE, text));
                }
            }
            if !PATHS.contains(&req.uri().path()) {
                return Ok(respond(
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    "404\n",
                ));
            }
            Ok(match *req.method() {
                Method::GET | Method::HEAD => inner.get(&req),
                Method::POST => {
                    if !ManagerState::same_origin(&req) {
                        return Ok(respond(
                            StatusCode::FORBIDDEN,
                            "text/plain; charset=utf-8",
                            "403 cross-origin request refused\n",
                        ));
                    }
                    let path = req.uri().path().to_owned();
                    let Ok(form) = Limited::new(req.into_body(), MAX_FORM).collect().await else {
                        return Ok(respond(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "text/plain; charset=utf-8",
                            "413\n",
                        ));
                    };
                    match inner.act(&form.to_bytes()) {
                        Ok(()) => {
                            let mut res =
                                respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
                            if let Ok(loc) = HeaderValue::from_str(&path) {
                                res.headers_mut().insert(header::LOCATION, loc);
                            }
                            res
                        }
                        Err((status, text)) => respond(status, "text/plain; charset=utf-8", text),
                    }
                }
                _ => respond(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain; charset=utf-8",
                    "405\n",
                ),
            })
        })
    }
}
