//! The two date formats OSS speaks, and the three HTTP-date forms it must read.
//!
//! - In headers (`Last-Modified`, `Date`): IMF-fixdate, `Sat, 05 Dec 2015 11:10:29 GMT`.
//!   `oss2.utils.http_to_unixtime` accepts only that form, with a two-digit day.
//! - In XML bodies (`LastModified`, `CreationDate`, `Initiated`):
//!   `2015-12-05T11:10:29.000Z`. `oss2.utils.iso8601_to_unixtime` demands the literal
//!   `.000Z`, so milliseconds are always written as zero.
//! - Conditional request headers may arrive in any of RFC 9110's three forms (IMF-fixdate,
//!   RFC 850 `Saturday, 05-Dec-15 11:10:29 GMT`, asctime `Sat Dec  5 11:10:29 2015`);
//!   [`parse_http_date`] reads all three and answers `None` for anything else, never
//!   panicking: an unreadable date makes its condition be ignored, as RFC 9110 says.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS_SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const WEEKDAYS_LONG: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// `Sat, 05 Dec 2015 11:10:29 GMT` (sub-second part dropped). Written by hand rather than
/// with a locale-aware formatter so the names are always English.
pub fn format_http_date(t: DateTime<Utc>) -> String {
    let wd = WEEKDAYS_SHORT[t.weekday().num_days_from_monday() as usize];
    let mon = MONTHS[t.month0() as usize];
    format!("{wd}, {:02} {mon} {:04} {:02}:{:02}:{:02} GMT", t.day(), t.year(), t.hour(), t.minute(), t.second())
}

/// `2015-12-05T11:10:29.000Z`: always `.000`, because that is the only form `oss2` parses.
pub fn format_iso8601(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())
}

/// Truncates to whole seconds: HTTP dates carry no fraction, so comparisons between a stored
/// time and a date a client echoes back must ignore it (an object written at 10.5 s shows
/// `Last-Modified: …:10`, and `If-Modified-Since: …:10` must then mean "not modified").
pub fn truncate_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or(t)
}

/// A time stored as milliseconds since the Unix epoch (as the metadata store keeps them);
/// out-of-range values read as the epoch rather than panicking.
pub fn from_unix_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Reads an HTTP date in any of the three forms of RFC 9110 §5.6.7. `None` when it is none
/// of them or names an impossible date.
pub fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    parse_imf_fixdate(s).or_else(|| parse_rfc850(s)).or_else(|| parse_asctime(s))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn parse_imf_fixdate(s: &str) -> Option<DateTime<Utc>> {
    let (wd, rest) = s.split_once(", ")?;
    if !WEEKDAYS_SHORT.contains(&wd) {
        return None;
    }
    let mut it = rest.split(' ');
    let day = it.next()?;
    let month = it.next()?;
    let year = it.next()?;
    let time = it.next()?;
    if it.next()? != "GMT" || it.next().is_some() || day.len() != 2 || year.len() != 4 {
        return None;
    }
    build(digits(year)?, month_number(month)?, digits(day)?, time)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`; two-digit years are read as RFC 9110 says: a year that
/// would be more than 50 years in the future is taken to be in the past century. Without a
/// clock, "the future" is judged against 2000 + 50: 00–49 → 20xx, 50–99 → 19xx.
fn parse_rfc850(s: &str) -> Option<DateTime<Utc>> {
    let (wd, rest) = s.split_once(", ")?;
    if !WEEKDAYS_LONG.contains(&wd) {
        return None;
    }
    let (date, rest) = rest.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    if zone != "GMT" {
        return None;
    }
    let mut parts = date.split('-');
    let day = parts.next()?;
    let month = parts.next()?;
    let year = parts.next()?;
    if parts.next().is_some() || day.len() != 2 || year.len() != 2 {
        return None;
    }
    let yy = digits(year)?;
    let year = if yy < 50 { 2000 + yy } else { 1900 + yy };
    build(year, month_number(month)?, digits(day)?, time)
}

/// `Sun Nov  6 08:49:37 1994` (day padded with a space, or two digits).
fn parse_asctime(s: &str) -> Option<DateTime<Utc>> {
    let wd = s.get(..3)?;
    if !WEEKDAYS_SHORT.contains(&wd) || s.as_bytes().get(3) != Some(&b' ') {
        return None;
    }
    let month = s.get(4..7)?;
    if s.as_bytes().get(7) != Some(&b' ') {
        return None;
    }
    let day = s.get(8..10)?;
    let day = day.strip_prefix(' ').unwrap_or(day);
    if s.as_bytes().get(10) != Some(&b' ') {
        return None;
    }
    let time = s.get(11..19)?;
    if s.as_bytes().get(19) != Some(&b' ') {
        return None;
    }
    let year = s.get(20..)?;
    if year.len() != 4 {
        return None;
    }
    build(digits(year)?, month_number(month)?, digits(day)?, time)
}

fn month_number(m: &str) -> Option<u32> {
    MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1)
}

/// A run of ASCII digits (no sign, no spaces), at most 4 of them.
fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `hh:mm:ss`, then the whole date checked for existence (no 31 Feb, no 25:00).
fn build(year: u32, month: u32, day: u32, time: &str) -> Option<DateTime<Utc>> {
    let b = time.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let hh = digits(time.get(0..2)?)?;
    let mm = digits(time.get(3..5)?)?;
    let ss = digits(time.get(6..8)?)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    // RFC 9110 allows a leap second (60); it is folded into the next minute's zero.
    let leap = ss == 60;
    let naive = date.and_hms_opt(hh, mm, if leap { 59 } else { ss })?;
    let t = Utc.from_utc_datetime(&naive);
    Some(if leap { t + chrono::Duration::seconds(1) } else { t })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn formats_like_oss() {
        let t = at(2015, 12, 5, 11, 10, 29) + chrono::Duration::milliseconds(512);
        assert_eq!(format_http_date(t), "Sat, 05 Dec 2015 11:10:29 GMT");
        assert_eq!(format_iso8601(t), "2015-12-05T11:10:29.000Z");
        assert_eq!(truncate_to_second(t), at(2015, 12, 5, 11, 10, 29));
        assert_eq!(from_unix_millis(t.timestamp_millis()), t);
        assert_eq!(from_unix_millis(i64::MAX), DateTime::<Utc>::default());
    }

    #[test]
    fn reads_the_three_forms() {
        let want = at(1994, 11, 6, 8, 49, 37);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(want));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(want));
        assert_eq!(parse_http_date("Sun Nov 06 08:49:37 1994"), Some(want));
        assert_eq!(parse_http_date("  Sun, 06 Nov 1994 08:49:37 GMT "), Some(want));
        assert_eq!(parse_http_date("Tuesday, 05-Dec-23 11:10:29 GMT"), Some(at(2023, 12, 5, 11, 10, 29)));
    }

    #[test]
    fn round_trips() {
        let t = at(2024, 2, 29, 23, 59, 59);
        assert_eq!(parse_http_date(&format_http_date(t)), Some(t));
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for s in [
            "",
            "GMT",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1994 08:4x:37 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "1994-11-06T08:49:37Z",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "日, 06 Nov 1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994\u{0}",
            "Sun N\u{e9}v  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_valid_date_is_handled() {
        let s = "Sun, 06 Nov 1994 08:49:37 GMT";
        for i in 0..s.len() {
            let _ = parse_http_date(&s[..i]);
        }
        let s = "Sun Nov  6 08:49:37 1994";
        for i in 0..s.len() {
            let _ = parse_http_date(&s[..i]);
        }
    }
}
