//! Dead letters through the `oceanflow` binary: files holding one row of every reason a file can
//! produce — CSV, NDJSON, Parquet (text and typed time columns), Arrow IPC stream and file —
//! are run with `--once --dead-letter`; every dead letter has the expected reason and a record
//! holding that row's original values (never an error text), and the good rows are aggregated.
//!
//! Not producible from files: `unparseable_geometry` (ODP), `bad_checksum` (vessel NMEA); a
//! Parquet or Arrow row always decodes, so `malformed` comes from the text formats only.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema};
use oceanflow_tests::fixtures::run_once;
use serde_json::Value;

/// One input row. `marker` (the dissolved oxygen value, unique per row) finds its dead letter.
#[derive(Debug, Clone, Copy)]
struct Case {
    /// Expected reason; `None` for a good row.
    reason: Option<&'static str>,
    time: Option<&'static str>,
    station: Option<&'static str>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    temperature: &'static str,
    marker: f64,
}

const fn case(
    reason: Option<&'static str>,
    time: Option<&'static str>,
    station: Option<&'static str>,
    position: (Option<f64>, Option<f64>),
    temperature: &'static str,
    marker: f64,
) -> Case {
    Case {
        reason,
        time,
        station,
        latitude: position.0,
        longitude: position.1,
        temperature,
        marker,
    }
}

const AT: (Option<f64>, Option<f64>) = (Some(60.0), Some(5.0));

/// Every reason except `malformed`, in file order. The `too_late` row is 2 h older than the
/// good row before it (default `allowed_lateness` 1 h).
const CASES: [Case; 14] = [
    case(
        None,
        Some("2020-01-01T03:00:00Z"),
        Some("S1"),
        AT,
        "8.5",
        101.25,
    ),
    case(Some("missing_time"), None, Some("S1"), AT, "8.0", 103.25),
    case(
        Some("unparseable_time"),
        Some("yesterday"),
        Some("S1"),
        AT,
        "8.0",
        104.25,
    ),
    case(
        Some("missing_station"),
        Some("2020-01-01T03:02:00Z"),
        None,
        AT,
        "8.0",
        105.25,
    ),
    case(
        Some("non_numeric"),
        Some("2020-01-01T03:03:00Z"),
        Some("S1"),
        AT,
        "warm",
        106.25,
    ),
    case(
        Some("latitude_out_of_range"),
        Some("2020-01-01T03:04:00Z"),
        Some("S1"),
        (Some(95.0), Some(5.0)),
        "8.0",
        107.25,
    ),
    case(
        Some("latitude_out_of_range"),
        Some("2020-01-01T03:05:00Z"),
        Some("S1"),
        (Some(f64::INFINITY), Some(5.0)),
        "8.0",
        108.25,
    ),
    case(
        Some("longitude_out_of_range"),
        Some("2020-01-01T03:06:00Z"),
        Some("S1"),
        (Some(60.0), Some(-200.0)),
        "8.0",
        109.25,
    ),
    case(
        Some("longitude_out_of_range"),
        Some("2020-01-01T03:07:00Z"),
        Some("S1"),
        (Some(60.0), Some(f64::NAN)),
        "8.0",
        110.25,
    ),
    case(
        Some("missing_position"),
        Some("2020-01-01T03:08:00Z"),
        Some("S1"),
        (None, Some(5.0)),
        "8.0",
        111.25,
    ),
    case(
        Some("missing_position"),
        Some("2020-01-01T03:09:00Z"),
        Some("S1"),
        (Some(60.0), None),
        "8.0",
        112.25,
    ),
    case(
        None,
        Some("2020-01-01T03:10:00Z"),
        Some("S2"),
        (Some(61.0), Some(6.0)),
        "9.0",
        113.25,
    ),
    case(
        Some("too_late"),
        Some("2020-01-01T01:10:00Z"),
        Some("S2"),
        (Some(61.0), Some(6.0)),
        "9.5",
        114.25,
    ),
    case(
        None,
        Some("2020-01-01T03:11:00Z"),
        Some("S2"),
        (Some(61.0), Some(6.0)),
        "9.0",
        115.25,
    ),
];

/// The malformed row of the text formats (its marker appears in the raw line).
const MALFORMED_MARKER: f64 = 102.25;

/// A position as CSV text: `inf`, `NaN` and empty are written as such.
fn number_text(v: Option<f64>) -> String {
    match v {
        None => String::new(),
        Some(v) if v.is_nan() => "NaN".into(),
        Some(v) if v.is_infinite() => "inf".into(),
        Some(v) => v.to_string(),
    }
}

