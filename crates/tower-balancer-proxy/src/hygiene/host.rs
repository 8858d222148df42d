//! Which `Host` values a request may carry.
//!
//! Why strict: `Host` is copied into `X-Forwarded-Host`, sent to members with
//! `preserve_host`, and used by members to build absolute URLs (password-reset links,
//! redirects). A value with userinfo (`lb.test@evil.test`), a port that is not one
//! (`lb.test:abc`, `lb.test:99999`) or stray characters reads differently at each hop; the
//! parser in front of them all refuses it instead, as nginx does with 400.

/// The bytes a host name may hold: letters, digits and `-._~` (RFC 3986 unreserved), one
/// lookup a byte: the name is checked on every request, twice.
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    t
};

/// Whether `value` is an RFC 3986 host with an optional port: a name of letters, digits and
/// `-._~` (at most 255 bytes), an IPv4 address, or an IPv6 address in brackets; then
/// nothing, or `:` and a port from 1 to 65535. No userinfo, no percent-encoding, no empty
/// host or port.
///
/// ```
/// use tower_balancer_proxy::hygiene::is_valid_host;
///
/// assert!(is_valid_host(b"wso2.com"));
/// assert!(is_valid_host(b"wso2.com:8443"));
/// assert!(is_valid_host(b"[::1]:8443"));
/// assert!(!is_valid_host(b"lb.test@evil.test"));
/// assert!(!is_valid_host(b"lb.test:abc"));
/// assert!(!is_valid_host(b"lb.test:99999"));
/// ```
#[must_use]
pub fn is_valid_host(value: &[u8]) -> bool {
    let port = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &rest[..end];
        let ok = std::str::from_utf8(inside)
            .ok()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
            .is_some();
        if !ok {
            return false;
        }
        &rest[end + 1..]
    } else {
        // one pass over the name up to its port: every request's Host is checked twice
        let end = value
            .iter()
            .position(|&b| !NAME_BYTE[usize::from(b)])
            .unwrap_or(value.len());
        if end == 0 || end > 255 {
            return false;
        }
        &value[end..]
    };
    match port {
        [] => true,
        [b':', digits @ ..] if !digits.is_empty() && digits.len() <= 5 => digits
            .iter()
            .try_fold(0u32, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
            })
            .is_some_and(|n| (1..=65535).contains(&n)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_and_ports_pass() {
        for ok in [
            "wso2.com",
            "wso2.com:1",
            "wso2.com:65535",
            "127.0.0.1:8443",
            "[::1]",
            "[2001:db8::7]:443",
            "node_1.internal",
            "localhost",
        ] {
            assert!(is_valid_host(ok.as_bytes()), "{ok}");
        }
    }

    #[test]
    fn userinfo_bad_ports_and_stray_bytes_are_refused() {
        for bad in [
            "",
            ":80",
            "lb.test@evil.test",
            "user:pw@lb.test",
            "lb.test:abc",
            "lb.test:99999",
            "lb.test:0",
            "lb.test:",
            "lb.test:80:80",
            "lb.test/x",
            "lb.test x",
            "lb.test%2e",
            "[::1",
            "[not-v6]",
            "[::1]x",
            "[::1]:",
            "a\"b",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad:?}");
        }
        assert!(!is_valid_host(&[b'a'; 256]));
    }

    /// The check as first written, with the standard library's parsers, for agreement.
    fn as_first_written(value: &[u8]) -> bool {
        let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let ok = std::str::from_utf8(&rest[..end])
                .ok()
                .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
                .is_some();
            if !ok {
                return false;
            }
            (None, &rest[end + 1..])
        } else {
            match value.iter().position(|&b| b == b':') {
                Some(i) => (Some(&value[..i]), &value[i..]),
                None => (Some(value), &value[value.len()..]),
            }
        };
        if let Some(name) = host {
            let ok = !name.is_empty()
                && name.len() <= 255
                && name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            if !ok {
                return false;
            }
        }
        match port {
            [] => true,
            [b':', digits @ ..] => {
                !digits.is_empty()
                    && digits.len() <= 5
                    && std::str::from_utf8(digits)
                        .ok()
                        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|d| d.parse::<u32>().ok())
                        .is_some_and(|p| (1..=65535).contains(&p))
            }
            _ => false,
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_check_as_first_written(
            value in "[a-zA-Z0-9._~@:/%\\[\\] -]{0,12}(:[0-9]{0,6})?",
            bytes: Vec<u8>,
        ) {
            proptest::prop_assert_eq!(is_valid_host(value.as_bytes()), as_first_written(value.as_bytes()));
            proptest::prop_assert_eq!(is_valid_host(&bytes), as_first_written(&bytes));
        }

        #[test]
        fn never_panics_and_refuses_every_at_sign(bytes: Vec<u8>) {
            let ok = is_valid_host(&bytes);
            if bytes.contains(&b'@') || bytes.contains(&b'/') {
                proptest::prop_assert!(!ok);
            }
        }
    }
}
