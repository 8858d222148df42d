//! One `<VirtualHost>`: the front (`[server]`), which balancer `ProxyPass` sends to, the
//! reverse rewriting, the `ROUTEID` cookie recipe, `SSLProxy*` and the balancer-manager.

use super::balancer::{balancer_name, params};
use super::parse::Directive;
use super::routes::{
    host_only, imported_balancer, is_redirect, route_path, target_path, RouteLine, ELSEWHERE,
    EXCLUDED,
};
use super::write::{list, q, Table};
use super::Import;

/// Whether the virtual host sends requests to a `balancer://`.
pub(crate) fn proxies_to_balancer(v: &Directive) -> bool {
    v.body
        .iter()
        .flatten()
        .any(|d| d.is("ProxyPass") && d.args.get(1).is_some_and(|t| balancer_name(t).is_some()))
}

/// `*:443`, `_default_:443`, `[::]:443`, `10.0.0.1:443` → the address to listen on.
fn listen_addr(arg: &str, fallback_port: u16) -> (String, Option<&'static str>) {
    let (host, port) = match arg.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => (h, p.to_owned()),
        _ => (arg, fallback_port.to_string()),
    };
    match host {
        "*" | "_default_" => (format!("0.0.0.0:{port}"), None),
        h if h.starts_with('[') => (format!("{h}:{port}"), None),
        h if h.parse::<std::net::IpAddr>().is_ok() => (format!("{h}:{port}"), None),
        _ => (
            format!("0.0.0.0:{port}"),
            Some("a virtual host named by host name: listening on every address"),
        ),
    }
}

impl Import {
    /// The tables for virtual host `v`.
    pub(crate) fn vhost(&mut self, v: &Directive) -> Vec<Table> {
        let port = self.listen_ports.first().copied().unwrap_or(80);
        let mut server = Table::new("[server]", format!("{}: {}", v.at, v.text));
        let (listen, note) = listen_addr(v.args.first().map_or("*", String::as_str), port);
        if let Some(why) = note {
            self.not_carried(&v.at, &v.text, why);
        }
        server.set("listen", q(&listen), "");
        let mut balancer = Table::new("[balancer]", "");
        let mut manager = None;
        let mut target = None;
        let body = v.body.clone().unwrap_or_default();
        let chosen = imported_balancer(&body);
        let (mut lines, mut aliases, mut located) = (Vec::new(), Vec::new(), Vec::new());
        for d in &body {
            if d.is("Proxy") {
                self.proxy_section(d);
            } else if d.is("ProxyHCExpr") {
                self.hc_expr_line(d);
            } else if d.is("ProxyPass") {
                self.proxy_pass(d, &mut target, chosen.as_deref(), &mut lines);
            } else if is_redirect(d) {
                lines.extend(self.redirect_line(d));
            } else if d.is("ServerAlias") {
                aliases.extend(d.args.iter().map(|a| host_only(a)));
            } else if d.is("Location") && has_proxy_pass(d) {
                // Apache tries a <Location>'s ProxyPass before the host's own
                for pass in location_passes(d) {
                    self.proxy_pass(&pass, &mut target, chosen.as_deref(), &mut located);
                }
                self.skip(d, "its ProxyPass is carried as a route; its other lines are not (ACCESS CONTROL included)");
            } else if d.is("Location") || d.is("LocationMatch") {
                manager = self.location(d).or(manager);
            } else if !self.front_line(d, &mut server) && !self.balancer_line(d, &mut balancer) {
                self.skip(d, vhost_why(d));
            }
        }
        located.append(&mut lines);
        let lines = located;
        self.finish_front(v, &mut server);
        if !body.iter().any(|d| d.is("ProxyPassReverse")) {
            balancer.set(
                "proxy_pass_reverse",
                "false".into(),
                "no ProxyPassReverse: members' redirects reach clients as written, as Apache sent them",
            );
        }
        let routed = lines.iter().any(|l| !l.is_root_pass()) || !self.more_vhosts.is_empty();
        let hosts = if routed {
            self.first_vhost(v, &server, aliases, &lines)
        } else {
            self.root_prefix(&lines);
            Vec::new()
        };
        let mut tables = vec![server];
        let Some(name) = target else {
            return tables;
        };
        let mut rest = self.imported_members(&name, &mut balancer);
        self.route_cookie(&mut balancer);
        tables.push(balancer);
        tables.append(&mut rest);
        tables.extend(manager);
        tables.extend(hosts);
        for other in std::mem::take(&mut self.more_vhosts) {
            tables.extend(self.other_vhost(&other, &name));
        }
        tables
    }

