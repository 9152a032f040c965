//! Free windows: a model's slots minus her blocks minus the bookings that hold her time
//! (pending, deposit_required, confirmed, in_progress), each widened by the travel buffer
//! before and after. Pure interval arithmetic here; loading is in `mod.rs`.

use chrono::Duration;

use super::rules::Interval;

/// Sorted, overlapping or touching intervals merged into one; empty ones dropped.
pub fn union(mut list: Vec<Interval>) -> Vec<Interval> {
    list.retain(|iv| iv.end_at > iv.start_at);
    list.sort();
    let mut out: Vec<Interval> = Vec::with_capacity(list.len());
    for iv in list {
        match out.last_mut() {
            Some(last) if iv.start_at <= last.end_at => {
                if iv.end_at > last.end_at {
                    last.end_at = iv.end_at;
                }
            }
            _ => out.push(iv),
        }
    }
    out
}

/// `base` minus every interval of `cut` (both in any order); the result is sorted and merged.
pub fn subtract(base: Vec<Interval>, cut: &[Interval]) -> Vec<Interval> {
    let base = union(base);
    let cut = union(cut.to_vec());
    let mut out = Vec::with_capacity(base.len());
    let mut j = 0;
    for b in base {
        let mut cur = b;
        // Skip cuts wholly before this piece.
        while j < cut.len() && cut[j].end_at <= cur.start_at {
            j += 1;
        }
        let mut k = j;
        let mut alive = true;
        while k < cut.len() && cut[k].start_at < cur.end_at {
            let c = cut[k];
            if c.start_at > cur.start_at {
                out.push(Interval::new(cur.start_at, c.start_at));
            }
            if c.end_at >= cur.end_at {
                alive = false;
                break;
            }
            cur.start_at = cur.start_at.max(c.end_at);
            k += 1;
        }
        if alive && cur.end_at > cur.start_at {
            out.push(cur);
        }
    }
    out
}

/// Clips every interval to `range`, dropping what falls outside.
pub fn clip(list: Vec<Interval>, range: Interval) -> Vec<Interval> {
    list.into_iter()
        .filter_map(|iv| {
            let s = iv.start_at.max(range.start_at);
            let e = iv.end_at.min(range.end_at);
            (e > s).then(|| Interval::new(s, e))
        })
        .collect()
}

/// A booking's time widened by the travel buffer on both sides.
pub fn buffered(b: Interval, buffer: Duration) -> Interval {
    Interval::new(b.start_at - buffer, b.end_at + buffer)
}

/// The free windows: `slots` minus `blocks` minus `bookings` (each widened by `buffer`),
/// clipped to `range`.
pub fn free_windows(
    slots: Vec<Interval>,
    blocks: &[Interval],
    bookings: &[Interval],
    buffer: Duration,
    range: Interval,
) -> Vec<Interval> {
    let mut cut: Vec<Interval> = blocks.to_vec();
    cut.extend(bookings.iter().map(|b| buffered(*b, buffer)));
    clip(subtract(slots, &cut), range)
}

/// Up to `n` windows of `free` nearest to `at`, in time order.
pub fn nearest(free: &[Interval], at: Interval, n: usize) -> Vec<Interval> {
    let dist = |iv: &Interval| {
        if iv.end_at <= at.start_at {
            at.start_at - iv.end_at
        } else if iv.start_at >= at.end_at {
            iv.start_at - at.end_at
        } else {
            Duration::zero()
        }
    };
    let mut v: Vec<Interval> = free.to_vec();
    v.sort_by_key(|iv| (dist(iv), iv.start_at));
    v.truncate(n);
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        format!("2026-06-{s}:00Z").parse().unwrap()
    }

    fn iv(a: &str, b: &str) -> Interval {
        Interval::new(t(a), t(b))
    }

    #[test]
    fn subtraction_table() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            // A Friday window 18:00–02:00 with a block 21:00–22:00 inside: two windows.
            (
                &[("05T18:00", "06T02:00")],
                &[("05T21:00", "05T22:00")],
                &[("05T18:00", "05T21:00"), ("05T22:00", "06T02:00")],
            ),
            // A cut covering the start, the end, everything, nothing.
            (&[("05T18:00", "06T02:00")], &[("05T17:00", "05T19:00")], &[("05T19:00", "06T02:00")]),
            (&[("05T18:00", "06T02:00")], &[("06T01:00", "06T03:00")], &[("05T18:00", "06T01:00")]),
            (&[("05T18:00", "06T02:00")], &[("05T17:00", "06T03:00")], &[]),
            (&[("05T18:00", "06T02:00")], &[("06T03:00", "06T04:00")], &[("05T18:00", "06T02:00")]),
            // Several cuts across two windows; touching windows merge first.
            (
                &[("05T10:00", "05T14:00"), ("05T14:00", "05T18:00"), ("06T10:00", "06T12:00")],
                &[("05T11:00", "05T12:00"), ("05T13:00", "05T15:00"), ("05T17:30", "06T10:30")],
                &[
                    ("05T10:00", "05T11:00"),
                    ("05T12:00", "05T13:00"),
                    ("05T15:00", "05T17:30"),
                    ("06T10:30", "06T12:00"),
                ],
            ),
        ];
        for (base, cut, want) in cases {
            let base: Vec<Interval> = base.iter().map(|(a, b)| iv(a, b)).collect();
            let cut: Vec<Interval> = cut.iter().map(|(a, b)| iv(a, b)).collect();
            let want: Vec<Interval> = want.iter().map(|(a, b)| iv(a, b)).collect();
            assert_eq!(subtract(base.clone(), &cut), want, "{base:?} - {cut:?}");
        }
    }

    #[test]
    fn bookings_take_their_travel_buffer() {
        let free = free_windows(
            vec![iv("05T18:00", "06T02:00")],
            &[],
            &[iv("05T20:00", "05T22:00")],
            Duration::minutes(30),
            iv("05T00:00", "07T00:00"),
        );
        assert_eq!(free, vec![iv("05T18:00", "05T19:30"), iv("05T22:30", "06T02:00")]);
    }

    #[test]
    fn nearest_windows_are_in_time_order() {
        let free = [
            iv("01T10:00", "01T12:00"),
            iv("05T10:00", "05T12:00"),
            iv("05T20:00", "05T22:00"),
            iv("09T10:00", "09T12:00"),
        ];
        assert_eq!(
            nearest(&free, iv("05T14:00", "05T16:00"), 2),
            vec![iv("05T10:00", "05T12:00"), iv("05T20:00", "05T22:00")]
        );
    }
}
