//! Shared fixtures of the end-to-end tests: tutorial-shaped rows with awkward cases, the same
//! rows in every file format, and running the binary once.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::oceanflow_bin;
use crate::oracle::Row;

/// 2020-01-01T00:00:00Z in µs: where the fixture rows start.
pub const START_US: i64 = 1_577_836_800_000_000; // 2020-01-01T00:00:00Z
/// One minute in µs.
pub const MINUTE_US: i64 = 60_000_000;
/// Species names the fixture rows draw from.
pub const SPECIES: [&str; 12] = [
    "Gadus morhua",
    "Clupea harengus",
    "Calanus finmarchicus",
    "Pandalus borealis",
    "Sebastes mentella",
    "Mallotus villosus",
    "Scomber scombrus",
    "Melanogrammus aeglefinus",
    "Pollachius virens",
    "Reinhardtius hippoglossoides",
    "Boreogadus saida",
    "Micromesistius poutassou",
];

/// Tutorial-shaped rows with the awkward cases in them: out-of-order times within the allowed
/// lateness, duplicate timestamps, missing values, points on region edges and corners, points
/// outside every region, and rows without species. 3 minutes apart: 12,000 rows span 25 days,
/// inside the default 30-day retention of hourly buckets.
pub fn rows(n: usize, seed: u64) -> Vec<Row> {
    rows_every(n, seed, 3 * MINUTE_US)
}

/// [`rows`] `step_us` apart (before each row's jitter of up to 30 minutes back).
pub fn rows_every(n: usize, seed: u64, step_us: i64) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let jitter = rng.random_range(-30..=0) * MINUTE_US;
            let time_us = START_US + (i as i64) * step_us + jitter;
            let (lat, lon) = match i % 50 {
                0 => (62.0, 9.0),   // corner shared by north_sea and norwegian_sea
                1 => (55.0, -5.0),  // west edge of north_sea
                2 => (75.0, 15.0),  // on barents_sea's west edge
                3 => (10.0, 100.0), // outside every region
                _ => (rng.random_range(50.0..80.0), rng.random_range(-6.0..40.0)),
            };
            let mut maybe = |v: f64| (rng.random_range(0..20) != 0).then_some(v);
            let values = [
                8.0 + (i % 97) as f64 * 0.17 - 8.0,
                35.0 + (i % 13) as f64 * 0.07 - 0.5,
                [5.0, 10.0, 25.0, 50.0, 100.0, 200.0][i % 6],
                7.0 + (i % 11) as f64 * 0.09 - 0.5,
            ];
            let vars = values.iter().map(|v| maybe(*v)).collect();
            let species =
                (i % 9 != 0).then(|| SPECIES[rng.random_range(0..SPECIES.len())].to_string());
            Row {
                time_us,
                station: format!("STATION-{:03}", rng.random_range(0..7)),
                lat: Some(lat),
                lon: Some(lon),
                vars,
                cats: vec![species],
            }
        })
        .collect()
}

/// Gives `station`'s present `depth_m` values 1e9 ± 1e-3: a group whose spread is a 1e-12
/// part of its magnitude, next to groups near 0 in the same batches.
pub fn with_adversarial_depths(rows: &mut [Row], station: &str, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for row in rows.iter_mut().filter(|r| r.station == station) {
        if let Some(depth) = row.vars[2].as_mut() {
            *depth = 1e9 + rng.random_range(-1e-3..=1e-3);
        }
    }
}

/// Deals `rows` out to `files` parts at random, each part then in time order (stable).
pub fn split_in_time_order(rows: &[Row], files: usize, seed: u64) -> Vec<Vec<Row>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut parts = vec![Vec::new(); files];
    for row in rows {
        parts[rng.random_range(0..files)].push(row.clone());
    }
    for part in &mut parts {
        part.sort_by_key(|r| r.time_us);
    }
    parts
}

