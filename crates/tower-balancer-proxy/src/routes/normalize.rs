//! The path routes match and members get: percent-escapes of unreserved characters decoded,
//! runs of `/` merged, `.` and `..` segments resolved, as Apache does before `ProxyPass`
//! and `Redirect` see a request.
//!
//! Why: a route that answers `/admin` with 403 must not be walked around by
//! `/public/../admin`, `/%61dmin` or `//admin`, which a member that resolves paths itself
//! would serve. Requests no normalising can make safe are refused with 400: an encoded `/`
//! or `\` (Apache's `AllowEncodedSlashes Off` refuses them too), a `\` (Windows and some Java
//! servers read it as `/`), `..` above the root, a `..;` segment (Tomcat reads it as `..`),
//! a bad escape, and bytes that are not visible ASCII.

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// `%2F`, `%5C` or `%3B`.
    #[error("an encoded /, \\ or ; in the path")]
    EncodedSlash,
    /// `%00`–`%1F`, `%7F`, or `%C0`/`%C1` (an overlong UTF-8 form, as of `.`).
    #[error("an encoded control byte or overlong UTF-8 in the path")]
    EncodedControl,
    /// A `\`.
    #[error("a \\ in the path")]
    Backslash,
    /// More `..` segments than there are segments before them.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// `..;x` or `.;x`, which some servers read as a dot segment.
    #[error("a dot segment with parameters")]
    DotParams,
    /// A `%` not followed by two hex digits.
    #[error("a bad percent-escape")]
    BadEscape,
    /// A byte that is not visible ASCII.
    #[error("a byte that is not visible ASCII")]
    NotAscii,
}

/// `path` normalised, borrowed when it already was.
pub(crate) fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if path == "*" {
        // `OPTIONS *`: no path to normalise (no route takes it)
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    if bytes.iter().any(|b| !(0x21..=0x7e).contains(b)) {
        return Err(PathError::NotAscii);
    }
    if bytes.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    let plain = !bytes.contains(&b'%')
        && !path.contains("//")
        && !path.contains("/.")
        && path.starts_with('/');
    if plain {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let trailing = decoded.ends_with('/');
    let mut segments: Vec<&str> = Vec::new();
    let mut last_dot = false;
    for seg in decoded.split('/') {
        last_dot = false;
        match seg {
            "" => {}
            "." => last_dot = true,
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
                last_dot = true;
            }
            s if s.starts_with("..;") || s.starts_with(".;") => return Err(PathError::DotParams),
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || ((trailing || last_dot) && !out.ends_with('/')) {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// The path routes are matched against: each segment's `;parameters` dropped, as Java
/// servers (Tomcat, Jetty) drop them before they map a path, so that `/admin;x` is
/// `/admin`'s; the member still gets the path with its parameters (`;jsessionid=`).
pub(crate) fn without_params(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').skip(1) {
        let seg = seg.split(';').next().unwrap_or_default();
        if !seg.is_empty() {
            out.push('/');
            out.push_str(seg);
        }
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// `%XX` of an unreserved character decoded, other escapes kept with upper-case digits.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = |c: u8| char::from(c).to_digit(16);
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let c = u8::try_from(hi * 16 + lo).map_err(|_| PathError::BadEscape)?;
        match c {
            b'/' | b'\\' | b';' => return Err(PathError::EncodedSlash),
            0x00..=0x1f | 0x7f | 0xc0 | 0xc1 => return Err(PathError::EncodedControl),
            c if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => out.push(char::from(c)),
            c => out.push_str(&format!("%{c:02X}")),
        }
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn the_ways_around_a_route_all_lead_to_it() {
        for walk in [
            "/public/../admin/",
            "/%61dmin/",
            "//admin/",
            "/./admin/",
            "/public/%2e%2e/admin/",
            "/public/%2E%2E/admin/",
        ] {
            assert_eq!(n(walk).unwrap(), "/admin/", "{walk}");
        }
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/./b").unwrap(), "/a/b");
        assert_eq!(n("/").unwrap(), "/");
        assert_eq!(n("/a%20b%2a").unwrap(), "/a%20b%2A");
        assert!(matches!(normalize("/plain/path"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn what_cannot_be_made_safe_is_refused() {
        assert_eq!(n("/x/..%2fadmin"), Err(PathError::EncodedSlash));
        assert_eq!(n("/x/..%5Cadmin"), Err(PathError::EncodedSlash));
        assert_eq!(n("/x/..;/admin"), Err(PathError::DotParams));
        assert_eq!(n("/x\\..\\admin"), Err(PathError::Backslash));
        assert_eq!(n("/../etc"), Err(PathError::AboveRoot));
        assert_eq!(n("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/a%2"), Err(PathError::BadEscape));
        assert_eq!(n("/caf\u{e9}"), Err(PathError::NotAscii));
        assert_eq!(n("/x/%2e%2e%3b/admin"), Err(PathError::EncodedSlash));
        assert_eq!(n("/admin%00"), Err(PathError::EncodedControl));
        assert_eq!(n("/x/%c0%ae%c0%ae/admin"), Err(PathError::EncodedControl));
        assert_eq!(n("*").unwrap(), "*");
    }

    #[test]
    fn parameters_do_not_hide_a_path_from_its_route() {
        assert_eq!(without_params("/admin;x"), "/admin");
        assert_eq!(without_params("/admin;jsessionid=1/x"), "/admin/x");
        assert_eq!(without_params("/;x/admin"), "/admin");
        assert_eq!(without_params("/a;/"), "/a/");
        assert_eq!(without_params("/plain"), "/plain");
    }

    proptest! {
        #[test]
        fn a_normal_path_has_no_dot_segments_and_normalises_to_itself(p in "/[a-z./%0-9A-F]{0,30}") {
            if let Ok(once) = n(&p) {
                prop_assert!(once.starts_with('/'));
                prop_assert!(!once.contains("//"));
                prop_assert!(!once.split('/').any(|s| s == "." || s == ".."));
                prop_assert_eq!(n(&once).unwrap(), once.clone());
            }
        }
    }
}
