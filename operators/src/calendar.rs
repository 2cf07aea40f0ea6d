//! UTC calendar arithmetic on event times in microseconds since the Unix epoch: bucket ranges
//! for every [`BucketWidth`] and the values of every [`CalendarPart`].
//!
//! Hours and days are fixed-length (UTC has no daylight saving; leap seconds are not counted
//! by Unix time), so their buckets are computed with Euclidean division, which also places
//! negative (pre-1970) times correctly. Months and years go through `chrono`.
//!
//! Every function returns `None` for a time outside `chrono`'s range (about ±262 000 years),
//! so callers can skip such rows instead of panicking.

use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use oceanflow_config::{BucketWidth, CalendarPart};

/// Microseconds in one hour.
pub const HOUR_US: i64 = 3_600_000_000;
/// Microseconds in one day.
pub const DAY_US: i64 = 24 * HOUR_US;

/// The UTC bucket of `width` containing `t_us`, as a half-open range of microseconds.
pub fn bucket_range(width: BucketWidth, t_us: i64) -> Option<Range<i64>> {
    match width {
        BucketWidth::Hour => fixed_range(HOUR_US, t_us),
        BucketWidth::Day => fixed_range(DAY_US, t_us),
        BucketWidth::Month => {
            let d = date_of(t_us)?;
            let start = month_start_us(d.year(), d.month())?;
            let (y, m) = if d.month() == 12 {
                (d.year() + 1, 1)
            } else {
                (d.year(), d.month() + 1)
            };
            Some(start..month_start_us(y, m)?)
        }
        BucketWidth::Year => {
            let d = date_of(t_us)?;
            Some(month_start_us(d.year(), 1)?..month_start_us(d.year() + 1, 1)?)
        }
    }
}

/// The start of the UTC bucket of `width` containing `t_us`.
pub fn bucket_start(width: BucketWidth, t_us: i64) -> Option<i64> {
    bucket_range(width, t_us).map(|r| r.start)
}

/// The (exclusive) end of the bucket of `width` that starts at, or contains, `start_us`.
pub fn bucket_end(width: BucketWidth, start_us: i64) -> Option<i64> {
    bucket_range(width, start_us).map(|r| r.end)
}

/// The value of `part` at `t_us`: month 1–12, ISO weekday 1 (Monday)–7, or hour 0–23.
pub fn calendar_value(part: CalendarPart, t_us: i64) -> Option<u32> {
    let t = DateTime::<Utc>::from_timestamp_micros(t_us)?;
    Some(match part {
        CalendarPart::MonthOfYear => t.month(),
        CalendarPart::DayOfWeek => t.weekday().number_from_monday(),
        CalendarPart::HourOfDay => t.hour(),
    })
}

/// The coarsest bucket width whose buckets determine `part` (an hour decides the hour of day,
/// a day the weekday, a month the month of year).
pub fn width_deciding(part: CalendarPart) -> BucketWidth {
    match part {
        CalendarPart::MonthOfYear => BucketWidth::Month,
        CalendarPart::DayOfWeek => BucketWidth::Day,
        CalendarPart::HourOfDay => BucketWidth::Hour,
    }
}

fn fixed_range(width_us: i64, t_us: i64) -> Option<Range<i64>> {
    let start = t_us.div_euclid(width_us).checked_mul(width_us)?;
    Some(start..start.checked_add(width_us)?)
}

fn date_of(t_us: i64) -> Option<NaiveDate> {
    DateTime::<Utc>::from_timestamp_micros(t_us).map(|t| t.date_naive())
}

fn month_start_us(year: i32, month: u32) -> Option<i64> {
    let midnight = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?;
    midnight.and_utc().timestamp().checked_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn hour_and_day_buckets_before_and_after_1970() {
        let t = us("1969-12-31T23:59:59.999999Z");
        assert_eq!(t, -1);
        assert_eq!(
            bucket_range(BucketWidth::Hour, t),
            Some(us("1969-12-31T23:00:00Z")..0)
        );
        assert_eq!(
            bucket_range(BucketWidth::Day, t),
            Some(us("1969-12-31T00:00:00Z")..0)
        );
        assert_eq!(bucket_start(BucketWidth::Day, 0), Some(0));
        assert_eq!(bucket_end(BucketWidth::Day, 0), Some(DAY_US));
    }

    #[test]
    fn month_buckets_follow_leap_years() {
        let feb_2024 = bucket_range(BucketWidth::Month, us("2024-02-29T12:00:00Z")).unwrap();
        assert_eq!(
            feb_2024,
            us("2024-02-01T00:00:00Z")..us("2024-03-01T00:00:00Z")
        );
        assert_eq!(feb_2024.end - feb_2024.start, 29 * DAY_US);
        let feb_1900 = bucket_range(BucketWidth::Month, us("1900-02-28T23:59:59Z")).unwrap();
        assert_eq!(feb_1900.end - feb_1900.start, 28 * DAY_US);
        let dec = bucket_range(BucketWidth::Month, us("1969-12-15T00:00:00Z")).unwrap();
        assert_eq!(dec, us("1969-12-01T00:00:00Z")..0);
    }

    #[test]
    fn year_buckets_and_their_edges() {
        let y2000 = bucket_range(BucketWidth::Year, us("2000-12-31T23:59:59.999999Z")).unwrap();
        assert_eq!(y2000.end - y2000.start, 366 * DAY_US);
        assert_eq!(
            bucket_start(BucketWidth::Year, us("2001-01-01T00:00:00Z")),
            Some(y2000.end)
        );
        assert_eq!(
            bucket_range(BucketWidth::Year, -1),
            Some(us("1969-01-01T00:00:00Z")..0)
        );
    }

    #[test]
    fn calendar_parts() {
        // 2024-03-10 was a Sunday.
        let t = us("2024-03-10T07:30:00Z");
        assert_eq!(calendar_value(CalendarPart::MonthOfYear, t), Some(3));
        assert_eq!(calendar_value(CalendarPart::DayOfWeek, t), Some(7));
        assert_eq!(calendar_value(CalendarPart::HourOfDay, t), Some(7));
        // 1969-12-31 was a Wednesday.
        assert_eq!(calendar_value(CalendarPart::DayOfWeek, -1), Some(3));
        assert_eq!(calendar_value(CalendarPart::HourOfDay, -1), Some(23));
    }

    #[test]
    fn out_of_range_times_give_none() {
        assert_eq!(bucket_range(BucketWidth::Month, i64::MAX), None);
        assert_eq!(bucket_range(BucketWidth::Hour, i64::MAX), None);
        assert_eq!(calendar_value(CalendarPart::HourOfDay, i64::MIN), None);
    }
}