    /// The front's last checks: no certificate without `SSLEngine on`, a server name.
    fn finish_front(&mut self, v: &Directive, server: &mut Table) {
        if !self.ssl_on && server.has("certificate") {
            // Apache serves plain HTTP without SSLEngine on, whatever certificate it names
            server.remove("certificate");
            server.remove("key");
            self.not_carried(
                &v.at,
                "SSLCertificateFile",
                "SSLEngine is not on: the front stays plain HTTP, as Apache's did",
            );
        }
        if !server.has("server_name") {
            self.not_carried(
                &v.at,
                "ServerName",
                "none given: `localhost` is written; set the public name",
            );
            server.set("server_name", q("localhost"), "");
        }
    }

    /// The `[balancer]` settings and member tables of balancer `name`; the other balancers
    /// are said not to be carried.
    fn imported_members(&mut self, name: &str, balancer: &mut Table) -> Vec<Table> {
        for (other, at) in self.unused_balancers(name) {
            self.not_carried(
                &at,
                &format!("balancer://{other}"),
                "no ProxyPass of this virtual host sends to it",
            );
        }
        let found = self.balancers.iter().position(|b| b.name == name);
        match found.map(|i| std::mem::take(&mut self.balancers[i])) {
            Some(b) => {
                let members = self.balancer_tables(&b, balancer);
                if b.members.is_empty() {
                    self.not_carried(
                        "",
                        &format!("balancer://{name}"),
                        "it has no BalancerMember: add [[balancer.member]] tables",
                    );
                }
                members
            }
            None => {
                balancer.set("name", q(name), "");
                self.not_carried(
                    "",
                    &format!("balancer://{name}"),
                    "never defined: add [[balancer.member]] tables",
                );
                Vec::new()
            }
        }
    }

