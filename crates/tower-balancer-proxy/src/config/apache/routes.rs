//! A virtual host's `ProxyPass` and `Redirect` lines as `[[vhost]]` routes, and the other
//! virtual hosts that send to the same balancer as `[[vhost]]`s of their own.
//!
//! Why routes only when needed: a virtual host whose one `ProxyPass /` sends everything to
//! the balancer is the whole file without routes, and reads best that way; paths, exclusions,
//! redirects or a second host need the table.

use super::balancer::balancer_name;
use super::parse::Directive;
use super::write::{list, q, Table};
use super::Import;

/// One line of a virtual host that becomes a route, in the order written.
#[derive(Debug, Clone)]
pub(crate) enum RouteLine {
    /// `ProxyPass path balancer://name/inner`.
    Pass {
        path: String,
        balancer: String,
        inner: String,
        from: String,
    },
    /// A path Apache did not send to the imported balancer (`ProxyPass path !`, or to
    /// another balancer or server): answered 404 here, and why.
    NotHere {
        path: String,
        from: String,
        why: &'static str,
        /// 404, or 410 for `Redirect gone`.
        status: u16,
    },
    /// `Redirect [status] path url`, `RedirectMatch ^/$ url`.
    Redirect {
        path: String,
        exact: bool,
        to: String,
        status: u16,
        from: String,
    },
}

/// Why an excluded path answers 404.
pub(crate) const EXCLUDED: &str =
    "Apache served this path itself (from disk); nothing is served from disk here";

/// Why a path Apache sent elsewhere answers 404.
pub(crate) const ELSEWHERE: &str = "Apache sent this path to another balancer or server: one balancer a file for now, so it answers 404 here instead of reaching this balancer";

/// Whether `to` is a target a route's `redirect` may have (the file refuses others).
fn redirect_target(to: &str) -> bool {
    let lower = to.to_ascii_lowercase();
    (lower.starts_with("http://")
        || lower.starts_with("https://")
        || (to.starts_with('/') && !to.starts_with("//")))
        && !to.contains(['\\', '?', '#', ' ', '\t'])
}

/// Whether `path` is one a route's `prefix` takes (the file refuses others).
pub(crate) fn route_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && http::uri::PathAndQuery::try_from(path).is_ok_and(|p| p.query().is_none())
        && crate::routes::normalize(path).is_ok_and(|n| n == path)
        && !path.contains(';')
}

/// `balancer://name/app/` → `/app/`: the path as written, which replaces the matched one.
pub(crate) fn target_path(url: &str) -> &str {
    let rest = url.get(11..).unwrap_or_default();
    rest.find('/').map_or("", |i| &rest[i..])
}

impl RouteLine {
    /// Whether this line alone is what the file without routes says: `ProxyPass /`.
    pub(crate) fn is_root_pass(&self) -> bool {
        matches!(self, Self::Pass { path, .. } if path == "/")
    }

    /// Where the line was written, and the line.
    fn from(&self) -> &str {
        match self {
            Self::Pass { from, .. } | Self::NotHere { from, .. } | Self::Redirect { from, .. } => {
                from
            }
        }
    }

    /// Whether this line, tried first, takes every request `later` would.
    fn covers(&self, later: &Self) -> bool {
        let (path, exact) = self.path();
        let (other, _) = later.path();
        if exact {
            later.path() == (path, true)
        } else {
            crate::routes::prefix_matches(path, other)
        }
    }

    /// The path and whether it is matched exactly.
    fn path(&self) -> (&str, bool) {
        match self {
            Self::Pass { path, .. } | Self::NotHere { path, .. } => (path, false),
            Self::Redirect { path, exact, .. } => (path, *exact),
        }
    }

