//! The business-hours calendar: weekly working windows in a time zone, and adding working minutes.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult};

/// The agency's working week in its time zone: `{"timezone": "Europe/London",
/// "weekly": {"mon": [["09:00", "18:00"]], ...}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Calendar {
    pub timezone: String,
    pub weekly: std::collections::BTreeMap<String, Vec<(String, String)>>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::office_hours("Europe/London")
    }
}

impl Calendar {
    /// Monday to Friday, 09:00 to 18:00 in `timezone`: the default business hours.
    pub fn office_hours(timezone: &str) -> Calendar {
        let day = vec![("09:00".to_string(), "18:00".to_string())];
        Calendar {
            timezone: timezone.to_string(),
            weekly: ["mon", "tue", "wed", "thu", "fri"].into_iter().map(|d| (d.to_string(), day.clone())).collect(),
        }
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_key(w: Weekday) -> &'static str {
    DAYS[w.num_days_from_monday() as usize]
}

impl Calendar {
    pub fn validate(&self) -> DomainResult<chrono_tz::Tz> {
        let tz: chrono_tz::Tz = self
            .timezone
            .parse()
            .map_err(|_| DomainError::invalid(format!("calendar.timezone: unknown time zone {:?}", self.timezone)))?;
        for (day, windows) in &self.weekly {
            if !DAYS.contains(&day.as_str()) {
                return Err(DomainError::invalid(format!("calendar.weekly.{day}: not a day (mon..sun)")));
            }
            for (i, (a, b)) in windows.iter().enumerate() {
                let (Ok(a), Ok(b)) = (NaiveTime::parse_from_str(a, "%H:%M"), NaiveTime::parse_from_str(b, "%H:%M"))
                else {
                    return Err(DomainError::invalid(format!("calendar.weekly.{day}[{i}]: times are HH:MM")));
                };
                if b <= a {
                    return Err(DomainError::invalid(format!(
                        "calendar.weekly.{day}[{i}]: the end is before the start"
                    )));
                }
            }
        }
        if self.weekly.values().all(|w| w.is_empty()) {
            return Err(DomainError::invalid("calendar.weekly: at least one working window is needed"));
        }
        Ok(tz)
    }

