//! From local wall-clock rules to UTC instants: the one place Virel turns a model's weekly
//! windows into real time.
//!
//! # Policy
//!
//! * **Per local date.** A weekly window belongs to the local date it starts on. For each date
//!   its start is that date at `start` and its end is the same date at `end` — or the next
//!   date when the window crosses midnight (`end <= start`). Both are read in the model's zone
//!   separately, so a window keeps its wall-clock times across a clock change (Fri 18:00–02:00
//!   is 18:00 to 02:00 on the clock, whatever the offset; it is an hour shorter or longer in
//!   real time on the change night).
//! * **Spring forward (a gap).** A local time that does not exist (Europe/London 01:30 on the
//!   last Sunday of March) is read as the first valid instant after the gap: the instant of
//!   the change (01:00 UTC, 02:00 BST). This holds for starts and ends alike, so a window that
//!   starts in the gap starts when the clock jumps, and a window lying wholly inside the gap is
//!   empty and dropped.
//! * **Fall back (an overlap).** A local time that happens twice (Europe/London 01:30 on the
//!   last Sunday of October) takes the **earlier** offset for a start (the first 01:30, BST)
//!   and the **later** offset for an end (the second 01:30, GMT): an ambiguous window is read
//!   as the longest it can mean, so no promised time goes missing.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::rules::{Interval, Validated, Weekly};

/// Which edge of a window a local time is, for the overlap policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Start,
    End,
}

/// The UTC instant of a local wall-clock time in `tz`, by the policy above.
pub fn resolve_local(tz: &Tz, local: NaiveDateTime, edge: Edge) -> DateTime<Utc> {
    use chrono::LocalResult;
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(early, late) => match edge {
            Edge::Start => early.with_timezone(&Utc),
            Edge::End => late.with_timezone(&Utc),
        },
        LocalResult::None => first_instant_after_gap(tz, local),
    }
}

/// The first valid instant after the gap `local` falls in: the transition itself. Gaps begin
/// and end on whole minutes in every zone of the database, so the first local minute that
/// exists is the gap's end; it is unambiguous (an overlap never follows a gap directly).
fn first_instant_after_gap(tz: &Tz, local: NaiveDateTime) -> DateTime<Utc> {
    use chrono::Timelike;
    let minute = local.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(local);
    // The longest gaps in the database are a day (a zone skipping a date across the line).
    for step in 1..=(26 * 60) {
        let t = minute + Duration::minutes(step);
        if let Some(hit) = tz.from_local_datetime(&t).earliest() {
            return hit.with_timezone(&Utc);
        }
    }
    // Unreachable with the time zone database; read the time as UTC rather than panic.
    Utc.from_utc_datetime(&local)
}

/// The window `w` on local date `date`, in UTC; None when the window is empty on that date
/// (wholly inside a spring-forward gap).
pub fn window_on(tz: &Tz, w: &Weekly, date: NaiveDate) -> Option<Interval> {
    let start = resolve_local(tz, date.and_time(w.start), Edge::Start);
    let end_date = if w.crosses_midnight() { date.succ_opt()? } else { date };
    let end = resolve_local(tz, end_date.and_time(w.end), Edge::End);
    (end > start).then(|| Interval::new(start, end))
}

/// The weekly windows starting on the local dates `first..=last`, in start order.
pub fn weekly_for_dates(v: &Validated, first: NaiveDate, last: NaiveDate) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut d = first;
    while d <= last {
        for w in v.weekly.iter().filter(|w| w.day == d.weekday()) {
            if let Some(iv) = window_on(&v.tz, w, d) {
                out.push(iv);
            }
        }
        match d.succ_opt() {
            Some(n) => d = n,
            None => break,
        }
    }
    out.sort();
    out
}

/// The local dates whose windows can reach into `[from, to)`: a window starts on its date and
/// lasts less than two days, so the day before `from`'s local date is the earliest.
pub fn dates_touching(tz: &Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let first = from.with_timezone(tz).date_naive();
    let last = to.with_timezone(tz).date_naive();
    (first.pred_opt().unwrap_or(first), last)
}

/// The weekly windows and extra windows overlapping `[from, to)`, unclipped, merged.
pub fn expand(v: &Validated, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    let (first, last) = dates_touching(&v.tz, from, to);
    let mut all = weekly_for_dates(v, first, last);
    all.extend(v.extra.iter().copied());
    let range = Interval::new(from, to);
    all.retain(|iv| iv.overlaps(&range));
    super::free::union(all)
}