    fn table(&self) -> Table {
        let mut t = Table::new("[[vhost.route]]", "");
        match self {
            Self::Pass {
                path,
                balancer,
                inner,
                from,
            } => {
                t.comment.clone_from(from);
                t.set("prefix", q(path), "");
                t.set("balancer", q(balancer), "");
                let inner = if inner.is_empty() { "/" } else { inner };
                if inner != path {
                    t.set(
                        "rewrite_prefix",
                        q(inner),
                        "member redirects under it are mapped back, as ProxyPassReverse does",
                    );
                }
            }
            Self::NotHere {
                path,
                from,
                why,
                status,
            } => {
                t.comment.clone_from(from);
                t.set("prefix", q(path), "");
                t.set("respond", status.to_string(), *why);
            }
            Self::Redirect {
                path,
                exact,
                to,
                status,
                from,
            } => {
                t.comment.clone_from(from);
                t.set(if *exact { "path" } else { "prefix" }, q(path), "");
                t.set("redirect", q(to), "");
                if *status != 302 {
                    t.set("status", status.to_string(), "");
                }
            }
        }
        t
    }
}

impl Import {
    /// `Redirect`, `RedirectPermanent`, `RedirectTemp`, or a `RedirectMatch` of `^/$`.
    pub(crate) fn redirect_line(&mut self, d: &Directive) -> Option<RouteLine> {
        let name = d.name.to_ascii_lowercase();
        let from = format!("{}: {}", d.at, d.text);
        let (status, rest) = match (name.as_str(), d.args.first().map(String::as_str)) {
            ("redirectpermanent", _) => (301, &d.args[..]),
            ("redirecttemp", _) => (302, &d.args[..]),
            (_, Some(s)) if s.eq_ignore_ascii_case("permanent") => (301, &d.args[1..]),
            (_, Some(s)) if s.eq_ignore_ascii_case("temp") => (302, &d.args[1..]),
            (_, Some(s)) if s.eq_ignore_ascii_case("seeother") => (303, &d.args[1..]),
            (_, Some(s)) if s.eq_ignore_ascii_case("gone") => (410, &d.args[1..]),
            (_, Some(s)) if s.parse::<u16>().is_ok() => (s.parse().unwrap_or(302), &d.args[1..]),
            _ => (302, &d.args[..]),
        };
        if status == 410 {
            // `Redirect gone /path`: the path answers 410
            return match rest.first() {
                Some(path) if route_path(path) => Some(RouteLine::NotHere {
                    path: path.clone(),
                    from,
                    why: "Redirect gone",
                    status: 410,
                }),
                _ => {
                    self.skip(d, "a gone redirect without a path a route can match");
                    None
                }
            };
        }
        let [path, to, ..] = rest else {
            self.skip(d, "a redirect without a path and a URL");
            return None;
        };
        let (path, exact) = if name == "redirectmatch" {
            match path.as_str() {
                "^/$" | "^/?$" => ("/".to_owned(), true),
                _ => {
                    self.skip(
                        d,
                        "a regular expression: only ^/$ is carried (as path = \"/\")",
                    );
                    return None;
                }
            }
        } else {
            (path.clone(), false)
        };
        if !route_path(&path) || !redirect_target(to) {
            self.skip(d, "a path or target this file cannot redirect with (a space, a \\, a query or fragment in the target?)");
            return None;
        }
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            self.skip(d, "not a redirect status this file can answer with");
            return None;
        }
        Some(RouteLine::Redirect {
            path,
            exact,
            to: to.clone(),
            status,
            from,
        })
    }

    /// The `[[vhost]]` table for a host named `names` (its certificate when it has one),
    /// then its routes: passes and exclusions as written, then redirects (Apache's proxy
    /// takes a path before `Redirect` does).
    pub(crate) fn vhost_tables(
        &mut self,
        names: &[String],
        tls: Option<(String, String)>,
        lines: &[RouteLine],
        from: &str,
    ) -> Vec<Table> {
        let names = self.usable_names(names, from);
        if names.is_empty() {
            self.not_carried(
                from,
                "a virtual host",
                "none of its names is one a [[vhost]] can have, or all are an earlier host's",
            );
            return Vec::new();
        }
        let mut host = Table::new("[[vhost]]", from);
        host.set("names", list(&names), "ServerName and ServerAlias");
        if let Some((cert, key)) = tls {
            host.set("certificate", q(&cert), "SSLCertificateFile");
            host.set("key", q(&key), "SSLCertificateKeyFile");
        }
        let mut tables = vec![host];
        let (redirects, proxied): (Vec<&RouteLine>, Vec<&RouteLine>) = lines
            .iter()
            .partition(|l| matches!(l, RouteLine::Redirect { .. }));
        let mut kept: Vec<&RouteLine> = Vec::new();
        for line in proxied.into_iter().chain(redirects) {
            match kept.iter().find(|k| k.covers(line)) {
                Some(k) => self.not_carried(
                    line.from(),
                    "this line",
                    &format!("never reached in Apache either: `{}` before it takes every request it would", k.from()),
                ),
                None => kept.push(line),
            }
        }
        tables.extend(kept.into_iter().map(RouteLine::table));
        if lines.is_empty() {
            self.not_carried(
                from,
                "a virtual host",
                "it has no ProxyPass or Redirect: every path answers 404",
            );
            let mut t = Table::new("[[vhost.route]]", "");
            t.set("prefix", q("/"), "");
            t.set("respond", "404".into(), "nothing is served from disk");
            tables.push(t);
        }
        tables
    }

    /// `names` without those a `[[vhost]]` cannot have (`*`, `web?.x`) or an earlier host
    /// has, each said.
    fn usable_names(&mut self, names: &[String], from: &str) -> Vec<String> {
        let mut out = Vec::new();
        for n in names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            if !crate::config::routes::is_dns_name(bare) {
                self.not_carried(from, &format!("name {n}"), "not a host name a [[vhost]] can have (Apache's * and ? wildcards are not carried)");
            } else if !self.vhost_names.insert(n.clone()) {
                self.not_carried(
                    from,
                    &format!("name {n}"),
                    "an earlier virtual host has it: the first takes its requests",
                );
            } else {
                out.push(n.clone());
            }
        }
        out
    }

    /// A second virtual host that sends to `balancer`: its names, certificate, passes and
    /// redirects; every other line is noted as not carried.
    pub(crate) fn other_vhost(&mut self, v: &Directive, balancer: &str) -> Vec<Table> {
        let from = format!("{}: {}", v.at, v.text);
        let body = v.body.clone().unwrap_or_default();
        let mut names = Vec::new();
        let (mut cert, mut key, mut ssl_on) = (None, None, false);
        let (mut lines, mut located) = (Vec::new(), Vec::new());
        for d in &body {
            let arg = d.args.first().cloned().unwrap_or_default();
            match d.name.to_ascii_lowercase().as_str() {
                "servername" => names.insert(0, host_only(&arg)),
                "serveralias" => names.extend(d.args.iter().map(|a| host_only(a))),
                "sslengine" => ssl_on = arg.eq_ignore_ascii_case("on"),
                "sslcertificatefile" => cert = Some(self.path(&arg)),
                "sslcertificatekeyfile" => key = Some(self.path(&arg)),
                "proxypass" => lines.extend(self.pass_line(d, balancer)),
                "location" if super::vhost::has_proxy_pass(d) => {
                    for pass in super::vhost::location_passes(d) {
                        located.extend(self.pass_line(&pass, balancer));
                    }
                    self.skip(d, "its ProxyPass is carried as a route; its other lines are not (ACCESS CONTROL included)");
                }
                "redirect" | "redirectmatch" | "redirectpermanent" | "redirecttemp" => {
                    lines.extend(self.redirect_line(d));
                }
                _ => self.skip(d, "a second virtual host: only its names, certificate, ProxyPass and Redirect lines are carried; its other settings are the first host's"),
            }
        }
        located.append(&mut lines);
        let lines = located;
        if names.is_empty() {
            self.skip(v, "a second virtual host without ServerName: it could not be told apart from the first");
            return Vec::new();
        }
        let tls = match (ssl_on, cert, key) {
            (true, Some(c), Some(k)) => Some((c, k)),
            (true, Some(c), None) => Some((c.clone(), c)),
            _ => None,
        };
        self.vhost_tables(&names, tls, &lines, &from)
    }

    /// The imported host as the first `[[vhost]]`: its names and certificate (also the
    /// front's default) and its routes.
    pub(crate) fn first_vhost(
        &mut self,
        v: &Directive,
        server: &Table,
        aliases: Vec<String>,
        lines: &[RouteLine],
    ) -> Vec<Table> {
        let mut names: Vec<String> = server
            .value("server_name")
            .map(|n| host_only(n.trim_matches('"')))
            .into_iter()
            .collect();
        names.extend(aliases);
        if names.is_empty() {
            names.push("localhost".into());
        }
        let tls = match (server.value("certificate"), server.value("key")) {
            (Some(c), Some(k)) => Some((unquote(c), unquote(k))),
            _ => None,
        };
        self.vhost_tables(&names, tls, lines, &format!("{}: {}", v.at, v.text))
    }

    /// Without routes, `ProxyPass / balancer://name/app` puts `/app` before every path: on
    /// the members' URLs.
    pub(crate) fn root_prefix(&mut self, lines: &[RouteLine]) {
        if let Some(RouteLine::Pass { inner, from, .. }) = lines.first() {
            let prefix = inner.trim_end_matches('/');
            if !prefix.is_empty() {
                let at = from.split(": ").next().unwrap_or_default().to_owned();
                self.member_prefix = Some((prefix.to_owned(), at));
            }
        }
    }

    /// A `ProxyPass` of a second virtual host, as a route when it sends to `balancer`.
    fn pass_line(&mut self, d: &Directive, balancer: &str) -> Option<RouteLine> {
        let from = format!("{}: {}", d.at, d.text);
        match d.args.as_slice() {
            [path, _, ..] if !route_path(path) => {
                self.skip(
                    d,
                    "its path is not one a route can match (a space, a query?)",
                );
                None
            }
            [path, to, ..] if to == "!" => Some(RouteLine::NotHere {
                path: path.clone(),
                from,
                why: EXCLUDED,
                status: 404,
            }),
            [path, to, ..] if balancer_name(to).as_deref() == Some(balancer) => {
                Some(RouteLine::Pass {
                    path: path.clone(),
                    balancer: balancer.to_owned(),
                    inner: target_path(to).to_owned(),
                    from,
                })
            }
            [path, _, ..] => {
                self.skip(d, ELSEWHERE);
                Some(RouteLine::NotHere {
                    path: path.clone(),
                    from,
                    why: ELSEWHERE,
                    status: 404,
                })
            }
            _ => {
                self.skip(d, "ProxyPass without a path and a target");
                None
            }
        }
    }
}

