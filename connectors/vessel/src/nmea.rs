//! NMEA 0183 parsing: framing, checksum, talker, and typed fields of the sentences vessels
//! send. Pure: bytes in, values out, no I/O and no allocation (fields are sub-slices of the
//! input, numbers are parsed from bytes), because a ship logger must keep up with millions of
//! lines per second on replay.
//!
//! Each supported sentence yields its values in the order of
//! [`oceanflow_config::source::vessel::NMEA_FIELDS`] (`None` for an empty field), so a device's
//! `variables` resolve once to a (kind, index) pair and the hot path never looks names up.

use oceanflow_config::source::vessel::ChecksumPolicy;

use crate::clock::{days_from_civil, DAY_US};

/// Most values any supported sentence yields (GGA: 7).
pub const MAX_VALUES: usize = 7;

/// The sentence types with typed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Fix: time, position, quality, satellites, HDOP, altitude.
    Gga,
    /// Geographic position: position, time, status.
    Gll,
    /// Recommended minimum: time, status, position, speed, course, date, variation.
    Rmc,
    /// Course and speed over ground.
    Vtg,
    /// Time and date.
    Zda,
    /// Heading, true.
    Hdt,
    /// Depth below transducer, offset, max range (`$KIDPT` from the EM122 multibeam).
    Dpt,
    /// Depth below transducer in feet, metres, fathoms.
    Dbt,
    /// Water temperature.
    Mtw,
    /// Wind angle and speed.
    Mwv,
    /// Transducer measurements (type, value, unit, name quadruples).
    Xdr,
    /// Seapath proprietary: quality flags.
    Psxn20,
    /// Seapath proprietary: gyro calibration and offset.
    Psxn22,
    /// Seapath proprietary: roll, pitch, heading, heave.
    Psxn23,
    /// UHDAS ADCP speed log: ocean u, v and heading.
    PuhawUvh,
    /// Well framed (and checksummed) but of a type without typed fields: counted, not parsed.
    Unsupported,
}

impl Kind {
    /// Every kind, in metric-label order.
    pub const ALL: [Kind; 16] = [
        Kind::Gga,
        Kind::Gll,
        Kind::Rmc,
        Kind::Vtg,
        Kind::Zda,
        Kind::Hdt,
        Kind::Dpt,
        Kind::Dbt,
        Kind::Mtw,
        Kind::Mwv,
        Kind::Xdr,
        Kind::Psxn20,
        Kind::Psxn22,
        Kind::Psxn23,
        Kind::PuhawUvh,
        Kind::Unsupported,
    ];

    /// The name used in `variables` (`GGA.altitude_m`) and in metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gga => "GGA",
            Kind::Gll => "GLL",
            Kind::Rmc => "RMC",
            Kind::Vtg => "VTG",
            Kind::Zda => "ZDA",
            Kind::Hdt => "HDT",
            Kind::Dpt => "DPT",
            Kind::Dbt => "DBT",
            Kind::Mtw => "MTW",
            Kind::Mwv => "MWV",
            Kind::Xdr => "XDR",
            Kind::Psxn20 => "PSXN20",
            Kind::Psxn22 => "PSXN22",
            Kind::Psxn23 => "PSXN23",
            Kind::PuhawUvh => "PUHAWUVH",
            Kind::Unsupported => "unsupported",
        }
    }

    /// The kind named `name` (as in [`Kind::name`]).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Index in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a sentence could not be parsed. Each variant is a metric label ([`ParseError::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("empty sentence")]
    Empty,
    /// Does not start with `$` or `!`.
    #[error("does not start with '$' or '!'")]
    NoStart,
    /// A byte outside printable ASCII (a bit flip, line noise).
    #[error("byte {0:#04x} is not printable ASCII")]
    NonAscii(u8),
    /// The checksum does not match the sentence.
    #[error("checksum mismatch: sentence says {stated:02X}, content gives {computed:02X}")]
    BadChecksum {
        /// The `*hh` value.
        stated: u8,
        /// The XOR of the content.
        computed: u8,
    },
    /// `*` not followed by exactly two hex digits.
    #[error("'*' is not followed by two hex digits")]
    MalformedChecksum,
    /// The device requires checksums and this sentence has none.
    #[error("no checksum, and the device requires one")]
    MissingChecksum,
    /// The address field is not a talker + formatter or a known proprietary code.
    #[error("address field is not a 2-letter talker and 3-letter sentence")]
    BadAddress,
    /// Fewer fields than the sentence type has (a cut line).
    #[error("{0} sentence has too few fields")]
    TooFewFields(&'static str),
    /// A field does not hold what its position requires.
    #[error("{sentence} field {field} is invalid")]
    BadField {
        /// The sentence type.
        sentence: &'static str,
        /// The field's name.
        field: &'static str,
    },
}

