use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, Float64Array, Int32Array, StringArray, TimestampSecondArray};
use oceanflow_config::ColumnMapping;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::*;
use crate::{Poll, RejectReason, Rejected};

fn variables() -> Vec<String> {
    vec!["temperature_c".into(), "salinity_psu".into()]
}

fn categorical() -> Vec<String> {
    vec!["species".into()]
}

fn config(path: &Path, batch_rows: usize) -> FileSourceConfig {
    FileSourceConfig {
        name: "files".into(),
        path: path.display().to_string(),
        format: None,
        mapping: ColumnMapping::default(),
        batch_rows,
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn station_as_text(batch: &RecordBatch) -> RecordBatch {
    let mut columns = batch.columns().to_vec();
    columns[1] = arrow_cast::cast(&columns[1], &arrow_schema::DataType::Utf8).unwrap();
    let schema = oceanflow_config::schema::observation_schema(&variables(), &categorical());
    RecordBatch::try_new(schema, columns).unwrap()
}

/// Reads every partition; returns the canonical rows, the rejections and the batch sizes.
fn read_all(cfg: &FileSourceConfig) -> (RecordBatch, Vec<Rejected>, Vec<usize>) {
    let schema = oceanflow_config::schema::observation_schema(&variables(), &categorical());
    let (mut batches, mut rejected, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for partition in file_partitions(cfg, &variables(), &categorical()).unwrap() {
        let id = partition.id.clone();
        let mut reader = (partition.open)(None).unwrap();
        let (mut bytes, mut polled) = (0, 0);
        loop {
            match reader.poll().unwrap() {
                Poll::Batch(b) => {
                    // Parquet keeps its dictionary-encoded stations; compare as text.
                    let b = crate::SourceBatch {
                        batch: station_as_text(&b.batch),
                        ..b
                    };
                    assert_eq!(b.batch.schema(), schema);
                    bytes += b.bytes;
                    polled += 1;
                    sizes.push(b.batch.num_rows() + b.rejected.len());
                    batches.push(b.batch);
                    rejected.extend(b.rejected);
                }
                Poll::Finished => {
                    assert!(polled == 0 || bytes > 0, "{id}: no bytes counted");
                    break;
                }
                Poll::Idle => panic!("files never idle"),
            }
        }
    }
    let rows = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
    (rows, rejected, sizes)
}

/// A small typed table: timestamps, a dictionary station, an out-of-range latitude, NaN, an
/// unmapped column.
fn table() -> RecordBatch {
    let mut station = StringDictionaryBuilder::<Int32Type>::new();
    for s in ["A", "B", "A", "C", "B"] {
        station.append_value(s);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "timestamp",
            Arc::new(TimestampSecondArray::from(vec![
                1_577_836_800,
                1_577_836_860,
                1_577_836_920,
                1_577_836_980,
                1_577_837_040,
            ])),
        ),
        ("station_id", Arc::new(station.finish())),
        (
            "latitude",
            Arc::new(Float64Array::from(vec![
                Some(60.5),
                Some(61.0),
                Some(-12.25),
                Some(70.0),
                Some(95.0),
            ])),
        ),
        (
            "longitude",
            Arc::new(Float64Array::from(vec![
                Some(5.0),
                Some(6.0),
                Some(179.5),
                Some(-3.0),
                Some(1.0),
            ])),
        ),
        (
            "temperature_c",
            Arc::new(Float64Array::from(vec![
                Some(8.5),
                Some(f64::NAN),
                None,
                Some(-1.5),
                Some(2.0),
            ])),
        ),
        ("note", Arc::new(Int32Array::from(vec![1, 2, 3, 4, 5]))),
        (
            "species",
            Arc::new(StringArray::from(vec![
                Some("cod"),
                None,
                Some("herring"),
                Some("cod"),
                Some("x"),
            ])),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

fn write_csv(path: &Path, batch: &RecordBatch) {
    let mut writer = arrow_csv::Writer::new(File::create(path).unwrap());
    writer.write(batch).unwrap();
}

fn write_all_formats(dir: &Path, batch: &RecordBatch) -> Vec<PathBuf> {
    let csv = dir.join("t.csv");
    write_csv(&csv, batch);

    let ndjson = dir.join("t.ndjson");
    let mut writer = arrow_json::LineDelimitedWriter::new(File::create(&ndjson).unwrap());
    writer.write(batch).unwrap();
    writer.finish().unwrap();

    let parquet = dir.join("t.parquet");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(2))
        .build();
    let mut writer =
        ArrowWriter::try_new(File::create(&parquet).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();

    let stream = dir.join("t.arrows");
    let mut writer =
        arrow_ipc::writer::StreamWriter::try_new(File::create(&stream).unwrap(), &batch.schema())
            .unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();

    let file = dir.join("t.arrow");
    let mut writer =
        arrow_ipc::writer::FileWriter::try_new(File::create(&file).unwrap(), &batch.schema())
            .unwrap();
    writer.write(&batch.slice(0, 2)).unwrap();
    writer.write(&batch.slice(2, 3)).unwrap();
    writer.finish().unwrap();

    vec![csv, ndjson, parquet, stream, file]
}

#[test]
fn every_format_gives_identical_canonical_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for path in write_all_formats(dir.path(), &table()) {
        let (rows, rejected, sizes) = read_all(&config(&path, 2));
        assert!(sizes.iter().all(|&n| n <= 2), "{path:?}: {sizes:?}");
        assert_eq!(rejected.len(), 1, "{path:?}: {rejected:?}");
        assert_eq!(rejected[0].reason, RejectReason::LatitudeOutOfRange);
        results.push((path, rows));
    }
    let (first_path, expected) = &results[0];
    assert_eq!(expected.num_rows(), 4);
    let temperature = expected
        .column(4)
        .as_primitive::<arrow_array::types::Float64Type>();
    assert!(temperature.is_null(1) && temperature.is_null(2));
    for (path, rows) in &results[1..] {
        assert_eq!(rows, expected, "{path:?} differs from {first_path:?}");
    }
}

#[test]
fn parquet_is_split_by_row_group() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all_formats(dir.path(), &table());
    let parquet = &paths[2];
    let ids: Vec<_> = file_partitions(&config(parquet, 100), &variables(), &categorical())
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    let base = parquet.display();
    assert_eq!(
        ids,
        [
            format!("{base}#rg0"),
            format!("{base}#rg1"),
            format!("{base}#rg2")
        ]
    );
    let (_, rejected, _) = read_all(&config(parquet, 100));
    assert_eq!(rejected[0].partition, format!("{base}#rg2"));
    assert_eq!(rejected[0].row, Some(0));
}

#[test]
fn glob_expands_to_sorted_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, range) in [("c.csv", 4..5), ("a.csv", 0..2), ("b.csv", 2..4)] {
        write_csv(
            &dir.path().join(name),
            &table().slice(range.start, range.len()),
        );
    }
    let cfg = config(&dir.path().join("*.csv"), 1000);
    let ids: Vec<_> = file_partitions(&cfg, &variables(), &categorical())
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    let expected: Vec<_> = ["a.csv", "b.csv", "c.csv"]
        .map(|n| dir.path().join(n).display().to_string())
        .to_vec();
    assert_eq!(ids, expected);
    let (rows, rejected, _) = read_all(&cfg);
    assert_eq!((rows.num_rows(), rejected.len()), (4, 1));
}

#[test]
fn no_match_and_unknown_extension_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("*.csv"), 10);
    let err = file_partitions(&cfg, &variables(), &categorical()).unwrap_err();
    assert!(matches!(err, SourceError::NoInput { .. }), "{err}");
    let odd = dir.path().join("data.txt");
    std::fs::write(&odd, "x").unwrap();
    let err = file_partitions(&config(&odd, 10), &variables(), &categorical()).unwrap_err();
    assert!(matches!(err, SourceError::UnknownFormat { .. }), "{err}");
}

