//! An HTTP/2 client's cookie, split over several fields, made one `Cookie` again.
//!
//! Why: HTTP/2 lets a client send each cookie pair as a field of its own, so that header
//! compression can keep the pairs that do not change (RFC 9113 §8.2.3), and asks whoever
//! passes the request on to HTTP/1.1 to join them with `"; "` first: a request carries one
//! `Cookie` (RFC 6265 §5.4). A member behind the balancer speaks HTTP/1.1, and many
//! frameworks read only the first `Cookie` line, or join repeated fields with `,`: a browser
//! on HTTP/2 would lose its session at the member.

use http::header::{self, HeaderValue};
use http::HeaderMap;

/// Joins the `Cookie` fields of `headers` into one, its values in order, separated by
/// `"; "` (RFC 9113 §8.2.3). One field or none is left as it is.
///
/// ```
/// use http::HeaderMap;
/// use tower_balancer_proxy::hygiene::join_cookie_fields;
///
/// let mut h = HeaderMap::new();
/// h.append("cookie", "JSESSIONID=abc".parse()?);
/// h.append("cookie", "ROUTEID=.e1".parse()?);
/// join_cookie_fields(&mut h);
/// assert_eq!(h.get_all("cookie").iter().count(), 1);
/// assert_eq!(h["cookie"], "JSESSIONID=abc; ROUTEID=.e1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn join_cookie_fields(headers: &mut HeaderMap) {
    let fields = headers.get_all(header::COOKIE);
    let mut values = fields.iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in fields.iter().filter(|v| !v.is_empty()) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    // every part was a valid value, and "; " is valid between two: this cannot fail, and
    // were it to, the fields are left as they came rather than lost
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn joined(h: &HeaderMap) -> Vec<&[u8]> {
        h.get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    }

    #[test]
    fn crumbs_become_one_field_in_their_order() {
        let mut h = cookies(&["a=1", "b=2", "JSESSIONID=x; ROUTEID=.e2"]);
        join_cookie_fields(&mut h);
        assert_eq!(
            joined(&h),
            [b"a=1; b=2; JSESSIONID=x; ROUTEID=.e2".as_slice()]
        );
        assert_eq!(h[header::ACCEPT], "*/*", "other fields are left alone");
    }

    #[test]
    fn one_field_or_none_is_left_as_it_is() {
        let mut one = cookies(&["a=1;b=2"]);
        join_cookie_fields(&mut one);
        assert_eq!(joined(&one), [b"a=1;b=2".as_slice()]);
        let mut none = cookies(&[]);
        join_cookie_fields(&mut none);
        assert!(joined(&none).is_empty());
        assert_eq!(none.len(), 1);
    }

    #[test]
    fn empty_crumbs_add_no_separator() {
        let mut h = cookies(&["", "a=1", "", "b=2"]);
        join_cookie_fields(&mut h);
        assert_eq!(joined(&h), [b"a=1; b=2".as_slice()]);
    }
}
