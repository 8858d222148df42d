//! Reverse rewriting of response headers (Apache `ProxyPassReverse`,
//! `ProxyPassReverseCookieDomain`, `ProxyPassReverseCookiePath`).
//!
//! Why: a member that redirects to its own address (`Location: https://abc.com:9443/carbon/`)
//! sends the browser around the balancer, to a host name the user cannot reach or must not
//! use, and breaks the session. Apache's `ProxyPassReverse` on a balancer matches every member;
//! so does [`ReverseRewrite`], against the members registered when the response arrives.

use std::sync::Arc;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Uri};
use tower_balancer::registry::Member;

/// The response headers that carry URLs to rewrite.
static URL_HEADERS: [HeaderName; 3] = [
    header::LOCATION,
    header::CONTENT_LOCATION,
    HeaderName::from_static("uri"),
];

/// A base URL compared by scheme, host (case-insensitive) and effective port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Base {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl Base {
    fn of(uri: &Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let path = uri.path().trim_end_matches('/').to_owned();
        Some(Self {
            scheme,
            host,
            port,
            path,
        })
    }

    fn render(&self) -> String {
        let default = (self.scheme == "https" && self.port == 443)
            || (self.scheme == "http" && self.port == 80);
        let host = if self.host.contains(':') {
            format!(
                "[{}]",
                self.host.trim_start_matches('[').trim_end_matches(']')
            )
        } else {
            self.host.clone()
        };
        if default {
            format!("{}://{host}{}", self.scheme, self.path)
        } else {
            format!("{}://{host}:{}{}", self.scheme, self.port, self.path)
        }
    }
}

/// Rewrites member URLs and member cookie domains and paths in responses to the balancer's
/// public ones.
///
/// ```
/// use http::HeaderMap;
/// use tower_balancer_proxy::rewrite::ReverseRewrite;
///
/// let rewrite = ReverseRewrite::new(&"https://wso2.com".parse()?)
///     .cookie_domain("abc.com", "wso2.com");
/// let members = ["https://abc.com:9443".parse()?, "https://xyz.com:9444".parse()?];
/// let mut h = HeaderMap::new();
/// h.insert("location", "https://xyz.com:9444/carbon/admin/login.jsp?x=1".parse()?);
/// h.insert("set-cookie", "JSESSIONID=ABC.node1; Domain=abc.com; Path=/; Secure".parse()?);
/// rewrite.apply(&mut h, members.iter());
/// assert_eq!(h["location"], "https://wso2.com/carbon/admin/login.jsp?x=1");
/// assert_eq!(h["set-cookie"], "JSESSIONID=ABC.node1; Domain=wso2.com; Path=/; Secure");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseRewrite {
    public: Base,
    cookie_domains: Vec<(String, String)>,
    cookie_paths: Vec<(String, String)>,
}

/// The public URL given to [`ReverseRewrite::new`] has no scheme or host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the public URL needs a scheme and a host, like https://wso2.com")]
pub struct InvalidPublicUrl;

impl ReverseRewrite {
    /// Rewrites to `public` (scheme, host, optional port and path prefix). A URL without a
    /// scheme or host rewrites nothing; [`try_new`](Self::try_new) reports it instead.
    #[must_use]
    pub fn new(public: &Uri) -> Self {
        Self::try_new(public).unwrap_or(Self {
            public: Base {
                scheme: String::new(),
                host: String::new(),
                port: 0,
                path: String::new(),
            },
            cookie_domains: Vec::new(),
            cookie_paths: Vec::new(),
        })
    }

    /// Rewrites to `public`.
    ///
    /// # Errors
    /// [`InvalidPublicUrl`] without a scheme or host.
    pub fn try_new(public: &Uri) -> Result<Self, InvalidPublicUrl> {
        Ok(Self {
            public: Base::of(public).ok_or(InvalidPublicUrl)?,
            cookie_domains: Vec::new(),
            cookie_paths: Vec::new(),
        })
    }

    /// Rewrites `Set-Cookie` `Domain=from` to `Domain=to` (case-insensitive, a leading dot
    /// ignored).
    #[must_use]
    pub fn cookie_domain(mut self, from: &str, to: &str) -> Self {
        self.cookie_domains.push((
            from.trim_start_matches('.').to_ascii_lowercase(),
            to.to_owned(),
        ));
        self
    }

    /// Rewrites `Set-Cookie` `Path=` values starting with `from` to start with `to`.
    #[must_use]
    pub fn cookie_path(mut self, from: &str, to: &str) -> Self {
        self.cookie_paths.push((from.to_owned(), to.to_owned()));
        self
    }

