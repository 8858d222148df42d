//! How single values in the file are read: durations, timeouts, fractions, URLs, statuses.
//! Each reader refuses a bad value with a message that names it, and `toml` adds the line.

use std::time::Duration;

use http::{StatusCode, Uri};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// `"5s"`, `"250ms"`, `"1m 30s"`.
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| de::Error::custom(format!("`{s}` is not a duration such as \"5s\": {e}")))
}

pub(super) fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

pub(super) fn uri<'de, D: Deserializer<'de>>(d: D) -> Result<Uri, D::Error> {
    let s = String::deserialize(d)?;
    let u: Uri = s
        .parse()
        .map_err(|e| de::Error::custom(format!("`{s}` is not a URL: {e}")))?;
    match (u.scheme_str(), u.host()) {
        (Some("http" | "https"), Some(_)) => Ok(u),
        _ => Err(de::Error::custom(format!(
            "`{s}` is not an http:// or https:// URL with a host"
        ))),
    }
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

/// A timeout: a duration above zero (a zero timeout would fail every request).
pub(super) fn timeout_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let t = duration(d)?;
    if t.is_zero() {
        return Err(de::Error::custom("a timeout must be longer than 0 s"));
    }
    Ok(Some(t))
}
