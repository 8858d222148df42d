//! `[[vhost]]` and `[[vhost.route]]`: virtual hosts with their own names and certificates,
//! and routes by path (and header) to the balancer, a fixed response or a redirect.
//!
//! Why keys of their own rather than more `[server]` keys: one listener serves several
//! `<VirtualHost>`s in Apache, each with its `ServerName`/`ServerAlias`, its certificate and
//! its `ProxyPass`, `Redirect` and handler lines; the file says the same, one table a host
//! and one a route, tried in the order written as Apache tries `ProxyPass` lines.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use toml::Spanned;

use super::build::{ConfigFile, NO_SPAN};
use super::error::ConfigError;
use crate::routes::{Action, PathMatch, Route, RouteTable, VirtualHost};
use crate::serve::NamedCertificate;

/// `<VirtualHost>`: the names it answers for, its certificate and its routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VhostSection {
    /// `ServerName` and `ServerAlias`: host names, `*.example.com` for any name under one.
    #[serde(deserialize_with = "vhost_names")]
    pub names: Vec<String>,
    /// `SSLCertificateFile`: presented to clients naming this host in TLS (SNI).
    #[serde(default)]
    pub certificate: Option<Spanned<PathBuf>>,
    /// `SSLCertificateKeyFile`.
    #[serde(default)]
    pub key: Option<Spanned<PathBuf>>,
    /// `ProxyPass`, `Redirect` and fixed answers, tried in order.
    #[serde(rename = "route", default)]
    pub routes: Vec<RouteSection>,
}

/// One route: a path (`prefix` or `path`), optionally a header, and one action
/// (`balancer`, `respond` or `redirect`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// This path and the paths under it (`ProxyPass /app`: `/app`, `/app/x`, not
    /// `/application`, as in Apache).
    #[serde(default, deserialize_with = "url_path_opt")]
    pub prefix: Option<String>,
    /// Exactly this path.
    #[serde(default, deserialize_with = "url_path_opt")]
    pub path: Option<String>,
    /// A header the request must carry, with `value` when one is given.
    #[serde(default)]
    pub header: Option<HeaderMatch>,
    /// The balancer to forward to (`ProxyPass … balancer://name`).
    #[serde(default)]
    pub balancer: Option<Spanned<String>>,
    /// What replaces the matched prefix on the way to members (`ProxyPass /app
    /// balancer://b/inner`: `"/inner"`); member redirects under it are mapped back.
    #[serde(default, deserialize_with = "url_path_opt")]
    pub rewrite_prefix: Option<String>,
    /// The matched prefix taken off (`rewrite_prefix = "/"`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Answers with this status itself (200–599; a redirect is `redirect`, with its `Location`).
    #[serde(default)]
    pub respond: Option<u16>,
    /// The fixed answer's body.
    #[serde(default)]
    pub body: Option<String>,
    /// The fixed answer's `Content-Type` (default `text/plain; charset=utf-8`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Apache `Redirect`: this URL, followed by the rest of the path after the prefix and
    /// the query.
    #[serde(default)]
    pub redirect: Option<String>,
    /// The redirect's status: 301, 302 (the default), 303, 307 or 308.
    #[serde(default)]
    pub status: Option<u16>,
}

/// `header = { name = "x-canary", value = "1" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// The header's name.
    pub name: String,
    /// Its value (any value when absent).
    #[serde(default)]
    pub value: Option<String>,
}

/// `(later, earlier)`: routes an earlier one without a header condition takes every request
/// of (its prefix covers theirs), so they never match.
fn shadowed(routes: &[RouteSection]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (j, later) in routes.iter().enumerate() {
        let Some(path) = later.prefix.as_deref().or(later.path.as_deref()) else {
            continue;
        };
        let covered = routes[..j].iter().position(|earlier| {
            earlier.header.is_none()
                && match (&earlier.prefix, &earlier.path) {
                    (Some(p), _) => crate::routes::prefix_matches(p, path),
                    (None, Some(p)) => later.path.as_deref() == Some(p.as_str()),
                    _ => false,
                }
        });
        if let Some(i) = covered {
            out.push((j, i));
        }
    }
    out
}

