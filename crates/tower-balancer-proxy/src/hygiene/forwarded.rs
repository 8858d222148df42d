//! `X-Forwarded-*`, RFC 7239 `Forwarded` and `Via`: telling the member who the client is.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;

use super::trusted::canonical;
use super::TrustedProxies;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A forwarding setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardingError {
    /// A trusted-proxy entry is neither an address nor a CIDR block.
    #[error("\"{0}\" is not an IP address or CIDR block (like 10.0.0.0/8 or ::1)")]
    InvalidCidr(String),
    /// The `Via` pseudonym is not a token.
    #[error("\"{0}\" is not a valid Via pseudonym (letters, digits and -._~ only)")]
    InvalidPseudonym(String),
    /// A name to pass is not a header name.
    #[error("\"{0}\" is not a header name such as \"accept-language\"")]
    InvalidHeaderName(String),
    /// A name to pass is one the balancer removes from every untrusted client.
    #[error(
        "\"{0}\" is removed from every client that is not a trusted proxy (it claims an \
         address, a scheme, a certificate, a user or a URL), so it cannot be passed"
    )]
    NeverPassed(String),
}

/// Which forwarding headers the proxy writes, and whom it believes.
///
/// ```
/// use http::HeaderMap;
/// use tower_balancer_proxy::hygiene::{Forwarding, TrustedProxies};
///
/// let fwd = Forwarding::new().trusted(TrustedProxies::parse(["10.0.0.0/8"])?);
/// let mut h = HeaderMap::new();
/// h.insert("x-forwarded-for", "203.0.113.9".parse()?);
/// // from a trusted proxy: its chain is kept and the proxy is appended
/// fwd.apply(&mut h, "10.1.2.3".parse()?, true, Some(&"wso2.com".parse()?));
/// assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.1.2.3");
/// assert_eq!(h["x-forwarded-proto"], "https");
/// assert_eq!(h["x-forwarded-host"], "wso2.com");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    trusted: TrustedProxies,
    x_forwarded: bool,
    forwarded: bool,
    via: Option<String>,
    pass_only: Option<super::PassOnly>,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarding {
    /// `X-Forwarded-For`, `-Proto` and `-Host` on; `Forwarded` and `Via` off; nobody trusted.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            trusted: TrustedProxies::none(),
            x_forwarded: true,
            forwarded: false,
            via: None,
            pass_only: None,
        }
    }

    /// The peers whose forwarding headers are kept.
    #[must_use]
    pub fn trusted(mut self, trusted: TrustedProxies) -> Self {
        self.trusted = trusted;
        self
    }

    /// Writes the `X-Forwarded-*` headers (default on).
    #[must_use]
    pub const fn x_forwarded(mut self, on: bool) -> Self {
        self.x_forwarded = on;
        self
    }

    /// Writes an RFC 7239 `Forwarded` header (default off).
    #[must_use]
    pub const fn forwarded(mut self, on: bool) -> Self {
        self.forwarded = on;
        self
    }

    /// From a client that is not a trusted proxy, passes only the headers `list` names
    /// (and those every request keeps: see [`PassOnly`](super::PassOnly)); default: every
    /// header but those [`is_forwarding_header`](super::is_forwarding_header) names.
    #[must_use]
    pub fn pass_only(mut self, list: super::PassOnly) -> Self {
        self.pass_only = Some(list);
        self
    }

    /// Appends `Via: 1.1 <pseudonym>` (default off).
    ///
    /// # Errors
    /// [`ForwardingError::InvalidPseudonym`] unless it is letters, digits and `-._~`.
    pub fn via(mut self, pseudonym: &str) -> Result<Self, ForwardingError> {
        let ok = !pseudonym.is_empty()
            && pseudonym.len() <= 64
            && pseudonym
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            return Err(ForwardingError::InvalidPseudonym(
                pseudonym.escape_default().to_string(),
            ));
        }
        self.via = Some(pseudonym.to_owned());
        Ok(self)
    }

    /// Writes the forwarding headers for a request from `client` (the direct peer), which came
    /// over TLS or not, with the client's `Host`. Call it after
    /// [`strip_hop_by_hop`](super::strip_hop_by_hop).
    ///
    /// From an untrusted peer every forwarding header it sent is removed first
    /// ([`is_forwarding_header`](super::is_forwarding_header): the `X-Forwarded-*` family,
    /// `Forwarded`, `X-Real-IP`, CDN client-address headers, `X-Original-URL`, in any
    /// spelling with underscores), whether or not ours are written; from a trusted proxy they are kept and ours appended.
    /// `X-Forwarded-For` becomes one field: the incoming chain, kept only when `client` is a
    /// trusted proxy (entries that are not IP addresses are dropped), followed by `client`.
    /// `Forwarded` is handled the same way when enabled. `X-Forwarded-Host` and `Forwarded`'s
    /// `host=` come only from a `host` that [`is_valid_host`](super::is_valid_host) accepts.
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        client: IpAddr,
        tls: bool,
        host: Option<&HeaderValue>,
    ) {
        let host = host.filter(|h| super::is_valid_host(h.as_bytes()));
        self.apply_valid(headers, client, tls, host);
    }

    /// Removes what a client that is not a trusted proxy may not send a member: every
    /// forwarding header, and with [`pass_only`](Self::pass_only) every header not listed.
    pub(crate) fn strip_untrusted(&self, headers: &mut HeaderMap) {
        super::strip_forwarding_headers(headers);
        if let Some(list) = &self.pass_only {
            list.keep_only(headers);
        }
    }

    /// [`apply`](Self::apply) for a `host` the caller has already validated (the forwarder
    /// does, once per request).
    pub(crate) fn apply_valid(
        &self,
        headers: &mut HeaderMap,
        client: IpAddr,
        tls: bool,
        host: Option<&HeaderValue>,
    ) {
        let client = canonical(client);
        let trusted = self.trusted.contains(client);
        let proto = if tls { "https" } else { "http" };
        if !trusted {
            // a client's own claims never pass, even when we write none of ours
            self.strip_untrusted(headers);
        }
        if self.x_forwarded {
            let xff = if trusted {
                let mut chain = String::with_capacity(48);
                for entry in headers
                    .get_all(X_FORWARDED_FOR)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .filter_map(|e| IpAddr::from_str(e.trim()).ok())
                {
                    push_ip(&mut chain, entry);
                    chain.push_str(", ");
                }
                push_ip(&mut chain, client);
                HeaderValue::from_str(&chain).ok()
            } else {
                // the usual case, the client's own address alone
                ip_value(client)
            };
            // `insert` replaces every X-Forwarded-For line the client sent; the value is
            // digits, hex, dots, colons, commas and spaces only
            if let Some(v) = xff {
                headers.insert(X_FORWARDED_FOR, v);
            }
            if !(trusted && headers.contains_key(X_FORWARDED_PROTO)) {
                headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
            }
            if !(trusted && headers.contains_key(X_FORWARDED_HOST)) {
                if trusted {
                    // an untrusted peer's was stripped above with the rest
                    headers.remove(X_FORWARDED_HOST);
                }
                if let Some(h) = host {
                    headers.insert(X_FORWARDED_HOST, h.clone());
                }
            }
        }
        if self.forwarded {
            let node = match client {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("\"[{v6}]\""),
            };
            let mut element = format!("for={node};proto={proto}");
            if let Some(h) = host.and_then(|h| h.to_str().ok()) {
                // a quoted-string: the Host value is already free of control characters
                let _ = write!(element, ";host=\"{}\"", h.replace(['"', '\\'], ""));
            }
            let value = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
                Some(prev) if trusted => format!("{prev}, {element}"),
                _ => element,
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::FORWARDED, v);
            }
        }
        if let Some(p) = &self.via {
            let version = "1.1";
            let value = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
                Some(prev) => format!("{prev}, {version} {p}"),
                None => format!("{version} {p}"),
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::VIA, v);
            }
        }
    }
}

