//! How single values in the file are read: durations, timeouts, fractions, URLs, statuses.
//! Each reader refuses a bad value with a message that names it, and `toml` adds the line.

use std::net::SocketAddr;
use std::time::Duration;

use http::{StatusCode, Uri};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// `"5s"`, `"250ms"`, `"1m 30s"`.
/// The longest duration any key takes: a year (longer cannot be meant, and a time that far
/// ahead overflows the clock).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let t = humantime::parse_duration(&s)
        .map_err(|e| de::Error::custom(format!("`{s}` is not a duration such as \"5s\": {e}")))?;
    if t > MAX_DURATION {
        return Err(de::Error::custom(format!(
            "`{s}` is longer than a year, the most any duration may be"
        )));
    }
    Ok(t)
}

pub(super) fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

pub(super) fn uri<'de, D: Deserializer<'de>>(d: D) -> Result<Uri, D::Error> {
    let s = String::deserialize(d)?;
    let u: Uri = s
        .parse()
        .map_err(|e| de::Error::custom(format!("`{s}` is not a URL: {e}")))?;
    if let Some(problem) = tower_balancer::registry::MemberSpec::endpoint_problem(&u) {
        return Err(de::Error::custom(format!("`{s}` {problem}")));
    }
    Ok(u)
}

pub(super) fn uri_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uri>, D::Error> {
    uri(d).map(Some)
}

pub(super) fn statuses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<StatusCode>, D::Error> {
    Vec::<u16>::deserialize(d)?
        .into_iter()
        .map(|n| {
            StatusCode::from_u16(n)
                .ok()
                .filter(|s| s.is_server_error() || s.is_client_error())
                .ok_or_else(|| de::Error::custom(format!("{n} is not a 4xx or 5xx status")))
        })
        .collect()
}

pub(super) fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let f = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(de::Error::custom(format!(
            "{f} is not a fraction from 0.0 to 1.0"
        )))
    }
}

pub(super) fn fraction_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    fraction(d).map(Some)
}

/// A timeout or interval: a duration above zero (zero would fail, or repeat, at once).
pub(super) fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let t = duration(d)?;
    if t.is_zero() {
        return Err(de::Error::custom("a timeout must be longer than 0 s"));
    }
    Ok(t)
}

pub(super) fn timeout_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    timeout(d).map(Some)
}

/// A count of at least 1.
pub(super) fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(de::Error::custom("must be at least 1"));
    }
    Ok(n)
}

pub(super) fn positive_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(de::Error::custom("must be at least 1"));
    }
    Ok(Some(n))
}

/// A per-connection HTTP/2 count (`http2_max_streams`, `http2_max_uploads`): at least 1,
/// and at most what HTTP/2's settings hold (32 bits). A larger one was cut to that silently,
/// which is no limit at all.
pub(super) fn h2_count_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = u64::deserialize(d)?;
    match u32::try_from(n) {
        Ok(0) => Err(de::Error::custom("must be at least 1")),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(de::Error::custom(format!(
            "{n} is over {}, the most an HTTP/2 setting holds",
            u32::MAX
        ))),
    }
}

/// Header bytes: hyper reads no less than 8 KiB.
pub(super) fn header_bytes_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = usize::deserialize(d)?;
    if n < 8192 {
        return Err(de::Error::custom(format!(
            "{n} is below 8192, the least the HTTP parser reads"
        )));
    }
    Ok(Some(n))
}

/// A path and query on a member: `/`, `/health`, `/status?full`.
pub(super) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.starts_with('/') || http::uri::PathAndQuery::try_from(s.as_str()).is_err() {
        return Err(de::Error::custom(format!(
            "`{s}` is not a path such as \"/health\" (it starts with / and has no spaces)"
        )));
    }
    Ok(s)
}

/// Upgrade protocol names: tokens, never `h2c`.
pub(super) fn upgrades_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    for p in &list {
        let token = !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
        if !token {
            return Err(de::Error::custom(format!(
                "`{}` is not a protocol name such as \"websocket\"",
                p.escape_default()
            )));
        }
        if p.split('/')
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case("h2c"))
        {
            return Err(de::Error::custom(
                "h2c is never forwarded: a member that switched to it would get the rest of \
                 the connection unchecked",
            ));
        }
    }
    Ok(Some(list))
}

