//! Sticky-session settings, checked once when built.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cookie::{Cookie, SameSite};

use super::token::{KeyError, RouteCodec, RouteKeys};

/// A sticky setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StickyConfigError {
    /// A cookie or parameter name is not an RFC 6265 token.
    #[error(
        "\"{0}\" is not a valid cookie or parameter name (use letters, digits and !#$%&'*+-.^_`|~)"
    )]
    InvalidName(String),
    /// The cookie path holds `;`, a control character or a non-ASCII byte.
    #[error("invalid cookie path \"{0}\"")]
    InvalidPath(String),
    /// The cookie domain is not a host name.
    #[error("invalid cookie domain \"{0}\"")]
    InvalidDomain(String),
    /// More application session cookies than the sticky layer looks for.
    #[error("at most {max} session cookie names are supported, {given} were given", max = super::route::MAX_COOKIE_NAMES - 1)]
    TooManySessionCookies {
        /// How many were given.
        given: usize,
    },
    /// The signing keys were refused.
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// What the balancer's own cookie carries.
#[derive(Debug, Clone)]
pub enum CookieMode {
    /// An opaque HMAC token of the member id (the default, with a per-process random key
    /// unless keys are configured).
    Signed(RouteKeys),
    /// Apache's ROUTEID recipe: `.node1` in clear, for compatibility with an Apache
    /// front end during a migration.
    Plain,
}

/// Attributes of the balancer's cookie.
#[derive(Debug, Clone)]
pub struct CookieAttributes {
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) secure: Option<bool>,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) max_age: Option<Duration>,
}

impl Default for CookieAttributes {
    fn default() -> Self {
        Self {
            path: "/".into(),
            domain: None,
            secure: None,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: None,
        }
    }
}

/// How the sticky layer finds and writes routes. Build with [`StickyConfig::builder`].
#[derive(Clone)]
pub struct StickyConfig {
    pub(crate) cookie_name: String,
    pub(crate) session_cookies: Vec<String>,
    pub(crate) url_params: Vec<String>,
    pub(crate) separator: Option<char>,
    pub(crate) codec: Arc<RouteCodec>,
    pub(crate) accept_apache_form: bool,
    pub(crate) strict: bool,
    pub(crate) attrs: CookieAttributes,
}

impl std::fmt::Debug for StickyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyConfig")
            .field("cookie_name", &self.cookie_name)
            .field("session_cookies", &self.session_cookies)
            .field("url_params", &self.url_params)
            .field("separator", &self.separator)
            .field("signed", &self.codec.is_signed())
            .field("accept_apache_form", &self.accept_apache_form)
            .field("strict", &self.strict)
            .field("attrs", &self.attrs)
            .finish()
    }
}

/// Builds a [`StickyConfig`]; every setter is checked in [`build`](StickyConfigBuilder::build).
#[derive(Debug, Clone)]
pub struct StickyConfigBuilder {
    cookie_name: String,
    session_cookies: Vec<String>,
    url_params: Vec<String>,
    separator: Option<char>,
    mode: Option<CookieMode>,
    accept_apache_form: bool,
    strict: bool,
    attrs: CookieAttributes,
}

impl StickyConfig {
    /// Defaults: cookie `ROUTEID` (signed, per-process key), routes also from the
    /// `JSESSIONID` cookie's suffix after `.` and from `;jsessionid=` / `?jsessionid=`,
    /// Apache's `.node1` cookie form accepted, fall back to the strategy when the pinned
    /// member cannot serve; cookie `Path=/; HttpOnly; SameSite=Lax`, `Secure` over TLS.
    #[must_use]
    pub fn builder() -> StickyConfigBuilder {
        StickyConfigBuilder {
            cookie_name: "ROUTEID".into(),
            session_cookies: vec!["JSESSIONID".into()],
            url_params: vec!["jsessionid".into()],
            separator: Some('.'),
            mode: None,
            accept_apache_form: true,
            strict: false,
            attrs: CookieAttributes::default(),
        }
    }

    /// The balancer's own route cookie.
    #[must_use]
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The application's session cookies whose values end in `.route`.
    #[must_use]
    pub fn session_cookies(&self) -> &[String] {
        &self.session_cookies
    }

    /// The URL parameters whose values end in `.route`.
    #[must_use]
    pub fn url_params(&self) -> &[String] {
        &self.url_params
    }

    /// Whether the route cookie is an HMAC token (else Apache's clear `.route`).
    #[must_use]
    pub fn is_signed(&self) -> bool {
        self.codec.is_signed()
    }

    /// Whether a session whose member cannot serve gets 503 instead of another member.
    #[must_use]
    pub const fn is_strict(&self) -> bool {
        self.strict
    }
}

