//! A small stand-in for a WSO2 Identity Server node's Carbon console.
//!
//! Why it behaves as it does: the recipe's point is that sessions live in one node's
//! memory, so a request that reaches the other node loses the session. The node keeps its
//! sessions in its own memory, appends its route to the session id as Tomcat's `jvmRoute`
//! does (`…​.node1`), writes absolute redirects with its own URL (which the balancer's
//! `ProxyPassReverse` rewrites), and says on every page which node served it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::userstore::UserStore;

/// The header every node response carries: the route of the node that served it.
pub const SERVED_BY: &str = "x-served-by";

/// How a node is set up: the recipe's per-node settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The route (Tomcat `jvmRoute`, Apache `route=`): `node1`.
    pub route: String,
    /// The node's host name, the CN of its certificate: `abc.com`.
    pub host: String,
    /// The HTTPS port's address (9443, or 9444 with offset 1).
    pub https: SocketAddr,
    /// The HTTP port's address (9763, or 9764 with offset 1).
    pub http: SocketAddr,
    /// The node's TLS settings (its own certificate).
    pub tls: Arc<rustls::ServerConfig>,
    /// The central user store.
    pub users: UserStore,
}

/// What the node keeps in its own memory.
#[derive(Debug, Default)]
struct State {
    sessions: Mutex<HashMap<String, String>>,
    served: AtomicU64,
}

/// A node that can be started, stopped (its listeners close, its connections drop and its
/// sessions are lost, as when the process dies) and started again on the same ports.
#[derive(Debug)]
pub struct Node {
    config: Arc<NodeConfig>,
    state: Arc<State>,
    running: Option<JoinSet<()>>,
    bound: Option<(SocketAddr, SocketAddr)>,
}

impl Node {
    /// A stopped node.
    #[must_use]
    pub fn new(config: NodeConfig) -> Self {
        Self {
            config: Arc::new(config),
            state: Arc::new(State::default()),
            running: None,
            bound: None,
        }
    }

    /// The route.
    #[must_use]
    pub fn route(&self) -> &str {
        &self.config.route
    }

