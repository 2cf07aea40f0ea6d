//! Bounded runs are a pure function of their input and config (issue 10): one held data set,
//! dealt at random into 1, 3 and 7 files (each in time order), written as CSV and as Parquet
//! with one row group or 1,000-row groups, read with `batch_rows` 1, 100 and the default and
//! with 1, 2 and 4 workers, under the default config (hourly buckets kept 30 days). Every run
//! must equal the batch oracle and the first run: key sets and counts exactly, statistics
//! within 1e-12 relative; and no row may be rejected (each file is in time order).
//!
//! A covering design rather than the cross product: every value of every factor appears, in
//! several combinations; `batch_rows = 1` is used for one file of seven only (a debug build
//! spends milliseconds per batch).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oceanflow_tests::compare::{compare_documents, summarise, Tolerance};
use oceanflow_tests::fixtures::{
    batch, counts, rows_every, split_in_time_order, with_adversarial_depths, write_csv,
    write_parquet, MINUTE_US,
};
use oceanflow_tests::oracle::{compute, OracleSpec, Row};
use oceanflow_tests::{oceanflow_bin, workspace_root, ChildGuard};
use serde_json::Value;

/// 40,000 rows two minutes apart: 55 days of event time, so the default 30-day retention of
/// hourly buckets expires about the first 25 days of them at the end of the run.
const ROWS: usize = 40_000;
const STEP_US: i64 = 2 * MINUTE_US;
const SEED: u64 = 10;
/// Its `depth_m` values are 1e9 ± 1e-3.
const ADVERSARIAL_STATION: &str = "STATION-003";
/// Statistics of any two runs, and of a run and the oracle, agree to this relative precision.
const PRECISION: Tolerance = Tolerance::Relative(1e-12);
/// Bound on one run of the binary.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Csv,
    Parquet { row_group_rows: usize },
}

/// How the files reach the run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    /// `--input DIR/*.ext`: one source over the sorted glob, default `batch_rows`.
    Glob,
    /// `--input F` per file, last file first, default `batch_rows`.
    InputsReversed,
    /// A copy of config/default.toml with one `[[sources]] kind = "file"` per file, in batches
    /// of `first` rows for the first file and `rest` for the others (`None`: the default).
    Config {
        first: Option<usize>,
        rest: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Run {
    files: usize,
    format: Format,
    reading: Reading,
    workers: usize,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = match self.format {
            Format::Csv => "csv".to_string(),
            Format::Parquet { row_group_rows } if row_group_rows >= ROWS => {
                "parquet (one row group)".to_string()
            }
            Format::Parquet { row_group_rows } => format!("parquet ({row_group_rows}-row groups)"),
        };
        let reading = match self.reading {
            Reading::Glob => "--input glob".to_string(),
            Reading::InputsReversed => "--input per file, reversed".to_string(),
            Reading::Config { first, rest } => {
                let n = |b: Option<usize>| b.map_or("default".to_string(), |b| b.to_string());
                format!("config, batch_rows {} then {}", n(first), n(rest))
            }
        };
        write!(
            f,
            "{} file(s) {format}, {reading}, {} worker(s)",
            self.files, self.workers
        )
    }
}

/// The design: files {1, 3, 7} × format {csv, parquet one group, parquet 1,000-row groups} ×
/// batch_rows {1, 100, default} × workers {1, 2, 4}, each value in several combinations.
fn design() -> Vec<Run> {
    let one_group = Format::Parquet {
        row_group_rows: ROWS,
    };
    let groups = Format::Parquet {
        row_group_rows: 1_000,
    };
    let hundred = Reading::Config {
        first: Some(100),
        rest: Some(100),
    };
    let run = |files, format, reading, workers| Run {
        files,
        format,
        reading,
        workers,
    };
    vec![
        run(1, Format::Csv, Reading::Glob, 1),
        run(3, Format::Csv, Reading::Glob, 2),
        run(7, Format::Csv, hundred, 4),
        run(1, one_group, Reading::Glob, 4),
        run(3, groups, hundred, 1),
        run(7, groups, Reading::InputsReversed, 2),
        run(
            7,
            Format::Csv,
            Reading::Config {
                first: Some(1),
                rest: Some(100),
            },
            2,
        ),
        run(
            3,
            one_group,
            Reading::Config {
                first: Some(1),
                rest: None,
            },
            1,
        ),
    ]
}

