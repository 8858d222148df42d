//! Each part of the balancer from its keys: the front, members' TLS, the public URL,
//! stickiness, failover, probes, and the reliability settings; `build` assembles them.

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;
use tower_balancer::balance::{FailureStatuses, QueueSettings};
use tower_balancer::failover::FailoverConfig;
use tower_balancer::health::{HttpProbe, ProbeSettings};
use tower_balancer::registry::Registry;
use tower_balancer::sticky::{RouteKeys, StickyConfig, StickyConfigError, MIN_KEY_LEN};

use super::build::{ConfigFile, NO_SPAN};
use super::error::ConfigError;
use super::plan::{FrontPlan, ProbeKind, PublicUrl};
use super::strategy::ConfiguredStrategy;
use crate::access_log::LogTarget;
use crate::forward::{ForwardConfig, UpstreamTls};
use crate::limits::DEFAULT_BODY_IDLE_TIMEOUT;
use crate::proxy::StackPlan;
use crate::serve::{server_tls_by_name, server_tls_from_pem, ServeConfig};

/// How to make a cookie signing key, for the errors about one.
const KEY_HINT: &str =
    "make one with `head -c 32 /dev/urandom > FILE`, the same file on every instance";

impl ConfigFile {
    /// The front: its address, TLS and the client-facing limits.
    pub(super) fn front_plan(&self) -> Result<FrontPlan, ConfigError> {
        let s = &self.file.server;
        let mut serve = ServeConfig::new();
        if let Some(tls) = self.front_tls()? {
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
        if let Some(t) = s.send_timeout {
            serve = serve.send_timeout(t);
        }
        if let Some(n) = s.max_connections {
            serve = serve.max_connections(n);
        }
        if let Some(n) = s.http2_max_uploads {
            serve = serve.http2_max_uploads(n);
        }
        if let Some(n) = s.http2_max_streams {
            serve = serve.http2_max_streams(n);
        }
        if let Some(pc) = &s.per_client {
            let trusted = &self.file.balancer.trusted_proxies;
            if let Some(limit) = pc.connection_limit(trusted) {
                serve = serve.max_connections_per_client(limit);
            }
        }
        let access_log = self
            .access_log_target()?
            .map(|target| (target, s.access_log_format));
        Ok(FrontPlan {
            listen: s.listen,
            serve,
            workers: s.workers,
            access_log,
        })
    }

    /// Where `server.access_log` writes, the file opened once to find a mistake now (and by
    /// `--check`), not when the balancer binds.
    pub(super) fn access_log_target(&self) -> Result<Option<LogTarget>, ConfigError> {
        let Some(p) = &self.file.server.access_log else {
            return Ok(None);
        };
        let target = match p.get_ref().to_str() {
            Some("stdout") => LogTarget::Stdout,
            _ => LogTarget::File(self.resolve(p.get_ref())),
        };
        if let LogTarget::File(path) = &target {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    let msg = format!("cannot open `{}`: {e}", path.display());
                    self.err(Some(p), "server.access_log", msg)
                })?;
        }
        Ok(Some(target))
    }

    /// The layers: sticky, failover, the strategy, passive ejection and the forwarder.
    pub(super) fn stack_plan(
        &self,
        forward: ForwardConfig,
    ) -> Result<StackPlan<ConfiguredStrategy>, ConfigError> {
        let b = &self.file.balancer;
        let ejection = b.ejection.unwrap_or_default();
        Ok(StackPlan {
            sticky: self.sticky()?,
            failover: self.failover(),
            strategy: ConfiguredStrategy::new(b.lbmethod),
            hash_key: b.hash_key.clone(),
            outliers: ejection
                .outlier_config()
                .max_ejected_fraction(ejection.max_fraction),
            queue: {
                let q = QueueSettings::new();
                let q = b.queue_length.map_or(q, |n| q.length(n));
                b.queue_timeout.map_or(q, |t| q.timeout(t))
            },
            request_idle: self
                .file
                .server
                .request_body_timeout
                .unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT),
            response_idle: b.response_body_timeout.unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT),
            forward,
            access_log: None,
            client_rate: self
                .file
                .server
                .per_client
                .and_then(|pc| pc.rate_layer(&b.trusted_proxies)),
            routes: None,
        })
    }

    /// The front's TLS: `server.certificate`, and each virtual host's by the name clients
    /// give (the server's, or else the first host's, for other names).
    fn front_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
        let s = &self.file.server;
        let default = match (&s.certificate, &s.key) {
            (Some(cert), Some(key)) => {
                let pair = (
                    self.read(cert, "server.certificate")?,
                    self.read(key, "server.key")?,
                );
                server_tls_from_pem(&pair.0, &pair.1)
                    .map_err(|e| self.err(Some(cert), "server.certificate", e.to_string()))?;
                Some(pair)
            }
            _ => None,
        };
        let named = self.vhost_certificates()?;
        if named.is_empty() {
            return Ok(match default {
                Some((c, k)) => Some(
                    server_tls_from_pem(&c, &k)
                        .map_err(|e| self.err(NO_SPAN, "server.certificate", e.to_string()))?,
                ),
                None => None,
            });
        }
        for (i, one) in named.iter().enumerate() {
            // each alone first, so that an error names the host whose pair was refused
            server_tls_by_name(None, std::slice::from_ref(one)).map_err(|e| {
                let v = self
                    .file
                    .vhosts
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.certificate.is_some())
                    .nth(i)
                    .map_or(0, |(v, _)| v);
                self.err(NO_SPAN, &format!("vhost[{v}].certificate"), e.to_string())
            })?;
        }
        let default = default.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        server_tls_by_name(default, &named)
            .map(Some)
            .map_err(|e| self.err(NO_SPAN, "vhost", e.to_string()))
    }

    /// Trust roots and the client certificate for HTTPS members, when any are configured.
    pub(super) fn upstream_tls(&self) -> Result<Option<UpstreamTls>, ConfigError> {
        let b = &self.file.balancer;
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
            return Ok(Some(tls));
        }
        Ok(None)
    }

    /// How the public URL is made, with the URL for the configured port (checked now; made
    /// again at bind with the bound one).
    pub(super) fn public_url(&self) -> Result<PublicUrl, ConfigError> {
        let (s, b) = (&self.file.server, &self.file.balancer);
        let mut plan = PublicUrl {
            explicit: b.public_url.clone(),
            server_name: s.server_name.clone(),
            tls: s.certificate.is_some()
                || self.file.vhosts.iter().any(|v| v.certificate.is_some()),
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
            current: http::Uri::default(),
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
        plan.current = public;
        Ok(plan)
    }

    /// The balancer's own route cookie: `cookie`, except that with several balancers the
    /// ones after the first default to `ROUTEID_<name>`, so that one balancer's cookie never
    /// pins (or breaks) a client in another.
    pub(super) fn route_cookie(&self) -> String {
        let b = &self.file.balancer;
        if self.lane > 0 && b.cookie == "ROUTEID" {
            format!("ROUTEID_{}", b.name)
        } else {
            b.cookie.clone()
        }
    }

    /// A cookie signing key's file, with how to make one when it cannot be read or is too
    /// short (the error names the file and its key's place in the list).
    fn read_key(&self, k: &Spanned<PathBuf>, key: &str) -> Result<Vec<u8>, ConfigError> {
        let bytes = self.read_hinted(k, key, Some(KEY_HINT))?;
        if bytes.len() < MIN_KEY_LEN {
            let msg = format!(
                "`{}` has {} bytes; a cookie signing key needs at least {MIN_KEY_LEN}: {KEY_HINT}",
                self.resolve(k.get_ref()).display(),
                bytes.len()
            );
            return Err(self.err(Some(k), key, msg));
        }
        Ok(bytes)
    }

    /// Every cookie key file in `cookie_key_files` that cannot be used, for `--check`: the
    /// build stops at the first, and an operator rotating keys should hear of each at once.
    pub(super) fn cookie_key_errors(&self) -> Vec<ConfigError> {
        let files = &self.file.balancer.cookie_key_files;
        files
            .iter()
            .enumerate()
            .filter_map(|(i, k)| {
                let key = format!("balancer.cookie_key_files[{i}]");
                self.read_key(k, &key).err()
            })
            .collect()
    }

    pub(super) fn sticky(&self) -> Result<StickyConfig, ConfigError> {
        let b = &self.file.balancer;
        let names = &b.stickysession;
        let mut builder = StickyConfig::builder()
            .session_cookies(names.cookie.iter())
            .url_params(names.url_param.iter())
            .strict(b.nofailover)
            .accept_apache_form(b.cookie_accept_apache)
            .cookie_name(self.route_cookie());
        if b.cookie_plain {
            builder = builder.plain();
        } else if let Some(k) = &b.cookie_key_file {
            let key = self.read_key(k, "balancer.cookie_key_file")?;
            let keys = RouteKeys::new(&[key]).map_err(|e| {
                self.err(
                    Some(k),
                    "balancer.cookie_key_file",
                    format!("{e}; {KEY_HINT}"),
                )
            })?;
            builder = builder.signed(keys);
        } else if !b.cookie_key_files.is_empty() {
            let mut keys = Vec::with_capacity(b.cookie_key_files.len());
            for (i, k) in b.cookie_key_files.iter().enumerate() {
                keys.push(self.read_key(k, &format!("balancer.cookie_key_files[{i}]"))?);
            }
            let keys = RouteKeys::new(&keys).map_err(|e| {
                self.err(
                    b.cookie_key_files.first(),
                    "balancer.cookie_key_files",
                    format!("{e}; {KEY_HINT}"),
                )
            })?;
            builder = builder.signed(keys);
        }
        if !b.cookie_plain && b.cookie_key_file.is_none() && b.cookie_key_files.is_empty() {
            // the same key for every build in this process: a reload keeps clients' cookies
            let key = process_key().ok_or_else(|| {
                self.err(
                    NO_SPAN,
                    "balancer.cookie",
                    "the system random generator failed",
                )
            })?;
            let keys = RouteKeys::new(&[key.to_vec()])
                .map_err(|e| self.err(NO_SPAN, "balancer.cookie", e.to_string()))?;
            builder = builder.signed(keys);
        }
        builder.build().map_err(|e| {
            // name the key the refused name came from
            let key = match &e {
                StickyConfigError::InvalidName(n) if *n == b.cookie => "balancer.cookie",
                _ => "balancer.stickysession",
            };
            self.err(NO_SPAN, key, e.to_string())
        })
    }

    pub(super) fn failover(&self) -> FailoverConfig {
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

    pub(super) fn probe(
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
        let Some(method) = h.method.http_method() else {
            return Ok(Some(ProbeKind::Tcp(settings)));
        };
        let expect = h.expect.unwrap_or_default();
        let client = forward
            .probe_client(registry)
            .map_err(|e| self.err(NO_SPAN, "balancer.trust_roots", e.to_string()))?;
        let mut probe = HttpProbe::new(client)
            .method(method)
            .path(h.uri.as_str())
            .expect_status(expect.low(), expect.high())
            .fail_header(HeaderName::from_static("x-lb-fail"));
        if let Some(text) = &h.body_contains {
            probe = probe.body_contains(text.as_bytes());
        }
        Ok(Some(ProbeKind::Http(Box::new(probe), settings)))
    }
}

/// The key that signs route cookies when the file names none: made once, at the first build
/// in this process, with the warning that goes with it.
fn process_key() -> Option<&'static [u8; 32]> {
    use ring::rand::SecureRandom as _;
    static KEY: std::sync::OnceLock<Option<[u8; 32]>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut key).ok()?;
        tracing::warn!(
            "balancer.cookie is signed with a key made for this process: after a restart, \
             and on other instances, clients' cookies are not recognised and their sessions \
             are balanced again; set balancer.cookie_key_file to keep them"
        );
        Some(key)
    })
    .as_ref()
}