#[test]
fn csv_malformed_lines_are_rejected_with_the_raw_line() {
    let (rows, rejected, _) = read_all(&config(&fixture("observations_bad.csv"), 1000));
    let got: Vec<_> = rejected
        .iter()
        .map(|r| (r.row.unwrap(), r.reason, r.record.as_str()))
        .collect();
    use RejectReason::*;
    assert_eq!(got[0], (2, Malformed, "2020-01-01T00:01:00Z,A,60.5,5.0"));
    assert_eq!((got[1].0, got[1].1), (4, Malformed));
    assert!(got[1].2.starts_with("2020-01-01T00:03:00Z,B,61,6,9.5,h"));
    assert_eq!(
        got[2],
        (7, Malformed, "2020-01-01T00:05:00Z,C,62,7,10,\"stray")
    );
    assert_eq!((got[3].0, got[3].1), (8, LatitudeOutOfRange));
    assert_eq!((got[4].0, got[4].1), (10, NonNumeric));
    let record: serde_json::Value = serde_json::from_str(got[4].2).unwrap();
    assert_eq!(record["temperature_c"], "warm");
    assert_eq!(
        got[5],
        (11, Malformed, "2020-01-01T00:08:00Z,D,63,8,11,cod,extra")
    );
    assert_eq!(got.len(), 6);
    assert!(rejected[0].detail.contains("4 fields"));

    let species: Vec<_> = rows.column(6).as_string::<i32>().iter().collect();
    assert_eq!(
        species,
        [
            Some("cod"),
            Some("herring, atlantic"),
            Some("multi\nline"),
            Some("cod")
        ]
    );
    let temperature = rows
        .column(4)
        .as_primitive::<arrow_array::types::Float64Type>();
    assert_eq!(
        temperature.iter().collect::<Vec<_>>(),
        [Some(8.5), Some(9.0), None, None]
    );
}