    fn unused_balancers(&self, used: &str) -> Vec<(String, String)> {
        self.balancers
            .iter()
            .filter(|b| b.name != used)
            .map(|b| {
                (
                    b.name.clone(),
                    b.members.first().map(|m| m.at.clone()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// `ProxyPass path balancer://name/inner [key=value…]`: a route when it sends to the
    /// imported balancer (`chosen`), with its keys as the balancer's settings.
    fn proxy_pass(
        &mut self,
        d: &Directive,
        target: &mut Option<String>,
        chosen: Option<&str>,
        lines: &mut Vec<RouteLine>,
    ) {
        let from = format!("{}: {}", d.at, d.text);
        let (path, to) = match d.args.as_slice() {
            [path, to, ..] => (path.as_str(), to.as_str()),
            _ => {
                self.skip(d, "ProxyPass without a path and a target");
                return;
            }
        };
        if !route_path(path) {
            self.skip(
                d,
                "its path is not one a route can match (a space, a query?)",
            );
            return;
        }
        if to == "!" {
            lines.push(RouteLine::NotHere {
                path: path.to_owned(),
                from,
                why: EXCLUDED,
                status: 404,
            });
            return;
        }
        let name = balancer_name(to);
        let Some(name) = name.filter(|n| chosen.is_none_or(|c| c == n)) else {
            self.skip(d, ELSEWHERE);
            lines.push(RouteLine::NotHere {
                path: path.to_owned(),
                from,
                why: ELSEWHERE,
                status: 404,
            });
            return;
        };
        lines.push(RouteLine::Pass {
            path: path.to_owned(),
            balancer: name.clone(),
            inner: target_path(to).to_owned(),
            from,
        });
        *target = Some(name.clone());
        let rest: Vec<String> = d.args[2..].to_vec();
        if !params(&rest).is_empty() {
            self.proxy_set(&name, d, &rest);
        }
        for flag in rest.iter().filter(|w| !w.contains('=')) {
            self.not_carried(&d.at, flag, "a ProxyPass flag with no equivalent");
        }
    }

    /// `<Location /balancer-manager>` with `SetHandler balancer-manager` → `[manager]`.
    fn location(&mut self, d: &Directive) -> Option<Table> {
        let body = d.body.as_deref().unwrap_or_default();
        let manager = body.iter().any(|x| {
            x.is("SetHandler")
                && x.args
                    .first()
                    .is_some_and(|h| h.eq_ignore_ascii_case("balancer-manager"))
        });
        if !manager {
            let guarded = body.iter().any(|x| {
                ["require", "authtype", "allow", "deny", "order"]
                    .iter()
                    .any(|n| x.name.eq_ignore_ascii_case(n))
            });
            let why = if guarded {
                "ACCESS CONTROL IS NOT CARRIED: this <Location>'s rules are not enforced; every client is served"
            } else {
                "a <Location> that is not the balancer-manager: per-path settings have no equivalent"
            };
            self.skip(d, why);
            return None;
        }
        for x in body.iter().filter(|x| !x.is("SetHandler")) {
            self.skip(x, "the manager is reached on its own port: keep it on loopback or behind your own authentication");
        }
        let mut t = Table::new(
            "[manager]",
            format!("{}: {} (SetHandler balancer-manager)", d.at, d.text),
        );
        t.set(
            "listen",
            q(&self.manager_listen),
            "its own port, on loopback: Apache served it inside the virtual host",
        );
        Some(t)
    }

    /// A line of the front; whether it was one.
    fn front_line(&mut self, d: &Directive, server: &mut Table) -> bool {
        let arg = d.args.first().cloned().unwrap_or_default();
        let why = format!("{}: {}", d.at, d.text);
        let on = arg.eq_ignore_ascii_case("on");
        match d.name.to_ascii_lowercase().as_str() {
            "servername" => server.set("server_name", q(&arg), why),
            "sslengine" => {
                self.ssl_on = on;
            }
            "sslcertificatefile" => server.set("certificate", q(&self.path(&arg)), why),
            "sslcertificatekeyfile" => server.set("key", q(&self.path(&arg)), why),
            "customlog" | "transferlog" => server.set("access_log", q(&self.path(&arg)), why),
            "requestreadtimeout" => self.read_timeouts(d, server),
            _ => return false,
        }
        true
    }

    /// `RequestReadTimeout header=20-40,MinRate=500 body=20` → the first number of each.
    fn read_timeouts(&mut self, d: &Directive, server: &mut Table) {
        for (k, v) in params(&d.args) {
            let secs = v
                .split([',', '-'])
                .next()
                .and_then(|s| s.parse::<u64>().ok());
            let key = match k.as_str() {
                "header" => "header_read_timeout",
                "body" => "request_body_timeout",
                _ => continue,
            };
            match secs {
                Some(s) if s > 0 => {
                    server.set(key, q(&format!("{s}s")), format!("{}: {k}={v}", d.at));
                }
                _ => self.not_carried(&d.at, &format!("{k}={v}"), "no whole number of seconds"),
            }
            if v.contains(['-', ',']) {
                self.not_carried(
                    &d.at,
                    &format!("{k}={v}"),
                    "the first limit is kept; a growing limit with MinRate has no equivalent",
                );
            }
        }
    }

    /// A line of the balancer; whether it was one.
    fn balancer_line(&mut self, d: &Directive, b: &mut Table) -> bool {
        let arg = d.args.first().cloned().unwrap_or_default();
        let why = format!("{}: {}", d.at, d.text);
        let on = arg.eq_ignore_ascii_case("on");
        match d.name.to_ascii_lowercase().as_str() {
            // a path's own mapping back is its route's (`rewrite_prefix`)
            "proxypassreverse" => b.set("proxy_pass_reverse", "true".into(), why),
            "proxypreservehost" => b.set("preserve_host", on.to_string(), why),
            "proxytimeout" => self.proxy_timeout(b, &arg, &d.at),
            "timeout" => self.server_timeout(b, &arg, &d.at),
            "proxyrequests" => {
                if on {
                    self.skip(d, "a forward proxy is never served");
                }
            }
            "sslproxyengine" => {}
            "sslproxycacertificatefile" => b.set("trust_roots", list(&[self.path(&arg)]), why),
            "sslproxymachinecertificatefile" => {
                let p = self.path(&arg);
                b.set("client_certificate", q(&p), why.clone());
                b.set("client_key", q(&p), why);
            }
            "sslproxyverify"
            | "sslproxycheckpeername"
            | "sslproxycheckpeercn"
            | "sslproxycheckpeerexpire" => {
                self.skip(d, "members' certificates are always verified: give trust_roots, or a member's tls_name");
            }
            "proxypassreversecookiedomain" | "proxypassreversecookiepath" => {
                self.cookie_rewrite(d, b);
            }
            "header" => self.header(d),
            "remoteiptrustedproxy" | "remoteipinternalproxy" => {
                b.set("trusted_proxies", list(&d.args), why);
            }
            "remoteipheader" => {
                if !arg.eq_ignore_ascii_case("x-forwarded-for") {
                    self.skip(d, "only X-Forwarded-For names the client");
                }
            }
            _ => return false,
        }
        true
    }

    fn cookie_rewrite(&mut self, d: &Directive, b: &mut Table) {
        let key = if d.is("ProxyPassReverseCookieDomain") {
            "reverse_cookie_domain"
        } else {
            "reverse_cookie_path"
        };
        let [from, to, ..] = d.args.as_slice() else {
            self.skip(d, "needs the member's value and the public one");
            return;
        };
        b.set(
            key,
            format!("[{{ from = {}, to = {} }}]", q(from), q(to)),
            format!("{}: {}", d.at, d.text),
        );
    }

    /// The `ROUTEID` recipe: `Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; …"`.
    fn header(&mut self, d: &Directive) {
        let cookie = d
            .args
            .iter()
            .position(|a| a.eq_ignore_ascii_case("set-cookie"))
            .and_then(|i| d.args.get(i + 1))
            .filter(|v| v.contains("%{BALANCER_WORKER_ROUTE}e"))
            .and_then(|v| v.split('=').next())
            .map(str::trim);
        match cookie {
            Some(name) if !name.is_empty() => self.route_cookie = Some((name.to_owned(), d.at.clone())),
            _ => self.skip(d, "only the balancer's route cookie recipe is carried; set other headers in the members"),
        }
    }

    /// The balancer's own cookie from the `Header` recipe; `stickysession` naming that same
    /// cookie is then the cookie alone (no session id carries a route).
    fn route_cookie(&mut self, b: &mut Table) {
        let Some((name, at)) = self.route_cookie.take() else {
            return;
        };
        b.set("cookie", q(&name), format!("{at}: the Header add Set-Cookie recipe (signed here; Apache's clear .route values are still accepted)"));
        let sticky: Vec<String> = self.sticky_names.iter().map(|(v, _)| v.clone()).collect();
        for v in sticky {
            let names: Vec<&str> = v.split('|').collect();
            if names.iter().all(|n| n.eq_ignore_ascii_case(&name)) {
                b.set(
                    "stickysession",
                    q(""),
                    format!("stickysession={v} is the route cookie itself"),
                );
            }
        }
    }
}

/// Whether a `<Location>` holds a `ProxyPass` (its path is the location's).
pub(crate) fn has_proxy_pass(d: &Directive) -> bool {
    d.body.iter().flatten().any(|x| x.is("ProxyPass"))
}

/// `<Location /admin> ProxyPass balancer://b/adm` as `ProxyPass /admin balancer://b/adm`.
pub(crate) fn location_passes(d: &Directive) -> Vec<Directive> {
    let Some(path) = d.args.first() else {
        return Vec::new();
    };
    d.body
        .iter()
        .flatten()
        .filter(|x| x.is("ProxyPass"))
        .map(|x| {
            let mut pass = x.clone();
            pass.args.insert(0, path.clone());
            pass
        })
        .collect()
}

/// Why a line of the virtual host is not carried.
fn vhost_why(d: &Directive) -> &'static str {
    match d.name.to_ascii_lowercase().as_str() {
        "sslverifyclient" | "sslverifydepth" | "sslcacertificatefile" | "sslcacertificatepath" => {
            "CLIENT CERTIFICATES ARE NOT CHECKED: the front asks clients for none"
        }
        "authtype" | "authname" | "authuserfile" | "authbasicprovider" | "require" | "order"
        | "allow" | "deny" => {
            "ACCESS CONTROL IS NOT CARRIED: every client that reaches the front is served; restrict it in front of the balancer"
        }
        "sslprotocol"
        | "sslciphersuite"
        | "sslhonorcipherorder"
        | "sslcompression"
        | "sslsessiontickets" => "TLS 1.2 and 1.3 with rustls' safe defaults, not configurable",
        "sslcertificatechainfile" => "append the chain to the certificate file",
        "errorlog" | "loglevel" => "the log goes to stderr; RUST_LOG sets its level",
        "keepalive" | "keepalivetimeout" | "maxkeepaliverequests" => {
            "keep-alive is on, idle connections close after the header-read timeout"
        }
        "documentroot" | "directoryindex" | "alias" | "scriptalias" | "directory" | "files" => {
            "nothing is served from disk: every request goes to the balancer"
        }
        "proxypassmatch" => {
            "a regular expression: not carried; the requests it matched go by the other routes"
        }
        "rewriteengine" | "rewriterule" | "rewritecond" => {
            "rewrites have no equivalent: routes match path prefixes, exact paths and headers"
        }
        _ => "not a balancer setting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_host_addresses_become_listen_addresses() {
        assert_eq!(listen_addr("*:443", 80).0, "0.0.0.0:443");
        assert_eq!(listen_addr("_default_:8443", 80).0, "0.0.0.0:8443");
        assert_eq!(listen_addr("[::]:443", 80).0, "[::]:443");
        assert_eq!(listen_addr("10.0.0.1:443", 80).0, "10.0.0.1:443");
        assert_eq!(listen_addr("*", 8080).0, "0.0.0.0:8080");
        let (addr, note) = listen_addr("wso2.com:443", 80);
        assert_eq!(addr, "0.0.0.0:443");
        assert!(note.is_some());
    }
}
