//! Times in access log lines: Apache's `[02/Dec/2026:07:45:10 +0000]` and RFC 3339 for JSON,
//! in UTC, without a date crate.

use std::time::SystemTime;

/// `02/Dec/2026:07:45:10 +0000`, Apache's time in UTC.
pub(super) fn clf_time(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[usize::from(mo - 1) % 12];
    format!("{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000")
}

/// `2026-12-02T07:45:10Z`.
pub(super) fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// The UTC calendar date and time of `t` (Howard Hinnant's days-to-civil).
fn civil(t: SystemTime) -> (i64, u8, u8, u64, u64, u64) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 1..=12, 1..=31
    (
        year,
        month as u8,
        day as u8,
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_written_in_utc_as_apache_and_rfc3339_do() {
        // 2026-12-02T07:45:10Z
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_197_510);
        assert_eq!(clf_time(t), "02/Dec/2026:07:45:10 +0000");
        assert_eq!(rfc3339(t), "2026-12-02T07:45:10Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
