//! `<Proxy balancer://…>`, `BalancerMember`, `ProxySet` and mod_proxy_hcheck's keys.

use std::collections::HashMap;

use super::parse::Directive;
use super::write::{q, Table};
use super::Import;

/// What one `balancer://name` gathers, wherever it was written.
#[derive(Debug, Default)]
pub(crate) struct Balancer {
    pub(crate) name: String,
    /// `key=value` settings in the order met, with where.
    pub(crate) settings: Vec<(String, String, String)>,
    pub(crate) members: Vec<Member>,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) url: String,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) at: String,
    pub(crate) text: String,
}

/// `balancer://name/…` → `name`, lower-cased as Apache reads it.
pub(crate) fn balancer_name(url: &str) -> Option<String> {
    let rest = url
        .get(..11)?
        .eq_ignore_ascii_case("balancer://")
        .then(|| &url[11..])?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

/// `key=value` words.
pub(crate) fn params(words: &[String]) -> Vec<(String, String)> {
    words
        .iter()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_ascii_lowercase(), v.to_owned()))
        })
        .collect()
}

impl Import {
    /// Gathers a `<Proxy balancer://name>` section.
    pub(crate) fn proxy_section(&mut self, d: &Directive) {
        let Some(name) = d.args.first().and_then(|a| balancer_name(a)) else {
            self.skip(
                d,
                "a <Proxy> for something other than a balancer:// is not a balancer",
            );
            return;
        };
        for inner in d.body.iter().flatten() {
            if inner.is("BalancerMember") {
                self.member(&name, inner, &inner.args);
            } else if inner.is("ProxySet") {
                self.proxy_set(&name, inner, &inner.args);
            } else if inner.is("Require")
                || inner.is("Order")
                || inner.is("Allow")
                || inner.is("Deny")
            {
                self.skip(inner, "ACCESS CONTROL IS NOT CARRIED: every client that reaches the front is served; restrict it in front of the balancer");
            } else {
                self.skip(inner, "not a balancer setting");
            }
        }
        self.balancer(&name);
    }

    pub(crate) fn balancer(&mut self, name: &str) -> &mut Balancer {
        let i = match self.balancers.iter().position(|b| b.name == name) {
            Some(i) => i,
            None => {
                self.balancers.push(Balancer {
                    name: name.to_owned(),
                    ..Balancer::default()
                });
                self.balancers.len() - 1
            }
        };
        &mut self.balancers[i]
    }

    pub(crate) fn member(&mut self, name: &str, d: &Directive, words: &[String]) {
        let Some(url) = words.first() else {
            self.skip(d, "a BalancerMember without a URL");
            return;
        };
        let member = Member {
            url: url.clone(),
            params: params(&words[1..]),
            at: d.at.clone(),
            text: d.text.clone(),
        };
        self.balancer(name).members.push(member);
    }

    pub(crate) fn proxy_set(&mut self, name: &str, d: &Directive, words: &[String]) {
        for (k, v) in params(words) {
            self.balancer(name).settings.push((k, v, d.at.clone()));
        }
    }

    /// The `[balancer]` table and its members for `b`; `hosts` gives `resolve` lines.
    pub(crate) fn balancer_tables(&mut self, b: &Balancer, table: &mut Table) -> Vec<Table> {
        table.set("name", q(&b.name), format!("<Proxy balancer://{}>", b.name));
        for (k, v, at) in &b.settings {
            self.balancer_setting(table, k, v, at);
        }
        let mut members = Vec::new();
        let mut health: HashMap<String, (String, String)> = HashMap::new();
        for (i, m) in b.members.iter().enumerate() {
            let mut t = Table::new("[[balancer.member]]", format!("{}: {}", m.at, m.text));
            match &self.member_prefix {
                Some((prefix, at)) => {
                    let url = format!("{}{prefix}", m.url.trim_end_matches('/'));
                    t.set(
                        "url",
                        q(&url),
                        format!("{at}: ProxyPass to balancer://…{prefix}"),
                    );
                }
                None => t.set("url", q(&m.url), ""),
            }
            let mut route = format!("member{}", i + 1);
            for (k, v) in &m.params {
                let why = format!("{k}={v}");
                match k.as_str() {
                    "route" => route.clone_from(v),
                    "loadfactor" => t.set("loadfactor", v.clone(), why),
                    "lbset" => t.set("lbset", v.clone(), why),
                    "max" => t.set("max", v.clone(), why),
                    "status" => self.status(&mut t, v, m),
                    "acquire" => self.ms_key(table, "queue_timeout", v, m),
                    "timeout" => self.secs_key(table, "timeout", v, m),
                    "connectiontimeout" => self.secs_key(table, "connection_timeout", v, m),
                    k if k.starts_with("hc") => match health.get(k) {
                        None => {
                            health.insert(k.to_owned(), (v.clone(), m.at.clone()));
                        }
                        Some((first, _)) if first == v => {}
                        Some((first, at)) => {
                            let why = format!("health checks are the balancer's here: {k}={first} from {at} is used for every member");
                            self.not_carried(&m.at, &format!("{k}={v}"), &why);
                        }
                    },
                    _ => self.not_carried(&m.at, &why, member_param_why(k)),
                }
            }
            t.set("route", q(&route), "");
            if let Some(addrs) = self.resolve_for(&m.url) {
                t.set("resolve", addrs, "import-apache --resolve");
            }
            members.push(t);
        }
        let mut out = members;
        let unprobed: Vec<&str> = b
            .members
            .iter()
            .filter(|m| !m.params.iter().any(|(k, _)| k.starts_with("hc")))
            .map(|m| m.url.as_str())
            .collect();
        if !health.is_empty() && !unprobed.is_empty() {
            let why = "health checks are the balancer's here: these members are probed too, where Apache probed only the members with hc* keys";
            self.not_carried("", &unprobed.join(", "), why);
        }
        if let Some(h) = self.health_table(&health) {
            out.push(h);
        }
        out
    }