/// Host names for a virtual host: names as for `manager.names`, or `*.` and one.
fn vhost_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    if list.is_empty() {
        return Err(de::Error::custom(
            "a virtual host needs at least one name (its ServerName)",
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for n in &list {
        // a trailing dot names the same host
        let name = n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase();
        let bare = name.strip_prefix("*.").unwrap_or(&name);
        if !is_dns_name(bare) {
            return Err(de::Error::custom(format!(
                "`{}` is not a host name such as \"wso2.com\" or \"*.wso2.com\" (labels of letters, digits and -, no port, no path)",
                n.escape_default()
            )));
        }
        out.push(name);
    }
    Ok(out)
}

/// Labels of 1 to 63 letters, digits, `-` and `_`, not starting or ending with `-`; or an
/// IPv4 address.
pub(crate) fn is_dns_name(name: &str) -> bool {
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A URL path: starts with `/`, and only characters a request line may carry.
fn url_path_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let ok = s.starts_with('/')
        && !s.starts_with("//")
        && http::uri::PathAndQuery::try_from(s.as_str()).is_ok_and(|p| p.query().is_none());
    if !ok {
        return Err(de::Error::custom(format!(
            "`{}` is not a path such as \"/carbon\" (it starts with one /, has no query)",
            s.escape_default()
        )));
    }
    // requests are matched normalised: a path in another form would never match
    match crate::routes::normalize(&s) {
        Ok(n) if n == s && !s.contains(';') => Ok(Some(s)),
        Ok(n) => Err(de::Error::custom(format!(
            "`{}` never matches: requests are matched normalised; write `{}`",
            s.escape_default(),
            n.split(';').next().unwrap_or_default()
        ))),
        Err(e) => Err(de::Error::custom(format!(
            "`{}` never matches: {e}, which requests are refused for",
            s.escape_default()
        ))),
    }
}

impl ConfigFile {
    /// The route table, when the file has virtual hosts.
    pub(super) fn route_table(&self) -> Result<Option<Arc<RouteTable>>, ConfigError> {
        if self.file.vhosts.is_empty() {
            return Ok(None);
        }
        let mut vhosts = Vec::new();
        for (v, host) in self.file.vhosts.iter().enumerate() {
            let mut routes = Vec::new();
            for (r, route) in host.routes.iter().enumerate() {
                routes.push(self.route(route, &format!("vhost[{v}].route[{r}]"))?);
            }
            vhosts.push(VirtualHost {
                names: host.names.clone(),
                routes,
            });
        }
        self.warn_unrouted(&vhosts);
        Ok(Some(Arc::new(RouteTable {
            vhosts,
            public: None,
        })))
    }

    /// Says which balancers no route sends to: they serve nothing (a route's typo, or one
    /// left behind), while their probes and discovery still run.
    fn warn_unrouted(&self, vhosts: &[VirtualHost]) {
        let used: std::collections::BTreeSet<usize> = vhosts
            .iter()
            .flat_map(|v| &v.routes)
            .filter_map(|r| match r.action {
                Action::Balancer { lane, .. } => Some(lane),
                _ => None,
            })
            .collect();
        for (i, b) in self.file.balancers().enumerate() {
            if !used.contains(&i) {
                tracing::warn!(
                    balancer = %b.name,
                    "no route sends requests to balancer `{}`: it serves nothing",
                    b.name.escape_default()
                );
            }
        }
    }

    /// One route, checked: its keys fit together and name what exists.
    fn route(&self, r: &RouteSection, key: &str) -> Result<Route, ConfigError> {
        let refuse = |sub: &str, msg: String| self.err(NO_SPAN, &format!("{key}.{sub}"), msg);
        let path = match (&r.prefix, &r.path) {
            (Some(p), None) => PathMatch::Prefix(p.clone()),
            (None, Some(p)) => PathMatch::Exact(p.clone()),
            _ => {
                return Err(self.err(NO_SPAN, key, "give a route `prefix` or `path`, one of them"))
            }
        };
        let header = match &r.header {
            Some(h) => Some(self.header_match(h, &format!("{key}.header"))?),
            None => None,
        };
        let actions = [
            r.balancer.is_some(),
            r.respond.is_some(),
            r.redirect.is_some(),
        ];
        if actions.iter().filter(|a| **a).count() != 1 {
            return Err(self.err(
                NO_SPAN,
                key,
                "give a route one of `balancer`, `respond` or `redirect`",
            ));
        }
        let rewrites = r.rewrite_prefix.is_some() || r.strip_prefix;
        if rewrites && (r.balancer.is_none() || r.prefix.is_none()) {
            return Err(refuse(
                "rewrite_prefix",
                "rewrite_prefix and strip_prefix go with `prefix` and `balancer`".into(),
            ));
        }
        if let (Some(p), Some(w)) = (&r.prefix, &r.rewrite_prefix) {
            if p.ends_with('/') && !w.ends_with('/') {
                return Err(refuse(
                    "rewrite_prefix",
                    format!("the prefix ends with / and this does not: `{p}x` would reach members as `{w}x`; end both with /"),
                ));
            }
        }
        if r.rewrite_prefix.is_some() && r.strip_prefix {
            return Err(refuse(
                "strip_prefix",
                "give rewrite_prefix or strip_prefix, not both".into(),
            ));
        }
        if (r.body.is_some() || r.content_type.is_some()) && r.respond.is_none() {
            return Err(refuse(
                "body",
                "body and content_type go with `respond`".into(),
            ));
        }
        if r.status.is_some() && r.redirect.is_none() {
            return Err(refuse(
                "status",
                "status goes with `redirect` (`respond` is the status of a fixed answer)".into(),
            ));
        }
        let action = self.action(r, key)?;
        Ok(Route {
            path,
            header,
            action,
        })
    }

    fn header_match(
        &self,
        h: &HeaderMatch,
        key: &str,
    ) -> Result<(HeaderName, Option<HeaderValue>), ConfigError> {
        if h.name.eq_ignore_ascii_case("host") {
            return Err(self.err(
                NO_SPAN,
                &format!("{key}.name"),
                "Host is the virtual host's to match: give the host in [[vhost]] names",
            ));
        }
        let name = HeaderName::try_from(h.name.as_str()).map_err(|_| {
            self.err(
                NO_SPAN,
                &format!("{key}.name"),
                format!("`{}` is not a header name", h.name.escape_default()),
            )
        })?;
        let value = match &h.value {
            Some(v) => Some(HeaderValue::try_from(v.as_str()).map_err(|_| {
                self.err(
                    NO_SPAN,
                    &format!("{key}.value"),
                    "not a header value (visible characters and spaces only)",
                )
            })?),
            None => None,
        };
        Ok((name, value))
    }

    /// A fixed answer's route, checked: a status it can give, a body it may have.
    fn respond(&self, r: &RouteSection, code: u16, key: &str) -> Result<Action, ConfigError> {
        let refuse = |sub: &str, msg: String| self.err(NO_SPAN, &format!("{key}.{sub}"), msg);
        let status = StatusCode::from_u16(code)
            .ok()
            .filter(|s| !s.is_informational() && code <= 599)
            .ok_or_else(|| refuse("respond", format!("{code} is not a status from 200 to 599")))?;
        if matches!(code, 301 | 302 | 303 | 307 | 308) {
            return Err(refuse(
                "respond",
                format!(
                    "a {code} answer sends the client to its Location: write \
                     `redirect = \"…\"` with `status = {code}`"
                ),
            ));
        }
        if matches!(code, 204 | 205 | 304) && r.body.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(refuse("body", format!("a {code} answer has no body")));
        }
        let content_type = r
            .content_type
            .as_deref()
            .unwrap_or("text/plain; charset=utf-8");
        let content_type = HeaderValue::try_from(content_type)
            .map_err(|_| refuse("content_type", "not a header value".into()))?;
        let body = Bytes::from(r.body.clone().unwrap_or_default());
        Ok(Action::Respond {
            status,
            body,
            content_type,
        })
    }

    /// What a route does, checked: the balancer it names exists, or its answer or redirect.
    fn action(&self, r: &RouteSection, key: &str) -> Result<Action, ConfigError> {
        let refuse = |sub: &str, msg: String| self.err(NO_SPAN, &format!("{key}.{sub}"), msg);
        if let Some(name) = &r.balancer {
            let lane = self.lane(name.get_ref()).ok_or_else(|| {
                self.err(
                    Some(name),
                    &format!("{key}.balancer"),
                    format!("no balancer is named `{}`", name.get_ref().escape_default()),
                )
            })?;
            let rewrite = r
                .rewrite_prefix
                .clone()
                .or_else(|| r.strip_prefix.then(|| "/".to_owned()));
            return Ok(Action::Balancer { lane, rewrite });
        }
        if let Some(code) = r.respond {
            return self.respond(r, code, key);
        }
        let to = r.redirect.clone().unwrap_or_default();
        let uri = to.parse::<http::Uri>().ok();
        let absolute = uri.as_ref().is_some_and(|u| {
            matches!(
                u.scheme_str().map(str::to_ascii_lowercase).as_deref(),
                Some("http" | "https")
            ) && u.host().is_some_and(|h| !h.is_empty())
        });
        if !(absolute || (to.starts_with('/') && !to.starts_with("//")))
            || to.contains(['\\', '?', '#'])
            || HeaderValue::try_from(to.as_str()).is_err()
        {
            return Err(refuse(
                "redirect",
                format!(
                    "`{}` is not a URL such as \"https://wso2.com/carbon/\" or a path",
                    to.escape_default()
                ),
            ));
        }
        let target_path = uri.as_ref().map_or("", http::Uri::path);
        if r.prefix.as_ref().is_some_and(|p| p.ends_with('/'))
            && !target_path.is_empty()
            && !target_path.ends_with('/')
        {
            return Err(refuse(
                "redirect",
                "the prefix ends with / and the target's path does not: the rest would be glued to its last segment; end both with /".into(),
            ));
        }
        let code = r.status.unwrap_or(302);
        let status = match code {
            301 | 302 | 303 | 307 | 308 => StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND),
            _ => {
                return Err(refuse(
                    "status",
                    format!("{code} is not a redirect status: 301, 302, 303, 307 or 308"),
                ))
            }
        };
        Ok(Action::Redirect { to, status })
    }

    /// The index of the balancer named `name`.
    fn lane(&self, name: &str) -> Option<usize> {
        self.file.balancers().position(|b| b.name == name)
    }

    /// What the virtual hosts break between them: a name given twice, a certificate without
    /// its key, a host without routes.
    pub(super) fn vhost_rules(&self, out: &mut Vec<ConfigError>) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (v, host) in self.file.vhosts.iter().enumerate() {
            let key = format!("vhost[{v}]");
            if host.routes.is_empty() {
                out.push(self.err(
                    NO_SPAN,
                    &key,
                    "a virtual host needs at least one [[vhost.route]]",
                ));
            }
            if host.certificate.is_some() != host.key.is_some() {
                out.push(self.err(
                    host.certificate.as_ref().or(host.key.as_ref()),
                    &format!("{key}.certificate"),
                    "certificate and key come together",
                ));
            }
            for name in &host.names {
                if let Some(first) = seen.insert(name, v) {
                    out.push(self.err(
                        NO_SPAN,
                        &format!("{key}.names"),
                        format!("`{name}` is also a name of vhost[{first}]: the first would take every request"),
                    ));
                }
            }
            for (r, route) in host.routes.iter().enumerate() {
                if let Err(e) = self.route(route, &format!("{key}.route[{r}]")) {
                    out.push(e);
                }
            }
            for (later, earlier) in shadowed(&host.routes) {
                out.push(self.err(
                    NO_SPAN,
                    &format!("{key}.route[{later}]"),
                    format!("never matches: {key}.route[{earlier}] before it takes every request it would (the first match wins; put the longer path first)"),
                ));
            }
        }
    }

    /// The virtual hosts' certificates, read.
    pub(super) fn vhost_certificates(&self) -> Result<Vec<NamedCertificate>, ConfigError> {
        let mut out = Vec::new();
        for (v, host) in self.file.vhosts.iter().enumerate() {
            if let (Some(c), Some(k)) = (&host.certificate, &host.key) {
                out.push(NamedCertificate {
                    names: host.names.clone(),
                    chain_pem: self.read(c, &format!("vhost[{v}].certificate"))?,
                    key_pem: self.read(k, &format!("vhost[{v}].key"))?,
                });
            }
        }
        Ok(out)
    }
}