#[cfg(test)]
mod tests {
    use super::super::rules::{Rules, WeeklyWindow};
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn validated(tz: &str, weekly: &[(&str, &str, &str)]) -> Validated {
        Rules {
            time_zone: tz.into(),
            weekly: weekly
                .iter()
                .map(|(d, s, e)| WeeklyWindow { day: d.to_string(), start: s.to_string(), end: e.to_string() })
                .collect(),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }

    /// Local times on both clock changes of both zones: (zone, local, edge, expected UTC).
    #[test]
    fn local_times_on_clock_change_days() {
        use Edge::*;
        let cases = [
            // Europe/London 2026: spring forward Sun 29 March 01:00 GMT → 02:00 BST.
            ("Europe/London", "2026-03-29 00:30", Start, "2026-03-29T00:30:00Z"),
            ("Europe/London", "2026-03-29 01:00", Start, "2026-03-29T01:00:00Z"), // in the gap
            ("Europe/London", "2026-03-29 01:30", Start, "2026-03-29T01:00:00Z"), // in the gap
            ("Europe/London", "2026-03-29 01:30", End, "2026-03-29T01:00:00Z"),
            ("Europe/London", "2026-03-29 02:00", Start, "2026-03-29T01:00:00Z"),
            ("Europe/London", "2026-03-29 03:00", End, "2026-03-29T02:00:00Z"),
            // Europe/London 2026: fall back Sun 25 October 02:00 BST → 01:00 GMT.
            ("Europe/London", "2026-10-25 00:30", Start, "2026-10-24T23:30:00Z"),
            ("Europe/London", "2026-10-25 01:30", Start, "2026-10-25T00:30:00Z"), // earlier (BST)
            ("Europe/London", "2026-10-25 01:30", End, "2026-10-25T01:30:00Z"),   // later (GMT)
            ("Europe/London", "2026-10-25 01:00", Start, "2026-10-25T00:00:00Z"),
            ("Europe/London", "2026-10-25 01:00", End, "2026-10-25T01:00:00Z"),
            ("Europe/London", "2026-10-25 02:00", End, "2026-10-25T02:00:00Z"),
            // America/New_York 2026: spring forward Sun 8 March 02:00 EST → 03:00 EDT.
            ("America/New_York", "2026-03-08 01:59", Start, "2026-03-08T06:59:00Z"),
            ("America/New_York", "2026-03-08 02:30", Start, "2026-03-08T07:00:00Z"), // in the gap
            ("America/New_York", "2026-03-08 02:30", End, "2026-03-08T07:00:00Z"),
            ("America/New_York", "2026-03-08 03:00", Start, "2026-03-08T07:00:00Z"),
            // America/New_York 2026: fall back Sun 1 November 02:00 EDT → 01:00 EST.
            ("America/New_York", "2026-11-01 01:30", Start, "2026-11-01T05:30:00Z"), // earlier (EDT)
            ("America/New_York", "2026-11-01 01:30", End, "2026-11-01T06:30:00Z"),   // later (EST)
            ("America/New_York", "2026-11-01 02:00", Start, "2026-11-01T07:00:00Z"),
        ];
        for (zone, at, edge, want) in cases {
            let tz: Tz = zone.parse().unwrap();
            assert_eq!(resolve_local(&tz, local(at), edge), utc(want), "{zone} {at} {edge:?}");
        }
    }

    /// Windows crossing midnight on the nights of the changes: (zone, weekly window, local
    /// date it starts on, expected UTC start and end).
    #[test]
    fn midnight_crossing_windows_on_change_nights() {
        let cases = [
            // London, spring: Sat 28 March 22:00 → Sun 02:00 local is 22:00 GMT → 01:00 UTC
            // (02:00 BST): three real hours.
            ("Europe/London", ("sat", "22:00", "02:00"), "2026-03-28", "2026-03-28T22:00:00Z", "2026-03-29T01:00:00Z"),
            // Ending inside the gap: 01:30 does not exist, the end is the change instant.
            ("Europe/London", ("sat", "20:00", "01:30"), "2026-03-28", "2026-03-28T20:00:00Z", "2026-03-29T01:00:00Z"),
            // Ending after the gap: 04:00 BST.
            ("Europe/London", ("sat", "10:00", "04:00"), "2026-03-28", "2026-03-28T10:00:00Z", "2026-03-29T03:00:00Z"),
            // Starting in the gap: first valid instant.
            ("Europe/London", ("sun", "01:30", "05:00"), "2026-03-29", "2026-03-29T01:00:00Z", "2026-03-29T04:00:00Z"),
            // London, autumn: Sat 24 Oct 22:00 BST → Sun 02:00 GMT: five real hours.
            ("Europe/London", ("sat", "22:00", "02:00"), "2026-10-24", "2026-10-24T21:00:00Z", "2026-10-25T02:00:00Z"),
            // Ending in the repeated hour: the later 01:30 (GMT).
            ("Europe/London", ("sat", "18:00", "01:30"), "2026-10-24", "2026-10-24T17:00:00Z", "2026-10-25T01:30:00Z"),
            ("Europe/London", ("sat", "10:00", "04:00"), "2026-10-24", "2026-10-24T09:00:00Z", "2026-10-25T04:00:00Z"),
            // Starting in the repeated hour: the earlier 01:30 (BST).
            ("Europe/London", ("sun", "01:30", "03:00"), "2026-10-25", "2026-10-25T00:30:00Z", "2026-10-25T03:00:00Z"),
            // New York, spring: Sat 7 March 22:00 EST → Sun 04:00 EDT.
            (
                "America/New_York",
                ("sat", "22:00", "04:00"),
                "2026-03-07",
                "2026-03-08T03:00:00Z",
                "2026-03-08T08:00:00Z",
            ),
            (
                "America/New_York",
                ("sat", "23:00", "02:30"),
                "2026-03-07",
                "2026-03-08T04:00:00Z",
                "2026-03-08T07:00:00Z",
            ),
            // New York, autumn: Sat 31 Oct 22:00 EDT → Sun 01:30 EST (the later reading).
            (
                "America/New_York",
                ("sat", "22:00", "01:30"),
                "2026-10-31",
                "2026-11-01T02:00:00Z",
                "2026-11-01T06:30:00Z",
            ),
            (
                "America/New_York",
                ("sat", "22:00", "04:00"),
                "2026-10-31",
                "2026-11-01T02:00:00Z",
                "2026-11-01T09:00:00Z",
            ),
            (
                "America/New_York",
                ("sun", "01:15", "03:00"),
                "2026-11-01",
                "2026-11-01T05:15:00Z",
                "2026-11-01T08:00:00Z",
            ),
        ];
        for (zone, (day, s, e), date, want_start, want_end) in cases {
            let v = validated(zone, &[(day, s, e)]);
            let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
            let got = window_on(&v.tz, &v.weekly[0], date).unwrap();
            assert_eq!((got.start_at, got.end_at), (utc(want_start), utc(want_end)), "{zone} {day} {s}-{e} on {date}");
        }
    }

    #[test]
    fn a_window_inside_the_gap_is_empty() {
        let v = validated("Europe/London", &[("sun", "01:10", "01:50")]);
        let date = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        assert_eq!(window_on(&v.tz, &v.weekly[0], date), None);
        // A week later it is an ordinary 40 minutes.
        let next = window_on(&v.tz, &v.weekly[0], date + Duration::days(7)).unwrap();
        assert_eq!(next.end_at - next.start_at, Duration::minutes(40));
    }

    #[test]
    fn expansion_covers_every_local_date_and_keeps_wall_clock_times() {
        // Every day 10:00–04:00 London through the spring change week.
        let all: Vec<(&str, &str, &str)> = super::super::rules::DAYS.iter().map(|d| (*d, "10:00", "04:00")).collect();
        let v = validated("Europe/London", &all);
        let got = expand(&v, utc("2026-03-27T00:00:00Z"), utc("2026-03-31T00:00:00Z"));
        let want = [
            ("2026-03-26T10:00:00Z", "2026-03-27T04:00:00Z"),
            ("2026-03-27T10:00:00Z", "2026-03-28T04:00:00Z"),
            ("2026-03-28T10:00:00Z", "2026-03-29T03:00:00Z"), // 04:00 BST
            ("2026-03-29T09:00:00Z", "2026-03-30T03:00:00Z"), // 10:00 BST
            ("2026-03-30T09:00:00Z", "2026-03-31T03:00:00Z"),
        ];
        let want: Vec<Interval> = want.iter().map(|(a, b)| Interval::new(utc(a), utc(b))).collect();
        assert_eq!(got, want);
    }
}
