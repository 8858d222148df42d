//! A scripted browser: HTTPS to `wso2.com` (resolved inside the process, trusting the
//! generated CA, as `curl --resolve … --cacert …` does), a cookie jar, redirects shown
//! rather than followed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tower_balancer_proxy::forward::Resolver;

use crate::node::SERVED_BY;

/// A request through the balancer failed before any response came back.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file holds no usable certificate.
    #[error("the CA certificate was refused: {0}")]
    Ca(String),
    /// The request failed (connection refused, TLS, reset, timeout).
    #[error("{method} {path}: {why}")]
    Request {
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// Why.
        why: String,
    },
}

/// A response as the demo looks at it.
#[derive(Debug, Clone)]
pub struct Page {
    /// The status.
    pub status: StatusCode,
    /// `Location`, for redirects.
    pub location: Option<String>,
    /// The route of the node that served it.
    pub served_by: Option<String>,
    /// `Set-Cookie` values.
    pub set_cookies: Vec<String>,
    /// The body as text.
    pub body: String,
}

type Https = HttpsConnector<HttpConnector<Resolver>>;

/// A client with a cookie jar, speaking to the balancer as `https://wso2.com:port`.
#[derive(Debug, Clone)]
pub struct Browser {
    client: Client<Https, Full<Bytes>>,
    base: String,
    jar: BTreeMap<String, String>,
}

impl Browser {
    /// A browser that trusts `ca_pem` and finds `wso2.com` at `front`.
    ///
    /// # Errors
    /// [`ClientError::Ca`] if the CA is refused.
    pub fn new(ca_pem: &[u8], front: SocketAddr) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| ClientError::Ca(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Ca(e.to_string()))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(Resolver::new(HashMap::from([(
            "wso2.com".to_owned(),
            vec![front],
        )])));
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_all_versions()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            base: format!("https://wso2.com:{}", front.port()),
            jar: BTreeMap::new(),
        })
    }

    /// The balancer's public URL as this browser sees it.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The cookie `name`, if the jar holds it.
    #[must_use]
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.jar.get(name).map(String::as_str)
    }

    /// Forgets every cookie (a new browser profile).
    pub fn clear_cookies(&mut self) {
        self.jar.clear();
    }

    /// `GET path`.
    ///
    /// # Errors
    /// [`ClientError::Request`] when no response came back.
    pub async fn get(&mut self, path: &str) -> Result<Page, ClientError> {
        self.send(Method::GET, path, Bytes::new()).await
    }

    /// `POST path` with a form.
    ///
    /// # Errors
    /// [`ClientError::Request`] when no response came back.
    pub async fn post_form(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<Page, ClientError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(Method::POST, path, Bytes::from(body)).await
    }

    async fn send(&mut self, method: Method, path: &str, body: Bytes) -> Result<Page, ClientError> {
        let fail = |why: String| ClientError::Request {
            method: method.clone(),
            path: path.to_owned(),
            why,
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .body(Full::new(body.clone()))
            .map_err(|e| fail(e.to_string()))?;
        if !body.is_empty() {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
        if !self.jar.is_empty() {
            let cookies = self
                .jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let v = HeaderValue::from_str(&cookies).map_err(|e| fail(e.to_string()))?;
            req.headers_mut().insert(header::COOKIE, v);
        }
        let res = tokio::time::timeout(Duration::from_secs(20), self.client.request(req))
            .await
            .map_err(|_| fail("no response within 20 s".into()))?
            .map_err(|e| fail(format!("{e:?}")))?;
        let (parts, body) = res.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
            .await
            .map_err(|_| fail("the body did not end within 20 s".into()))?
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        let text = |v: &HeaderValue| v.to_str().unwrap_or_default().to_owned();
        let set_cookies: Vec<String> = parts
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(text)
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                self.jar.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        Ok(Page {
            status: parts.status,
            location: parts.headers.get(header::LOCATION).map(text),
            served_by: parts.headers.get(SERVED_BY).map(text),
            set_cookies,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
