//! From a file's text to checked parts: every file the configuration names is read and
//! parsed here, so that a balancer that builds also starts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;
use tower_balancer::balance::FailureStatuses;
use tower_balancer::failover::FailoverConfig;
use tower_balancer::health::{HttpProbe, ProbeSettings};
use tower_balancer::registry::{MemberSpec, Registry};
use tower_balancer::sticky::{RouteKeys, StickyConfig};

use super::error::{find_key, ConfigError};
use super::file::{check_route, FileConfig, LbMethod};
use super::run::{Balancer, BodyLimits, ProbeKind, PublicUrl};
use super::strategy::ConfiguredStrategy;
use crate::forward::{ForwardConfig, UpstreamTls};
use crate::hygiene::{Forwarding, TrustedProxies};
use crate::limits::DEFAULT_BODY_IDLE_TIMEOUT;
use crate::manager::ManagerInfo;
use crate::serve::{server_tls_from_pem, ServeConfig};

/// Parses `text` (read from `path`) as `T`; an error names the line and the dotted key.
pub(super) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError::at(path, text, e.span(), None, e.message()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::at(path, text, inner.span(), Some(key), inner.message())
    })
}

/// No value to point at: the line is found from the key.
pub(super) const NO_SPAN: Option<&Spanned<()>> = None;

/// A parsed configuration file, not yet built: [`from_file`](Self::from_file), inspect or
/// adjust with [`file_mut`](Self::file_mut), then [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct BalancerConfig {
    pub(super) file: FileConfig,
    path: PathBuf,
    text: String,
}