/// The tutorial's columns (and `species`) as one Arrow batch.
pub fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            // "+00:00" rather than "UTC": arrow's CSV writer formats named zones only with
            // chrono-tz. Parquet/IPC files with "UTC" are covered by the connector tests.
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("station_id", DataType::Utf8, false),
        Field::new("latitude", DataType::Float64, true),
        Field::new("longitude", DataType::Float64, true),
        Field::new("temperature_c", DataType::Float64, true),
        Field::new("salinity_psu", DataType::Float64, true),
        Field::new("depth_m", DataType::Float64, true),
        Field::new("dissolved_oxygen", DataType::Float64, true),
        Field::new("species", DataType::Utf8, true),
    ]));
    let var = |i: usize| -> ArrayRef {
        Arc::new(rows.iter().map(|r| r.vars[i]).collect::<Float64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.time_us).collect::<Vec<_>>())
                .with_timezone("+00:00"),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.station.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(rows.iter().map(|r| r.lat).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.lon).collect::<Float64Array>()),
        var(0),
        var(1),
        var(2),
        var(3),
        Arc::new(
            rows.iter()
                .map(|r| r.cats[0].as_deref())
                .collect::<StringArray>(),
        ),
    ];
    RecordBatch::try_new(schema, columns).expect("valid batch")
}

/// Writes `batch` as CSV with a header.
pub fn write_csv(path: &Path, batch: &RecordBatch) {
    let mut w = arrow_csv::Writer::new(File::create(path).unwrap());
    w.write(batch).unwrap();
}

/// Writes `batch` as Parquet in row groups of at most `row_group_rows` rows.
pub fn write_parquet(path: &Path, batch: &RecordBatch, row_group_rows: usize) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        File::create(path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// `batch` as CSV, NDJSON, Parquet, Arrow IPC stream and Arrow IPC file in `dir`.
pub fn write_all_formats(dir: &Path, batch: &RecordBatch) -> Vec<PathBuf> {
    let csv = dir.join("obs.csv");
    write_csv(&csv, batch);

    let ndjson = dir.join("obs.ndjson");
    let mut w = arrow_json::LineDelimitedWriter::new(File::create(&ndjson).unwrap());
    w.write(batch).unwrap();
    w.finish().unwrap();

    let parquet = dir.join("obs.parquet");
    write_parquet(&parquet, batch, 3_000);

    let stream = dir.join("obs.arrows");
    let mut w =
        arrow_ipc::writer::StreamWriter::try_new(File::create(&stream).unwrap(), &batch.schema())
            .unwrap();
    for offset in (0..batch.num_rows()).step_by(4_000) {
        w.write(&batch.slice(offset, 4_000.min(batch.num_rows() - offset)))
            .unwrap();
    }
    w.finish().unwrap();

    let file = dir.join("obs.arrow");
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(File::create(&file).unwrap(), &batch.schema())
            .unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();

    vec![csv, ndjson, parquet, stream, file]
}

/// `oceanflow run --input INPUT --once --output OUT EXTRA…`, which must succeed; the output.
pub fn run_once(input: &Path, out: &Path, extra: &[&str]) -> Value {
    run_once_with(&[OsStr::new("--input"), input.as_os_str()], out, extra)
}

/// `oceanflow run ARGS… --once --output OUT EXTRA…`, which must succeed; the output.
pub fn run_once_with(args: &[&OsStr], out: &Path, extra: &[&str]) -> Value {
    let status = Command::new(oceanflow_bin())
        .arg("run")
        .args(args)
        .arg("--once")
        .arg("--output")
        .arg(out)
        .args(extra)
        .env("OCEANFLOW_LOG", "warn")
        .status()
        .expect("oceanflow starts");
    assert!(status.success(), "oceanflow failed on {args:?}: {status}");
    serde_json::from_slice(&std::fs::read(out).unwrap()).expect("output is JSON")
}

/// Counts of every row of every table: equal across formats and worker counts, exactly.
pub fn counts(doc: &Value) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for table in ["stations", "temporal", "regions"] {
        for row in doc[table].as_array().unwrap() {
            let key = format!(
                "{table}/{}/{}/{}/{}",
                row["station"], row["grouping"], row["key"], row["region"]
            );
            out.push((key, row["count"].as_u64().unwrap()));
        }
    }
    out
}
