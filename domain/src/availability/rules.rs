//! A model's availability rules as the API carries them, and their validation.
//!
//! Weekly windows are local wall-clock times in the model's IANA time zone; a window whose
//! end is not after its start crosses midnight (`fri 18:00–02:00` ends Saturday 02:00).
//! Blocks (time off) and extra windows are one-off UTC intervals.

use chrono::{DateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult};

/// At most this many entries in each of `weekly`, `blocks` and `extra`.
pub const MAX_ENTRIES: usize = 500;

pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One weekly window: `{"day": "fri", "start": "18:00", "end": "02:00"}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WeeklyWindow {
    pub day: String,
    pub start: String,
    pub end: String,
}

/// A UTC interval, half-open: `[start_at, end_at)`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

impl Interval {
    pub fn new(start_at: DateTime<Utc>, end_at: DateTime<Utc>) -> Interval {
        Interval { start_at, end_at }
    }

    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start_at < other.end_at && other.start_at < self.end_at
    }

    pub fn contains(&self, other: &Interval) -> bool {
        self.start_at <= other.start_at && other.end_at <= self.end_at
    }
}

/// The body of `PUT /models/{id}/availability-rules`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Rules {
    pub time_zone: String,
    #[serde(default)]
    pub weekly: Vec<WeeklyWindow>,
    #[serde(default)]
    pub blocks: Vec<Interval>,
    #[serde(default)]
    pub extra: Vec<Interval>,
}

/// A weekly window, parsed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weekly {
    pub day: Weekday,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Weekly {
    /// Whether the window ends on the next local day (its end is not after its start).
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }

    /// The window as minutes of the local week (Monday 00:00 = 0), `[start, start + len)`.
    fn week_minutes(&self) -> (i64, i64) {
        let m = |t: NaiveTime| (t.signed_duration_since(NaiveTime::MIN)).num_minutes();
        let start = self.day.num_days_from_monday() as i64 * 1440 + m(self.start);
        let mut len = m(self.end) - m(self.start);
        if len <= 0 {
            len += 1440;
        }
        (start, len)
    }
}

/// Rules, checked and parsed: what expansion works from.
#[derive(Clone, Debug)]
pub struct Validated {
    pub tz: Tz,
    pub weekly: Vec<Weekly>,
    pub blocks: Vec<Interval>,
    pub extra: Vec<Interval>,
}

pub fn parse_day(s: &str) -> Option<Weekday> {
    DAYS.iter().position(|d| d.eq_ignore_ascii_case(s.trim())).map(|i| match i {
        0 => Weekday::Mon,
        1 => Weekday::Tue,
        2 => Weekday::Wed,
        3 => Weekday::Thu,
        4 => Weekday::Fri,
        5 => Weekday::Sat,
        _ => Weekday::Sun,
    })
}

pub fn parse_tz(s: &str, what: &str) -> DomainResult<Tz> {
    s.trim().parse::<Tz>().map_err(|_| {
        DomainError::invalid(format!("{what}: unknown time zone {s:?} (use an IANA name such as Europe/London)"))
    })
}

fn parse_time(s: &str, what: &str) -> DomainResult<NaiveTime> {
    let t = s.trim();
    if t.len() != 5 {
        return Err(DomainError::invalid(format!("{what}: {s:?} is not a time HH:MM (00:00 to 23:59)")));
    }
    NaiveTime::parse_from_str(t, "%H:%M")
        .map_err(|_| DomainError::invalid(format!("{what}: {s:?} is not a time HH:MM (00:00 to 23:59)")))
}

fn check_intervals(list: &[Interval], what: &str) -> DomainResult<()> {
    if list.len() > MAX_ENTRIES {
        return Err(DomainError::invalid(format!("{what}: at most {MAX_ENTRIES} entries")));
    }
    for (i, iv) in list.iter().enumerate() {
        if iv.end_at < iv.start_at {
            return Err(DomainError::invalid(format!("{what}[{i}]: end_at is before start_at")));
        }
        if iv.end_at == iv.start_at {
            return Err(DomainError::invalid(format!("{what}[{i}]: end_at equals start_at (an empty interval)")));
        }
        if iv.end_at - iv.start_at > chrono::Duration::days(366) {
            return Err(DomainError::invalid(format!("{what}[{i}]: longer than a year")));
        }
    }
    Ok(())
}

impl Rules {
    /// Checks the rules; a refusal (422) names the part: `time_zone`, `weekly[2].start`,
    /// `weekly[0] and weekly[3] overlap`, `blocks[1]: end_at is before start_at`...
    pub fn validate(&self) -> DomainResult<Validated> {
        let tz = parse_tz(&self.time_zone, "time_zone")?;
        if self.weekly.len() > MAX_ENTRIES {
            return Err(DomainError::invalid(format!("weekly: at most {MAX_ENTRIES} windows")));
        }
        let mut weekly = Vec::with_capacity(self.weekly.len());
        for (i, w) in self.weekly.iter().enumerate() {
            let day = parse_day(&w.day).ok_or_else(|| {
                DomainError::invalid(format!(
                    "weekly[{i}].day: {:?} is not a day (mon, tue, wed, thu, fri, sat, sun)",
                    w.day
                ))
            })?;
            let start = parse_time(&w.start, &format!("weekly[{i}].start"))?;
            let end = parse_time(&w.end, &format!("weekly[{i}].end"))?;
            if start == end {
                return Err(DomainError::invalid(format!("weekly[{i}]: start equals end")));
            }
            weekly.push(Weekly { day, start, end });
        }
        // Overlap on the circular local week (a Sunday window crossing midnight reaches Monday).
        const WEEK: i64 = 7 * 1440;
        for i in 0..weekly.len() {
            for j in i + 1..weekly.len() {
                let (a, la) = weekly[i].week_minutes();
                let (b, lb) = weekly[j].week_minutes();
                let d = (b - a).rem_euclid(WEEK);
                if d < la || (WEEK - d) < lb {
                    return Err(DomainError::invalid(format!("weekly[{i}] and weekly[{j}] overlap")));
                }
            }
        }
        check_intervals(&self.blocks, "blocks")?;
        check_intervals(&self.extra, "extra")?;
        Ok(Validated { tz, weekly, blocks: self.blocks.clone(), extra: self.extra.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(weekly: &[(&str, &str, &str)]) -> Rules {
        Rules {
            time_zone: "Europe/London".into(),
            weekly: weekly
                .iter()
                .map(|(d, s, e)| WeeklyWindow { day: d.to_string(), start: s.to_string(), end: e.to_string() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn invalid_rules_name_the_part() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let cases: Vec<(Rules, &str)> = vec![
            (Rules { time_zone: "Mars/Olympus".into(), ..Default::default() }, "time_zone"),
            (rules(&[("fri", "18:00", "18:00")]), "weekly[0]: start equals end"),
            (rules(&[("fry", "18:00", "20:00")]), "weekly[0].day"),
            (rules(&[("fri", "25:00", "20:00")]), "weekly[0].start"),
            (rules(&[("fri", "18:00", "8pm")]), "weekly[0].end"),
            (rules(&[("fri", "18:00", "22:00"), ("fri", "21:00", "23:00")]), "weekly[0] and weekly[1] overlap"),
            // Crossing midnight into the next day's window.
            (rules(&[("fri", "18:00", "02:00"), ("sat", "01:00", "05:00")]), "weekly[0] and weekly[1] overlap"),
            // Sunday night reaches Monday morning.
            (rules(&[("mon", "01:00", "05:00"), ("sun", "22:00", "02:00")]), "weekly[0] and weekly[1] overlap"),
            (
                Rules {
                    time_zone: "UTC".into(),
                    blocks: vec![Interval::new(t("2026-01-02T10:00:00Z"), t("2026-01-02T09:00:00Z"))],
                    ..Default::default()
                },
                "blocks[0]: end_at is before start_at",
            ),
            (
                Rules {
                    time_zone: "UTC".into(),
                    extra: vec![Interval::new(t("2026-01-02T10:00:00Z"), t("2026-01-02T10:00:00Z"))],
                    ..Default::default()
                },
                "extra[0]",
            ),
        ];
        for (r, needle) in cases {
            let err = r.validate().unwrap_err();
            assert!(matches!(err, DomainError::Invalid(_)), "{err:?}");
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn adjacent_and_every_day_windows_are_fine() {
        rules(&[("fri", "18:00", "02:00"), ("sat", "02:00", "05:00")]).validate().unwrap();
        let all: Vec<(&str, &str, &str)> = DAYS.iter().map(|d| (*d, "10:00", "04:00")).collect();
        rules(&all).validate().unwrap();
        // Ending at midnight is a window to 00:00 of the next day.
        rules(&[("sun", "20:00", "00:00"), ("mon", "00:00", "01:00")]).validate().unwrap();
    }
}