    fn status(&mut self, t: &mut Table, v: &str, m: &Member) {
        match tower_balancer::registry::AdminState::parse(v) {
            Some(s) => t.set("status", q(s.as_str()), format!("status={v}")),
            None => self.not_carried(
                &m.at,
                &format!("status={v}"),
                "only +D (disabled), +H (hot standby) and +N (drain) have an equivalent",
            ),
        }
    }

    /// A member's `timeout=` or `connectiontimeout=`: the balancer's here, for every member.
    /// Taken when the balancer has none yet; one that differs from the value in force is
    /// said, not silently spread or dropped.
    fn secs_key(&mut self, table: &mut Table, key: &str, v: &str, m: &Member) {
        let what = format!("{key}={v}");
        match v.parse::<u64>() {
            Ok(s) if s > 0 => {
                let value = q(&format!("{s}s"));
                match table.value(key).map(str::to_owned) {
                    None => table.set(
                        key,
                        value,
                        format!("{}: a member's {what}, used for every member", m.at),
                    ),
                    Some(used) if used == value => {}
                    Some(used) => {
                        let why = format!("timeouts are the balancer's here, not a member's: {key} = {used} is used for every member");
                        self.not_carried(&m.at, &what, &why);
                    }
                }
            }
            _ => self.not_carried(&m.at, &what, "not a whole number of seconds"),
        }
    }

    /// `ProxyTimeout`: the balancer's `timeout` (a later `ProxySet` or `ProxyPass`
    /// `timeout=` replaces it).
    pub(crate) fn proxy_timeout(&mut self, table: &mut Table, v: &str, at: &str) {
        self.balancer_timeout(table, v, at, "ProxyTimeout ");
    }

    /// `Timeout`: the balancer's `timeout` when nothing else sets it, as Apache's
    /// `ProxyTimeout` defaults to it.
    pub(crate) fn server_timeout(&mut self, table: &mut Table, v: &str, at: &str) {
        if !table.has("timeout") {
            self.balancer_timeout(table, v, at, "Timeout ");
        }
    }

    /// The balancer's `timeout` from `what` (`timeout=` of a `ProxySet` or `ProxyPass`, or
    /// `ProxyTimeout`); one that replaces another value is said.
    fn balancer_timeout(&mut self, table: &mut Table, v: &str, at: &str, what: &str) {
        let Ok(s) = v
            .parse::<u64>()
            .map_err(drop)
            .and_then(|s| if s > 0 { Ok(s) } else { Err(()) })
        else {
            return self.not_carried(at, &format!("{what}{v}"), "not a whole number of seconds");
        };
        let value = q(&format!("{s}s"));
        let replaced = table.value("timeout").is_some_and(|old| *old != value);
        // said at the line it came from, which its comment names (`{at}: {what}`)
        let from = table.comment("timeout").unwrap_or_default().to_owned();
        let (old_at, old_what) = from.split_once(": ").unwrap_or(("", from.as_str()));
        // `Timeout` is only `ProxyTimeout`'s default in Apache: replacing it leaves nothing
        // out that Apache would have used
        if replaced && !old_what.starts_with("Timeout ") {
            let why = format!(
                "the balancer's timeout is set again by `{what}{v}` at {at}, which is used"
            );
            self.not_carried(old_at, old_what, &why);
        }
        table.set("timeout", value, format!("{at}: {what}{v}"));
    }

    fn ms_key(&mut self, table: &mut Table, key: &str, v: &str, m: &Member) {
        match v.parse::<u64>() {
            Ok(ms) if ms > 0 => {
                table.set(key, q(&format!("{ms}ms")), format!("{}: acquire={v}", m.at));
            }
            _ => self.not_carried(
                &m.at,
                &format!("acquire={v}"),
                "not a whole number of milliseconds",
            ),
        }
    }

