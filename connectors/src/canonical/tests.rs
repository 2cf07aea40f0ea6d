use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    Date32Array, Date64Array, DictionaryArray, Float32Array, Int32Array, Int64Array,
    LargeStringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray,
};

use super::*;

const T0: i64 = 1_577_836_800_000_000; // 2020-01-01T00:00:00Z in µs

fn canon() -> Canonicalizer {
    Canonicalizer::new(
        "src",
        &ColumnMapping::default(),
        &["temperature_c".into(), "salinity_psu".into()],
        &["species".into()],
    )
}

/// A batch of text columns; `None` values are nulls.
fn text_batch(columns: &[(&str, Vec<Option<&str>>)]) -> RecordBatch {
    RecordBatch::try_from_iter(columns.iter().map(|(name, values)| {
        let array: ArrayRef = Arc::new(StringArray::from(values.clone()));
        (*name, array)
    }))
    .unwrap()
}

fn batch_of(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn times(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column(0)
        .as_primitive::<TimestampMicrosecondType>()
        .values()
        .to_vec()
}

fn floats(batch: &RecordBatch, column: &str) -> Vec<Option<f64>> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

/// The (source row, reason) of every rejected row, in order.
fn rejected_rows(out: &SourceBatch) -> Vec<(u64, RejectReason)> {
    out.rejected
        .iter()
        .map(|r| (r.row.unwrap(), r.reason))
        .collect()
}

fn stations(n: usize) -> ArrayRef {
    Arc::new(StringArray::from(vec!["S1"; n]))
}

#[test]
fn text_times_in_every_supported_format() {
    let values = [
        "2020-01-01T00:00:00Z",
        "2020-01-01T02:00:00+02:00",
        "2020-01-01 00:00:00.5",
        "2020-01-01T00:00:00",
        "2020-01-01",
        "1577836800",
        " 2020-01-01T00:00:00.000001Z ",
    ];
    let batch = text_batch(&[
        ("timestamp", values.iter().map(|v| Some(*v)).collect()),
        ("station_id", vec![Some("S1"); values.len()]),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(
        times(&out.batch),
        [T0, T0, T0 + 500_000, T0, T0, T0, T0 + 1]
    );
    assert_eq!(out.batch.schema(), canon().schema());
}

#[test]
fn every_reject_reason_with_row_detail_and_record() {
    let batch = text_batch(&[
        (
            "timestamp",
            vec![
                Some("2020-01-01T00:00:00Z"),
                None,
                Some(""),
                Some("yesterday"),
                Some("2020-01-01"),
                Some("2020-01-01"),
                Some("2020-01-01"),
                Some("2020-01-01"),
                Some("never"),
                Some("2020-01-01"),
            ],
        ),
        (
            "station_id",
            vec![
                Some("A"),
                Some("A"),
                Some("A"),
                Some("A"),
                Some(" "),
                Some("A"),
                Some("A"),
                Some("A"),
                Some("A"),
                None,
            ],
        ),
        (
            "latitude",
            vec![
                Some("60"),
                None,
                None,
                None,
                None,
                Some("95"),
                Some("60"),
                Some("60"),
                Some("-91"),
                None,
            ],
        ),
        (
            "longitude",
            vec![
                Some("5"),
                None,
                None,
                None,
                None,
                Some("5"),
                Some("-181"),
                Some("5"),
                None,
                None,
            ],
        ),
        (
            "temperature_c",
            vec![
                Some("8.5"),
                None,
                None,
                None,
                None,
                None,
                None,
                Some("warm"),
                None,
                None,
            ],
        ),
    ]);
    let out = canon().convert("a.csv", 100, &batch).unwrap();
    assert_eq!(out.batch.num_rows(), 1);
    let got = rejected_rows(&out);
    use RejectReason::*;
    assert_eq!(
        got,
        [
            (101, MissingTime),
            (102, MissingTime),
            (103, UnparseableTime),
            (104, MissingStation),
            (105, LatitudeOutOfRange),
            (106, LongitudeOutOfRange),
            (107, NonNumeric),
            (108, UnparseableTime),
            (109, MissingStation),
        ]
    );
    let non_numeric = &out.rejected[6];
    assert!(non_numeric.detail.contains("temperature_c"));
    assert!(non_numeric.detail.contains("warm"));
    assert_eq!(non_numeric.source, "src");
    assert_eq!(non_numeric.partition, "a.csv");
    let record: serde_json::Value = serde_json::from_str(&non_numeric.record).unwrap();
    assert_eq!(record["temperature_c"], "warm");
    assert_eq!(record["station_id"], "A");
    assert!(out.rejected[2].detail.contains("yesterday"));
}

#[test]
fn nan_infinity_and_empty_text_are_missing_values() {
    let batch = text_batch(&[
        ("timestamp", vec![Some("2020-01-01"); 5]),
        ("station_id", vec![Some("A"); 5]),
        (
            "temperature_c",
            vec![
                Some("NaN"),
                Some(""),
                Some("-inf"),
                Some("Infinity"),
                Some("1e1"),
            ],
        ),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    assert!(out.rejected.is_empty());
    assert_eq!(
        floats(&out.batch, "temperature_c"),
        [None, None, None, None, Some(10.0)]
    );

    let batch = batch_of(vec![
        ("timestamp", Arc::new(Int64Array::from(vec![0, 0, 0]))),
        ("station_id", stations(3)),
        (
            "salinity_psu",
            Arc::new(Float32Array::from(vec![f32::NAN, 2.5, 3.0])),
        ),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(
        floats(&out.batch, "salinity_psu"),
        [None, Some(2.5), Some(3.0)]
    );
}

/// Unlike variables, a position that is not finite is rejected, never made missing; an empty
/// one is `missing_position` when the input has position columns.
#[test]
fn non_finite_and_missing_positions_are_rejected() {
    let texts = [
        ("60", "5"),
        ("inf", "5"),
        ("NaN", "5"),
        ("1e400", "5"),
        ("60", "-Infinity"),
        ("60", "nan"),
        ("", "5"),
        ("60", " "),
        ("", ""),
        ("north", "5"),
    ];
    let rows = texts.len();
    let batch = text_batch(&[
        ("timestamp", vec![Some("2020-01-01"); rows]),
        ("station_id", vec![Some("A"); rows]),
        ("latitude", texts.iter().map(|t| Some(t.0)).collect()),
        ("longitude", texts.iter().map(|t| Some(t.1)).collect()),
        ("temperature_c", vec![Some("warm"); rows]),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    let got = rejected_rows(&out);
    use RejectReason::*;
    assert_eq!(
        got,
        [
            (0, NonNumeric),
            (1, LatitudeOutOfRange),
            (2, LatitudeOutOfRange),
            (3, LatitudeOutOfRange),
            (4, LongitudeOutOfRange),
            (5, LongitudeOutOfRange),
            (6, MissingPosition),
            (7, MissingPosition),
            (8, MissingPosition),
            (9, NonNumeric),
        ]
    );
    assert!(
        out.rejected[1].detail.contains("\"inf\" is not finite"),
        "{:?}",
        out.rejected[1]
    );
    assert!(
        out.rejected[6].detail.contains("latitude"),
        "{:?}",
        out.rejected[6]
    );
    assert!(
        out.rejected[7].detail.contains("longitude"),
        "{:?}",
        out.rejected[7]
    );
    let record: serde_json::Value = serde_json::from_str(&out.rejected[1].record).unwrap();
    assert_eq!(record["latitude"], "inf");

    // Arrow floats: NaN and infinities are rejected, a null is a missing position.
    let batch = batch_of(vec![
        ("timestamp", Arc::new(Int64Array::from(vec![0, 0, 0, 0]))),
        ("station_id", stations(4)),
        (
            "latitude",
            Arc::new(Float64Array::from(vec![
                Some(f64::NAN),
                Some(1.0),
                Some(1.0),
                None,
            ])),
        ),
        (
            "longitude",
            Arc::new(Float32Array::from(vec![
                Some(1.0),
                Some(f32::NEG_INFINITY),
                Some(2.0),
                Some(2.0),
            ])),
        ),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    let got = rejected_rows(&out);
    assert_eq!(
        got,
        [
            (0, LatitudeOutOfRange),
            (1, LongitudeOutOfRange),
            (3, MissingPosition)
        ]
    );
    assert!(out.rejected[0].detail.contains("not finite"));
    assert_eq!(floats(&out.batch, "latitude"), [Some(1.0)]);

    // Without position columns the input is unpositioned: rows are kept.
    let batch = text_batch(&[
        ("timestamp", vec![Some("2020-01-01")]),
        ("station_id", vec![Some("A")]),
    ]);
    assert!(canon().convert("p", 0, &batch).unwrap().rejected.is_empty());
    // Sources whose rows may lack a position keep those rows, not half positions.
    let batch = text_batch(&[
        ("timestamp", vec![Some("2020-01-01"); 2]),
        ("station_id", vec![Some("A"); 2]),
        ("latitude", vec![None, Some("60")]),
        ("longitude", vec![None, None]),
    ]);
    let out = canon()
        .allow_unpositioned_rows()
        .convert("p", 0, &batch)
        .unwrap();
    let got: Vec<_> = out.rejected.iter().map(|r| (r.row, r.reason)).collect();
    assert_eq!(got, [(Some(1), MissingPosition)]);
    assert_eq!(out.batch.num_rows(), 1);
}

#[test]
fn arrow_times_of_any_unit_and_zone_become_utc_microseconds() {
    let seconds = T0 / 1_000_000;
    let cases: Vec<ArrayRef> = vec![
        Arc::new(TimestampSecondArray::from(vec![seconds])),
        Arc::new(TimestampMillisecondArray::from(vec![seconds * 1000]).with_timezone("+02:00")),
        Arc::new(TimestampNanosecondArray::from(vec![T0 * 1000]).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(vec![T0])),
        Arc::new(Date32Array::from(vec![18262])),
        Arc::new(Date64Array::from(vec![seconds * 1000])),
        Arc::new(Int64Array::from(vec![seconds])),
        Arc::new(LargeStringArray::from(vec!["2020-01-01T01:00:00+01:00"])),
    ];
    for time in cases {
        let data_type = time.data_type().clone();
        let batch = batch_of(vec![("timestamp", time), ("station_id", stations(1))]);
        let out = canon().convert("p", 0, &batch).unwrap();
        assert!(out.rejected.is_empty(), "{data_type}: {:?}", out.rejected);
        assert_eq!(times(&out.batch), [T0], "{data_type}");
        assert_eq!(out.batch.column(0).data_type(), &schema::time_type());
    }
}

#[test]
fn canonical_columns_are_reused_without_copies() {
    let time: ArrayRef =
        Arc::new(TimestampMicrosecondArray::from(vec![T0, T0 + 1]).with_timezone("UTC"));
    let station = stations(2);
    let temperature: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), None]));
    let batch = batch_of(vec![
        ("timestamp", Arc::clone(&time)),
        ("station_id", Arc::clone(&station)),
        ("temperature_c", Arc::clone(&temperature)),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    assert!(Arc::ptr_eq(out.batch.column(0), &time));
    assert!(Arc::ptr_eq(out.batch.column(1), &station));
    assert!(Arc::ptr_eq(out.batch.column(4), &temperature));
}

#[test]
fn out_of_range_arrow_times_are_unparseable_and_null_times_missing() {
    let batch = batch_of(vec![
        (
            "timestamp",
            Arc::new(Int64Array::from(vec![Some(i64::MAX), None, Some(0)])),
        ),
        ("station_id", stations(3)),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    let reasons: Vec<_> = out.rejected.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        [RejectReason::UnparseableTime, RejectReason::MissingTime]
    );
    assert_eq!(times(&out.batch), [0]);
}

#[test]
fn dictionary_stations_stay_dictionaries_and_integer_stations_become_text() {
    let dictionary: DictionaryArray<Int32Type> = vec!["A", "B", "A"].into_iter().collect();
    let batch = batch_of(vec![
        ("timestamp", Arc::new(Int64Array::from(vec![0, 0, 0]))),
        ("station_id", Arc::new(dictionary)),
        ("species", Arc::new(Int32Array::from(vec![7, 8, 9]))),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    let station = out.batch.column(1).as_dictionary::<Int32Type>();
    let values = station.values().as_string::<i32>();
    let station: Vec<_> = station
        .keys()
        .iter()
        .map(|k| values.value(k.unwrap() as usize))
        .collect();
    assert_eq!(station, ["A", "B", "A"]);
    let species: Vec<_> = out.batch.column(6).as_string::<i32>().iter().collect();
    assert_eq!(species, [Some("7"), Some("8"), Some("9")]);

    let batch = batch_of(vec![
        ("timestamp", Arc::new(Int64Array::from(vec![0, 0]))),
        (
            "station_id",
            Arc::new(Int32Array::from(vec![Some(42), None])),
        ),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    assert_eq!(out.batch.column(1).as_string::<i32>().value(0), "42");
    assert_eq!(out.rejected[0].reason, RejectReason::MissingStation);
}

#[test]
fn absent_optional_columns_are_null_and_empty_categories_missing() {
    let batch = text_batch(&[
        ("timestamp", vec![Some("2020-01-01"), Some("2020-01-02")]),
        ("station_id", vec![Some("A"), Some("B")]),
        ("species", vec![Some("cod"), Some("")]),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    assert!(out.rejected.is_empty());
    for column in ["latitude", "longitude", "temperature_c", "salinity_psu"] {
        assert_eq!(floats(&out.batch, column), [None, None], "{column}");
    }
    let species: Vec<_> = out.batch.column(6).as_string::<i32>().iter().collect();
    assert_eq!(species, [Some("cod"), None]);
}

#[test]
fn missing_time_or_station_column_is_an_error() {
    let batch = text_batch(&[("station_id", vec![Some("A")])]);
    let err = canon().convert("f.csv", 0, &batch).unwrap_err();
    assert!(
        matches!(&err, SourceError::MissingColumn { column, canonical, .. }
            if column == "timestamp" && canonical == "time"),
        "{err}"
    );
    let batch = text_batch(&[("timestamp", vec![Some("2020-01-01")])]);
    let err = canon().convert("f.csv", 0, &batch).unwrap_err();
    assert!(matches!(&err, SourceError::MissingColumn { canonical, .. } if canonical == "station"));
}

#[test]
fn mapping_renames_source_columns() {
    let mut mapping = ColumnMapping {
        time: "t".into(),
        station: "platform".into(),
        ..ColumnMapping::default()
    };
    mapping
        .variables
        .insert("temperature_c".into(), "TEMP".into());
    let canon = Canonicalizer::new("s", &mapping, &["temperature_c".into()], &[]);
    assert_eq!(
        canon.source_columns(),
        ["t", "platform", "latitude", "longitude", "TEMP"]
    );
    let batch = text_batch(&[
        ("t", vec![Some("2020-01-01")]),
        ("platform", vec![Some("P")]),
        ("TEMP", vec![Some("3.5")]),
    ]);
    let out = canon.convert("p", 0, &batch).unwrap();
    assert_eq!(floats(&out.batch, "temperature_c"), [Some(3.5)]);
}

#[test]
fn blank_or_null_dictionary_stations_are_rejected() {
    let dictionary: DictionaryArray<Int32Type> = vec![Some("A"), None, Some(" "), Some("A")]
        .into_iter()
        .collect();
    let batch = batch_of(vec![
        ("timestamp", Arc::new(Int64Array::from(vec![0, 0, 0, 0]))),
        ("station_id", Arc::new(dictionary)),
    ]);
    let out = canon().convert("p", 0, &batch).unwrap();
    assert_eq!(out.batch.num_rows(), 2);
    let rows: Vec<_> = out.rejected.iter().map(|r| (r.row, r.reason)).collect();
    assert_eq!(
        rows,
        [
            (Some(1), RejectReason::MissingStation),
            (Some(2), RejectReason::MissingStation)
        ]
    );
}
