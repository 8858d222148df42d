//! The file's words as types: a probe method, a status range, a scheme, sticky names, a
//! route, a DNS target. Each is read once, while `toml` reads the file, so a bad value is
//! reported with its line and key and the rest of the code never parses a string again.

use std::fmt;

use http::Method;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use tower_balancer::registry::MemberId;

/// `health.method`: the request a probe sends, or a connect-only check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProbeMethod {
    /// `GET` (Apache's default).
    #[default]
    Get,
    /// `HEAD`.
    Head,
    /// `OPTIONS`.
    Options,
    /// `TCP`: a connect, no request.
    Tcp,
}

impl ProbeMethod {
    /// The HTTP method, or `None` for a TCP check.
    #[must_use]
    pub fn http_method(self) -> Option<Method> {
        match self {
            Self::Get => Some(Method::GET),
            Self::Head => Some(Method::HEAD),
            Self::Options => Some(Method::OPTIONS),
            Self::Tcp => None,
        }
    }
}

impl<'de> Deserialize<'de> for ProbeMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_uppercase().as_str() {
            "GET" => Ok(Self::Get),
            "HEAD" => Ok(Self::Head),
            "OPTIONS" => Ok(Self::Options),
            "TCP" => Ok(Self::Tcp),
            _ => Err(de::Error::custom(format!(
                "`{}` is not one of GET, HEAD, OPTIONS, TCP",
                s.escape_default()
            ))),
        }
    }
}

/// `health.expect`: the statuses a healthy member answers with, `"200-399"` or `"204"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    low: u16,
    high: u16,
}

impl StatusRange {
    /// `low..=high`, or `None` unless `100 <= low <= high <= 599`.
    #[must_use]
    pub const fn new(low: u16, high: u16) -> Option<Self> {
        if low >= 100 && low <= high && high <= 599 {
            Some(Self { low, high })
        } else {
            None
        }
    }

    /// The lowest status accepted.
    #[must_use]
    pub const fn low(self) -> u16 {
        self.low
    }

    /// The highest status accepted.
    #[must_use]
    pub const fn high(self) -> u16 {
        self.high
    }
}

impl Default for StatusRange {
    /// 200–399, as `mod_proxy_hcheck` counts a member up.
    fn default() -> Self {
        Self {
            low: 200,
            high: 399,
        }
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (lo, hi) = s.split_once('-').unwrap_or((&s, &s));
        let range = match (lo.trim().parse(), hi.trim().parse()) {
            (Ok(lo), Ok(hi)) => Self::new(lo, hi),
            _ => None,
        };
        range.ok_or_else(|| {
            de::Error::custom(format!(
                "`{}` is not a status range such as \"200-399\" (100 to 599, low first)",
                s.escape_default()
            ))
        })
    }
}

/// `dns.scheme`: how discovered members are spoken to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `http` (the default).
    #[default]
    Http,
    /// `https`, with the balancer's trust roots.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// `stickysession = "JSESSIONID|jsessionid"`: the session cookie, then after `|` the URL
/// parameter, whose values end in `.route`. One name serves for both; `""` turns
/// session-id routing off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyNames {
    /// The session cookie (`JSESSIONID`), if any.
    pub cookie: Option<String>,
    /// The URL parameter (`jsessionid`), if any.
    pub url_param: Option<String>,
}

impl StickyNames {
    /// Reads Apache's `cookie|param` form.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        let (cookie, param) = s.split_once('|').unwrap_or((s, s));
        let name = |x: &str| Some(x.trim().to_owned()).filter(|x| !x.is_empty());
        Self {
            cookie: name(cookie),
            url_param: name(param),
        }
    }
}

impl Default for StickyNames {
    /// WSO2's (and every servlet container's) `JSESSIONID|jsessionid`.
    fn default() -> Self {
        Self::parse("JSESSIONID|jsessionid")
    }
}

impl fmt::Display for StickyNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, p) = (self.cookie.as_deref(), self.url_param.as_deref());
        match (c, p) {
            (None, None) => Ok(()),
            (Some(c), Some(p)) if c == p => f.write_str(c),
            _ => write!(f, "{}|{}", c.unwrap_or(""), p.unwrap_or("")),
        }
    }
}