    fn balancer_setting(&mut self, table: &mut Table, k: &str, v: &str, at: &str) {
        let why = format!("{at}: {k}={v}");
        match k {
            "lbmethod" => match v.to_ascii_lowercase().as_str() {
                m @ ("byrequests" | "bytraffic" | "bybusyness") => table.set("lbmethod", q(m), why),
                _ => self.not_carried(at, &format!("lbmethod={v}"), "heartbeat needs mod_heartmonitor's feed; byrequests is used"),
            },
            "stickysession" => self.sticky(table, v, at),
            "nofailover" => table.set("nofailover", on_off(v).to_string(), why),
            "maxattempts" => table.set("maxattempts", v.to_owned(), why),
            "timeout" => self.balancer_timeout(table, v, at, "timeout="),
            "failonstatus" => {
                let codes: Vec<String> = v.split(',').map(|c| c.trim().to_owned()).collect();
                table.set("failonstatus", format!("[{}]", codes.join(", ")), why);
            }
            "failontimeout" => self.not_carried(at, &format!("failontimeout={v}"), "a timed-out attempt always counts as a failure and idempotent requests are retried"),
            _ => self.not_carried(at, &format!("{k}={v}"), "no equivalent setting"),
        }
    }

    /// `stickysession=JSESSIONID|jsessionid`: session ids ending in `.route`. The
    /// balancer's own cookie (the `ROUTEID` recipe) is `cookie`, set from the `Header` line.
    fn sticky(&mut self, table: &mut Table, v: &str, at: &str) {
        self.sticky_names.push((v.to_owned(), at.to_owned()));
        table.set("stickysession", q(v), format!("{at}: stickysession={v}"));
    }

    fn health_table(&mut self, hc: &HashMap<String, (String, String)>) -> Option<Table> {
        if hc.is_empty() {
            return None;
        }
        let mut t = Table::new(
            "[balancer.health]",
            "mod_proxy_hcheck, from the members' hc* keys",
        );
        let mut keys: Vec<_> = hc.iter().collect();
        keys.sort();
        for (k, (v, at)) in keys {
            let why = format!("{k}={v}");
            match k.as_str() {
                "hcmethod" => t.set("method", q(&v.to_ascii_uppercase()), why),
                "hcuri" => t.set("uri", q(v), why),
                "hcinterval" => match v.parse::<u64>() {
                    Ok(s) if s > 0 => t.set("interval", q(&format!("{s}s")), why),
                    _ => self.not_carried(at, &why, "not a whole number of seconds"),
                },
                "hcpasses" => t.set("passes", v.clone(), why),
                "hcfails" => t.set("fails", v.clone(), why),
                "hcexpr" => self.hc_expr(&mut t, v, at),
                _ => self.not_carried(at, &why, "no equivalent health-check setting"),
            }
        }
        Some(t)
    }

    /// `hcexpr=name`, looked up in the `ProxyHCExpr` lines: a status class or a literal the
    /// body must contain.
    fn hc_expr(&mut self, t: &mut Table, name: &str, at: &str) {
        let Some(expr) = self.hc_exprs.get(name).cloned() else {
            self.not_carried(at, &format!("hcexpr={name}"), "no ProxyHCExpr of that name");
            return;
        };
        let e = expr
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .trim();
        let status = [
            ("/^[234]/", "200-499"),
            ("/^[23]/", "200-399"),
            ("/^2/", "200-299"),
            ("/^[2]/", "200-299"),
        ];
        if let Some(rest) = e.strip_prefix("%{REQUEST_STATUS} =~") {
            if let Some((_, range)) = status.iter().find(|(re, _)| rest.trim() == *re) {
                t.set("expect", q(range), format!("hcexpr {name}: {e}"));
                return;
            }
        }
        let body = e
            .strip_prefix("hc('body') =~ /")
            .or_else(|| e.strip_prefix("hc(\"body\") =~ /"))
            .and_then(|r| r.strip_suffix('/'));
        match body {
            Some(lit) if !lit.is_empty() && !lit.contains(['\\', '.', '*', '+', '?', '[', '(', '|', '^', '$', '{']) => {
                t.set("body_contains", q(lit), format!("hcexpr {name}: {e}"));
            }
            _ => self.not_carried(at, &format!("hcexpr={name} ({e})"), "only a status class (^[234], ^[23], ^2) or a plain text the body contains has an equivalent"),
        }
    }
}

const fn on_off(v: &str) -> bool {
    matches!(v.as_bytes(), b"On" | b"on" | b"ON" | b"1" | b"true")
}

fn member_param_why(k: &str) -> &'static str {
    match k {
        "retry" => "a failed member comes back by passive ejection's back-off or a passing probe ([balancer.ejection])",
        "keepalive" | "ttl" | "smax" | "min" | "disablereuse" | "enablereuse" => "member connections are pooled and kept alive always",
        "ping" => "no CPING/100-continue probe; use [balancer.health]",
        "redirect" => "redirect= is set through the library or the manager",
        "flushpackets" | "flushwait" | "iobuffersize" | "receivebuffersize" => "responses stream as they arrive",
        "secret" | "upgrade" | "mapping" => "AJP and protocol mapping are not spoken",
        _ => "no equivalent member setting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balancer_urls_name_their_balancer() {
        assert_eq!(balancer_name("balancer://wso2/").as_deref(), Some("wso2"));
        assert_eq!(balancer_name("BALANCER://X").as_deref(), Some("x"));
        assert_eq!(balancer_name("http://x/"), None);
        assert_eq!(balancer_name("balancer:///"), None);
        assert_eq!(balancer_name("bal"), None);
    }
}