/// An address as a header value, the way `Display` writes it; IPv4 made on the stack, so
/// the value is the one allocation.
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let n = write_v4(&mut buf, v4);
            HeaderValue::from_bytes(&buf[..n]).ok()
        }
        IpAddr::V6(v6) => HeaderValue::from_str(&v6.to_string()).ok(),
    }
}

/// Appends an address the way `Display` writes it; IPv4, the common case on every request,
/// without the formatting machinery (a tenth of its cost).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let n = write_v4(&mut buf, v4);
            // digits and dots
            out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Writes `v4` in dotted decimal into `buf` (15 bytes is the longest); how many it wrote.
fn write_v4(buf: &mut [u8; 15], v4: std::net::Ipv4Addr) -> usize {
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        let mut put = |b: u8| {
            buf[n] = b;
            n += 1;
        };
        if i > 0 {
            put(b'.');
        }
        if octet >= 100 {
            put(b'0' + octet / 100);
        }
        if octet >= 10 {
            put(b'0' + octet / 10 % 10);
        }
        put(b'0' + octet % 10);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hygiene::strip_hop_by_hop;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::7",
        ] {
            let mut s = String::from("x");
            push_ip(&mut s, ip(a));
            assert_eq!(s, format!("x{a}"));
            assert_eq!(ip_value(ip(a)).unwrap(), a);
        }
    }

    proptest::proptest! {
        #[test]
        fn every_ipv4_address_is_written_as_display_writes_it(bits: u32) {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(bits));
            let mut s = String::new();
            push_ip(&mut s, a);
            proptest::prop_assert_eq!(&s, &a.to_string());
            let v = ip_value(a).unwrap();
            proptest::prop_assert_eq!(v.to_str().unwrap(), s);
        }
    }

    #[test]
    fn an_untrusted_client_cannot_forge_its_address() {
        let fwd = Forwarding::new();
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "1.2.3.4".parse().unwrap());
        h.insert(X_FORWARDED_PROTO, "https".parse().unwrap());
        h.insert(X_FORWARDED_HOST, "evil.com".parse().unwrap());
        fwd.apply(
            &mut h,
            ip("198.51.100.7"),
            false,
            Some(&"wso2.com".parse().unwrap()),
        );
        assert_eq!(h[X_FORWARDED_FOR], "198.51.100.7");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "wso2.com");
    }

    #[test]
    fn a_trusted_chain_is_combined_into_one_field_without_junk() {
        let fwd = Forwarding::new().trusted(TrustedProxies::parse(["10.0.0.0/8", "::1"]).unwrap());
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, "203.0.113.9, not-an-ip".parse().unwrap());
        h.append(X_FORWARDED_FOR, "2001:db8::1".parse().unwrap());
        fwd.apply(&mut h, ip("::ffff:10.0.0.5"), true, None);
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.9, 2001:db8::1, 10.0.0.5");
        fwd.apply(&mut h, ip("::1"), true, None);
        assert!(h[X_FORWARDED_FOR].to_str().unwrap().ends_with(", ::1"));
    }

    #[test]
    fn connection_naming_x_forwarded_for_cannot_strip_ours() {
        // CVE-2022-31813 / CVE-2024-45410
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "close, X-Forwarded-For, Authorization".parse().unwrap(),
        );
        h.insert(X_FORWARDED_FOR, "6.6.6.6".parse().unwrap());
        h.insert(header::AUTHORIZATION, "Basic x".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        Forwarding::new().apply(&mut h, ip("198.51.100.7"), true, None);
        assert_eq!(h[X_FORWARDED_FOR], "198.51.100.7");
        assert!(
            h.get(header::AUTHORIZATION).is_none(),
            "declared hop-by-hop by the client"
        );
    }

    #[test]
    fn rfc7239_and_via_are_written_when_asked() {
        let fwd = Forwarding::new().forwarded(true).via("wso2-lb").unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::FORWARDED, "for=6.6.6.6".parse().unwrap());
        h.insert(header::VIA, "1.0 cdn".parse().unwrap());
        fwd.apply(
            &mut h,
            ip("2001:db8::7"),
            true,
            Some(&"wso2.com".parse().unwrap()),
        );
        assert_eq!(
            h[header::FORWARDED],
            "for=\"[2001:db8::7]\";proto=https;host=\"wso2.com\""
        );
        assert_eq!(h[header::VIA], "1.0 cdn, 1.1 wso2-lb");
    }

    #[test]
    fn an_untrusted_forwarded_header_is_removed_even_when_ours_is_off() {
        let mut h = HeaderMap::new();
        h.insert(header::FORWARDED, "for=1.2.3.4".parse().unwrap());
        h.insert("x-real-ip", "1.2.3.4".parse().unwrap());
        Forwarding::new().apply(&mut h, ip("198.51.100.7"), false, None);
        assert!(h.get(header::FORWARDED).is_none());
        assert!(h.get("x-real-ip").is_none());
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, "1.2.3.4".parse().unwrap());
        h.insert(X_FORWARDED_PROTO, "https".parse().unwrap());
        Forwarding::new()
            .x_forwarded(false)
            .apply(&mut h, ip("198.51.100.7"), false, None);
        assert!(h.is_empty(), "{h:?}");
        // a trusted proxy's Forwarded is kept and ours appended
        let fwd = Forwarding::new()
            .forwarded(true)
            .trusted(TrustedProxies::parse(["10.0.0.0/8"]).unwrap());
        let mut h = HeaderMap::new();
        h.insert(header::FORWARDED, "for=203.0.113.9".parse().unwrap());
        fwd.apply(&mut h, ip("10.0.0.2"), false, None);
        assert_eq!(
            h[header::FORWARDED],
            "for=203.0.113.9, for=10.0.0.2;proto=http"
        );
    }

    #[test]
    fn an_invalid_host_never_becomes_x_forwarded_host() {
        let mut h = HeaderMap::new();
        Forwarding::new().forwarded(true).apply(
            &mut h,
            ip("198.51.100.7"),
            false,
            Some(&"lb.test@evil.test".parse().unwrap()),
        );
        assert!(h.get(X_FORWARDED_HOST).is_none());
        assert_eq!(h[header::FORWARDED], "for=198.51.100.7;proto=http");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(["example.com"]).is_err());
        assert!(Forwarding::new().via("a b").is_err());
        assert!(Forwarding::new().via("x\r\nY: z").is_err());
    }
}