impl ParseError {
    /// Every reason label, for pre-registering metric series.
    pub const REASONS: [&'static str; 9] = [
        "empty",
        "no_start",
        "non_ascii",
        "bad_checksum",
        "malformed_checksum",
        "missing_checksum",
        "bad_address",
        "too_few_fields",
        "bad_field",
    ];

    /// The metric label of this error.
    pub fn reason(&self) -> &'static str {
        Self::REASONS[self.reason_index()]
    }

    /// Index of [`ParseError::reason`] in [`ParseError::REASONS`].
    pub fn reason_index(&self) -> usize {
        match self {
            ParseError::Empty => 0,
            ParseError::NoStart => 1,
            ParseError::NonAscii(_) => 2,
            ParseError::BadChecksum { .. } => 3,
            ParseError::MalformedChecksum => 4,
            ParseError::MissingChecksum => 5,
            ParseError::BadAddress => 6,
            ParseError::TooFewFields(_) => 7,
            ParseError::BadField { .. } => 8,
        }
    }

    /// Whether this is a checksum failure (counted separately: a noisy line, not a bug).
    pub fn is_checksum(&self) -> bool {
        matches!(
            self,
            ParseError::BadChecksum { .. }
                | ParseError::MalformedChecksum
                | ParseError::MissingChecksum
        )
    }
}

/// Date and time carried inside a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SentenceTime {
    /// Microseconds since midnight UTC, when the sentence has a time of day.
    pub time_of_day_us: Option<i64>,
    /// Days since 1970-01-01 of the sentence's date (ZDA, RMC), when it has one.
    pub days: Option<i64>,
}

impl SentenceTime {
    /// The full instant (µs since the epoch) when both date and time are present.
    pub fn instant_us(&self) -> Option<i64> {
        Some(self.days? * DAY_US + self.time_of_day_us?)
    }
}

/// A parsed sentence. Borrows the input only for XDR measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sentence<'a> {
    /// The talker id (`GP`, `IN`, `HE`, `KI`), empty for proprietary sentences.
    pub talker: &'a [u8],
    /// The type.
    pub kind: Kind,
    /// Values in `NMEA_FIELDS` order for this kind; `None` when the field is empty.
    pub values: [Option<f64>; MAX_VALUES],
    /// A valid position fix (latitude, longitude in signed decimal degrees): GGA with a
    /// non-zero quality, RMC and GLL with status `A`.
    pub fix: Option<(f64, f64)>,
    /// Time inside the sentence.
    pub time: SentenceTime,
    /// XDR only: the fields after the address, to read measurements by name.
    xdr: &'a [u8],
}

impl<'a> Sentence<'a> {
    /// The value of XDR measurement `name` (the fourth field of a quadruple).
    pub fn xdr_value(&self, name: &[u8]) -> Option<f64> {
        let mut fields = self.xdr.split(|b| *b == b',');
        loop {
            let _kind = fields.next()?;
            let value = fields.next()?;
            let _unit = fields.next()?;
            let n = fields.next()?;
            if n == name {
                return parse_number(value).ok().flatten();
            }
        }
    }
}

/// Splits a line or datagram into sentence candidates: at CR/LF and before every `$`/`!`
/// (several sentences may share one datagram or line). Whitespace-only pieces are skipped;
/// other bytes before the first `$` come back as their own piece (and fail with `NoStart`).
pub fn split_sentences(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = input;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[start..];
        if rest.is_empty() {
            return None;
        }
        // The piece ends at a line end or at the next start character (not the first byte).
        let end = rest[1..]
            .iter()
            .position(|b| matches!(b, b'$' | b'!' | b'\r' | b'\n'))
            .map_or(rest.len(), |i| i + 1);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        let piece = trim_end(piece);
        if !piece.is_empty() {
            return Some(piece);
        }
    })
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [head @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = head;
        } else {
            break;
        }
    }
    s
}

