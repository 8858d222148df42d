//! Field values kept from a connection's last head, so that a value which repeats is not
//! checked byte by byte a second time.
//!
//! Why: `http`'s [`HeaderValue`] checks every byte of a value as it is made, though httparse
//! has checked the same bytes while reading the head (hyper skips the second check with an
//! `unsafe` constructor, which this workspace forbids). The answers one member sends on one
//! connection repeat most of their values (`Server`, `Content-Type`, `Cache-Control`, `Date`
//! within its second), as a client's requests repeat theirs (`User-Agent`, `Accept`,
//! `Cookie`). Compared with the value the last head had at the same place, a repeat costs a
//! comparison and a reference count instead of the check.
//!
//! What is kept is a copy, never a slice of the head, so a connection at rest holds a few
//! short values rather than its last head's buffer. A place whose value changes at every
//! head (`Content-Length`, `ETag`, `Set-Cookie`) stops being copied after one miss and is
//! tried again every [`RESTING`] heads, so such fields cost about what they did before.

use bytes::Bytes;
use http::header::{HeaderValue, InvalidHeaderValue};

/// Places (a field's index in its head) kept: a head's first fields, where the ones that
/// repeat usually are.
const PLACES: usize = 16;

/// The longest value kept: a longer one is copied rarely enough not to matter, but held by
/// every idle connection.
const LONGEST: usize = 256;

/// Misses in a row after which a place is copied again.
const RESTING: u8 = 32;

/// The values of one connection's last head, by place.
#[derive(Debug, Default)]
pub(crate) struct RecentValues {
    places: Vec<Place>,
}

#[derive(Debug, Default)]
struct Place {
    value: Option<HeaderValue>,
    /// Misses since the last hit, up to [`RESTING`].
    misses: u8,
}

impl RecentValues {
    /// The value of the field at `place` in `head`, whose bytes are `head[from..to]`: the
    /// same as `HeaderValue::from_maybe_shared(head.slice(from..to))`, without its byte
    /// check when the last head had the same value at that place.
    pub(crate) fn value(
        &mut self,
        place: usize,
        head: &Bytes,
        from: usize,
        to: usize,
    ) -> Result<HeaderValue, InvalidHeaderValue> {
        let Some(raw) = head.get(from..to) else {
            // out of the head: what `Bytes::slice` would refuse, refused as a bad value
            return HeaderValue::from_bytes(b"\0");
        };
        if place >= PLACES || raw.len() > LONGEST {
            return HeaderValue::from_maybe_shared(head.slice(from..to));
        }
        if self.places.len() <= place {
            self.places.resize_with(place + 1, Place::default);
        }
        let kept = &mut self.places[place];
        if let Some(v) = &kept.value {
            if v.as_bytes() == raw {
                kept.misses = 0;
                return Ok(v.clone());
            }
        }
        kept.misses += 1;
        if kept.misses == 1 {
            // first miss: this value may repeat from now on (a new `Date`)
            let v = HeaderValue::from_bytes(raw)?;
            kept.value = Some(v.clone());
            return Ok(v);
        }
        if kept.misses >= RESTING {
            kept.misses = 0;
        }
        HeaderValue::from_maybe_shared(head.slice(from..to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value(recent: &mut RecentValues, place: usize, s: &[u8]) -> Option<HeaderValue> {
        let head = Bytes::copy_from_slice(s);
        recent.value(place, &head, 0, s.len()).ok()
    }

    #[test]
    fn a_repeated_value_is_the_kept_one() {
        let mut recent = RecentValues::default();
        let first = value(&mut recent, 0, b"nginx/1.22.1").unwrap();
        let again = value(&mut recent, 0, b"nginx/1.22.1").unwrap();
        assert_eq!(first, again);
        // the same bytes, not a copy: a hit shares the kept value
        assert_eq!(first.as_bytes().as_ptr(), again.as_bytes().as_ptr());
        let other = value(&mut recent, 0, b"nginx/1.25.0").unwrap();
        assert_eq!(other, "nginx/1.25.0");
    }

    #[test]
    fn a_value_that_changes_every_time_rests() {
        let mut recent = RecentValues::default();
        for i in 0..100_u32 {
            let s = format!("\"etag-{i}\"");
            assert_eq!(value(&mut recent, 3, s.as_bytes()).unwrap(), s.as_str());
        }
        // copied at the first miss and once every RESTING misses after: the place keeps
        // a copy from one of those, not the last value
        let kept = recent.places[3].value.as_ref().unwrap();
        assert_ne!(kept, "\"etag-99\"");
    }

    #[test]
    fn bad_bytes_are_refused_kept_or_not() {
        let mut recent = RecentValues::default();
        value(&mut recent, 0, b"ok").unwrap();
        assert!(value(&mut recent, 0, b"bad\x7f").is_none());
        assert!(value(&mut recent, 0, b"bad\x7f").is_none());
        assert!(value(&mut recent, 40, b"bad\n").is_none());
        let head = Bytes::from_static(b"short");
        assert!(recent.value(0, &head, 2, 9).is_err());
    }

    proptest! {
        /// Whatever the sequence of heads, a value is what `http` itself would make of the
        /// bytes (or the same refusal).
        #[test]
        fn the_same_as_http_makes(heads in prop::collection::vec(
            prop::collection::vec(
                prop::sample::select(vec![
                    b"a".to_vec(), b"b".to_vec(), b"keep-alive".to_vec(), b"\x01".to_vec(),
                    b"\x7f".to_vec(), vec![b'x'; 300], b"Mon, 07 Dec 2026".to_vec(), vec![],
                    "caf\u{e9}".as_bytes().to_vec(),
                ]),
                0..20,
            ),
            0..40,
        )) {
            let mut recent = RecentValues::default();
            for fields in heads {
                for (place, raw) in fields.iter().enumerate() {
                    let head = Bytes::copy_from_slice(raw);
                    let ours = recent.value(place, &head, 0, raw.len()).ok();
                    let http = HeaderValue::from_bytes(raw).ok();
                    prop_assert_eq!(ours, http);
                }
            }
        }
    }
}
