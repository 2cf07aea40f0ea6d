//! Times: the reception timestamps of OpenRVDAS logs, sentence times, and the sanity check of
//! instrument clocks against the logger's clock.
//!
//! The reception time (the logger's clock, NTP-disciplined on a ship) is the reference. A
//! sentence time further from it than `max_clock_offset` is implausible and is not used; an
//! offset that is a whole number of GPS weeks-rollover periods (1024 weeks) away from a small
//! one is reported as a week rollover — the NBP1406 P-code GPS says December 1994 in August
//! 2014, exactly 1024 weeks early.

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// The GPS week-number rollover period (1024 weeks) in µs.
pub const GPS_ROLLOVER_US: i64 = 1024 * 7 * DAY_US;

/// The current time in µs since the epoch (the reception time of live lines).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm: branch-free
/// and exact, so the replay's per-line timestamp parse needs no calendar library).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an ISO-8601 UTC time as OpenRVDAS writes it (`2014-08-01T00:00:00.124000Z`; the
/// fraction is optional, the zone may be `Z`, `+00:00` or absent) into µs since the epoch.
pub fn parse_reception_time(s: &[u8]) -> Option<i64> {
    TimestampParser::default().parse(s)
}

/// [`parse_reception_time`] with the last date remembered: consecutive log lines share their
/// date, so the calendar arithmetic runs once a day instead of once a line (the replay parses
/// millions of timestamps a second).
#[derive(Debug, Clone, Default)]
pub struct TimestampParser {
    date: [u8; 10],
    days: i64,
}

impl TimestampParser {
    /// Parses one timestamp (see [`parse_reception_time`]).
    pub fn parse(&mut self, s: &[u8]) -> Option<i64> {
        let (date, time) = (s.get(..10)?, s.get(10..)?);
        let days = if date == self.date {
            self.days
        } else {
            let days = parse_date(date)?;
            self.date.copy_from_slice(date);
            self.days = days;
            days
        };
        Some(days * DAY_US + parse_time(time)?)
    }
}

fn digit(b: u8) -> Option<i64> {
    b.is_ascii_digit().then(|| i64::from(b - b'0'))
}

fn two(a: u8, b: u8) -> Option<i64> {
    Some(digit(a)? * 10 + digit(b)?)
}

/// `YYYY-MM-DD` → days since the epoch.
fn parse_date(s: &[u8]) -> Option<i64> {
    let [y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1] = s else {
        return None;
    };
    let year = two(*y0, *y1)? * 100 + two(*y2, *y3)?;
    let (month, day) = (two(*mo0, *mo1)?, two(*d0, *d1)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year as i32, month as u32, day as u32))
}

/// `THH:MM:SS[.ffffff][Z|+00:00]` → µs since midnight.
fn parse_time(s: &[u8]) -> Option<i64> {
    let [b'T' | b' ', h0, h1, b':', mi0, mi1, b':', s0, s1, rest @ ..] = s else {
        return None;
    };
    let (hour, minute, second) = (two(*h0, *h1)?, two(*mi0, *mi1)?, two(*s0, *s1)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut micros = 0i64;
    let mut rest = rest;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut scale = 100_000i64;
        for &b in &tail[..n] {
            micros += i64::from(b - b'0') * scale;
            scale /= 10;
        }
        rest = &tail[n..];
    }
    if !matches!(rest, b"" | b"Z" | b"+00:00") {
        return None;
    }
    Some(((hour * 60 + minute) * 60 + second) * 1_000_000 + micros)
}

/// A time of day (µs since midnight) placed on the day nearest to the reception time: a GGA
/// at 23:59:59.2 received at 00:00:00.2 belongs to the day before.
pub fn nearest_instant(time_of_day_us: i64, reception_us: i64) -> i64 {
    let day_start = reception_us.div_euclid(DAY_US) * DAY_US;
    let candidate = day_start + time_of_day_us;
    let offset = candidate - reception_us;
    if offset > DAY_US / 2 {
        candidate - DAY_US
    } else if offset < -DAY_US / 2 {
        candidate + DAY_US
    } else {
        candidate
    }
}

/// What is wrong with an instrument's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockFault {
    /// Off by a whole number of 1024-week GPS rollover periods (give or take the limit).
    WeekRollover,
    /// Off by more than the limit, for no recognisable reason.
    Offset,
}

impl ClockFault {
    /// Every fault, for pre-registering metric series.
    pub const ALL: [ClockFault; 2] = [ClockFault::WeekRollover, ClockFault::Offset];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockFault::WeekRollover => "week_rollover",
            ClockFault::Offset => "offset",
        }
    }
}

/// Judges an instrument time against the reception time: `None` when the offset is within
/// `max_offset_us`, else the kind of fault.
pub fn judge(sentence_us: i64, reception_us: i64, max_offset_us: i64) -> Option<ClockFault> {
    let offset = sentence_us - reception_us;
    if offset.abs() <= max_offset_us {
        return None;
    }
    let rollovers = (offset as f64 / GPS_ROLLOVER_US as f64).round() as i64;
    let residual = offset - rollovers * GPS_ROLLOVER_US;
    if rollovers != 0 && residual.abs() <= max_offset_us {
        Some(ClockFault::WeekRollover)
    } else {
        Some(ClockFault::Offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            days_from_civil(2014, 8, 1) - days_from_civil(1994, 12, 16),
            7168
        );
    }

    #[test]
    fn reception_times_parse_with_and_without_fraction_and_zone() {
        let t = parse_reception_time(b"2014-08-01T00:00:00.124000Z").unwrap();
        assert_eq!(t, 1_406_851_200_124_000);
        assert_eq!(
            parse_reception_time(b"2014-08-01T00:00:00Z"),
            Some(1_406_851_200_000_000)
        );
        assert_eq!(
            parse_reception_time(b"2014-08-01T00:00:00.5+00:00"),
            Some(1_406_851_200_500_000)
        );
        let mut cached = TimestampParser::default();
        assert_eq!(
            cached.parse(b"2014-08-01T00:00:00Z"),
            Some(1_406_851_200_000_000)
        );
        assert_eq!(
            cached.parse(b"2014-08-01T00:00:01Z"),
            Some(1_406_851_201_000_000)
        );
        assert_eq!(
            cached.parse(b"2014-08-02T00:00:00Z"),
            Some(1_406_937_600_000_000)
        );
        assert_eq!(cached.parse(b"2014-08-02T25:00:00Z"), None);
        for bad in [
            &b"2014-08-01"[..],
            b"2014-13-01T00:00:00Z",
            b"2014-08-01T00:00:00.Z",
            b"2014-08-01T00:00:00+02:00",
            b"yesterday at noon, roughly",
        ] {
            assert_eq!(parse_reception_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn time_of_day_lands_on_the_nearest_day() {
        let reception = parse_reception_time(b"2014-08-01T00:00:00.241Z").unwrap();
        let gga = 86_399_226_000; // 23:59:59.226
        assert_eq!(reception - nearest_instant(gga, reception), 1_015_000);
    }

    #[test]
    fn rollover_and_plain_offsets_are_told_apart() {
        let reception = parse_reception_time(b"2014-08-01T00:00:00.124Z").unwrap();
        let zda_1994 = days_from_civil(1994, 12, 16) * DAY_US;
        let limit = 600_000_000;
        assert_eq!(
            judge(zda_1994, reception, limit),
            Some(ClockFault::WeekRollover)
        );
        assert_eq!(
            judge(reception + 3_600_000_000, reception, limit),
            Some(ClockFault::Offset)
        );
        assert_eq!(judge(reception - 1_000_000, reception, limit), None);
    }
}
