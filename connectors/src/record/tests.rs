use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BinaryArray, DictionaryArray, Float64Array, Int64Array, LargeStringArray,
    StringArray, StringViewArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use oceanflow_config::schema::{observation_schema, UTC};

use super::*;

fn record(batch: &RecordBatch, row: usize) -> serde_json::Map<String, Value> {
    let text = row_as_json(batch, row);
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => map,
        other => panic!("not a JSON object: {text} ({other:?})"),
    }
}

#[test]
fn times_format_as_rfc3339_utc() {
    assert_eq!(format_time_us(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        format_time_us(1_577_836_800_000_000),
        "2020-01-01T00:00:00Z"
    );
    assert_eq!(format_time_us(-1_000_000), "1969-12-31T23:59:59Z");
    assert_eq!(format_time_us(1_500_000), "1970-01-01T00:00:01.500Z");
    assert_eq!(format_time_us(i64::MAX), i64::MAX.to_string());
}

/// The canonical layout — `Timestamp(µs, "UTC")`, a dictionary station, non-finite floats —
/// is exactly what arrow's JSON writer cannot render.
#[test]
fn canonical_rows_render_every_value() {
    let schema = observation_schema(
        &[
            "temperature_c".into(),
            "salinity_psu".into(),
            "depth_m".into(),
        ],
        &["species".into()],
    );
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[1] = Field::new(
        "station",
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        false,
    );
    let station = DictionaryArray::<Int32Type>::try_new(
        vec![1, 0].into(),
        Arc::new(StringArray::from(vec!["A", "B"])),
    )
    .unwrap();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(vec![1_577_836_800_000_000, 1_577_836_800_250_000])
                .with_timezone(UTC),
        ),
        Arc::new(station),
        Arc::new(Float64Array::from(vec![Some(60.5), None])),
        Arc::new(Float64Array::from(vec![Some(5.0), Some(-0.25)])),
        Arc::new(Float64Array::from(vec![f64::NAN, 8.5])),
        Arc::new(Float64Array::from(vec![f64::INFINITY, f64::NEG_INFINITY])),
        Arc::new(Float64Array::from(vec![Some(10.0), None])),
        Arc::new(StringArray::from(vec![Some("Gadus \"morhua\""), None])),
    ];
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let first = record(&batch, 0);
    assert_eq!(first["time"], "2020-01-01T00:00:00Z");
    assert_eq!(first["station"], "B");
    assert_eq!(first["latitude"], 60.5);
    assert_eq!(first["temperature_c"], "NaN");
    assert_eq!(first["salinity_psu"], "inf");
    assert_eq!(first["species"], "Gadus \"morhua\"");
    let second = record(&batch, 1);
    assert_eq!(second["time"], "2020-01-01T00:00:00.250Z");
    assert_eq!(second["station"], "A");
    assert_eq!(second["latitude"], Value::Null);
    assert_eq!(second["salinity_psu"], "-inf");
    // Keys in column order.
    let keys: Vec<String> = first.keys().cloned().collect();
    assert_eq!(row_as_json(&batch, 1).find("\"time\""), Some(1), "{keys:?}");
}

#[test]
fn raw_source_types_render_their_values() {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ms",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+01:00".into())),
            true,
        ),
        Field::new("ns", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("large", DataType::LargeUtf8, true),
        Field::new("view", DataType::Utf8View, true),
        Field::new("count", DataType::Int64, true),
        Field::new("bytes", DataType::Binary, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(vec![1_000]).with_timezone("+01:00")),
        Arc::new(TimestampNanosecondArray::from(vec![1_000_000_001])),
        Arc::new(LargeStringArray::from(vec!["large text"])),
        Arc::new(StringViewArray::from(vec![
            "a view string longer than twelve bytes",
        ])),
        Arc::new(Int64Array::from(vec![-7])),
        Arc::new(BinaryArray::from(vec![b"\x01\x02".as_slice()])),
    ];
    let batch = RecordBatch::try_new(schema, columns).unwrap();
    let r = record(&batch, 0);
    assert_eq!(r["ms"], "1970-01-01T00:00:01Z");
    assert_eq!(r["ns"], "1970-01-01T00:00:01.000000001Z");
    assert_eq!(r["large"], "large text");
    assert_eq!(r["view"], "a view string longer than twelve bytes");
    assert_eq!(r["count"], -7);
    assert_eq!(r["bytes"], "0102");
}

#[test]
fn a_row_outside_the_batch_is_an_empty_record() {
    let schema = observation_schema(&[], &[]);
    let batch = RecordBatch::new_empty(schema);
    assert_eq!(row_as_json(&batch, 3), "{}");
}
