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
    /// (local time, daylight saving included).
    pub fn add_working_minutes(&self, start: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
        let Ok(tz) = self.validate() else { return start + Duration::minutes(minutes) };
        let mut left = Duration::minutes(minutes.max(0));
        let mut day = start.with_timezone(&tz).date_naive();
        for _ in 0..800 {
            for (a, b) in self.day_windows(day.weekday()) {
                let (Some(open), Some(close)) = (
                    tz.from_local_datetime(&day.and_time(a)).earliest(),
                    tz.from_local_datetime(&day.and_time(b)).latest(),
                ) else {
                    continue;
                };
                let (open, close) = (open.with_timezone(&Utc), close.with_timezone(&Utc));
                let from = open.max(start);
                if from >= close {
                    continue;
                }
                let available = close - from;
                if available >= left {
                    return from + left;
                }
                left -= available;
            }
            day = day.succ_opt().unwrap_or(day);
        }
        start + Duration::minutes(minutes)
    }
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
        assert_eq!(cal.add_working_minutes(at("2026-11-27T17:30:00Z"), 60), at("2026-11-30T09:30:00Z"));
        // Saturday: starts Monday 09:00.
        assert_eq!(cal.add_working_minutes(at("2026-11-28T12:00:00Z"), 15), at("2026-11-30T09:15:00Z"));
        // Within the day.
        assert_eq!(cal.add_working_minutes(at("2026-11-26T10:00:00Z"), 30), at("2026-11-26T10:30:00Z"));
        // Summer time: 09:00 London is 08:00 UTC.
        assert_eq!(cal.add_working_minutes(at("2026-07-01T06:00:00Z"), 10), at("2026-07-01T08:10:00Z"));
    }
}