/// The balancer a virtual host is imported with: the one `ProxyPass /` names, else the
/// first one a `ProxyPass` names.
pub(crate) fn imported_balancer(body: &[Directive]) -> Option<String> {
    let to = |d: &Directive| d.args.get(1).and_then(|t| balancer_name(t));
    let passes = || body.iter().filter(|d| d.is("ProxyPass"));
    passes()
        .find(|d| d.args.first().is_some_and(|p| p == "/") && to(d).is_some())
        .or_else(|| passes().find(|d| to(d).is_some()))
        .and_then(to)
}

/// The balancer virtual host `v` would be imported with.
pub(crate) fn imported_name(v: &Directive) -> Option<String> {
    imported_balancer(v.body.as_deref().unwrap_or_default())
}

/// `Redirect` and its forms.
pub(crate) fn is_redirect(d: &Directive) -> bool {
    [
        "Redirect",
        "RedirectMatch",
        "RedirectPermanent",
        "RedirectTemp",
    ]
    .iter()
    .any(|n| d.is(n))
}

fn unquote(v: &str) -> String {
    toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|t| t.get("v").and_then(|v| v.as_str().map(str::to_owned)))
        .unwrap_or_default()
}

/// A `ServerName`'s host, without scheme or port.
pub(crate) fn host_only(name: &str) -> String {
    let name = name.split_once("://").map_or(name, |(_, rest)| rest);
    let name = name.rsplit_once(':').map_or(
        name,
        |(h, p)| {
            if p.parse::<u16>().is_ok() {
                h
            } else {
                name
            }
        },
    );
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_paths_and_host_names() {
        assert_eq!(target_path("balancer://b/app/"), "/app/");
        assert_eq!(target_path("balancer://b"), "");
        assert_eq!(host_only("https://WSO2.com:443"), "wso2.com");
        assert_eq!(host_only("*.wso2.com"), "*.wso2.com");
    }
}
