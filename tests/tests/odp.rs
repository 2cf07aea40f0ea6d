//! The ODP path end to end, against the repo's ODP test server (`odp-test-server`, package
//! `oceanflow-odp-server`) serving a biota-like table this test writes:
//!
//! - conformance: the real `odp-sdk` Python client (0.28.10, from PyPI, in the virtualenv of
//!   `scripts/python-env.sh`) reads the server — `stats()`, `schema()`,
//!   `select().batches()`, a `within $area` selection, a filter with typed int/datetime vars and
//!   a projection, a bad filter and a missing table — and gets exactly the rows the table holds;
//! - end to end: `oceanflow run --config config/examples/odp.toml` (its `base_url` pointed at
//!   the server, the key from `ODP_API_KEY`; 1 and 2 workers) with a 429 and a mid-page cut →
//!   every aggregate equals the batch oracle; the unparseable footprint is dead-lettered.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use oceanflow_tests::oracle::{compute, OracleSpec, Row};
use oceanflow_tests::{oceanflow_bin, ChildGuard};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const DATASET: &str = "1d801817-742b-4867-82cf-5597673524eb";
const KEY: &str = "sk_test_conformance";
const START_US: i64 = 1_577_836_800_000_000; // 2020-01-01T00:00:00Z
const NORTH_SEA: &str = "POLYGON((-5 51, 9 51, 9 62, -5 62, -5 51))";
const SPECIES: [&str; 8] = [
    "Gadus morhua",
    "Clupea harengus",
    "Calanus finmarchicus",
    "Pandalus borealis",
    "Lophelia pertusa",
    "Paragorgia arborea",
    "Geodia barretti",
    "Boreogadus saida",
];

/// One generated record, as the table holds it.
struct Record {
    id: String,
    time_us: i64,
    species: Option<&'static str>,
    station: Option<String>,
    /// (lat, lon) columns.
    point: Option<(f64, f64)>,
    /// Centre (lat, lon) of the square footprint, or an unparseable footprint.
    footprint: Option<Result<(f64, f64), ()>>,
    min_depth: Option<f64>,
    max_depth: Option<f64>,
}

impl Record {
    fn wkt(&self) -> Option<String> {
        self.footprint.map(|f| match f {
            Ok((lat, lon)) => {
                let (x0, x1, y0, y1) = (lon - 0.01, lon + 0.01, lat - 0.01, lat + 0.01);
                format!("POLYGON(({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))")
            }
            Err(()) => "POLYGON((not wkt".to_string(),
        })
    }
}

/// Biota-like records: positions on a quarter-degree grid offset by an eighth (never on a
/// region edge), some with only a footprint, some with only a point, some with neither, a few
/// with an unparseable footprint and no point; some without species, station or depth.
fn records(n: usize, seed: u64) -> Vec<Record> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let lat = 48.0 + f64::from(rng.random_range(0..128u32)) * 0.25 + 0.125;
            let lon = -8.0 + f64::from(rng.random_range(0..200u32)) * 0.25 + 0.125;
            let (point, footprint) = match i % 10 {
                _ if i % 97 == 50 => (None, Some(Err(()))),
                3 => (None, Some(Ok((lat, lon)))),
                6 => (Some((lat, lon)), None),
                9 if i % 20 == 19 => (None, None),
                _ => (Some((lat, lon)), Some(Ok((lat, lon)))),
            };
            let depth = [5.0, 10.0, 25.0, 50.0, 100.0, 200.0][rng.random_range(0..6)];
            Record {
                id: format!("occ-{i:06}"),
                time_us: START_US + i as i64 * 7 * 60_000_000,
                species: (i % 11 != 5).then(|| SPECIES[rng.random_range(0..SPECIES.len())]),
                station: (i % 13 != 7).then(|| format!("PGS-{}", rng.random_range(0..5))),
                point,
                footprint,
                min_depth: (i % 17 != 3).then_some(depth),
                max_depth: (i % 19 != 4).then_some(depth * 1.5),
            }
        })
        .collect()
}