    /// `start` plus `minutes` of working time: the clock runs only inside the weekly windows
    /// (local time, daylight saving included). A window edge that falls in a spring-forward gap
    /// is read as the first instant after the gap, so the window still counts that day.
    pub fn add_working_minutes(&self, start: DateTime<Utc>, minutes: i64) -> DomainResult<DateTime<Utc>> {
        let Ok(tz) = self.validate() else { return plus_minutes(start, minutes, "minutes") };
        let mut left = checked_minutes(minutes.max(0), "minutes")?;
        let mut day = start.with_timezone(&tz).date_naive();
        for _ in 0..800 {
            for (a, b) in self.day_windows(day.weekday()) {
                let (Some(open), Some(close)) =
                    (local_instant(&tz, day.and_time(a), true), local_instant(&tz, day.and_time(b), false))
                else {
                    continue;
                };
                let from = open.max(start);
                if from >= close {
                    continue;
                }
                let available = close - from;
                if available >= left {
                    return from.checked_add_signed(left).ok_or_else(|| out_of_range("minutes", minutes));
                }
                left -= available;
            }
            day = day.succ_opt().ok_or_else(|| out_of_range("minutes", minutes))?;
        }
        plus_minutes(start, minutes, "minutes")
    }
}

/// The instant a local wall-clock time names: in an autumn overlap the earlier (`first`) or the
/// later reading; in a spring gap the first instant after it (when the clock jumps past).
fn local_instant(tz: &chrono_tz::Tz, local: chrono::NaiveDateTime, first: bool) -> Option<DateTime<Utc>> {
    for step in 0..=4 * 60 {
        let t = local.checked_add_signed(Duration::minutes(step))?;
        let r = tz.from_local_datetime(&t);
        let hit = if first { r.earliest() } else { r.latest() };
        if let Some(hit) = hit {
            // Inside a gap the first valid local minute after it is the transition instant.
            return Some(hit.with_timezone(&Utc));
        }
    }
    None
}

fn out_of_range(what: &str, n: i64) -> DomainError {
    DomainError::invalid(format!("{what}: {n} is out of range"))
}

fn checked_minutes(minutes: i64, what: &str) -> DomainResult<Duration> {
    Duration::try_minutes(minutes).ok_or_else(|| out_of_range(what, minutes))
}

/// `t` plus `minutes` (of any sign), or a 422-style error naming `what` instead of a panic when
/// the number (from a rule, a policy or a request) is beyond the calendar.
pub fn plus_minutes(t: DateTime<Utc>, minutes: i64, what: &str) -> DomainResult<DateTime<Utc>> {
    t.checked_add_signed(checked_minutes(minutes, what)?).ok_or_else(|| out_of_range(what, minutes))
}

/// `t` plus `secs` seconds, checked like [`plus_minutes`].
pub fn plus_seconds(t: DateTime<Utc>, secs: i64, what: &str) -> DomainResult<DateTime<Utc>> {
    Duration::try_seconds(secs).and_then(|d| t.checked_add_signed(d)).ok_or_else(|| out_of_range(what, secs))
}

impl Calendar {
    /// A day's working windows in order, overlapping ones merged, so each minute counts once
    /// however the windows were written.
    fn day_windows(&self, w: Weekday) -> Vec<(NaiveTime, NaiveTime)> {
        let mut ws: Vec<(NaiveTime, NaiveTime)> = self
            .weekly
            .get(day_key(w))
            .into_iter()
            .flatten()
            .filter_map(|(a, b)| {
                Some((NaiveTime::parse_from_str(a, "%H:%M").ok()?, NaiveTime::parse_from_str(b, "%H:%M").ok()?))
            })
            .filter(|(a, b)| b > a)
            .collect();
        ws.sort();
        let mut merged: Vec<(NaiveTime, NaiveTime)> = Vec::new();
        for (a, b) in ws {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    /// The calendar date of `t` in the calendar's time zone.
    pub fn local_date(&self, t: DateTime<Utc>) -> chrono::NaiveDate {
        match self.timezone.parse::<chrono_tz::Tz>() {
            Ok(tz) => t.with_timezone(&tz).date_naive(),
            Err(_) => t.date_naive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn working_minutes_skip_nights_and_weekends() {
        let cal = Calendar { timezone: "Europe/London".into(), ..Calendar::default() };
        // Friday 17:30 London (GMT in winter) + 60 working minutes = Monday 09:30.
        assert_eq!(cal.add_working_minutes(at("2026-11-27T17:30:00Z"), 60).unwrap(), at("2026-11-30T09:30:00Z"));
        // Saturday: starts Monday 09:00.
        assert_eq!(cal.add_working_minutes(at("2026-11-28T12:00:00Z"), 15).unwrap(), at("2026-11-30T09:15:00Z"));
        // Within the day.
        assert_eq!(cal.add_working_minutes(at("2026-11-26T10:00:00Z"), 30).unwrap(), at("2026-11-26T10:30:00Z"));
        // Summer time: 09:00 London is 08:00 UTC.
        assert_eq!(cal.add_working_minutes(at("2026-07-01T06:00:00Z"), 10).unwrap(), at("2026-07-01T08:10:00Z"));
    }

    fn sundays(tz: &str, windows: &[(&str, &str)]) -> Calendar {
        let w = windows.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        Calendar { timezone: tz.into(), weekly: [("sun".to_string(), w)].into_iter().collect() }
    }

    /// Windows around the daylight-saving changes of 2026: a window edge in the spring gap is
    /// read as the moment the clock jumps, never skipped for the day; an autumn overlap counts
    /// from the first reading of the start to the last reading of the end.
    #[test]
    fn dst_changes_keep_the_day() {
        type Row = (&'static str, &'static [(&'static str, &'static str)], &'static str, i64, &'static str);
        let table: &[Row] = &[
            // London, spring (29 March, 01:00 GMT -> 02:00 BST): 01:30 does not exist.
            ("Europe/London", &[("01:30", "04:00")], "2026-03-29T00:00:00Z", 30, "2026-03-29T01:30:00Z"),
            ("Europe/London", &[("01:30", "04:00")], "2026-03-29T00:00:00Z", 120, "2026-03-29T03:00:00Z"),
            // The end in the gap: the window closes when the clock jumps (01:00 UTC).
            ("Europe/London", &[("00:00", "01:30")], "2026-03-29T00:00:00Z", 45, "2026-03-29T00:45:00Z"),
            ("Europe/London", &[("00:00", "01:30")], "2026-03-29T00:00:00Z", 90, "2026-04-04T23:30:00Z"),
            // London, autumn (25 October, 02:00 BST -> 01:00 GMT): 01:30 happens twice.
            ("Europe/London", &[("01:30", "04:00")], "2026-10-25T00:00:00Z", 60, "2026-10-25T01:30:00Z"),
            ("Europe/London", &[("01:30", "04:00")], "2026-10-25T00:00:00Z", 200, "2026-10-25T03:50:00Z"),
            // New York, spring (8 March, 02:00 EST -> 03:00 EDT): 02:30 does not exist.
            ("America/New_York", &[("02:30", "05:00")], "2026-03-08T05:00:00Z", 30, "2026-03-08T07:30:00Z"),
            ("America/New_York", &[("02:30", "05:00")], "2026-03-08T05:00:00Z", 120, "2026-03-08T09:00:00Z"),
            // New York, autumn (1 November, 02:00 EDT -> 01:00 EST): 01:30 happens twice.
            ("America/New_York", &[("01:30", "05:00")], "2026-11-01T04:00:00Z", 30, "2026-11-01T06:00:00Z"),
            ("America/New_York", &[("01:30", "05:00")], "2026-11-01T04:00:00Z", 300, "2026-11-08T07:00:00Z"),
        ];
        for (tz, windows, start, minutes, want) in table {
            let got = sundays(tz, windows).add_working_minutes(at(start), *minutes).unwrap();
            assert_eq!(got, at(want), "{tz} {windows:?}: {start} + {minutes} working minutes");
        }
    }

    #[test]
    fn huge_numbers_are_errors_not_panics() {
        let t = at("2026-01-01T00:00:00Z");
        assert!(plus_minutes(t, i64::MAX, "due_in_minutes").unwrap_err().to_string().contains("due_in_minutes"));
        assert!(plus_seconds(t, i64::MAX, "escalation_secs").is_err());
        assert!(Calendar::default().add_working_minutes(t, i64::MAX).is_err());
        assert!(Calendar::default().add_working_minutes(t, i64::MAX / 1_000_000).is_err());
    }
}
