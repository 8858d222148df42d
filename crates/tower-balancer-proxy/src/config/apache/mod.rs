//! `tower-balancer import-apache`: an Apache configuration's balancer, as this project's file.
//!
//! Why: the people this project began for run Apache's mod_proxy_balancer today, and their
//! balancer is already written down as a virtual host. The importer reads the parts that
//! make it (`<VirtualHost>`, `ServerName`, `SSLEngine` and its certificate, `<Proxy
//! balancer://…>` with `BalancerMember`s and `ProxySet`, `ProxyPass`/`ProxyPassReverse`/
//! `ProxyPreserveHost`, the `ROUTEID` cookie recipe, `SSLProxy*`, mod_proxy_hcheck's keys,
//! `Include`) and writes the equivalent file, with a comment for every directive it could
//! not carry and why. One balancer a file for now: the first virtual host that proxies to a
//! balancer chooses it, and every virtual host sending to it becomes a `[[vhost]]` (names
//! from `ServerName`/`ServerAlias`, its certificate) whose `ProxyPass` paths (with the target's
//! path as `rewrite_prefix`), exclusions (`!`, answered 404) and `Redirect`s are routes; a
//! host with one `ProxyPass /` alone needs none. Hosts and paths sending to other balancers
//! are listed as not carried.

mod balancer;
mod parse;
mod routes;
mod vhost;
mod write;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use parse::ApacheSyntaxError;

use balancer::Balancer;
use parse::Directive;

/// What the importer is told besides the file.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    resolve: Vec<(String, std::net::IpAddr)>,
    manager: Option<SocketAddr>,
}

impl ImportOptions {
    /// No options.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Members whose URL names `host` are reached at `addr` (what `/etc/hosts` said for
    /// Apache): written as the member's `resolve`.
    #[must_use]
    pub fn resolve(mut self, host: impl Into<String>, addr: std::net::IpAddr) -> Self {
        self.resolve.push((host.into(), addr));
        self
    }

    /// Where the balancer-manager listens when the configuration has one (default
    /// `127.0.0.1:9000`): Apache served it inside the virtual host, ours has its own port.
    #[must_use]
    pub const fn manager(mut self, addr: SocketAddr) -> Self {
        self.manager = Some(addr);
        self
    }
}

/// The imported file.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The configuration, as TOML.
    pub toml: String,
    /// The directives not carried, with why (also in the file, as comments).
    pub not_carried: Vec<String>,
}

/// Why nothing could be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The configuration could not be read.
    #[error(transparent)]
    Syntax(#[from] ApacheSyntaxError),
    /// No `ProxyPass` sends requests to a `balancer://`.
    #[error("no ProxyPass sends requests to a balancer:// in {0}: there is no balancer to import")]
    NoBalancer(String),
}

/// Reads the Apache configuration at `path` (and what it includes) into this project's file.
///
/// # Errors
/// [`ImportError`]: the file cannot be read or names no balancer.
pub fn import_apache(path: &Path, options: &ImportOptions) -> Result<Imported, ImportError> {
    let (tree, root) = parse::read_tree(path)?;
    let mut import = Import {
        root,
        resolve: options.resolve.clone(),
        manager_listen: options
            .manager
            .map_or_else(|| "127.0.0.1:9000".to_owned(), |a| a.to_string()),
        ..Import::default()
    };
    let (mut vhosts, mut main) = (Vec::new(), Vec::new());
    import.global(&tree, &mut vhosts, &mut main);
    // the main server (no <VirtualHost>) is a virtual host too, as Apache's examples write it
    let main_server = Directive {
        name: "VirtualHost".into(),
        args: vec!["*".into()],
        body: Some(main.clone()),
        at: format!("{}:1", path.display()),
        text: "the main server".into(),
    };
    // the main server's ProxyPass lines are every virtual host's, before its own, unless
    // ProxyPassInherit Off says otherwise
    let inherit_off = |body: &[Directive]| {
        body.iter().any(|d| {
            d.is("ProxyPassInherit")
                && d.args
                    .first()
                    .is_some_and(|a| a.eq_ignore_ascii_case("off"))
        })
    };
    let server_passes: Vec<Directive> = if inherit_off(&main) {
        Vec::new()
    } else {
        main.iter().filter(|d| d.is("ProxyPass")).cloned().collect()
    };
    // and its timeouts are every virtual host's defaults, before its own lines
    let timeouts: Vec<Directive> = main
        .iter()
        .filter(|d| d.is("Timeout") || d.is("ProxyTimeout"))
        .cloned()
        .collect();
    for v in &mut vhosts {
        let body = v.body.get_or_insert_with(Vec::new);
        body.splice(0..0, timeouts.iter().cloned());
        if !inherit_off(body) {
            body.splice(0..0, server_passes.iter().cloned());
        }
    }
    let chosen = match vhosts.iter().position(vhost::proxies_to_balancer) {
        Some(i) => vhosts.remove(i),
        None if vhost::proxies_to_balancer(&main_server) => {
            main.clear();
            main_server
        }
        None => return Err(ImportError::NoBalancer(path.display().to_string())),
    };
    for d in main.iter().filter(|d| {
        !["ProxyPass", "ProxyPassInherit", "Timeout", "ProxyTimeout"]
            .iter()
            .any(|n| d.is(n))
    }) {
        import.skip(d, global_why(d));
    }
    import.more_vhosts = import.other_vhosts(&chosen, vhosts);
    let tables = import.vhost(&chosen);
    let toml = write::render(&path.display().to_string(), &tables, &import.not_carried);
    Ok(Imported {
        toml,
        not_carried: import.not_carried,
    })
}