#[test]
fn csv_small_batches_keep_line_numbers() {
    let (rows, rejected, sizes) = read_all(&config(&fixture("observations_bad.csv"), 2));
    assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
    assert_eq!(rows.num_rows(), 4);
    let lines: Vec<_> = rejected.iter().map(|r| r.row.unwrap()).collect();
    assert_eq!(lines, [2, 4, 7, 8, 10, 11]);
}

#[test]
fn ndjson_malformed_lines_are_rejected_with_the_raw_line() {
    let (rows, rejected, _) = read_all(&config(&fixture("observations_bad.ndjson"), 1000));
    let got: Vec<_> = rejected
        .iter()
        .map(|r| (r.row.unwrap(), r.reason))
        .collect();
    use RejectReason::*;
    assert_eq!(
        got,
        [
            (1, Malformed),
            (2, Malformed),
            (5, Malformed),
            (6, NonNumeric),
            (7, Malformed),
            (9, Malformed),
        ]
    );
    assert_eq!(rejected[1].record, "[1,2,3]");
    assert_eq!(rejected[2].record, "not json at all");
    assert_eq!(
        rejected[3].record,
        r#"{"timestamp":"2020-01-01T00:05:00Z","station_id":"C","latitude":62,"longitude":7,"temperature_c":"warm"}"#
    );
    let stations: Vec<_> = rows.column(1).as_string::<i32>().iter().collect();
    assert_eq!(stations, [Some("A"), Some("B"), Some("C"), Some("E")]);
    let latitude = rows
        .column(2)
        .as_primitive::<arrow_array::types::Float64Type>();
    assert_eq!(latitude.value(1), 61.0);
    let time = rows
        .column(0)
        .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    assert_eq!(time.value(1), 1_577_837_040_000_000);
}

#[test]
fn missing_time_column_stops_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_time.csv");
    std::fs::write(&path, "station_id,latitude\nA,60\n").unwrap();
    let mut partitions = file_partitions(&config(&path, 10), &variables(), &categorical()).unwrap();
    let mut reader = (partitions.remove(0).open)(None).unwrap();
    let err = reader.poll().unwrap_err();
    assert!(matches!(err, SourceError::MissingColumn { .. }), "{err}");
}