/// Parses one sentence (no line terminator) under a device's checksum policy.
pub fn parse(sentence: &[u8], policy: ChecksumPolicy) -> Result<Sentence<'_>, ParseError> {
    let sentence = trim_end(sentence);
    let (&start, rest) = sentence.split_first().ok_or(ParseError::Empty)?;
    if start != b'$' && start != b'!' {
        return Err(ParseError::NoStart);
    }
    let body = checked_body(rest, policy)?;
    let (address, fields) = match body.iter().position(|b| *b == b',') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    parse_fields(address, fields)
}

/// Verifies framing characters and the checksum; returns the content between the start
/// character and `*`.
fn checked_body(rest: &[u8], policy: ChecksumPolicy) -> Result<&[u8], ParseError> {
    let star = rest.iter().rposition(|b| *b == b'*');
    let content = star.map_or(rest, |i| &rest[..i]);
    let xor = xor_printable(content)?;
    match star {
        Some(i) => {
            let digits = &rest[i + 1..];
            let stated = match digits {
                [h, l] => {
                    (hex(*h).ok_or(ParseError::MalformedChecksum)? << 4)
                        | hex(*l).ok_or(ParseError::MalformedChecksum)?
                }
                _ => return Err(ParseError::MalformedChecksum),
            };
            if policy != ChecksumPolicy::Ignore && stated != xor {
                return Err(ParseError::BadChecksum {
                    stated,
                    computed: xor,
                });
            }
        }
        None if policy == ChecksumPolicy::Require => return Err(ParseError::MissingChecksum),
        None => {}
    }
    Ok(content)
}

/// The XOR of `content` (the NMEA checksum), or the first byte that is not printable ASCII.
///
/// Eight bytes at a time (SWAR): the checksum loop was a third of the parse. A word is clean
/// when no byte has its high bit set, none is 0x7f (adding 1 sets the high bit) and none is
/// below 0x20 (subtracting 0x20 borrows into the high bit of a byte that had it clear). The
/// arithmetic can only misfire next to a byte that is itself bad, and a flagged word is
/// re-checked byte by byte, so the result is exactly the bytewise one.
fn xor_printable(content: &[u8]) -> Result<u8, ParseError> {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut words = content.chunks_exact(8);
    let mut acc = 0u64;
    for chunk in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let w = u64::from_le_bytes(bytes);
        let flagged = (w | w.wrapping_add(ONES) | (w.wrapping_sub(ONES * 0x20) & !w)) & HIGH;
        if flagged != 0 {
            return xor_printable_bytes(content);
        }
        acc ^= w;
    }
    acc ^= acc >> 32;
    acc ^= acc >> 16;
    acc ^= acc >> 8;
    let mut xor = acc as u8;
    for &b in words.remainder() {
        if !(0x20..0x7f).contains(&b) {
            return Err(ParseError::NonAscii(b));
        }
        xor ^= b;
    }
    Ok(xor)
}

/// [`xor_printable`] one byte at a time (the reference, and the slow path for bad bytes).
fn xor_printable_bytes(content: &[u8]) -> Result<u8, ParseError> {
    let mut xor = 0u8;
    for &b in content {
        if !(0x20..0x7f).contains(&b) {
            return Err(ParseError::NonAscii(b));
        }
        xor ^= b;
    }
    Ok(xor)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Reads fields in order; a missing field is [`ParseError::TooFewFields`].
struct Fields<'a> {
    rest: Option<&'a [u8]>,
    sentence: &'static str,
}

impl<'a> Fields<'a> {
    fn new(fields: Option<&'a [u8]>, sentence: &'static str) -> Self {
        Fields {
            rest: fields,
            sentence,
        }
    }