fn write_csv(path: &Path) {
    let mut text = String::from(
        "timestamp,station_id,latitude,longitude,temperature_c,salinity_psu,depth_m,dissolved_oxygen\n",
    );
    for (i, c) in CASES.iter().enumerate() {
        if i == 1 {
            text.push_str(&format!("2020-01-01T03:01:00Z,S1,{MALFORMED_MARKER}\n"));
        }
        text.push_str(&format!(
            "{},{},{},{},{},35.0,10,{}\n",
            c.time.unwrap_or(""),
            c.station.unwrap_or(""),
            number_text(c.latitude),
            number_text(c.longitude),
            c.temperature,
            c.marker
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn write_ndjson(path: &Path) {
    let mut text = String::new();
    for (i, c) in CASES.iter().enumerate() {
        if i == 1 {
            text.push_str(&format!(
                "{{\"timestamp\":\"2020-01-01T03:01:00Z\",\"dissolved_oxygen\":{MALFORMED_MARKER}\n"
            ));
        }
        // Non-finite and empty positions as text (JSON numbers cannot hold them).
        let position = |v: Option<f64>| match v {
            Some(v) if v.is_finite() => Value::from(v),
            other => Value::from(number_text(other)),
        };
        let mut object = serde_json::Map::new();
        if let Some(t) = c.time {
            object.insert("timestamp".into(), t.into());
        }
        if let Some(s) = c.station {
            object.insert("station_id".into(), s.into());
        }
        object.insert("latitude".into(), position(c.latitude));
        object.insert("longitude".into(), position(c.longitude));
        let temperature = c
            .temperature
            .parse::<f64>()
            .map_or_else(|_| Value::from(c.temperature), Value::from);
        object.insert("temperature_c".into(), temperature);
        object.insert("dissolved_oxygen".into(), c.marker.into());
        text.push_str(&Value::Object(object).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The cases a binary file holds: all, or with a `Timestamp` time column all but the one
/// whose time is not a time.
fn binary_cases(typed_time: bool) -> Vec<Case> {
    CASES
        .iter()
        .filter(|c| !typed_time || c.reason != Some("unparseable_time"))
        .copied()
        .collect()
}

/// The cases as a batch: time as text (`typed_time` false) or `Timestamp(µs, "UTC")`,
/// temperature as text.
fn batch(cases: &[Case], typed_time: bool) -> RecordBatch {
    let time: ArrayRef = if typed_time {
        let micros = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_micros()
        };
        Arc::new(
            cases
                .iter()
                .map(|c| c.time.map(micros))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    } else {
        Arc::new(cases.iter().map(|c| c.time).collect::<StringArray>())
    };
    let time_type = time.data_type().clone();
    let numbers = |f: &dyn Fn(&Case) -> Option<f64>| -> ArrayRef {
        Arc::new(cases.iter().map(f).collect::<Float64Array>())
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("timestamp", time_type, true),
        Field::new("station_id", DataType::Utf8, true),
        Field::new("latitude", DataType::Float64, true),
        Field::new("longitude", DataType::Float64, true),
        Field::new("temperature_c", DataType::Utf8, true),
        Field::new("dissolved_oxygen", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        time,
        Arc::new(cases.iter().map(|c| c.station).collect::<StringArray>()),
        numbers(&|c| c.latitude),
        numbers(&|c| c.longitude),
        Arc::new(
            cases
                .iter()
                .map(|c| Some(c.temperature))
                .collect::<StringArray>(),
        ),
        numbers(&|c| Some(c.marker)),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let mut w =
        parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None)
            .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn write_ipc_stream(path: &Path, batch: &RecordBatch) {
    let mut w =
        arrow_ipc::writer::StreamWriter::try_new(File::create(path).unwrap(), &batch.schema())
            .unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

fn write_ipc_file(path: &Path, batch: &RecordBatch) {
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(File::create(path).unwrap(), &batch.schema())
            .unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

/// The row a dead letter is about: the case whose marker its record holds.
fn case_of<'a>(record: &str, cases: &'a [Case]) -> Option<&'a Case> {
    cases
        .iter()
        .find(|c| record.contains(&format!("{}", c.marker)))
}

/// Checks a JSON record's values against the case: the source columns of a raw row, or the
/// canonical columns of a `too_late` row (rejected after conversion).
fn assert_record_values(record: &Value, c: &Case, input: &str) {
    let canonical = c.reason == Some("too_late");
    let (time, station) = if canonical {
        ("time", "station")
    } else {
        ("timestamp", "station_id")
    };
    assert_eq!(record[time].as_str(), c.time, "{input}: {record}");
    assert_eq!(record[station].as_str(), c.station, "{input}: {record}");
    assert_eq!(
        record["dissolved_oxygen"].as_f64(),
        Some(c.marker),
        "{input}: {record}"
    );
    for (key, expected) in [("latitude", c.latitude), ("longitude", c.longitude)] {
        let value = &record[key];
        match expected {
            Some(v) if v.is_finite() => assert_eq!(value.as_f64(), Some(v), "{input}: {record}"),
            // Non-finite values are shown as their text; a missing one as null or empty text.
            Some(v) => {
                let text = value.as_str().unwrap_or_default().to_ascii_lowercase();
                assert_eq!(
                    text,
                    v.to_string().to_ascii_lowercase(),
                    "{input}: {key} {record}"
                );
            }
            None => assert!(
                value.is_null() || value.as_str() == Some(""),
                "{input}: {key} {record}"
            ),
        }
    }
}

/// Runs `input`, checks every dead letter against `cases` (plus the malformed row when
/// `malformed`), and that the good rows were aggregated.
fn check(dir: &Path, input: &Path, raw_lines: bool, malformed: bool, cases: &[Case]) {
    let name = input.file_name().unwrap().to_string_lossy().to_string();
    let dead = dir.join(format!("{name}.dead.ndjson"));
    let out = dir.join(format!("{name}.out.json"));
    let doc = run_once(input, &out, &["--dead-letter", dead.to_str().unwrap()]);

    let letters: Vec<Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letters are JSON lines"))
        .collect();
    let mut seen = Vec::new();
    for letter in &letters {
        let reason = letter["reason"].as_str().unwrap_or_default();
        let record = letter["record"].as_str().unwrap_or_default();
        assert!(!record.is_empty(), "{name}: empty record in {letter}");
        assert!(!record.contains("\"error\""), "{name}: {letter}");
        assert!(
            !letter["detail"].as_str().unwrap_or_default().is_empty(),
            "{name}: {letter}"
        );
        if reason == "malformed" {
            assert!(malformed, "{name}: unexpected {letter}");
            assert!(
                record.contains(&MALFORMED_MARKER.to_string()),
                "{name}: {letter}"
            );
            seen.push(MALFORMED_MARKER);
            continue;
        }
        let c = case_of(record, cases).unwrap_or_else(|| panic!("{name}: whose row? {letter}"));
        assert_eq!(c.reason, Some(reason), "{name}: {letter}");
        seen.push(c.marker);
        // Text files keep the raw line, except for too_late (judged on the canonical row).
        if raw_lines && reason != "too_late" {
            for value in [c.time, c.station].into_iter().flatten() {
                assert!(record.contains(value), "{name}: {value} not in {letter}");
            }
        } else {
            let values: Value = serde_json::from_str(record)
                .unwrap_or_else(|e| panic!("{name}: record is not JSON ({e}): {letter}"));
            assert_record_values(&values, c, &name);
        }
    }
    let mut expected: Vec<f64> = cases
        .iter()
        .filter(|c| c.reason.is_some())
        .map(|c| c.marker)
        .collect();
    if malformed {
        expected.push(MALFORMED_MARKER);
    }
    seen.sort_by(f64::total_cmp);
    expected.sort_by(f64::total_cmp);
    assert_eq!(seen, expected, "{name}: one dead letter per bad row");

    let good = cases.iter().filter(|c| c.reason.is_none()).count() as u64;
    let aggregated: u64 = doc["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .sum();
    assert_eq!(aggregated, good, "{name}: the good rows are aggregated");
}

#[test]
fn every_reason_keeps_the_original_record_in_every_file_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let csv = d.join("bad.csv");
    write_csv(&csv);
    check(d, &csv, true, true, &CASES);
    let ndjson = d.join("bad.ndjson");
    write_ndjson(&ndjson);
    check(d, &ndjson, true, true, &CASES);

    for typed_time in [false, true] {
        let cases = binary_cases(typed_time);
        let batch = batch(&cases, typed_time);
        let stem = if typed_time { "typed" } else { "text" };
        let parquet = d.join(format!("{stem}.parquet"));
        write_parquet(&parquet, &batch);
        check(d, &parquet, false, false, &cases);
        let stream = d.join(format!("{stem}.arrows"));
        write_ipc_stream(&stream, &batch);
        check(d, &stream, false, false, &cases);
        let file = d.join(format!("{stem}.arrow"));
        write_ipc_file(&file, &batch);
        check(d, &file, false, false, &cases);
    }
}