impl BalancerConfig {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, and the line and key where there is one.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::file(path, format!("cannot read the file: {e}")))?;
        Self::from_toml(&text, path)
    }

    /// Parses `text` as if read from `path` (relative file names in it are taken from
    /// `path`'s directory).
    ///
    /// # Errors
    /// A [`ConfigError`] naming `path`, the line and the key.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig = parse_toml(text, path)?;
        let config = Self {
            file,
            path: path.to_path_buf(),
            text: text.to_owned(),
        };
        config.check()?;
        Ok(config)
    }

    /// The parsed file.
    #[must_use]
    pub const fn file(&self) -> &FileConfig {
        &self.file
    }

    /// The parsed file, to adjust before building (a port chosen at run time, say).
    pub fn file_mut(&mut self) -> &mut FileConfig {
        &mut self.file
    }

    /// Checks what one value alone cannot: routes, files that come in pairs.
    fn check(&self) -> Result<(), ConfigError> {
        let b = &self.file.balancer;
        if b.members.is_empty() && b.members_file.is_none() && b.dns.is_none() {
            return Err(self.err(
                NO_SPAN,
                "balancer.member",
                "the balancer has no members (give [[balancer.member]], members_file or [balancer.dns])",
            ));
        }
        if let Some(d) = &b.dns {
            let by_name = d.name.is_some() || d.port.is_some();
            if by_name == d.srv.is_some() || (by_name && (d.name.is_none() || d.port.is_none())) {
                return Err(self.err(
                    NO_SPAN,
                    "balancer.dns",
                    "give either `name` and `port` (A/AAAA records) or `srv`",
                ));
            }
        }
        let hashing = matches!(b.lbmethod, LbMethod::Maglev | LbMethod::Ringhash);
        match (&b.hash_key, hashing) {
            (None, true) => {
                return Err(self.err(
                    NO_SPAN,
                    "balancer.lbmethod",
                    "maglev and ringhash need `hash_key`, the request header to hash",
                ))
            }
            (Some(k), _) if HeaderName::from_bytes(k.get_ref().as_bytes()).is_err() => {
                return Err(self.err(Some(k), "balancer.hash_key", "not a header name"))
            }
            _ => {}
        }
        if b.cookie_key_file.is_some() && !b.cookie_key_files.is_empty() {
            return Err(self.err(
                b.cookie_key_file.as_ref(),
                "balancer.cookie_key_file",
                "give cookie_key_file or cookie_key_files, not both",
            ));
        }
        let mut seen = HashSet::new();
        for (i, m) in b.members.iter().enumerate() {
            let key = format!("balancer.member[{i}].route");
            check_route(m.route.get_ref()).map_err(|e| self.err(Some(&m.route), &key, e))?;
            if !seen.insert(m.route.get_ref().clone()) {
                return Err(self.err(
                    Some(&m.route),
                    &key,
                    format!("route `{}` is used by two members", m.route.get_ref()),
                ));
            }
            if m.loadfactor == 0 {
                let key = format!("balancer.member[{i}].loadfactor");
                return Err(self.err(Some(&m.route), &key, "loadfactor must be at least 1"));
            }
        }
        let s = &self.file.server;
        if s.certificate.is_some() != s.key.is_some() {
            let at = s.certificate.as_ref().or(s.key.as_ref());
            return Err(self.err(
                at,
                "server.certificate",
                "certificate and key come together: set both for TLS, neither for plain HTTP",
            ));
        }
        if b.client_certificate.is_some() != b.client_key.is_some() {
            let at = b.client_certificate.as_ref().or(b.client_key.as_ref());
            return Err(self.err(
                at,
                "balancer.client_certificate",
                "client_certificate and client_key come together",
            ));
        }
        if let Some(h) = &b.health {
            h.http_method()
                .and_then(|_| h.expect_range())
                .map_err(|e| self.err(NO_SPAN, "balancer.health", e))?;
        }
        TrustedProxies::parse(&b.trusted_proxies)
            .map_err(|e| self.err(NO_SPAN, "balancer.trusted_proxies", e.to_string()))?;
        Ok(())
    }

    pub(super) fn err<T>(
        &self,
        at: Option<&Spanned<T>>,
        key: &str,
        msg: impl Into<String>,
    ) -> ConfigError {
        let span = at.map(Spanned::span).or_else(|| find_key(&self.text, key));
        ConfigError::at(&self.path, &self.text, span, Some(key.to_owned()), msg)
    }

    /// Reads a file the configuration names, relative to the configuration's directory.
    fn read(&self, p: &Spanned<PathBuf>, key: &str) -> Result<Vec<u8>, ConfigError> {
        let full = self.resolve(p.get_ref());
        std::fs::read(&full).map_err(|e| {
            self.err(
                Some(p),
                key,
                format!("cannot read `{}`: {e}", full.display()),
            )
        })
    }

    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// Builds the balancer: reads certificates and keys, fills a registry, and prepares the
    /// layers; nothing listens until [`Balancer::bind`].
    ///
    /// # Errors
    /// A [`ConfigError`] at the key whose file or value was refused.
    pub fn build(&self) -> Result<Balancer, ConfigError> {
        let (s, b) = (&self.file.server, &self.file.balancer);

        let mut serve = ServeConfig::new();
        if let (Some(cert), Some(key)) = (&s.certificate, &s.key) {
            let tls = server_tls_from_pem(
                &self.read(cert, "server.certificate")?,
                &self.read(key, "server.key")?,
            )
            .map_err(|e| self.err(Some(cert), "server.certificate", e.to_string()))?;
            serve = serve.tls(tls);
        }
        if let Some(t) = s.header_read_timeout {
            serve = serve.header_read_timeout(t);
        }
        if let Some(n) = s.max_header_bytes {
            serve = serve.max_header_bytes(n);
        }
        if let Some(n) = s.max_headers {
            serve = serve.max_headers(n);
        }
        if let Some(t) = s.graceful_timeout {
            serve = serve.graceful_timeout(t);
        }
        if let Some(n) = s.max_connections {
            serve = serve.max_connections(n);
        }
        let tls_front = s.certificate.is_some();

        let registry = Registry::new();
        if let Some(t) = b.panic_threshold {
            registry.set_panic_threshold(t);
        }
        let mut forward = ForwardConfig::new();
        if let Some(list) = &b.upgrades {
            forward = forward.upgrades(list.iter().map(|p| p.trim().to_owned()));
        }
        for (i, m) in b.members.iter().enumerate() {
            let id = check_route(m.route.get_ref())
                .map_err(|e| self.err(Some(&m.route), "balancer.member.route", e))?;
            let spec = MemberSpec::new(id, m.url.clone())
                .weight(m.loadfactor)
                .priority(m.lbset)
                .state(m.status);
            registry.insert(spec).map_err(|e| {
                self.err(
                    Some(&m.route),
                    &format!("balancer.member[{i}]"),
                    e.to_string(),
                )
            })?;
            if let (Some(host), false) = (m.url.host(), m.resolve.is_empty()) {
                forward = forward.resolve(host, m.resolve.iter().copied());
            }
        }

        let discovery = self.discovery(&registry)?;

        let mut roots = Vec::new();
        for (i, r) in b.trust_roots.iter().enumerate() {
            roots.extend(self.read(r, &format!("balancer.trust_roots[{i}]"))?);
            roots.push(b'\n');
        }
        if !roots.is_empty() {
            let at = b.trust_roots.first();
            let mut tls = UpstreamTls::from_pem_roots(&roots)
                .map_err(|e| self.err(at, "balancer.trust_roots", e.to_string()))?;
            if let (Some(c), Some(k)) = (&b.client_certificate, &b.client_key) {
                tls = tls
                    .client_certificate(
                        &self.read(c, "balancer.client_certificate")?,
                        &self.read(k, "balancer.client_key")?,
                    )
                    .map_err(|e| self.err(Some(c), "balancer.client_certificate", e.to_string()))?;
            }
            tls.client_config()
                .map_err(|e| self.err(at, "balancer.trust_roots", e.to_string()))?;
            forward = forward.tls(tls);
        }
        if let Some(t) = b.connection_timeout {
            forward = forward.connect_timeout(t);
        }
        let trusted = TrustedProxies::parse(&b.trusted_proxies)
            .map_err(|e| self.err(NO_SPAN, "balancer.trusted_proxies", e.to_string()))?;
        forward = forward
            .preserve_host(b.preserve_host)
            .forwarding(Forwarding::new().trusted(trusted));
        let plan = PublicUrl {
            explicit: b.public_url.clone(),
            server_name: s.server_name.clone(),
            tls: tls_front,
            reverse: b.proxy_pass_reverse,
            cookie_domains: b
                .reverse_cookie_domain
                .iter()
                .map(|r| (r.from.clone(), r.to.clone()))
                .collect(),
            cookie_paths: b
                .reverse_cookie_path
                .iter()
                .map(|r| (r.from.clone(), r.to.clone()))
                .collect(),
        };
        // checked now with the configured port; made again at bind with the bound one
        let public = plan.url(s.listen.port()).map_err(|e| {
            let key = if b.public_url.is_some() {
                "balancer.public_url"
            } else {
                "server.server_name"
            };
            self.err(NO_SPAN, key, e)
        })?;
        if plan.reverse {
            crate::rewrite::ReverseRewrite::try_new(&public)
                .map_err(|e| self.err(NO_SPAN, "balancer.public_url", e.to_string()))?;
        }

        let sticky = self.sticky()?;
        let failover = self.failover();
        let probe = self.probe(&forward, &registry)?;
        let strategy = ConfiguredStrategy::new(b.lbmethod);
        let hash_key = b
            .hash_key
            .as_ref()
            .and_then(|k| HeaderName::from_bytes(k.get_ref().as_bytes()).ok());
        let info = ManagerInfo {
            name: b.name.clone(),
            strategy: format!("{:?}", b.lbmethod).to_ascii_lowercase(),
            sticky: self.sticky_words(),
            failover: self.failover_words(),
        };
        let ejection = b.ejection.unwrap_or_default();
        let outliers = ejection
            .outlier_config()
            .max_ejected_fraction(ejection.max_fraction);
        let limits = BodyLimits {
            request_idle: s.request_body_timeout.unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT),
            response_idle: b.response_body_timeout.unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT),
        };
        let manager_names = self
            .file
            .manager
            .as_ref()
            .map(|m| m.names.clone())
            .unwrap_or_default();
        Ok(Balancer {
            registry,
            outliers,
            limits,
            manager_names,
            listen: s.listen,
            manager_listen: self.file.manager.as_ref().map(|m| m.listen),
            serve,
            forward,
            sticky,
            failover,
            strategy,
            hash_key,
            discovery,
            probe,
            info,
            public,
            plan,
        })
    }

    fn sticky(&self) -> Result<StickyConfig, ConfigError> {
        let b = &self.file.balancer;
        let (cookies, params) = b.sticky_names();
        let mut builder = StickyConfig::builder()
            .session_cookies(cookies)
            .url_params(params)
            .strict(b.nofailover)
            .accept_apache_form(b.cookie_accept_apache)
            .cookie_name(&b.cookie);
        if b.cookie_plain {
            builder = builder.plain();
        } else if let Some(k) = &b.cookie_key_file {
            let key = self.read(k, "balancer.cookie_key_file")?;
            let keys = RouteKeys::new(&[key])
                .map_err(|e| self.err(Some(k), "balancer.cookie_key_file", e.to_string()))?;
            builder = builder.signed(keys);
        } else if !b.cookie_key_files.is_empty() {
            let mut keys = Vec::with_capacity(b.cookie_key_files.len());
            for (i, k) in b.cookie_key_files.iter().enumerate() {
                keys.push(self.read(k, &format!("balancer.cookie_key_files[{i}]"))?);
            }
            let keys = RouteKeys::new(&keys).map_err(|e| {
                self.err(
                    b.cookie_key_files.first(),
                    "balancer.cookie_key_files",
                    e.to_string(),
                )
            })?;
            builder = builder.signed(keys);
        }
        builder
            .build()
            .map_err(|e| self.err(NO_SPAN, "balancer.stickysession", e.to_string()))
    }

    fn failover(&self) -> FailoverConfig {
        let b = &self.file.balancer;
        let mut f = FailoverConfig::default();
        if let Some(n) = b.maxattempts {
            f = f.max_retries(n);
        }
        if let Some(t) = b.timeout {
            f = f.per_try_timeout(t);
        }
        if let Some(budget) = b.retry_budget {
            f = f.budget(budget.window, budget.per_second, budget.ratio);
        }
        let mut statuses = FailureStatuses::none();
        for s in &b.failonstatus {
            statuses = statuses.with(*s);
        }
        f.fail_on_status(statuses)
    }

    fn probe(
        &self,
        forward: &ForwardConfig,
        registry: &Registry,
    ) -> Result<Option<ProbeKind>, ConfigError> {
        let Some(h) = &self.file.balancer.health else {
            return Ok(None);
        };
        let settings = ProbeSettings::new()
            .interval(h.interval)
            .fast_interval(h.interval.min(Duration::from_secs(1)))
            .timeout(h.timeout)
            .rise(h.passes.max(1))
            .fall(h.fails.max(1))
            .initial(h.initial);
        let method = h
            .http_method()
            .map_err(|e| self.err(NO_SPAN, "balancer.health.method", e))?;
        let Some(method) = method else {
            return Ok(Some(ProbeKind::Tcp(settings)));
        };
        let (lo, hi) = h
            .expect_range()
            .map_err(|e| self.err(NO_SPAN, "balancer.health.expect", e))?;
        let client = forward
            .probe_client(registry)
            .map_err(|e| self.err(NO_SPAN, "balancer.trust_roots", e.to_string()))?;
        let mut probe = HttpProbe::new(client)
            .method(method)
            .path(h.uri.as_str())
            .expect_status(lo, hi)
            .fail_header(HeaderName::from_static("x-lb-fail"));
        if let Some(text) = &h.body_contains {
            probe = probe.body_contains(text.as_bytes());
        }
        Ok(Some(ProbeKind::Http(Box::new(probe), settings)))
    }

    fn sticky_words(&self) -> String {
        let b = &self.file.balancer;
        let mut parts = vec![format!("stickysession={}", b.stickysession)];
        let form = if b.cookie_plain { "plain" } else { "signed" };
        parts.push(format!("cookie {} ({form})", b.cookie));
        parts.push(format!(
            "nofailover={}",
            if b.nofailover { "On" } else { "Off" }
        ));
        parts.join(", ")
    }

    fn failover_words(&self) -> String {
        let b = &self.file.balancer;
        let mut parts = vec![format!(
            "maxattempts={}",
            b.maxattempts
                .map_or_else(|| "3".to_owned(), |n| n.to_string())
        )];
        let timeout = b
            .timeout
            .unwrap_or(tower_balancer::failover::DEFAULT_PER_TRY_TIMEOUT);
        parts.push(format!("timeout={}", humantime::format_duration(timeout)));
        if !b.failonstatus.is_empty() {
            let list: Vec<_> = b
                .failonstatus
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect();
            parts.push(format!("failonstatus={}", list.join(",")));
        }
        parts.join(", ")
    }
}