    /// The rewritten URL, if `value` starts with one of the members' base URLs.
    #[must_use]
    pub fn rewrite_url<'m>(
        &self,
        value: &str,
        members: impl IntoIterator<Item = &'m Uri>,
    ) -> Option<String> {
        self.rewrite_url_named(value, members.into_iter().map(|m| (m, None)))
    }

    /// As [`rewrite_url`](Self::rewrite_url), for members given with their TLS names: a
    /// member addressed by IP under a name is sent that name as `Host`, so it redirects to
    /// the name; either host matches.
    fn rewrite_url_named<'m>(
        &self,
        value: &str,
        members: impl IntoIterator<Item = (&'m Uri, Option<&'m str>)>,
    ) -> Option<String> {
        if self.public.host.is_empty() {
            return None;
        }
        let target: Uri = value.parse().ok()?;
        let found = Base::of(&target)?;
        let path_and_query = target.path_and_query().map_or("", |p| p.as_str());
        for (m, name) in members {
            let Some(member) = Base::of(m) else { continue };
            let host_matches = member.host == found.host
                || name.is_some_and(|n| n.eq_ignore_ascii_case(&found.host));
            if member.scheme != found.scheme || !host_matches || member.port != found.port {
                continue;
            }
            // the member's path prefix must end at a segment boundary
            let Some(rest) = path_and_query.strip_prefix(member.path.as_str()) else {
                continue;
            };
            if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
                continue;
            }
            let rest = if rest.is_empty() { "/" } else { rest };
            return Some(format!("{}{rest}", self.public.render()));
        }
        None
    }

    /// Rewrites one `Set-Cookie` value's `Domain` and `Path` attributes.
    #[must_use]
    pub fn rewrite_set_cookie(&self, value: &str) -> Option<String> {
        if self.cookie_domains.is_empty() && self.cookie_paths.is_empty() {
            return None;
        }
        let mut changed = false;
        let parts: Vec<String> = value
            .split(';')
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    return part.to_owned(); // name=value, never touched
                }
                let attr = part.trim();
                let Some((name, v)) = attr.split_once('=') else {
                    return part.to_owned();
                };
                if name.trim().eq_ignore_ascii_case("domain") {
                    let v_norm = v.trim().trim_start_matches('.').to_ascii_lowercase();
                    if let Some((_, to)) =
                        self.cookie_domains.iter().find(|(from, _)| *from == v_norm)
                    {
                        changed = true;
                        return format!(" Domain={to}");
                    }
                } else if name.trim().eq_ignore_ascii_case("path") {
                    if let Some((from, to)) = self
                        .cookie_paths
                        .iter()
                        .find(|(from, _)| v.trim().starts_with(from.as_str()))
                    {
                        changed = true;
                        return format!(" Path={to}{}", &v.trim()[from.len()..]);
                    }
                }
                part.to_owned()
            })
            .collect();
        changed.then(|| parts.join(";"))
    }

    /// Rewrites `Location`, `Content-Location`, `URI` and every `Set-Cookie` in `headers`.
    /// Values that would not be valid header values are left as they were.
    // the member iterator is cheap and is cloned once per URL header
    #[allow(clippy::needless_pass_by_value)]
    pub fn apply<'m>(
        &self,
        headers: &mut HeaderMap,
        members: impl IntoIterator<Item = &'m Uri> + Clone,
    ) {
        self.apply_named(headers, || members.clone().into_iter().map(|m| (m, None)));
    }

    /// As [`apply`](Self::apply), over the registry's members with their TLS names.
    pub(crate) fn apply_to_members(&self, headers: &mut HeaderMap, members: &[Arc<Member>]) {
        self.apply_named(headers, || {
            members.iter().map(|m| (m.endpoint(), m.tls_name()))
        });
    }

    fn apply_named<'m, I>(&self, headers: &mut HeaderMap, members: impl Fn() -> I)
    where
        I: Iterator<Item = (&'m Uri, Option<&'m str>)>,
    {
        // one pass over the few names an answer has costs less than a hashed lookup for
        // each of the URL fields, which most answers (every 200) do not carry
        let urls = headers.keys().any(|k| URL_HEADERS.contains(k));
        for name in URL_HEADERS.iter().filter(|_| urls) {
            let new = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| self.rewrite_url_named(v, members()))
                .and_then(|v| HeaderValue::from_str(&v).ok());
            if let Some(v) = new {
                headers.insert(name.clone(), v);
            }
        }
        if self.cookie_domains.is_empty() && self.cookie_paths.is_empty() {
            return;
        }
        if let header::Entry::Occupied(mut cookies) = headers.entry(header::SET_COOKIE) {
            for v in cookies.iter_mut() {
                let new = v
                    .to_str()
                    .ok()
                    .and_then(|s| self.rewrite_set_cookie(s))
                    .and_then(|s| HeaderValue::from_str(&s).ok());
                if let Some(new) = new {
                    *v = new;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Uri> {
        vec![
            "https://abc.com:9443".parse().unwrap(),
            "https://xyz.com:9444/app".parse().unwrap(),
        ]
    }

    #[test]
    fn any_members_url_becomes_the_public_one() {
        let r = ReverseRewrite::new(&"https://wso2.com".parse().unwrap());
        let m = members();
        assert_eq!(
            r.rewrite_url("https://abc.com:9443/carbon/", &m).unwrap(),
            "https://wso2.com/carbon/"
        );
        assert_eq!(
            r.rewrite_url("https://ABC.com:9443", &m).unwrap(),
            "https://wso2.com/"
        );
        assert_eq!(
            r.rewrite_url("https://xyz.com:9444/app/x?y=1", &m).unwrap(),
            "https://wso2.com/x?y=1"
        );
        // not a member, other port, or a path that only shares a prefix: untouched
        assert_eq!(r.rewrite_url("https://evil.com/carbon/", &m), None);
        assert_eq!(r.rewrite_url("https://abc.com:9444/", &m), None);
        assert_eq!(r.rewrite_url("https://xyz.com:9444/application", &m), None);
        assert_eq!(r.rewrite_url("/relative/path", &m), None);
    }

    #[test]
    fn a_member_with_a_tls_name_is_matched_by_that_name_too() {
        let r = ReverseRewrite::new(&"https://wso2.com".parse().unwrap());
        let ip: Uri = "https://10.0.0.1:9443".parse().unwrap();
        let named = [(&ip, Some("is.test"))];
        for from in [
            "https://is.test:9443/carbon/",
            "https://10.0.0.1:9443/carbon/",
        ] {
            assert_eq!(
                r.rewrite_url_named(from, named).as_deref(),
                Some("https://wso2.com/carbon/"),
                "{from}"
            );
        }
        // the name on another port, or without the member knowing it: untouched
        assert_eq!(r.rewrite_url_named("https://is.test:9444/", named), None);
        assert_eq!(r.rewrite_url("https://is.test:9443/", [&ip]), None);
    }

    #[test]
    fn default_ports_compare_equal_and_a_public_path_prefix_is_kept() {
        let r = ReverseRewrite::new(&"https://lb.example:8443/is".parse().unwrap());
        let m: Vec<Uri> = vec!["https://node1.internal".parse().unwrap()];
        assert_eq!(
            r.rewrite_url("https://node1.internal:443/a", &m).unwrap(),
            "https://lb.example:8443/is/a"
        );
    }

    #[test]
    fn cookie_domain_and_path_are_rewritten_and_other_attributes_kept() {
        let r = ReverseRewrite::new(&"https://wso2.com".parse().unwrap())
            .cookie_domain(".abc.com", "wso2.com")
            .cookie_path("/carbon", "/is/carbon");
        let out = r
            .rewrite_set_cookie(
                "JSESSIONID=X; Path=/carbon/admin; Domain=.ABC.com; HttpOnly; Priority=High",
            )
            .unwrap();
        assert_eq!(
            out,
            "JSESSIONID=X; Path=/is/carbon/admin; Domain=wso2.com; HttpOnly; Priority=High"
        );
        assert_eq!(r.rewrite_set_cookie("a=b; Domain=other.com"), None);
    }

    #[test]
    fn headers_are_rewritten_in_place() {
        let r = ReverseRewrite::new(&"https://wso2.com".parse().unwrap())
            .cookie_domain("abc.com", "wso2.com");
        let m = members();
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_LOCATION,
            "https://abc.com:9443/x".parse().unwrap(),
        );
        h.append(header::SET_COOKIE, "a=1; Domain=abc.com".parse().unwrap());
        h.append(header::SET_COOKIE, "b=2".parse().unwrap());
        r.apply(&mut h, m.iter());
        assert_eq!(h[header::CONTENT_LOCATION], "https://wso2.com/x");
        let cookies: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; Domain=wso2.com", "b=2"]);
    }
}