/// Why a negated condition's lines are left out.
const NEGATED: &str = "a negated condition: its lines are for a server without what this one has (the others are read as holding)";

fn is_condition(d: &Directive) -> bool {
    d.is("IfModule") || d.is("IfDefine") || d.is("IfVersion")
}

fn negated(d: &Directive) -> bool {
    d.args.first().is_some_and(|a| a.starts_with('!'))
}

/// What the walk gathers.
#[derive(Debug, Default)]
pub(crate) struct Import {
    pub(crate) root: PathBuf,
    pub(crate) balancers: Vec<Balancer>,
    pub(crate) hc_exprs: HashMap<String, String>,
    pub(crate) sticky_names: Vec<(String, String)>,
    pub(crate) listen_ports: Vec<u16>,
    /// The path `ProxyPass … balancer://name/path` puts before every request's, and where.
    pub(crate) member_prefix: Option<(String, String)>,
    /// `SSLEngine on` in the virtual host being imported.
    pub(crate) ssl_on: bool,
    /// The names given to `[[vhost]]`s so far.
    pub(crate) vhost_names: std::collections::HashSet<String>,
    /// Other virtual hosts sending to the imported balancer.
    pub(crate) more_vhosts: Vec<Directive>,
    /// The balancer's own cookie, from the `Header add Set-Cookie` recipe, and where.
    pub(crate) route_cookie: Option<(String, String)>,
    pub(crate) not_carried: Vec<String>,
    pub(crate) manager_listen: String,
    resolve: Vec<(String, std::net::IpAddr)>,
}

impl Import {
    /// The virtual hosts besides `chosen` that become `[[vhost]]`s: those on its port that
    /// send to its balancer; the rest are said not to be carried, and why.
    fn other_vhosts(&mut self, chosen: &Directive, vhosts: Vec<Directive>) -> Vec<Directive> {
        let imported = routes::imported_name(chosen);
        let port = |v: &Directive| {
            v.args
                .first()
                .and_then(|a| a.rsplit_once(':'))
                .map(|(_, p)| p.to_owned())
        };
        let mut same = Vec::new();
        for v in vhosts {
            let name = v
                .body
                .iter()
                .flatten()
                .find(|d| d.is("ServerName"))
                .and_then(|d| d.args.first())
                .map_or_else(String::new, |n| format!(" ({n})"));
            let balancer = routes::imported_name(&v);
            let why = if port(&v) != port(chosen) {
                format!("a virtual host{name} on another port: one listener a file; import it into a file of its own")
            } else if balancer.is_none() {
                format!("a virtual host{name} that sends to no balancer (a redirect or a site of its own): not carried")
            } else if balancer != imported {
                format!("a virtual host{name} sending to another balancer: one balancer a file for now; import it into a file of its own")
            } else {
                same.push(v);
                continue;
            };
            self.skip(&v, &why);
        }
        same
    }

    /// Records that `d` was not carried, and why.
    pub(crate) fn skip(&mut self, d: &Directive, why: &str) {
        let text: String = d.text.chars().take(160).collect();
        self.not_carried.push(format!("{} `{text}`: {why}", d.at));
    }

    /// Records that one setting of a line was not carried, and why.
    pub(crate) fn not_carried(&mut self, at: &str, what: &str, why: &str) {
        self.not_carried.push(format!("{at} `{what}`: {why}"));
    }

