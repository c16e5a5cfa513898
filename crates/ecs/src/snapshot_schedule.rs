//! Automatic snapshot policies as time: when a policy fires, when its snapshots expire, and
//! how its parameters are read. Pure: the clock is an argument, so the scheduler that acts on
//! it can be driven by an injected clock in tests (issue 16, done-when 2).
//!
//! A policy names hours of the day in **UTC+8** (`timePoints`, "0" to "23") and days of the
//! week (`repeatWeekdays`, "1" Monday to "7" Sunday, also in UTC+8), and a retention in days
//! (`retentionDays`: -1 keeps forever, else 1 to 65536). It fires at every listed hour of
//! every listed day. The scheduler asks, at each tick, for the newest firing in the window
//! since its previous tick ([`Schedule::last_firing`]): one snapshot per disk per window,
//! however many points the window holds (after feitian was down for a day, one snapshot for
//! the newest missed point, not a burst). As on Alibaba Cloud, a disk whose previous
//! snapshot is still being made skips the firing (the scheduler's decision, not this
//! module's).

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, FixedOffset, TimeZone, Timelike, Utc};

/// The policy's time zone: UTC+8, as the API documents.
fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"))
}

/// Why a policy's parameter was refused (the ECS error code names the parameter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("The specified parameter timePoints is not valid: a JSON array of 1 to 24 hours \"0\" to \"23\".")]
    TimePoints,
    #[error(
        "The specified parameter repeatWeekdays is not valid: a JSON array of 1 to 7 days \"1\" (Monday) to \"7\"."
    )]
    RepeatWeekdays,
    #[error("The specified parameter retentionDays is not valid: -1 (forever) or 1 to 65536.")]
    RetentionDays,
}

impl ScheduleError {
    /// The API's error code.
    pub fn code(&self) -> &'static str {
        match self {
            ScheduleError::TimePoints => "InvalidTimePoints.Malformed",
            ScheduleError::RepeatWeekdays => "InvalidRepeatWeekdays.Malformed",
            ScheduleError::RetentionDays => "InvalidRetentionDays.Malformed",
        }
    }
}

/// When a policy fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Hours of the day, UTC+8.
    pub hours: BTreeSet<u8>,
    /// Days of the week, 1 (Monday) to 7 (Sunday), UTC+8.
    pub weekdays: BTreeSet<u8>,
}

/// A JSON array of numbers written as strings (`["1","22"]`, as the SDKs send them; bare
/// numbers are taken too), each within `lo..=hi`, at least one, no more than `hi - lo + 1`
/// (duplicates collapse).
fn parse_set(text: &str, lo: u8, hi: u8) -> Option<BTreeSet<u8>> {
    let values: Vec<serde_json::Value> = serde_json::from_str(text.trim()).ok()?;
    if values.is_empty() || values.len() > usize::from(hi - lo) + 1 {
        return None;
    }
    let mut out = BTreeSet::new();
    for v in values {
        let n = match v {
            serde_json::Value::String(s) => s.trim().parse::<u8>().ok()?,
            serde_json::Value::Number(n) => u8::try_from(n.as_u64()?).ok()?,
            _ => return None,
        };
        if !(lo..=hi).contains(&n) {
            return None;
        }
        out.insert(n);
    }
    Some(out)
}

/// `timePoints` as sent.
pub fn parse_time_points(text: &str) -> Result<BTreeSet<u8>, ScheduleError> {
    parse_set(text, 0, 23).ok_or(ScheduleError::TimePoints)
}

/// `repeatWeekdays` as sent.
pub fn parse_weekdays(text: &str) -> Result<BTreeSet<u8>, ScheduleError> {
    parse_set(text, 1, 7).ok_or(ScheduleError::RepeatWeekdays)
}

/// `retentionDays`: `None` keeps forever (-1).
pub fn parse_retention(text: &str) -> Result<Option<u32>, ScheduleError> {
    match text.trim().parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(n) if (1..=65536).contains(&n) => Ok(Some(n as u32)),
        _ => Err(ScheduleError::RetentionDays),
    }
}

/// A set as the API shows it: a JSON array of strings (`["1","22"]`), ascending.
pub fn render_set(set: &BTreeSet<u8>) -> String {
    let items: Vec<String> = set.iter().map(|n| n.to_string()).collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
}

impl Schedule {
    /// Whether the policy fires at `at` (an instant on the hour, UTC+8).
    fn fires_at(&self, at: DateTime<FixedOffset>) -> bool {
        let weekday = at.weekday().number_from_monday() as u8;
        self.hours.contains(&(at.hour() as u8)) && self.weekdays.contains(&weekday)
    }

    /// The newest instant in `(after, upto]` at which the policy fires, if any.
    pub fn last_firing(&self, after: DateTime<Utc>, upto: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if upto <= after || self.hours.is_empty() || self.weekdays.is_empty() {
            return None;
        }
        let local = upto.with_timezone(&china());
        // The newest whole hour at or before `upto`.
        let mut at = china().with_ymd_and_hms(local.year(), local.month(), local.day(), local.hour(), 0, 0).single()?;
        // A week holds every combination: look no further back than that (or the window).
        for _ in 0..=(7 * 24) {
            let utc = at.with_timezone(&Utc);
            if utc <= after {
                return None;
            }
            if self.fires_at(at) {
                return Some(utc);
            }
            at -= Duration::hours(1);
        }
        None
    }
}

