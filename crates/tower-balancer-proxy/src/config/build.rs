//! From a file's text to checked parts: every file the configuration names is read and
//! parsed here, so that a balancer that builds also starts.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use tower_balancer::registry::{MemberSpec, Registry};

use super::error::{locate, parse_toml, ConfigError};
use super::file::{FileConfig, LbMethod};
use super::plan::{LanePlan, ManagerPlan};
use super::run::Gateway;
use super::typed::ProbeMethod;
use crate::forward::ForwardConfig;
use crate::manager::ManagerInfo;

/// No value to point at: the line is found from the key.
pub(super) const NO_SPAN: Option<&Spanned<()>> = None;

/// The largest configuration file read: far beyond any real one, small enough that a file
/// written by mistake (a log, a disk image) is refused before it takes the memory.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// The text of the configuration file at `path`, refused past [`MAX_CONFIG_BYTES`].
pub(super) fn read_config(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| ConfigError::file(path, format!("cannot read the file: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::file(
            path,
            format!("larger than {MAX_CONFIG_BYTES} bytes: not a configuration file"),
        ));
    }
    Ok(text)
}

/// A parsed configuration file, not yet built: [`from_file`](Self::from_file), inspect or
/// adjust with [`file_mut`](Self::file_mut), then [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub(super) file: FileConfig,
    pub(super) path: PathBuf,
    pub(super) text: String,
    /// Which balancer `file.balancer` is: 0, or another's in a view ([`lanes`](Self::lanes)).
    pub(super) lane: usize,
}

impl ConfigFile {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, and the line and key where there is one.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        Self::from_toml(&read_config(path)?, path)
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
            lane: 0,
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