    /// A path as the file should name it: Apache's relative paths are under `ServerRoot`;
    /// written absolute, so the file works wherever it is saved.
    pub(crate) fn path(&self, p: &str) -> String {
        let path = self.root.join(p);
        std::path::absolute(&path)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The `resolve` list for a member's URL, when `--resolve` named its host.
    pub(crate) fn resolve_for(&self, url: &str) -> Option<String> {
        let uri: http::Uri = url.parse().ok()?;
        let host = uri.host()?;
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let addrs: Vec<String> = self
            .resolve
            .iter()
            .filter(|(h, _)| h.eq_ignore_ascii_case(host))
            .map(|(_, ip)| SocketAddr::new(*ip, port).to_string())
            .collect();
        (!addrs.is_empty()).then(|| write::list(&addrs))
    }

    /// The server-wide directives: balancers defined outside virtual hosts, health-check
    /// expressions, `Listen`; virtual hosts are handed back.
    fn global(
        &mut self,
        tree: &[Directive],
        vhosts: &mut Vec<Directive>,
        main: &mut Vec<Directive>,
    ) {
        for d in tree {
            if d.is("VirtualHost") {
                let mut v = d.clone();
                v.body = Some(self.unwrap_conditions(d.body.as_deref().unwrap_or_default()));
                vhosts.push(v);
            } else if is_condition(d) && negated(d) {
                self.skip(d, NEGATED);
            } else if is_condition(d) {
                // read as if the condition holds: the modules the recipe needs are loaded
                self.global(d.body.as_deref().unwrap_or_default(), vhosts, main);
            } else if d.is("Proxy") {
                self.proxy_section(d);
            } else if d.is("ProxyHCExpr") {
                self.hc_expr_line(d);
            } else if d.is("Listen") {
                let port = d
                    .args
                    .first()
                    .and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok());
                self.listen_ports.extend(port);
            } else if !self.global_line(d) {
                main.push(d.clone());
            }
        }
    }

    /// `body` with its `<IfModule>`, `<IfDefine>` and `<IfVersion>` sections read as if
    /// they hold, and negated ones (`<IfModule !mod_ssl.c>`) left out, said.
    fn unwrap_conditions(&mut self, body: &[Directive]) -> Vec<Directive> {
        let mut out = Vec::new();
        for d in body {
            if is_condition(d) && negated(d) {
                self.skip(d, NEGATED);
            } else if is_condition(d) {
                out.extend(self.unwrap_conditions(d.body.as_deref().unwrap_or_default()));
            } else {
                out.push(d.clone());
            }
        }
        out
    }

    /// A server-wide line that names a balancer (`ProxySet balancer://x …`, `BalancerMember
    /// balancer://x url …`); whether it was one.
    fn global_line(&mut self, d: &Directive) -> bool {
        let target = d.args.first().and_then(|a| balancer::balancer_name(a));
        match target {
            Some(name) if d.is("ProxySet") => self.proxy_set(&name, d, &d.args[1..]),
            Some(name) if d.is("BalancerMember") => self.member(&name, d, &d.args[1..]),
            _ => return false,
        }
        true
    }

    pub(crate) fn hc_expr_line(&mut self, d: &Directive) {
        if let [name, expr @ ..] = d.args.as_slice() {
            self.hc_exprs.insert(name.clone(), expr.join(" "));
        }
    }
}

/// Why a server-wide directive is not carried.
fn global_why(d: &Directive) -> &'static str {
    let n = d.name.to_ascii_lowercase();
    match n.as_str() {
        "loadmodule" | "addmoduleinfo" => "modules are built in",
        "serverroot" | "user" | "group" | "pidfile" | "mutex" | "serveradmin" => {
            "process settings belong to systemd (docs/OPERATIONS.md)"
        }
        "errorlog" | "loglevel" => "the log goes to stderr; RUST_LOG sets its level",
        "startservers"
        | "minspareservers"
        | "maxspareservers"
        | "maxrequestworkers"
        | "serverlimit"
        | "threadsperchild"
        | "maxconnectionsperchild" => {
            "workers are threads: server.workers; connections: server.max_connections"
        }
        "sslrandomseed"
        | "sslsessioncache"
        | "sslsessioncachetimeout"
        | "sslpassphrasedialog"
        | "sslcryptodevice"
        | "sslstaplingcache" => "TLS is rustls with its own session handling",
        _ => "not a balancer setting",
    }
}