/// The held data set: tutorial-shaped rows with missing values, points on region edges and
/// outside every region, and one station's depths near 1e9.
fn held_rows() -> Vec<Row> {
    let mut rows = rows_every(ROWS, SEED, STEP_US);
    with_adversarial_depths(&mut rows, ADVERSARIAL_STATION, SEED);
    rows
}

/// Writes the parts as `dir/part-K.csv` or `.parquet` (once per layout); returns the paths.
fn write_layout(dir: &Path, parts: &[Vec<Row>], format: Format) -> Vec<PathBuf> {
    let (ext, groups) = match format {
        Format::Csv => ("csv", 0),
        Format::Parquet { row_group_rows } => ("parquet", row_group_rows),
    };
    let dir = dir.join(format!("{}-{ext}-{groups}", parts.len()));
    if dir.is_dir() {
        return sorted_files(&dir);
    }
    std::fs::create_dir_all(&dir).unwrap();
    for (k, part) in parts.iter().enumerate() {
        let path = dir.join(format!("part-{k}.{ext}"));
        match format {
            Format::Csv => write_csv(&path, &batch(part)),
            Format::Parquet { row_group_rows } => {
                write_parquet(&path, &batch(part), row_group_rows)
            }
        }
    }
    sorted_files(&dir)
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// config/default.toml with its synthetic source replaced by one file source per path.
fn config_reading(
    path: &Path,
    files: &[PathBuf],
    first: Option<usize>,
    rest: Option<usize>,
) -> PathBuf {
    let text = std::fs::read_to_string(workspace_root().join("config/default.toml")).unwrap();
    let mut config: toml::Table = text.parse().expect("default config is TOML");
    config.insert(
        "categorical".into(),
        toml::Value::Array(vec!["species".into()]),
    );
    let sources = files
        .iter()
        .enumerate()
        .map(|(k, file)| {
            let mut source = toml::Table::new();
            source.insert("kind".into(), "file".into());
            source.insert("name".into(), format!("part-{k}").into());
            source.insert("path".into(), file.display().to_string().into());
            if let Some(rows) = if k == 0 { first } else { rest } {
                source.insert("batch_rows".into(), (rows as i64).into());
            }
            toml::Value::Table(source)
        })
        .collect();
    config.insert("sources".into(), toml::Value::Array(sources));
    std::fs::write(path, toml::to_string(&config).unwrap()).unwrap();
    path.to_path_buf()
}

/// What one run produced.
struct Outcome {
    doc: Value,
    dead_letters: BTreeMap<String, u64>,
    elapsed: Duration,
}

/// Runs the binary on `files` as `run` says; panics if it fails or takes too long.
fn execute(dir: &Path, index: usize, run: &Run, files: &[PathBuf]) -> Outcome {
    let out = dir.join(format!("run-{index}.json"));
    let dead = dir.join(format!("run-{index}.dead.ndjson"));
    let log = dir.join(format!("run-{index}.log"));
    let mut cmd = Command::new(oceanflow_bin());
    cmd.arg("run");
    match run.reading {
        Reading::Glob => {
            let ext = files[0].extension().unwrap().to_str().unwrap();
            let glob = files[0].parent().unwrap().join(format!("*.{ext}"));
            cmd.arg("--input").arg(glob);
        }
        Reading::InputsReversed => {
            for file in files.iter().rev() {
                cmd.arg("--input").arg(file);
            }
        }
        Reading::Config { first, rest } => {
            let config = config_reading(&dir.join(format!("run-{index}.toml")), files, first, rest);
            cmd.arg("--config").arg(config);
        }
    }
    cmd.arg("--once")
        .arg("--output")
        .arg(&out)
        .arg("--workers")
        .arg(run.workers.to_string())
        .arg("--dead-letter")
        .arg(&dead)
        .env("OCEANFLOW_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let started = Instant::now();
    let mut child = ChildGuard::spawn(format!("run {index}"), &mut cmd).unwrap();
    let status = child
        .wait_exit(RUN_TIMEOUT)
        .unwrap_or_else(|| panic!("run {index} ({run}) did not finish within {RUN_TIMEOUT:?}"));
    let elapsed = started.elapsed();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "run {index} ({run}) failed: {status}\n{stderr}"
    );
    let doc = serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("output is JSON");
    let mut dead_letters = BTreeMap::new();
    for line in std::fs::read_to_string(&dead).unwrap_or_default().lines() {
        let letter: Value = serde_json::from_str(line).expect("dead letter is JSON");
        let reason = letter["reason"].as_str().unwrap_or("?").to_string();
        *dead_letters.entry(reason).or_default() += 1;
    }
    Outcome {
        doc,
        dead_letters,
        elapsed,
    }
}

/// Rows whose key or count differs between `a` and `b` (either side): the part of the
/// differences that no numerical precision explains.
fn count_mismatches(a: &Value, b: &Value) -> usize {
    let (a, b): (BTreeMap<_, _>, BTreeMap<_, _>) = (
        counts(a).into_iter().collect(),
        counts(b).into_iter().collect(),
    );
    let one_way = |x: &BTreeMap<String, u64>, y: &BTreeMap<String, u64>| {
        x.iter().filter(|(k, n)| y.get(*k) != Some(n)).count()
    };
    one_way(&a, &b) + b.keys().filter(|k| !a.contains_key(*k)).count()
}

#[test]
fn every_layout_batching_and_worker_count_gives_the_oracle_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let rows = held_rows();
    let expected = compute(&OracleSpec::default_config(&["species"]), &rows).document();
    let hours = expected["temporal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["grouping"] == "hour")
        .count();
    // Retention must bite for the test to mean anything: 55 days of data, 30 kept.
    assert!(
        (24 * 29..24 * 32).contains(&hours),
        "{hours} hourly buckets kept"
    );

    let mut failures = Vec::new();
    let mut baseline: Option<Value> = None;
    for (index, run) in design().iter().enumerate() {
        let parts = split_in_time_order(&rows, run.files, SEED + run.files as u64);
        let files = write_layout(dir.path(), &parts, run.format);
        let outcome = execute(dir.path(), index, run, &files);
        let vs_oracle = compare_documents(&expected, &outcome.doc, PRECISION);
        let vs_first = baseline
            .as_ref()
            .map(|first| compare_documents(first, &outcome.doc, PRECISION))
            .unwrap_or_default();
        let rejected: u64 = outcome.dead_letters.values().sum();
        eprintln!(
            "run {index} ({run}): {:.1} s, {} temporal rows (oracle {}), {} rows with another key \
             or count than the oracle's, {} differences from the oracle, {} from run 0, rejected \
             {:?}",
            outcome.elapsed.as_secs_f64(),
            outcome.doc["temporal"].as_array().map_or(0, Vec::len),
            expected["temporal"].as_array().map_or(0, Vec::len),
            count_mismatches(&expected, &outcome.doc),
            vs_oracle.len(),
            vs_first.len(),
            outcome.dead_letters
        );
        let label = format!("run {index} ({run})");
        failures.extend(summarise(&format!("{label} vs the oracle"), &vs_oracle));
        failures.extend(summarise(&format!("{label} vs run 0"), &vs_first));
        if rejected > 0 {
            failures.push(format!("{label}: rejected rows {:?}", outcome.dead_letters));
        }
        baseline.get_or_insert(outcome.doc);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