impl<'de> Deserialize<'de> for StickyNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = |why: &str| {
            de::Error::custom(format!(
                "`{}` {why}: write \"COOKIE|param\", one name for both, or \"\" to turn session-id routing off",
                s.escape_default()
            ))
        };
        if s.matches('|').count() > 1 {
            return Err(bad("has more than one `|`"));
        }
        let token = |n: &str| {
            n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`~".contains(&b))
        };
        let names = Self::parse(&s);
        let (c, p) = (names.cookie.as_deref(), names.url_param.as_deref());
        if !s.trim().is_empty() && c.is_none() && p.is_none() {
            return Err(bad("names nothing"));
        }
        if !c.into_iter().chain(p).all(token) {
            return Err(bad("is not a cookie or parameter name"));
        }
        Ok(names)
    }
}

/// `route=`: a member's id, checked as the registry checks ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route(MemberId);

impl Route {
    /// The member id.
    #[must_use]
    pub const fn id(&self) -> &MemberId {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MemberId::new(&s)
            .map(Self)
            .map_err(|e| de::Error::custom(format!("route `{}`: {e}", s.escape_default())))
    }
}

/// What `[balancer.dns]` resolves: `name` and `port` (A/AAAA records) or `srv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsTarget {
    /// A name whose A and AAAA records are the members, all on `port`.
    Addresses {
        /// The name.
        name: String,
        /// The members' port.
        port: u16,
    },
    /// An SRV name whose records are the members.
    Srv(String),
}

impl DnsTarget {
    /// The one rule for the three keys.
    pub(super) fn from_keys(
        name: Option<&String>,
        port: Option<u16>,
        srv: Option<&String>,
    ) -> Result<Self, &'static str> {
        match (name, port, srv) {
            (Some(name), Some(port), None) => Ok(Self::Addresses {
                name: name.clone(),
                port,
            }),
            (None, None, Some(srv)) => Ok(Self::Srv(srv.clone())),
            _ => Err("give either `name` and `port` (A/AAAA records) or `srv`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_read_one_or_two_numbers() {
        let r = |s: &str| {
            StatusRange::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s))
        };
        assert_eq!(r("200-399").ok(), StatusRange::new(200, 399));
        assert_eq!(r(" 204 ").ok(), StatusRange::new(204, 204));
        for bad in ["399-200", "99", "200-600", "2xx", ""] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sticky_names_split_on_the_bar() {
        let n = StickyNames::parse("JSESSIONID|jsessionid");
        assert_eq!(n.cookie.as_deref(), Some("JSESSIONID"));
        assert_eq!(n.url_param.as_deref(), Some("jsessionid"));
        assert_eq!(n.to_string(), "JSESSIONID|jsessionid");
        let one = StickyNames::parse("sid");
        assert_eq!(
            (one.cookie.as_deref(), one.url_param.as_deref()),
            (Some("sid"), Some("sid"))
        );
        assert_eq!(one.to_string(), "sid");
        let off = StickyNames::parse("");
        assert_eq!((off.cookie, off.url_param), (None, None));
        let cookie_only = StickyNames::parse("sid|");
        assert_eq!(cookie_only.url_param, None);
    }

    #[test]
    fn sticky_names_that_cannot_be_meant_are_refused() {
        let read = |s: &str| {
            StickyNames::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s))
        };
        for bad in ["|", "a|b|c", "JSESSION ID", "a;b|c", " | "] {
            assert!(read(bad).is_err(), "{bad}");
        }
        for good in ["", "JSESSIONID|jsessionid", "sid", "sid|", "|jsessionid"] {
            assert!(read(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn probe_methods_ignore_case() {
        let m = |s: &str| {
            ProbeMethod::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s))
        };
        assert_eq!(m("head").ok(), Some(ProbeMethod::Head));
        assert_eq!(m("Tcp").ok(), Some(ProbeMethod::Tcp));
        assert!(m("POST").is_err());
    }
}