#[test]
fn empty_csv_and_header_only_csv_finish_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("empty.csv", ""), ("header.csv", "timestamp,station_id\n")] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (rows, rejected, _) = read_all(&config(&path, 10));
        assert_eq!((rows.num_rows(), rejected.len()), (0, 0));
    }
}

#[test]
fn probe_finds_text_columns() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all_formats(dir.path(), &table());
    for path in &paths {
        let columns = probe_string_columns(&path.display().to_string(), None).unwrap();
        assert_eq!(columns, ["station_id", "species"], "{path:?}");
    }
    let columns =
        probe_string_columns(&fixture("observations_bad.csv").display().to_string(), None).unwrap();
    assert_eq!(columns, ["station_id", "temperature_c", "species"]);
}

#[test]
fn slicer_splits_batches() {
    let mut slicer = Slicer::default();
    slicer.push(table());
    let sizes: Vec<_> = std::iter::from_fn(|| slicer.next(2))
        .map(|b| b.num_rows())
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
}

#[test]
fn csv_byte_order_mark_and_crlf_header_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bom.csv");
    std::fs::write(
        &path,
        b"\xEF\xBB\xBFtimestamp,station_id\r\n2020-01-01,A\r\n2020-01-02,B\r\n",
    )
    .unwrap();
    let (rows, rejected, _) = read_all(&config(&path, 10));
    assert!(rejected.is_empty(), "{rejected:?}");
    let stations: Vec<_> = rows.column(1).as_string::<i32>().iter().collect();
    assert_eq!(stations, [Some("A"), Some("B")]);
}

/// Rows (as text stations) and rejected row numbers of `partition`, reopened after every
/// batch at the position that batch reported.
fn read_resuming_after_every_batch(
    cfg: &FileSourceConfig,
) -> (Vec<RecordBatch>, Vec<(Option<u64>, RejectReason)>) {
    let (mut rows, mut rejected) = (Vec::new(), Vec::new());
    for index in 0..file_partitions(cfg, &variables(), &categorical())
        .unwrap()
        .len()
    {
        let mut position = None;
        loop {
            // A fresh listing each time: as after a restart.
            let partition = file_partitions(cfg, &variables(), &categorical())
                .unwrap()
                .remove(index);
            let mut reader = (partition.open)(position.clone()).unwrap();
            match reader.poll().unwrap() {
                Poll::Batch(b) => {
                    assert!(b.position.is_some(), "{}: no position", partition.id);
                    position = b.position;
                    rows.push(station_as_text(&b.batch));
                    rejected.extend(b.rejected.iter().map(|r| (r.row, r.reason)));
                }
                Poll::Finished => break,
                Poll::Idle => panic!("files never idle"),
            }
        }
    }
    (rows, rejected)
}

#[test]
fn every_format_resumes_after_any_batch_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let schema = oceanflow_config::schema::observation_schema(&variables(), &categorical());
    for path in write_all_formats(dir.path(), &table()) {
        for batch_rows in [1, 2, 3] {
            let cfg = config(&path, batch_rows);
            let (expected, expected_rejected, _) = read_all(&cfg);
            let (rows, rejected) = read_resuming_after_every_batch(&cfg);
            let rows = arrow_select::concat::concat_batches(&schema, &rows).unwrap();
            assert_eq!(rows, expected, "{path:?} with batches of {batch_rows}");
            let expected_rejected: Vec<_> = expected_rejected
                .iter()
                .map(|r| (r.row, r.reason))
                .collect();
            assert_eq!(rejected, expected_rejected, "{path:?}");
        }
    }
}

#[test]
fn a_position_from_another_format_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.csv");
    write_csv(&path, &table());
    let partition = file_partitions(&config(&path, 2), &variables(), &categorical())
        .unwrap()
        .remove(0);
    let bad = crate::Position(serde_json::json!({ "rows": 3 }));
    let err = (partition.open)(Some(bad)).err().expect("refused");
    assert!(err.to_string().contains("cannot resume"), "{err}");
}
