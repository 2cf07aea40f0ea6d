//! Where an ODP source stands, as a checkpointable [`Position`]:
//!
//! ```json
//! {"version": 1, "phase": "backfill", "cursor": "page:700", "skip": 200, "rows": 900,
//!  "since": null, "last": {"type": "datetime", "value": "2020-01-04T12:00:00.000000+00:00"}}
//! ```
//!
//! - `phase`: `backfill` (the configured selection) or `follow` (polls for new rows).
//! - `cursor`: the cursor of the page being read (`""` = the query's first page), sent back
//!   verbatim; `skip`: rows of that page already delivered. A restart re-requests the page
//!   and drops its first `skip` rows, so nothing is lost or delivered twice (this relies on the
//!   server answering a cursor with the same rows, which ODP's cursors exist to guarantee).
//! - `rows`: rows delivered so far (row numbers of rejected rows continue from it).
//! - `since`: in follow mode, the `$oceanflow_since` bound of the current poll (its pages'
//!   cursors belong to that query); `last`: the largest value of the follow column delivered,
//!   the next poll's bound. Both in the Python SDK's typed-variable form.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use oceanflow_connectors::Position;
use serde::{Deserialize, Serialize};

/// A value of the follow column, typed as the Python SDK types bind variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Bound {
    /// A time, always formatted `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` so text order is time
    /// order.
    Datetime(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// Text.
    String(String),
}

impl Bound {
    /// Whether `self` is beyond `other` (values of another type replace it).
    fn beyond(&self, other: &Bound) -> bool {
        match (self, other) {
            (Bound::Datetime(a), Bound::Datetime(b)) | (Bound::String(a), Bound::String(b)) => {
                a > b
            }
            (Bound::Integer(a), Bound::Integer(b)) => a > b,
            (Bound::Float(a), Bound::Float(b)) => a > b,
            _ => true,
        }
    }
}

/// Formats µs since the epoch as the fixed-width UTC text of [`Bound::Datetime`].
fn datetime(micros: i64) -> Option<Bound> {
    let t = chrono::DateTime::from_timestamp_micros(micros)?;
    Some(Bound::Datetime(
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
    ))
}

/// The largest value of `column` in `batch`, when the column exists and has a supported type.
pub fn max_of(batch: &RecordBatch, column: &str) -> Option<Bound> {
    let array = batch.column_by_name(column)?;
    macro_rules! max_prim {
        ($t:ty) => {
            array.as_primitive::<$t>().iter().flatten().max()
        };
    }
    match array.data_type() {
        DataType::Timestamp(unit, _) => {
            let micros = match unit {
                TimeUnit::Second => max_prim!(TimestampSecondType)?.checked_mul(1_000_000)?,
                TimeUnit::Millisecond => max_prim!(TimestampMillisecondType)?.checked_mul(1000)?,
                TimeUnit::Microsecond => max_prim!(TimestampMicrosecondType)?,
                TimeUnit::Nanosecond => max_prim!(TimestampNanosecondType)?.div_euclid(1000),
            };
            datetime(micros)
        }
        DataType::Date32 => datetime(i64::from(max_prim!(Date32Type)?) * 86_400_000_000),
        DataType::Int64 => Some(Bound::Integer(max_prim!(Int64Type)?)),
        DataType::Int32 => Some(Bound::Integer(i64::from(max_prim!(Int32Type)?))),
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
            .reduce(f64::max)
            .map(Bound::Float),
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .flatten()
            .max()
            .map(|s| Bound::String(s.to_string())),
        _ => None,
    }
}

/// Backfill or follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading the configured selection.
    Backfill,
    /// Polling for rows beyond `last`.
    Follow,
}

/// The source's position (see the module docs for the JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Format version, 1.
    pub version: u32,
    /// The phase.
    pub phase: Phase,
    /// Cursor of the current page (`""`: first page).
    pub cursor: String,
    /// Rows of the current page already delivered.
    pub skip: u64,
    /// Rows delivered in all.
    pub rows: u64,
    /// The bound of the current follow poll.
    pub since: Option<Bound>,
    /// The largest follow-column value delivered.
    pub last: Option<Bound>,
}

impl Progress {
    /// The start of the backfill.
    pub fn start() -> Progress {
        Progress {
            version: 1,
            phase: Phase::Backfill,
            cursor: String::new(),
            skip: 0,
            rows: 0,
            since: None,
            last: None,
        }
    }

    /// Reads a checkpointed position.
    pub fn from_position(position: &Position) -> Result<Progress, String> {
        let progress: Progress = serde_json::from_value(position.0.clone())
            .map_err(|e| format!("not an ODP position ({e}): {}", position.0))?;
        if progress.version != 1 {
            return Err(format!(
                "ODP position version {} is not supported (expected 1)",
                progress.version
            ));
        }
        Ok(progress)
    }

    /// As a checkpointable position.
    pub fn to_position(&self) -> Position {
        // Serializing plain strings and numbers cannot fail.
        Position(serde_json::to_value(self).unwrap_or_default())
    }

    /// Takes the follow column's largest value in `batch` into account.
    pub fn observe(&mut self, batch: &RecordBatch, column: &str) {
        if let Some(max) = max_of(batch, column) {
            if self.last.as_ref().is_none_or(|last| max.beyond(last)) {
                self.last = Some(max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{Float64Array, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};

    #[test]
    fn positions_round_trip_and_keep_the_largest_value() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = |t: Vec<Option<i64>>| {
            let n = t.len();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(TimestampMicrosecondArray::from(t).with_timezone("UTC")),
                    Arc::new(Float64Array::from(vec![Some(1.0); n])),
                ],
            )
            .unwrap()
        };
        let mut p = Progress::start();
        p.observe(&batch(vec![Some(86_400_000_000), None, Some(1)]), "t");
        p.observe(&batch(vec![Some(5)]), "t");
        assert_eq!(
            p.last,
            Some(Bound::Datetime("1970-01-02T00:00:00.000000+00:00".into()))
        );
        assert_eq!(
            serde_json::to_value(&p.last).unwrap(),
            serde_json::json!({"type": "datetime", "value": "1970-01-02T00:00:00.000000+00:00"})
        );
        p.cursor = "page:10".into();
        p.skip = 3;
        let back = Progress::from_position(&p.to_position()).unwrap();
        assert_eq!(back, p);
        assert!(Progress::from_position(&Position(serde_json::json!({"offset": 3}))).is_err());
        assert_eq!(max_of(&batch(vec![Some(1)]), "x"), Some(Bound::Float(1.0)));
        assert_eq!(max_of(&batch(vec![Some(1)]), "missing"), None);
    }
}