/// A host name with an optional port, as clients send it in `Host`.
pub(super) fn host_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !crate::hygiene::is_valid_host(s.as_bytes()) {
        return Err(de::Error::custom(format!(
            "`{}` is not a host name such as \"wso2.com\" (an optional :port, no path)",
            s.escape_default()
        )));
    }
    Ok(s)
}

/// Any text but none.
pub(super) fn non_empty_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom(
            "must not be empty (leave the key out instead)",
        ));
    }
    Ok(Some(s))
}

/// A balancer's name: what `balancer://name` allows.
pub(super) fn balancer_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
    if !ok {
        return Err(de::Error::custom(format!(
            "`{}` is not a balancer name such as \"wso2isbalancer\" (letters, digits, . _ ~ -)",
            s.escape_default()
        )));
    }
    Ok(s)
}

/// An IP address and port: `127.0.0.1:8443`, `[::1]:8443`.
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_socket_addr(&s).map_err(de::Error::custom)
}

/// A list of IP addresses and ports.
pub(super) fn socket_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_socket_addr(s).map_err(de::Error::custom))
        .collect()
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "`{}` is not an IP address and port such as \"127.0.0.1:8443\" or \"[::1]:8443\" (host names such as localhost are not looked up here; ports go up to 65535)",
            s.escape_default()
        )
    })
}

/// A port other than 0.
pub(super) fn port_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let n = i64::deserialize(d)?;
    u16::try_from(n)
        .ok()
        .filter(|&p| p != 0)
        .map(Some)
        .ok_or_else(|| de::Error::custom(format!("{n} is not a port from 1 to 65535")))
}

/// Retries after the first attempt: the failover layer takes at most 15.
pub(super) fn max_retries<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = i64::deserialize(d)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= 15)
        .map(Some)
        .ok_or_else(|| de::Error::custom(format!("{n} is not a number of retries from 0 to 15")))
}

/// How often a member is probed: at least 100 ms, so a typo cannot flood members.
pub(super) fn probe_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let t = duration(d)?;
    if t < Duration::from_millis(100) {
        return Err(de::Error::custom(format!(
            "{t:?} is shorter than 100ms, the shortest probe interval"
        )));
    }
    Ok(t)
}

/// Host names (no port).
pub(super) fn host_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    for n in &list {
        let ip = n.parse::<std::net::IpAddr>().is_ok()
            || n.strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok());
        let name = !n.contains(':') && crate::hygiene::is_valid_host(n.as_bytes());
        if !ip && !name {
            return Err(de::Error::custom(format!(
                "`{}` is not a host name such as \"lb.internal\" (no port, no path)",
                n.escape_default()
            )));
        }
    }
    Ok(list)
}

/// A member's weight: 1 to [`MAX_WEIGHT`](tower_balancer::registry::MAX_WEIGHT).
pub(super) fn weight<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    let max = tower_balancer::registry::MAX_WEIGHT;
    if n == 0 || n > max {
        return Err(de::Error::custom(format!(
            "loadfactor {n} is not between 1 and {max}"
        )));
    }
    Ok(n)
}

/// A request header's name.
pub(super) fn header_name_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<http::HeaderName>, D::Error> {
    let s = String::deserialize(d)?;
    http::HeaderName::from_bytes(s.as_bytes())
        .map(Some)
        .map_err(|_| {
            de::Error::custom(format!(
                "`{}` is not a header name such as \"x-user\"",
                s.escape_default()
            ))
        })
}

/// Addresses and CIDR blocks; a warning when one of them trusts every address.
pub(super) fn trusted_proxies<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<crate::hygiene::TrustedProxies, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    crate::hygiene::TrustedProxies::parse(&list).map_err(de::Error::custom)
}

/// Header names to pass from untrusted clients: each a header name, none the balancer
/// removes from them anyway.
pub(super) fn pass_headers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::hygiene::PassOnly>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    crate::hygiene::PassOnly::new(&list)
        .map(Some)
        .map_err(de::Error::custom)
}

/// `cookie_key_files`: at least one file. An empty list would sign cookies with a key made
/// for this process, which other instances (and the next start) do not know.
pub(super) fn key_files<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<toml::Spanned<std::path::PathBuf>>, D::Error> {
    let files = Vec::<toml::Spanned<std::path::PathBuf>>::deserialize(d)?;
    if files.is_empty() {
        return Err(de::Error::custom(
            "an empty list: name at least one key file (head -c 32 /dev/urandom > cookie.key), \
             or leave the key out",
        ));
    }
    Ok(files)
}