    /// The bound HTTPS and HTTP addresses while running.
    #[must_use]
    pub const fn addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.bound
    }

    /// Requests served since the node was made.
    #[must_use]
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::Relaxed)
    }

    /// Whether the node is running.
    #[must_use]
    pub const fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Opens the node's HTTPS and HTTP ports and serves them.
    ///
    /// # Errors
    /// The listener's error with the address, e.g. the port is in use.
    pub async fn start(&mut self) -> io::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let route = self.config.route.clone();
        let bind = |addr: SocketAddr| {
            let route = route.clone();
            async move {
                TcpListener::bind(addr).await.map_err(|e| {
                    io::Error::new(e.kind(), format!("{route} cannot listen on {addr}: {e}"))
                })
            }
        };
        let https = bind(self.config.https).await?;
        let http = bind(self.config.http).await?;
        let bound = (https.local_addr()?, http.local_addr()?);
        self.bound = Some(bound);
        if (self.config.https, self.config.http) != bound {
            // ports chosen by the OS: keep them, so a restart comes back where it was
            let mut config = (*self.config).clone();
            (config.https, config.http) = bound;
            self.config = Arc::new(config);
        }
        let mut set = JoinSet::new();
        let tls = TlsAcceptor::from(self.config.tls.clone());
        set.spawn(accept_loop(
            https,
            Some(tls),
            self.config.clone(),
            self.state.clone(),
        ));
        set.spawn(accept_loop(
            http,
            None,
            self.config.clone(),
            self.state.clone(),
        ));
        self.running = Some(set);
        Ok(())
    }

    /// Stops the node as if its process died: listeners close, open connections drop,
    /// sessions are lost.
    pub async fn stop(&mut self) {
        if let Some(mut set) = self.running.take() {
            set.shutdown().await;
        }
        self.state
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    config: Arc<NodeConfig>,
    state: Arc<State>,
) {
    // connections live in this set, so stopping the node (aborting this task) drops them
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((sock, _)) = accepted else { continue };
                let (config, state, tls) = (config.clone(), state.clone(), tls.clone());
                conns.spawn(async move {
                    let https = tls.is_some();
                    let svc = hyper::service::service_fn(move |req| {
                        let (config, state) = (config.clone(), state.clone());
                        async move { Ok::<_, Infallible>(handle(req, &config, &state, https).await) }
                    });
                    let builder = Builder::new(TokioExecutor::new());
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(sock).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(sock), svc).await;
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

const LOGIN: &str = "/carbon/admin/login.jsp";
const LOGIN_ACTION: &str = "/carbon/admin/login_action.jsp";
const HOME: &str = "/carbon/admin/index.jsp";
const LOGOUT: &str = "/carbon/admin/logout_action.jsp";

async fn handle(
    req: Request<Incoming>,
    config: &NodeConfig,
    state: &State,
    https: bool,
) -> Response<Full<Bytes>> {
    state.served.fetch_add(1, Ordering::Relaxed);
    let own = if https {
        format!("https://{}:{}", config.host, config.https.port())
    } else {
        format!("http://{}:{}", config.host, config.http.port())
    };
    let session = session_of(&req, config, state);
    let path = req.uri().path().to_owned();
    let mut res = match (req.method().clone(), path.as_str()) {
        (
            Method::GET | Method::HEAD,
            "/carbon" | "/carbon/" | "/carbon/admin" | "/carbon/admin/",
        ) => redirect(&own, LOGIN),
        (Method::GET | Method::HEAD, LOGIN) => {
            let failed = req
                .uri()
                .query()
                .is_some_and(|q| q.contains("loginStatus=false"));
            page(config, "Sign in", &login_form(failed))
        }
        (Method::POST, LOGIN_ACTION) => login(req, config, state, &own, https).await,
        (Method::GET | Method::HEAD, HOME) => match &session {
            Some((id, user)) => page(config, "Home", &home(user, id)),
            None => redirect(&own, LOGIN),
        },
        (Method::GET | Method::POST, LOGOUT) => {
            if let Some((id, _)) = &session {
                state
                    .sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(id);
            }
            redirect(&own, LOGIN)
        }
        _ => {
            let mut r = page(config, "Not found", "<p>No such page.</p>");
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    if let Ok(v) = HeaderValue::from_str(&config.route) {
        res.headers_mut().insert(SERVED_BY, v);
    }
    res
}

/// The session this request carries, if this node knows it.
fn session_of<B>(req: &Request<B>, config: &NodeConfig, state: &State) -> Option<(String, String)> {
    let suffix = format!(".{}", config.route);
    let sessions = state
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("JSESSIONID="))
        .filter(|id| id.ends_with(&suffix))
        .find_map(|id| sessions.get(id).map(|user| (id.to_owned(), user.clone())))
}

async fn login(
    req: Request<Incoming>,
    config: &NodeConfig,
    state: &State,
    own: &str,
    https: bool,
) -> Response<Full<Bytes>> {
    let Ok(body) = Limited::new(req.into_body(), 8 * 1024).collect().await else {
        let mut r = page(config, "Bad request", "<p>The form could not be read.</p>");
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let body = body.to_bytes();
    let mut user = String::new();
    let mut password = String::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "username" => user = v.into_owned(),
            "password" => password = v.into_owned(),
            _ => {}
        }
    }
    if !config.users.verify(&user, &password) {
        return redirect(own, &format!("{LOGIN}?loginStatus=false"));
    }
    let mut raw = [0u8; 16];
    if SystemRandom::new().fill(&mut raw).is_err() {
        let mut r = page(config, "Error", "<p>No session could be made.</p>");
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    }
    let id = raw.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    }) + "."
        + &config.route;
    state
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.clone(), user);
    let mut res = redirect(own, HOME);
    let secure = if https { "; Secure" } else { "" };
    if let Ok(v) =
        HeaderValue::from_str(&format!("JSESSIONID={id}; Path=/carbon; HttpOnly{secure}"))
    {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn redirect(own: &str, path: &str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(&format!("{own}{path}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

fn login_form(failed: bool) -> String {
    let notice = if failed {
        "<p id=\"error\">Login failed: check the user name and password.</p>"
    } else {
        ""
    };
    format!(
        "{notice}<form method=\"post\" action=\"{LOGIN_ACTION}\">\
         <label>Username <input id=\"username\" name=\"username\" autocomplete=\"username\"></label>\
         <label>Password <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
         <button id=\"signin\" type=\"submit\">Sign in</button></form>"
    )
}

fn home(user: &str, session: &str) -> String {
    format!(
        "<p id=\"welcome\">Signed in as <b>{}</b>.</p><p>Session <code id=\"session\">{}</code></p>\
         <p><a id=\"again\" href=\"{HOME}\">Reload</a> · <a href=\"{LOGOUT}\">Sign out</a></p>",
        escape(user),
        escape(session)
    )
}

fn page(config: &NodeConfig, title: &str, content: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>WSO2 Management Console · {title}</title></head>\
         <body><h1>WSO2 Management Console</h1><p id=\"node\">Served by <b>{route}</b> ({host})</p>{content}</body></html>",
        route = escape(&config.route),
        host = escape(&config.host),
    );
    let mut res = Response::new(Full::new(Bytes::from(html)));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn escape(s: &str) -> String {
    s.chars()
        .fold(String::with_capacity(s.len()), |mut out, c| {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
            out
        })
}