fn table(records: &[Record]) -> RecordBatch {
    let geometry = Field::new("footprintWKT", DataType::Utf8, true).with_metadata(
        std::collections::HashMap::from([("isGeometry".to_string(), "1".to_string())]),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("occurrenceID", DataType::Utf8, false),
        Field::new(
            "eventDate",
            // "+00:00", not "UTC": arrow-json formats named zones only with chrono-tz.
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("scientificName", DataType::Utf8, true),
        Field::new("locationID", DataType::Utf8, true),
        Field::new("decimalLatitude", DataType::Float64, true),
        Field::new("decimalLongitude", DataType::Float64, true),
        geometry,
        Field::new("minimumDepthInMeters", DataType::Float64, true),
        Field::new("maximumDepthInMeters", DataType::Float64, true),
        Field::new("individualCount", DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(records.iter().map(|r| &r.id))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| r.time_us))
                .with_timezone("+00:00"),
        ),
        Arc::new(records.iter().map(|r| r.species).collect::<StringArray>()),
        Arc::new(
            records
                .iter()
                .map(|r| r.station.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(
            records
                .iter()
                .map(|r| r.point.map(|p| p.0))
                .collect::<Float64Array>(),
        ),
        Arc::new(
            records
                .iter()
                .map(|r| r.point.map(|p| p.1))
                .collect::<Float64Array>(),
        ),
        Arc::new(records.iter().map(Record::wkt).collect::<StringArray>()),
        Arc::new(
            records
                .iter()
                .map(|r| r.min_depth)
                .collect::<Float64Array>(),
        ),
        Arc::new(
            records
                .iter()
                .map(|r| r.max_depth)
                .collect::<Float64Array>(),
        ),
        Arc::new(Int64Array::from_iter_values(
            (0..records.len() as i64).map(|i| i % 40 + 1),
        )),
    ];
    RecordBatch::try_new(schema, columns).expect("valid table")
}

fn write_table(path: &Path, batch: &RecordBatch) {
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(File::create(path).unwrap(), &batch.schema())
            .unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

/// `odp-test-server`, built next to `oceanflow` (`cargo build -p oceanflow-odp-server`;
/// scripts/test.sh builds the whole workspace).
fn server_bin() -> PathBuf {
    let path = oceanflow_bin().with_file_name("odp-test-server");
    assert!(
        path.is_file(),
        "{} not found: build it with `cargo build -p oceanflow-odp-server`",
        path.display()
    );
    path
}

/// Starts the server on `table_file`; returns it and its base URL.
fn start_server(table_file: &Path, extra: &[&str]) -> (ChildGuard, String) {
    let mut cmd = Command::new(server_bin());
    cmd.arg("--file")
        .arg(table_file)
        .args(["--api-key", KEY, "--dataset", DATASET])
        .args(["--page-rows", "700", "--batch-rows", "200"])
        .args(extra)
        .stdout(Stdio::piped());
    let mut guard = ChildGuard::spawn("odp-test-server", &mut cmd).unwrap();
    let stdout = guard.child_mut().stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (guard, url)
}

/// Rows of `batches` as NDJSON lines (an exact, readable comparison).
fn ndjson(batches: &[RecordBatch]) -> Vec<String> {
    let mut w = arrow_json::LineDelimitedWriter::new(Vec::new());
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    String::from_utf8(w.into_inner())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn read_arrow(path: &Path) -> Vec<RecordBatch> {
    arrow_ipc::reader::FileReader::try_new(File::open(path).unwrap(), None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn ids(batches: &[RecordBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let ids = b
                .column_by_name("occurrenceID")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            ids.iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_real_odp_sdk_reads_exactly_the_rows_the_server_holds() {
    let python = oceanflow_tests::python().expect("the Python virtualenv with odp-sdk");
    let dir = tempfile::tempdir().unwrap();
    let records = records(3_000, 5);
    let batch = table(&records);
    let file = dir.path().join("biota.arrow");
    write_table(&file, &batch);
    // The SDK's first data page gets a 429 with Retry-After: urllib3 must wait and retry.
    let (_server, url) = start_server(
        &file,
        &["--fault", r#"{"kind":"too_many_requests","retry_after":1}"#],
    );
    let script = oceanflow_tests::workspace_root().join("tests/python/odp_conformance.py");
    let mut child = ChildGuard::spawn(
        "odp_conformance.py",
        Command::new(&python)
            .arg(&script)
            .args([&url, KEY, DATASET, NORTH_SEA])
            .arg(dir.path()),
    )
    .unwrap();
    let status = child
        .wait_exit(Duration::from_secs(300))
        .expect("the SDK script finishes within 300 s");
    assert!(status.success(), "odp_conformance.py failed: {status}");

    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["num_rows"], 3_000, "{summary}");
    let names: Vec<&str> = summary["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap())
        .collect();
    let want: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, want);
    assert_eq!(summary["stats_columns"].as_array().unwrap().len(), 10);
    assert_eq!(summary["schema"][1][1], "timestamp[us, tz=+00:00]");
    assert_eq!(summary["geometry_metadata"], "1");
    assert_eq!(summary["missing_table_schema_is_none"], true);
    assert!(
        summary["bad_filter_error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid_column")),
        "{summary}"
    );
    // 3,000 rows in pages of 700 rows, batches of 200: 5 pages, 17 batches.
    assert_eq!(summary["batches"], 17, "{summary}");

    // Every row, every column, in order.
    let selected = read_arrow(&dir.path().join("select.arrow"));
    assert_eq!(ndjson(&selected), ndjson(std::slice::from_ref(&batch)));

    // `footprintWKT within $area`: footprints whose whole square lies in the North Sea box.
    let within: Vec<String> = records
        .iter()
        .filter(|r| {
            matches!(r.footprint, Some(Ok((lat, lon)))
                if (-5.0 + 0.01..9.0 - 0.01).contains(&lon) && (51.0 + 0.01..62.0 - 0.01).contains(&lat))
        })
        .map(|r| r.id.clone())
        .collect();
    assert!(within.len() > 50, "{}", within.len());
    assert_eq!(ids(&read_arrow(&dir.path().join("within.arrow"))), within);

    // depth >= 100 AND species == Gadus morhua OR eventDate < 2020-01-02, projected.
    let day2 = START_US + 86_400_000_000;
    let filtered: Vec<String> = records
        .iter()
        .filter(|r| {
            (r.min_depth.is_some_and(|d| d >= 100.0) && r.species == Some("Gadus morhua"))
                || r.time_us < day2
        })
        .map(|r| r.id.clone())
        .collect();
    let got = read_arrow(&dir.path().join("filtered.arrow"));
    assert_eq!(got[0].num_columns(), 3);
    assert_eq!(ids(&got), filtered);
}

#[test]
fn odp_source_end_to_end_matches_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let records = records(4_000, 9);
    let file = dir.path().join("biota.arrow");
    write_table(&file, &table(&records));
    let rows: Vec<Row> = records
        .iter()
        .filter(|r| !matches!(r.footprint, Some(Err(()))) || r.point.is_some())
        .map(|r| {
            let position = r.point.or(r.footprint.and_then(Result::ok));
            Row {
                time_us: r.time_us,
                station: r
                    .station
                    .clone()
                    .unwrap_or_else(|| "pgs-brazil-biota".into()),
                lat: position.map(|p| p.0),
                lon: position.map(|p| p.1),
                vars: vec![r.min_depth, r.max_depth],
                cats: vec![r.species.map(str::to_string)],
            }
        })
        .collect();
    let rejected = records.len() - rows.len();
    assert!(rejected > 10);
    let spec = OracleSpec {
        variables: vec!["min_depth_m".into(), "max_depth_m".into()],
        ..OracleSpec::tutorial(&["species"])
    };
    let expected = compute(&spec, &rows);
    for workers in ["1", "2"] {
        let (doc, dead_letters) = run_example(&file, dir.path(), workers);
        let problems = expected.diff(&doc);
        assert!(
            problems.is_empty(),
            "{workers} worker(s): {} differences, first: {:#?}",
            problems.len(),
            &problems[..problems.len().min(10)]
        );
        assert_eq!(dead_letters.len(), rejected);
        assert!(dead_letters
            .iter()
            .all(|d| d["reason"] == "unparseable_geometry" && d["source"] == "biota"));
    }
}

/// Serves `table_file` with a 429 on the first page and a connection cut two batches into
/// the second, and runs `config/examples/odp.toml` against it (key from `ODP_API_KEY`);
/// returns the output document and the dead letters.
fn run_example(table_file: &Path, dir: &Path, workers: &str) -> (Value, Vec<Value>) {
    let (_server, url) = start_server(
        table_file,
        &[
            "--fault",
            r#"{"kind":"too_many_requests","retry_after":1}"#,
            "--fault",
            r#"{"kind":"cut","after_batches":99}"#,
            "--fault",
            r#"{"kind":"cut","after_batches":2}"#,
        ],
    );
    let example = oceanflow_tests::workspace_root().join("config/examples/odp.toml");
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace(
            "base_url = \"https://api.hubocean.earth\"",
            &format!("base_url = \"{url}\""),
        )
        .replace("initial_backoff = \"1s\"", "initial_backoff = \"50ms\"")
        .replace("listen = \"127.0.0.1:9187\"", "listen = \"127.0.0.1:0\"");
    assert!(text.contains(&url), "the example sets base_url");
    let config = dir.join(format!("odp-{workers}.toml"));
    std::fs::write(&config, text).unwrap();
    let out = dir.join(format!("out-{workers}.json"));
    let dead = dir.join(format!("dead-{workers}.ndjson"));
    let status = Command::new(oceanflow_bin())
        .args(["run", "--once", "--workers", workers, "--config"])
        .arg(&config)
        .arg("--output")
        .arg(&out)
        .arg("--dead-letter")
        .arg(&dead)
        .env("OCEANFLOW_LOG", "warn")
        .env("ODP_API_KEY", KEY)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "oceanflow failed with {workers} worker(s): {status}"
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let dead_letters = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (doc, dead_letters)
}