    /// Checks what one value alone cannot: the rules between keys. Every single value was
    /// checked as it was read.
    fn check(&self) -> Result<(), ConfigError> {
        match self.rules().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every rule between keys the file breaks.
    pub(super) fn rules(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        self.server_rules(&mut out);
        self.vhost_rules(&mut out);
        self.balancer_names(&mut out);
        for lane in self.lanes() {
            lane.member_rules(&mut out);
            lane.pair_rules(&mut out);
            out.extend(lane.duplicate_routes());
        }
        out
    }

    /// The file as seen by each of its balancers, in order: the same file with
    /// `balancer` that balancer (errors name its keys, `balancer[i].…`).
    pub(super) fn lanes(&self) -> Vec<Self> {
        self.file
            .balancers()
            .enumerate()
            .map(|(lane, b)| {
                let mut file = self.file.clone();
                file.balancer = b.clone();
                Self {
                    file,
                    path: self.path.clone(),
                    text: self.text.clone(),
                    lane,
                }
            })
            .collect()
    }

    /// `key` as written in the file: a `balancer.…` key is this lane's.
    pub(super) fn lane_key(&self, key: &str) -> String {
        match key.strip_prefix("balancer") {
            Some("") => self.file.balancer_key(self.lane, ""),
            Some(rest) if rest.starts_with('.') => self.file.balancer_key(self.lane, &rest[1..]),
            _ => key.to_owned(),
        }
    }

    /// No two balancers share a name or a route cookie.
    fn balancer_names(&self, out: &mut Vec<ConfigError>) {
        let mut cookies = HashSet::new();
        for lane in self.lanes() {
            let cookie = lane.route_cookie();
            if !cookies.insert(cookie.clone()) {
                out.push(lane.err(
                    NO_SPAN,
                    "balancer.cookie",
                    format!("`{cookie}` is another balancer's cookie too: one balancer's cookie would pin clients in the other; give each its own"),
                ));
            }
        }
        let mut seen = HashSet::new();
        for (i, b) in self.file.balancers().enumerate() {
            if !seen.insert(b.name.as_str()) {
                out.push(self.err(
                    NO_SPAN,
                    &format!("balancer[{i}].name"),
                    format!("`{}` names two balancers", b.name),
                ));
            }
        }
    }

    /// `msg` about `key`, at `at` or where the key is written.
    fn rule(&self, out: &mut Vec<ConfigError>, at: Option<Range<usize>>, key: &str, msg: &str) {
        let key = &self.lane_key(key);
        let span = at.or_else(|| locate(&self.text, key));
        out.push(ConfigError::at(
            &self.path,
            &self.text,
            span,
            Some(key.to_owned()),
            msg,
        ));
    }

    /// Where members come from and how they are picked and checked.
    fn member_rules(&self, out: &mut Vec<ConfigError>) {
        let b = &self.file.balancer;
        let mut refuse = |at, key: &str, msg: &str| self.rule(out, at, key, msg);
        if b.members.is_empty() && b.members_file.is_none() && b.dns.is_none() && b.etcd.is_none() {
            refuse(
                None,
                "balancer",
                "the balancer has no members (give [[balancer.member]], members_file, [balancer.dns] or [balancer.etcd])",
            );
        }
        if let Some(Err(e)) = b.dns.as_ref().map(super::file::DnsSection::target) {
            refuse(None, "balancer.dns", e);
        }
        let hashing = matches!(b.lbmethod, LbMethod::Maglev | LbMethod::Ringhash);
        if b.hash_key.is_none() && hashing {
            refuse(
                None,
                "balancer.lbmethod",
                "maglev and ringhash need `hash_key`, the request header to hash",
            );
        }
        if b.hash_key.is_some() && !hashing {
            refuse(
                None,
                "balancer.hash_key",
                "only lbmethod = \"maglev\" or \"ringhash\" hashes a header: set one, or leave hash_key out",
            );
        }
        if b.members_poll
            .is_some_and(|t| t < std::time::Duration::from_millis(10))
        {
            refuse(
                None,
                "balancer.members_poll",
                "polls under 10ms read the file hundreds of times a second: give 10ms or more (1s is the default)",
            );
        }
        if b.dns
            .as_ref()
            .and_then(|d| d.ttl_floor)
            .is_some_and(|t| t < std::time::Duration::from_millis(100))
        {
            refuse(
                None,
                "balancer.dns.ttl_floor",
                "a floor under 100ms resolves many times a second when records have a TTL of 0: give 100ms or more (1s is the default)",
            );
        }
        if b.members_poll.is_some() && b.members_file.is_none() {
            refuse(
                None,
                "balancer.members_poll",
                "members_poll says how often members_file is read, and there is no members_file",
            );
        }
        if let Some(h) = &b.health {
            if h.method == ProbeMethod::Tcp && (h.expect.is_some() || h.body_contains.is_some()) {
                refuse(
                    None,
                    "balancer.health.method",
                    "a TCP check only connects: expect and body_contains need GET, HEAD or OPTIONS",
                );
            }
        }
    }

    /// The front's keys that come in pairs or must differ.
    fn server_rules(&self, out: &mut Vec<ConfigError>) {
        let s = &self.file.server;
        let mut refuse = |at, key: &str, msg: &str| self.rule(out, at, key, msg);
        if s.certificate.is_some() != s.key.is_some() {
            refuse(
                s.certificate.as_ref().or(s.key.as_ref()).map(Spanned::span),
                "server.certificate",
                "certificate and key come together: set both for TLS, neither for plain HTTP",
            );
        }
        if !self.file.more_balancers.is_empty() && self.file.vhosts.is_empty() {
            refuse(
                None,
                "balancer",
                "several balancers need [[vhost]] routes to say which requests go to which",
            );
        }
        if let Some(m) = &self.file.manager {
            if m.listen == s.listen && s.listen.port() != 0 {
                refuse(
                    None,
                    "manager.listen",
                    "the manager needs its own port: it is server.listen's",
                );
            }
        }
        if let Some((key, why)) = s
            .per_client
            .as_ref()
            .and_then(super::per_client::PerClientSection::problem)
        {
            refuse(None, key, why);
        }
    }

    /// A balancer's keys that come in pairs or must differ.
    fn pair_rules(&self, out: &mut Vec<ConfigError>) {
        let b = &self.file.balancer;
        let mut refuse = |at, key: &str, msg: &str| self.rule(out, at, key, msg);
        if b.cookie_key_file.is_some() && !b.cookie_key_files.is_empty() {
            refuse(
                b.cookie_key_file.as_ref().map(Spanned::span),
                "balancer.cookie_key_file",
                "give cookie_key_file or cookie_key_files, not both",
            );
        }
        if b.ejection.is_some_and(|e| e.max_time < e.base_time) {
            refuse(
                None,
                "balancer.ejection.max_time",
                "max_time is shorter than base_time",
            );
        }
        if b.client_certificate.is_some() != b.client_key.is_some() {
            refuse(
                b.client_certificate
                    .as_ref()
                    .or(b.client_key.as_ref())
                    .map(Spanned::span),
                "balancer.client_certificate",
                "client_certificate and client_key come together",
            );
        }
    }

    /// No two inline members share a route.
    fn duplicate_routes(&self) -> Vec<ConfigError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, m) in self.file.balancer.members.iter().enumerate() {
            let id = m.route.get_ref().id();
            if !seen.insert(id) {
                out.push(self.err(
                    Some(&m.route),
                    &format!("balancer.member[{i}].route"),
                    format!("route `{id}` is used by two members"),
                ));
            }
        }
        out
    }

    pub(super) fn err<T>(
        &self,
        at: Option<&Spanned<T>>,
        key: &str,
        msg: impl Into<String>,
    ) -> ConfigError {
        let key = self.lane_key(key);
        let span = at.map(Spanned::span).or_else(|| locate(&self.text, &key));
        ConfigError::at(&self.path, &self.text, span, Some(key), msg)
    }

    /// Reads a file the configuration names, relative to the configuration's directory.
    pub(super) fn read(&self, p: &Spanned<PathBuf>, key: &str) -> Result<Vec<u8>, ConfigError> {
        self.read_hinted(p, key, None)
    }

    /// [`Self::read`], its error ending in `hint` (how to make the file) when given.
    pub(super) fn read_hinted(
        &self,
        p: &Spanned<PathBuf>,
        key: &str,
        hint: Option<&str>,
    ) -> Result<Vec<u8>, ConfigError> {
        let full = self.resolve(p.get_ref());
        std::fs::read(&full).map_err(|e| {
            let hint = hint.map(|h| format!("; {h}")).unwrap_or_default();
            let msg = format!("cannot read `{}`: {e}{hint}", full.display());
            self.err(Some(p), key, msg)
        })
    }

    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// The registry with the file's inline members, and the forwarder's settings their
    /// URLs and `resolve` lines need.
    pub(super) fn members(&self) -> Result<(Registry, ForwardConfig), ConfigError> {
        let b = &self.file.balancer;
        let registry = Registry::new();
        if let Some(t) = b.panic_threshold {
            registry.set_panic_threshold(t);
        }
        let mut forward = ForwardConfig::new();
        if let Some(list) = &b.upgrades {
            forward = forward.upgrades(list.iter().map(|p| p.trim().to_owned()));
        }
        for (i, m) in b.members.iter().enumerate() {
            let spec = MemberSpec::new(m.route.get_ref().id().clone(), m.url.clone())
                .weight(m.loadfactor)
                .priority(m.lbset)
                .state(m.status)
                .max_in_flight(m.max);
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

        Ok((registry, forward))
    }

    /// The forwarder's TLS, timeouts and headers.
    pub(super) fn forwarding(
        &self,
        mut forward: ForwardConfig,
    ) -> Result<ForwardConfig, ConfigError> {
        let b = &self.file.balancer;
        if let Some(tls) = self.upstream_tls()? {
            forward = forward.tls(tls);
        }
        if let Some(t) = b.connection_timeout {
            forward = forward.connect_timeout(t);
        }
        if let Some(t) = b.tunnel_idle_timeout {
            forward = forward.tunnel_idle_timeout(t);
        }
        if let Some(t) = b.send_timeout {
            forward = forward.send_timeout(t);
        }
        Ok(forward
            .preserve_host(b.preserve_host)
            .forwarding(b.forwarding_headers()))
    }

    /// Builds the balancer: reads certificates and keys, fills a registry, and prepares the
    /// layers; nothing listens until [`Gateway::bind`].
    ///
    /// # Errors
    /// A [`ConfigError`] at the key whose file or value was refused.
    pub fn build(&self) -> Result<Gateway, ConfigError> {
        let mut lanes = Vec::new();
        for lane in self.lanes() {
            lanes.push(lane.lane_plan()?);
        }
        // the routes choose among the balancers: the first one's stack holds them
        if let Some(first) = lanes.first_mut() {
            first.stack.routes = self.route_table()?;
        }
        let manager = ManagerPlan {
            listen: self.file.manager.as_ref().map(|m| m.listen),
            names: self
                .file
                .manager
                .as_ref()
                .map(|m| m.names.clone())
                .unwrap_or_default(),
        };
        Ok(Gateway {
            front: self.front_plan()?,
            lanes,
            manager,
            file: self.file.clone(),
        })
    }

    /// This view's balancer: its members, sources, layers and what the manager says of it.
    pub(super) fn lane_plan(&self) -> Result<LanePlan, ConfigError> {
        let (registry, forward) = self.members()?;
        // the file's own members, before the members file adds its own
        let declared: Vec<_> = registry.load().members().iter().map(|m| m.spec()).collect();
        let mut sources = self.discovery(&registry)?;
        let forward = self.forwarding(forward)?;
        sources.probe = self.probe(&forward, &registry)?;
        let mut stack = self.stack_plan(forward)?;
        if self.lane > 0 {
            // the front's layers are the first balancer's
            stack.client_rate = None;
        }
        let b = &self.file.balancer;
        let info = ManagerInfo::new(&b.name)
            .with_strategy(b.lbmethod.name())
            .describe_sticky(&stack.sticky)
            .describe_failover(&stack.failover);
        let statics = super::owned::Statics::new(declared.iter().map(|s| s.id().clone()));
        Ok(LanePlan {
            name: b.name.clone(),
            public: self.public_url()?,
            registry,
            stack,
            sources,
            info,
            declared,
            statics,
        })
    }
}