    fn next(&mut self) -> Result<&'a [u8], ParseError> {
        let rest = self.rest.ok_or(ParseError::TooFewFields(self.sentence))?;
        match rest.iter().position(|b| *b == b',') {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Ok(&rest[..i])
            }
            None => {
                self.rest = None;
                Ok(rest)
            }
        }
    }

    fn bad(&self, field: &'static str) -> ParseError {
        ParseError::BadField {
            sentence: self.sentence,
            field,
        }
    }

    fn number(&mut self, field: &'static str) -> Result<Option<f64>, ParseError> {
        let f = self.next()?;
        parse_number(f).map_err(|()| self.bad(field))
    }

    fn skip(&mut self, n: usize) -> Result<(), ParseError> {
        for _ in 0..n {
            self.next()?;
        }
        Ok(())
    }

    fn time(&mut self) -> Result<Option<i64>, ParseError> {
        let f = self.next()?;
        parse_time_of_day(f).map_err(|()| self.bad("time"))
    }

    /// `ddmm.mmm,N` (or `dddmm.mmm,E`): signed decimal degrees.
    fn coordinate(&mut self, field: &'static str, max: f64) -> Result<Option<f64>, ParseError> {
        let value = self.next()?;
        let hemisphere = self.next()?;
        let bad = self.bad(field);
        let Some(v) = parse_number(value).map_err(|()| bad)? else {
            return Ok(None);
        };
        let degrees = (v / 100.0).trunc();
        let minutes = v - degrees * 100.0;
        if !(0.0..60.0).contains(&minutes) {
            return Err(bad);
        }
        let decimal = degrees + minutes / 60.0;
        if decimal > max {
            return Err(bad);
        }
        match hemisphere {
            b"N" | b"E" => Ok(Some(decimal)),
            b"S" | b"W" => Ok(Some(-decimal)),
            _ => Err(bad),
        }
    }

    fn status(&mut self) -> Result<bool, ParseError> {
        match self.next()? {
            b"A" => Ok(true),
            b"V" | b"" => Ok(false),
            _ => Err(self.bad("status")),
        }
    }
}

const KNOT_MS: f64 = 1852.0 / 3600.0;