/// Whether a snapshot made at `created` with `retention_days` is past its retention at `now`.
pub fn expired(created: DateTime<Utc>, retention_days: Option<u32>, now: DateTime<Utc>) -> bool {
    match retention_days {
        Some(days) => now >= created + Duration::days(i64::from(days)),
        None => false,
    }
}

/// The name of a snapshot a policy takes at `at`: `auto_<yyyymmdd>_<hour>` in UTC+8 (names
/// starting with `auto` are the policies'; users cannot give them).
pub fn auto_snapshot_name(at: DateTime<Utc>) -> String {
    let local = at.with_timezone(&china());
    format!("auto_{:04}{:02}{:02}_{}", local.year(), local.month(), local.day(), local.hour())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn schedule(hours: &str, days: &str) -> Schedule {
        Schedule { hours: parse_time_points(hours).unwrap(), weekdays: parse_weekdays(days).unwrap() }
    }

    #[test]
    fn parameters_are_read_as_the_sdks_send_them_and_refused_otherwise() {
        assert_eq!(parse_time_points(r#"["1","22","23"]"#).unwrap(), BTreeSet::from([1, 22, 23]));
        assert_eq!(parse_time_points("[0, 5]").unwrap(), BTreeSet::from([0, 5]));
        assert_eq!(parse_weekdays(r#"["1","7","7"]"#).unwrap(), BTreeSet::from([1, 7]));
        for bad in ["", "[]", "1", r#"["24"]"#, r#"["-1"]"#, r#"["a"]"#, "{}", r#"[["1"]]"#, "[1.5]"] {
            assert_eq!(parse_time_points(bad), Err(ScheduleError::TimePoints), "{bad}");
        }
        for bad in [r#"["0"]"#, r#"["8"]"#, "[]", r#"["1","2","3","4","5","6","7","1"]"#] {
            assert_eq!(parse_weekdays(bad), Err(ScheduleError::RepeatWeekdays), "{bad}");
        }
        assert_eq!(parse_retention("-1"), Ok(None));
        assert_eq!(parse_retention("1"), Ok(Some(1)));
        assert_eq!(parse_retention("65536"), Ok(Some(65536)));
        for bad in ["0", "-2", "65537", "x", ""] {
            assert_eq!(parse_retention(bad), Err(ScheduleError::RetentionDays), "{bad}");
        }
        assert_eq!(render_set(&BTreeSet::from([22, 1])), r#"["1","22"]"#);
        assert_eq!(ScheduleError::TimePoints.code(), "InvalidTimePoints.Malformed");
    }

    #[test]
    fn a_policy_fires_at_its_hours_of_its_days_in_utc_plus_8() {
        // 2026-12-07 is a Monday. 01:00 UTC+8 on Monday is Sunday 17:00 UTC.
        let s = schedule(r#"["1"]"#, r#"["1"]"#);
        let at = utc("2026-12-06T17:00:00Z");
        assert_eq!(s.last_firing(at - Duration::seconds(1), at), Some(at));
        // The window is half-open: (after, upto].
        assert_eq!(s.last_firing(at, at + Duration::minutes(59)), None);
        assert_eq!(s.last_firing(at - Duration::minutes(10), at - Duration::seconds(1)), None);
        // Not on Tuesday.
        let tuesday = utc("2026-12-07T17:00:00Z");
        assert_eq!(s.last_firing(tuesday - Duration::minutes(1), tuesday + Duration::minutes(1)), None);
        // A week later, again.
        let next = at + Duration::days(7);
        assert_eq!(s.last_firing(next - Duration::seconds(30), next + Duration::seconds(30)), Some(next));
    }

    #[test]
    fn a_long_window_gives_its_newest_firing_only() {
        let s = schedule(r#"["0","12"]"#, r#"["1","2","3","4","5","6","7"]"#);
        // A whole day missed: the newest point is 12:00 UTC+8 = 04:00 UTC.
        let got = s.last_firing(utc("2026-12-06T00:30:00Z"), utc("2026-12-07T05:00:00Z"));
        assert_eq!(got, Some(utc("2026-12-07T04:00:00Z")));
        // More than a week missed still finds one.
        let got = s.last_firing(utc("2026-11-01T00:00:00Z"), utc("2026-12-07T03:59:59Z"));
        assert_eq!(got, Some(utc("2026-12-06T16:00:00Z")));
    }

    #[test]
    fn snapshots_expire_after_their_retention_and_never_with_minus_one() {
        let made = utc("2026-12-01T10:00:00Z");
        assert!(!expired(made, Some(3), utc("2026-12-04T09:59:59Z")));
        assert!(expired(made, Some(3), utc("2026-12-04T10:00:00Z")));
        assert!(!expired(made, None, utc("2099-01-01T00:00:00Z")));
    }

    #[test]
    fn auto_names_carry_the_local_date_and_hour() {
        assert_eq!(auto_snapshot_name(utc("2026-12-06T17:00:00Z")), "auto_20261207_1");
        assert!(auto_snapshot_name(utc("2026-12-06T17:00:00Z")).starts_with("auto"));
    }
}