/// Writes a `Set-Cookie` value from checked parts.
fn format_set_cookie(name: &str, value: &str, a: &CookieAttributes, tls: bool) -> String {
    let mut c = Cookie::build((name, value))
        .path(a.path.as_str())
        .http_only(a.http_only)
        .same_site(a.same_site)
        .secure(a.secure.unwrap_or(tls));
    if let Some(d) = &a.domain {
        c = c.domain(d.as_str());
    }
    if let Some(age) = a.max_age {
        let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    let mut out = String::with_capacity(96);
    let _ = write!(out, "{}", c.build());
    out
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl StickyConfigBuilder {
    /// The balancer's cookie name (default `ROUTEID`).
    #[must_use]
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Application session cookies whose value ends in a route (default `JSESSIONID`); an
    /// empty list turns this source off.
    #[must_use]
    pub fn session_cookies<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.session_cookies = names.into_iter().map(Into::into).collect();
        self
    }

    /// URL path and query parameters whose value ends in a route (default `jsessionid`).
    #[must_use]
    pub fn url_params<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.url_params = names.into_iter().map(Into::into).collect();
        self
    }

    /// The character before the route in a session id (default `.`); `None` takes the
    /// whole value as the route. Like Apache, the route is everything after the first one.
    #[must_use]
    pub const fn separator(mut self, separator: Option<char>) -> Self {
        self.separator = separator;
        self
    }

    /// Signs cookies with these keys (the first signs, all are accepted).
    #[must_use]
    pub fn signed(mut self, keys: RouteKeys) -> Self {
        self.mode = Some(CookieMode::Signed(keys));
        self
    }

    /// Writes Apache's clear `.route` cookie instead of a signed token.
    #[must_use]
    pub fn plain(mut self) -> Self {
        self.mode = Some(CookieMode::Plain);
        self
    }

    /// Whether a signed-mode balancer also accepts Apache's `.node1` cookie value (default
    /// yes, so sessions survive a move from Apache; turn off to accept only signed tokens).
    #[must_use]
    pub const fn accept_apache_form(mut self, accept: bool) -> Self {
        self.accept_apache_form = accept;
        self
    }

    /// Answer 503 instead of re-balancing when the pinned member cannot serve (Apache
    /// `nofailover=On`).
    #[must_use]
    pub const fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Cookie `Path` (default `/`).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.attrs.path = path.into();
        self
    }

    /// Cookie `Domain` (default none: the host that answered).
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.attrs.domain = Some(domain.into());
        self
    }

    /// Cookie `Secure`: `Some(true|false)` forces it; `None` (default) sets it when the
    /// request came over TLS.
    #[must_use]
    pub const fn secure(mut self, secure: Option<bool>) -> Self {
        self.attrs.secure = secure;
        self
    }

    /// Cookie `HttpOnly` (default on).
    #[must_use]
    pub const fn http_only(mut self, on: bool) -> Self {
        self.attrs.http_only = on;
        self
    }

    /// Cookie `SameSite` (default `Lax`).
    #[must_use]
    pub const fn same_site(mut self, same_site: SameSite) -> Self {
        self.attrs.same_site = same_site;
        self
    }

    /// Cookie `Max-Age` (default none: a session cookie).
    #[must_use]
    pub const fn max_age(mut self, age: Option<Duration>) -> Self {
        self.attrs.max_age = age;
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`StickyConfigError`] naming the first setting that would let a header split or a
    /// cookie be misread.
    pub fn build(self) -> Result<StickyConfig, StickyConfigError> {
        for name in std::iter::once(&self.cookie_name)
            .chain(&self.session_cookies)
            .chain(&self.url_params)
        {
            if !is_token(name) {
                return Err(StickyConfigError::InvalidName(
                    name.escape_default().to_string(),
                ));
            }
        }
        if self.session_cookies.len() > super::route::MAX_COOKIE_NAMES - 1 {
            return Err(StickyConfigError::TooManySessionCookies {
                given: self.session_cookies.len(),
            });
        }
        let path = &self.attrs.path;
        if !path.starts_with('/')
            || path
                .bytes()
                .any(|b| b == b';' || !(0x20..0x7f).contains(&b))
        {
            return Err(StickyConfigError::InvalidPath(
                path.escape_default().to_string(),
            ));
        }
        if let Some(d) = &self.attrs.domain {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err(StickyConfigError::InvalidDomain(
                    d.escape_default().to_string(),
                ));
            }
        }
        let keys = match self.mode {
            Some(CookieMode::Plain) => None,
            Some(CookieMode::Signed(keys)) => Some(keys),
            None => Some(RouteKeys::random()?),
        };
        let (name, attrs) = (self.cookie_name.clone(), self.attrs.clone());
        let codec = Arc::new(RouteCodec::new(keys, move |value, tls| {
            format_set_cookie(&name, value, &attrs, tls)
        }));
        Ok(StickyConfig {
            cookie_name: self.cookie_name,
            session_cookies: self.session_cookies,
            url_params: self.url_params,
            separator: self.separator,
            codec,
            accept_apache_form: self.accept_apache_form,
            strict: self.strict,
            attrs: self.attrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_domains_that_could_split_a_header_are_refused() {
        let b = StickyConfig::builder;
        assert!(b().cookie_name("ROUTE ID").build().is_err());
        assert!(b().cookie_name("R\r\nX: y").build().is_err());
        assert!(b().session_cookies(["JSESSION;ID"]).build().is_err());
        assert!(b().url_params([""]).build().is_err());
        assert!(b().path("/a;b").build().is_err());
        assert!(b().path("/a\nb").build().is_err());
        assert!(b().path("relative").build().is_err());
        assert!(b().domain("evil.com; Secure").build().is_err());
        assert!(b().domain("wso2.com").path("/carbon").build().is_ok());
    }
}