fn parse_fields<'a>(
    address: &'a [u8],
    fields: Option<&'a [u8]>,
) -> Result<Sentence<'a>, ParseError> {
    let mut out = Sentence {
        talker: &[],
        kind: Kind::Unsupported,
        values: [None; MAX_VALUES],
        fix: None,
        time: SentenceTime::default(),
        xdr: &[],
    };
    if address.first() == Some(&b'P') {
        return parse_proprietary(address, fields, out);
    }
    let [_, _, f0, f1, f2] = address else {
        return Err(ParseError::BadAddress);
    };
    if !address.iter().all(u8::is_ascii_alphanumeric) {
        return Err(ParseError::BadAddress);
    }
    out.talker = &address[..2];
    let kind = match [*f0, *f1, *f2] {
        [b'G', b'G', b'A'] => Kind::Gga,
        [b'G', b'L', b'L'] => Kind::Gll,
        [b'R', b'M', b'C'] => Kind::Rmc,
        [b'V', b'T', b'G'] => Kind::Vtg,
        [b'Z', b'D', b'A'] => Kind::Zda,
        [b'H', b'D', b'T'] => Kind::Hdt,
        [b'D', b'P', b'T'] => Kind::Dpt,
        [b'D', b'B', b'T'] => Kind::Dbt,
        [b'M', b'T', b'W'] => Kind::Mtw,
        [b'M', b'W', b'V'] => Kind::Mwv,
        [b'X', b'D', b'R'] => Kind::Xdr,
        _ => return Ok(out),
    };
    out.kind = kind;
    let mut f = Fields::new(fields, kind.name());
    let v = &mut out.values;
    match kind {
        Kind::Gga => {
            out.time.time_of_day_us = f.time()?;
            let lat = f.coordinate("latitude", 90.0)?;
            let lon = f.coordinate("longitude", 180.0)?;
            let quality = f.number("quality")?;
            let satellites = f.number("satellites")?;
            let hdop = f.number("hdop")?;
            let altitude = f.number("altitude")?;
            f.skip(1)?;
            let separation = f.number("geoid_separation")?;
            *v = [lat, lon, quality, satellites, hdop, altitude, separation];
            if quality.is_some_and(|q| q > 0.0) {
                out.fix = lat.zip(lon);
            }
        }
        Kind::Gll => {
            let lat = f.coordinate("latitude", 90.0)?;
            let lon = f.coordinate("longitude", 180.0)?;
            out.time.time_of_day_us = f.time()?;
            let valid = f.status()?;
            v[0] = lat;
            v[1] = lon;
            if valid {
                out.fix = lat.zip(lon);
            }
        }
        Kind::Rmc => {
            out.time.time_of_day_us = f.time()?;
            let valid = f.status()?;
            let lat = f.coordinate("latitude", 90.0)?;
            let lon = f.coordinate("longitude", 180.0)?;
            let knots = f.number("speed")?;
            let course = f.number("course")?;
            let date = f.next()?;
            out.time.days = parse_ddmmyy(date).map_err(|()| f.bad("date"))?;
            let variation = f.number("magnetic_variation")?;
            let direction = f.next()?;
            let variation = match direction {
                b"W" => variation.map(|x| -x),
                b"E" | b"" => variation,
                _ => return Err(f.bad("magnetic_variation")),
            };
            *v = [
                lat,
                lon,
                knots,
                knots.map(|k| k * KNOT_MS),
                course,
                variation,
                None,
            ];
            if valid {
                out.fix = lat.zip(lon);
            }
        }
        Kind::Vtg => {
            let course_true = f.number("course_true")?;
            f.skip(1)?;
            let course_mag = f.number("course_magnetic")?;
            f.skip(1)?;
            let knots = f.number("speed_knots")?;
            f.skip(1)?;
            let kmh = f.number("speed_kmh")?;
            let ms = knots.map(|k| k * KNOT_MS).or(kmh.map(|k| k / 3.6));
            v[..4].copy_from_slice(&[course_true, course_mag, knots, ms]);
        }
        Kind::Zda => {
            out.time.time_of_day_us = f.time()?;
            let day = f.number("day")?;
            let month = f.number("month")?;
            let year = f.number("year")?;
            let tz_hours = f.number("local_zone_hours")?;
            let tz_minutes = f.number("local_zone_minutes")?;
            out.time.days = match (day, month, year) {
                (Some(d), Some(m), Some(y)) => Some(valid_days(y, m, d).ok_or(f.bad("date"))?),
                (None, None, None) => None,
                _ => return Err(f.bad("date")),
            };
            v[0] = match (tz_hours, tz_minutes) {
                (None, None) => None,
                (h, m) => {
                    let (h, m) = (h.unwrap_or(0.0), m.unwrap_or(0.0));
                    Some(h * 60.0 + m.copysign(if h < 0.0 { -1.0 } else { 1.0 }))
                }
            };
        }
        Kind::Hdt => v[0] = f.number("heading")?,
        Kind::Dpt => {
            v[0] = f.number("depth")?;
            v[1] = f.number("offset")?;
            // The maximum range is newer (NMEA 3.0); older senders stop after the offset.
            v[2] = match f.next() {
                Ok(field) => parse_number(field).map_err(|()| f.bad("max_range"))?,
                Err(_) => None,
            };
        }
        Kind::Dbt => {
            f.skip(2)?;
            v[0] = f.number("depth_m")?;
        }
        Kind::Mtw => v[0] = f.number("temperature")?,
        Kind::Mwv => {
            let angle = f.number("wind_angle")?;
            f.skip(1)?;
            let speed = f.number("wind_speed")?;
            let factor = match f.next()? {
                b"M" => 1.0,
                b"N" => KNOT_MS,
                b"K" => 1.0 / 3.6,
                b"" if speed.is_none() => 1.0,
                _ => return Err(f.bad("wind_speed_unit")),
            };
            let valid = f.status()?;
            if valid {
                v[0] = angle;
                v[1] = speed.map(|s| s * factor);
            }
        }
        Kind::Xdr => out.xdr = fields.unwrap_or_default(),
        _ => {}
    }
    Ok(out)
}

fn parse_proprietary<'a>(
    address: &'a [u8],
    fields: Option<&'a [u8]>,
    mut out: Sentence<'a>,
) -> Result<Sentence<'a>, ParseError> {
    let mut f = Fields::new(fields, "proprietary");
    let kind = match (address, f.next().unwrap_or_default()) {
        (b"PSXN", b"20") => Kind::Psxn20,
        (b"PSXN", b"22") => Kind::Psxn22,
        (b"PSXN", b"23") => Kind::Psxn23,
        (b"PUHAW", b"UVH") => Kind::PuhawUvh,
        _ => return Ok(out),
    };
    out.kind = kind;
    f.sentence = kind.name();
    let n = match kind {
        Kind::Psxn20 | Kind::Psxn23 => 4,
        Kind::Psxn22 => 2,
        _ => 3,
    };
    const NAMES: [&str; 4] = ["value1", "value2", "value3", "value4"];
    for (slot, name) in out.values.iter_mut().zip(NAMES).take(n) {
        *slot = f.number(name)?;
    }
    Ok(out)
}

