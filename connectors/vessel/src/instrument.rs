//! Instrument lines that are not NMEA: numbers separated by commas (`21.8054,  5.17647,
//! 36.5878, 1528.105` from an SBE45) or, when the line has no comma, by whitespace (`21.7652`
//! from an SBE38). A device's `fields` list says which position becomes which variable.

use crate::nmea::parse_number;

/// Why an instrument line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentError {
    /// Fewer fields than the device's `fields` list (a cut line).
    #[error("{found} fields, expected {expected}")]
    TooFewFields {
        /// Fields in the line.
        found: usize,
        /// Fields configured.
        expected: usize,
    },
    /// A mapped field is not a number.
    #[error("field {position} is not a number: {text:?}")]
    NonNumeric {
        /// 0-based field position.
        position: usize,
        /// The field's text (lossy).
        text: String,
    },
}

impl InstrumentError {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            InstrumentError::TooFewFields { .. } => "too_few_fields",
            InstrumentError::NonNumeric { .. } => "bad_field",
        }
    }
}

/// Parses `line` into `out` (one slot per configured field; `None` for empty or NaN fields).
/// `mapped[i]` says whether position `i` feeds a variable: unmapped positions are not
/// validated, so a text column the device does not use cannot reject the line.
pub fn parse_into(
    line: &[u8],
    mapped: &[bool],
    out: &mut [Option<f64>],
) -> Result<(), InstrumentError> {
    if line.contains(&b',') {
        fill(line.split(|b| *b == b','), mapped, out)
    } else {
        let fields = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        fill(fields, mapped, out)
    }
}

fn fill<'a>(
    mut fields: impl Iterator<Item = &'a [u8]>,
    mapped: &[bool],
    out: &mut [Option<f64>],
) -> Result<(), InstrumentError> {
    let expected = mapped.len();
    for (position, (is_mapped, slot)) in mapped.iter().zip(out.iter_mut()).enumerate() {
        let field = fields
            .next()
            .ok_or(InstrumentError::TooFewFields {
                found: position,
                expected,
            })?
            .trim_ascii();
        if !is_mapped {
            continue;
        }
        *slot = if field.eq_ignore_ascii_case(b"nan") {
            None
        } else {
            parse_number(field).map_err(|()| InstrumentError::NonNumeric {
                position,
                text: String::from_utf8_lossy(field).into_owned(),
            })?
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbe45_csv_and_sbe38_single_value() {
        let mut out = [None; 4];
        parse_into(
            b"21.8054,  5.17647,  36.5878, 1528.105",
            &[true, false, true, true],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [Some(21.8054), None, Some(36.5878), Some(1528.105)]);
        let mut one = [None];
        parse_into(b"  21.7652 ", &[true], &mut one).unwrap();
        assert_eq!(one, [Some(21.7652)]);
        parse_into(b"1.5 2.5\t3.5", &[false, false, true], &mut [None; 3]).unwrap();
    }

    #[test]
    fn nan_and_empty_are_missing_and_bad_lines_are_errors() {
        let mut out = [Some(0.0); 3];
        parse_into(b"NaN,,4", &[true, true, true], &mut out).unwrap();
        assert_eq!(out, [None, None, Some(4.0)]);
        assert_eq!(
            parse_into(b"21.8, 5.1", &[true, true, true], &mut out),
            Err(InstrumentError::TooFewFields {
                found: 2,
                expected: 3
            })
        );
        let err = parse_into(b"21.8,warm,3", &[true, true, true], &mut out).unwrap_err();
        assert_eq!(err.reason(), "bad_field");
    }
}
