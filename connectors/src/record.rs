//! Rendering one row of a batch as a JSON record: the one place dead-letter records of batch
//! rows are made (canonical rows rejected by the runtime, raw rows of Parquet/Arrow files, ODP
//! rows, decoded Kafka rows).
//!
//! Arrow's JSON writer is not used: it fails on `Timestamp(_, "UTC")` (named zones need
//! chrono-tz), which is exactly the canonical time type. Here every value is rendered by hand
//! and rendering never fails: a value of a type without a JSON form is shown as its display
//! text, or as a placeholder naming its type.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// RFC 3339 UTC text of a time in microseconds since the epoch (`Z` suffix, no fraction when
/// whole seconds); the bare number when the time is outside chrono's range.
pub fn format_time_us(us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(us) {
        Some(t) => format_time(t),
        None => us.to_string(),
    }
}

fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Row `row` of `batch` as a JSON object text, keys in column order. Never fails: a row
/// outside the batch renders as `{}`.
pub fn row_as_json(batch: &RecordBatch, row: usize) -> String {
    let mut out = String::from("{");
    if row < batch.num_rows() {
        for (i, (field, column)) in batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(field.name().clone()).to_string());
            out.push(':');
            out.push_str(&value_as_json(column.as_ref(), row).to_string());
        }
    }
    out.push('}');
    out
}

/// One value as JSON: numbers as numbers (non-finite floats as their text, which JSON cannot
/// hold as numbers), text as strings, times as RFC 3339 UTC, dictionary values resolved.
fn value_as_json(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float16 => float(array.as_primitive::<Float16Type>().value(row).to_f64()),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => array.as_string::<i32>().value(row).into(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).into(),
        DataType::Utf8View => array.as_string_view().value(row).into(),
        DataType::Timestamp(unit, _) => timestamp(array, *unit, row),
        DataType::Dictionary(_, _) => match array.as_any_dictionary_opt() {
            Some(dict) => {
                let key = dict.normalized_keys()[row];
                let values = dict.values();
                if key < values.len() {
                    value_as_json(values.as_ref(), key)
                } else {
                    unrenderable(array)
                }
            }
            None => unrenderable(array),
        },
        _ => displayed(array, row),
    }
}

/// A float as a JSON number, or as `"NaN"`, `"inf"`, `"-inf"`.
fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
}

/// A timestamp of any unit and zone (the values are UTC epoch values either way) as RFC 3339
/// UTC text.
fn timestamp(array: &dyn Array, unit: TimeUnit, row: usize) -> Value {
    let (value, time) = match unit {
        TimeUnit::Second => {
            let s = array.as_primitive::<TimestampSecondType>().value(row);
            (s, DateTime::<Utc>::from_timestamp(s, 0))
        }
        TimeUnit::Millisecond => {
            let ms = array.as_primitive::<TimestampMillisecondType>().value(row);
            (ms, DateTime::<Utc>::from_timestamp_millis(ms))
        }
        TimeUnit::Microsecond => {
            let us = array.as_primitive::<TimestampMicrosecondType>().value(row);
            (us, DateTime::<Utc>::from_timestamp_micros(us))
        }
        TimeUnit::Nanosecond => {
            let ns = array.as_primitive::<TimestampNanosecondType>().value(row);
            (ns, Some(DateTime::<Utc>::from_timestamp_nanos(ns)))
        }
    };
    match time {
        Some(t) => Value::String(format_time(t)),
        None => value.into(),
    }
}

/// Any other type through arrow's display formatting.
fn displayed(array: &dyn Array, row: usize) -> Value {
    let options = FormatOptions::default();
    match ArrayFormatter::try_new(array, &options) {
        Ok(formatter) => {
            let mut text = String::new();
            match std::fmt::Write::write_fmt(&mut text, format_args!("{}", formatter.value(row))) {
                Ok(()) => Value::String(text),
                Err(_) => unrenderable(array),
            }
        }
        Err(_) => unrenderable(array),
    }
}

fn unrenderable(array: &dyn Array) -> Value {
    Value::String(format!("<{} value>", array.data_type()))
}

#[cfg(test)]
mod tests;