/// Parses a plain decimal number (`-12.5`, `033.6`); empty is `Ok(None)`. Fast path for up to
/// 15 significant digits (exact: the mantissa and the power of ten are both exact doubles, so
/// the division rounds once, like `str::parse`); anything else goes through `str::parse`.
pub(crate) fn parse_number(f: &[u8]) -> Result<Option<f64>, ()> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, digits) = match f {
        [] => return Ok(None),
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, f),
    };
    let mut mantissa = 0u64;
    let mut count = 0usize;
    let mut fraction = 0usize;
    let mut dot = false;
    for &b in digits {
        match b {
            b'0'..=b'9' if count < 15 => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
                fraction += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return slow_number(f),
        }
    }
    if count == 0 {
        return Err(());
    }
    let value = mantissa as f64 / POW10[fraction];
    Ok(Some(if negative { -value } else { value }))
}

fn slow_number(f: &[u8]) -> Result<Option<f64>, ()> {
    let text = std::str::from_utf8(f).map_err(|_| ())?;
    // Only digits, sign, dot and exponent: `str::parse` would also take "inf" and "NaN".
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return Err(());
    }
    let value: f64 = text.parse().map_err(|_| ())?;
    if value.is_finite() {
        Ok(Some(value))
    } else {
        Err(())
    }
}

/// `hhmmss` or `hhmmss.sss…` → µs since midnight; empty is `Ok(None)`.
pub(crate) fn parse_time_of_day(f: &[u8]) -> Result<Option<i64>, ()> {
    if f.is_empty() {
        return Ok(None);
    }
    let [h0, h1, m0, m1, s0, s1, rest @ ..] = f else {
        return Err(());
    };
    let two = |a: u8, b: u8| -> Result<i64, ()> {
        if a.is_ascii_digit() && b.is_ascii_digit() {
            Ok(i64::from(a - b'0') * 10 + i64::from(b - b'0'))
        } else {
            Err(())
        }
    };
    let (h, m, s) = (two(*h0, *h1)?, two(*m0, *m1)?, two(*s0, *s1)?);
    if h > 23 || m > 59 || s > 60 {
        return Err(());
    }
    let mut micros = 0i64;
    match rest {
        [] => {}
        [b'.', digits @ ..] => {
            let mut scale = 100_000i64;
            for &d in digits {
                if !d.is_ascii_digit() {
                    return Err(());
                }
                micros += i64::from(d - b'0') * scale;
                scale /= 10;
            }
        }
        _ => return Err(()),
    }
    Ok(Some(((h * 60 + m) * 60 + s) * 1_000_000 + micros))
}

/// RMC's `ddmmyy` → days since the epoch; two-digit years pivot at 1980 (GPS time starts in
/// 1980, so `94` is 1994 — exactly what a week-rollover fault looks like).
fn parse_ddmmyy(f: &[u8]) -> Result<Option<i64>, ()> {
    if f.is_empty() {
        return Ok(None);
    }
    let [d0, d1, m0, m1, y0, y1] = f else {
        return Err(());
    };
    let mut n = [0u8; 6];
    for (out, b) in n.iter_mut().zip([d0, d1, m0, m1, y0, y1]) {
        if !b.is_ascii_digit() {
            return Err(());
        }
        *out = b - b'0';
    }
    let day = f64::from(n[0] * 10 + n[1]);
    let month = f64::from(n[2] * 10 + n[3]);
    let yy = i32::from(n[4] * 10 + n[5]);
    let year = if yy >= 80 { 1900 + yy } else { 2000 + yy };
    valid_days(f64::from(year), month, day).map(Some).ok_or(())
}

/// Days since the epoch of a calendar date given as parsed numbers, if it is a real date.
fn valid_days(year: f64, month: f64, day: f64) -> Option<i64> {
    if year.fract() != 0.0 || month.fract() != 0.0 || day.fract() != 0.0 {
        return None;
    }
    if !(1900.0..=2200.0).contains(&year) || !(1.0..=12.0).contains(&month) || day < 1.0 {
        return None;
    }
    let (y, m, d) = (year as i32, month as u32, day as u32);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let len = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (d <= len).then(|| days_from_civil(y, m, d))
}

#[cfg(test)]
mod tests;
