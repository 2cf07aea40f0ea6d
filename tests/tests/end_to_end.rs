//! End to end through the `oceanflow` binary: the same observations written as CSV, NDJSON,
//! Parquet, Arrow IPC stream and Arrow IPC file → `run --input F --once --output` → every
//! aggregate family equals the batch oracle, for 1 and 4 workers; bad rows are rejected by
//! reason and dead-lettered while the good rows are aggregated.

use std::process::Command;

use oceanflow_tests::fixtures::{batch, counts, rows, run_once, write_all_formats};
use oceanflow_tests::oceanflow_bin;
use oceanflow_tests::oracle::{compute, OracleSpec, Row};
use serde_json::Value;

#[test]
fn every_format_and_worker_count_matches_the_oracle() {
    let rows = rows(12_000, 7);
    let expected = compute(&OracleSpec::tutorial(&["species"]), &rows);
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_all_formats(dir.path(), &batch(&rows));
    let mut reference = None;
    for input in &inputs {
        for workers in ["1", "4"] {
            let out = dir.path().join(format!(
                "{}-{workers}.json",
                input.file_name().unwrap().to_string_lossy()
            ));
            let doc = run_once(input, &out, &["--workers", workers]);
            let problems = expected.diff(&doc);
            assert!(
                problems.is_empty(),
                "{} with {workers} worker(s): {} differences, first: {:#?}",
                input.display(),
                problems.len(),
                &problems[..problems.len().min(10)]
            );
            let c = counts(&doc);
            match &reference {
                None => reference = Some(c),
                Some(r) => assert_eq!(r, &c, "{} with {workers} worker(s)", input.display()),
            }
        }
    }
}

#[test]
fn bad_rows_are_counted_by_reason_dead_lettered_and_the_rest_aggregated() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    let header = "timestamp,station_id,latitude,longitude,temperature_c,salinity_psu,depth_m,dissolved_oxygen";
    let lines = [
        "2020-01-01T03:00:00Z,S1,60.0,5.0,8.5,35.0,10,7.0",
        "2020-01-01T03:01:00Z,S1,60.0,5.0,NaN,35.1,10,7.1", // NaN: missing, row kept
        "2020-01-01T03:02:00Z,S2,65.0,10.0,,35.2,25,",      // empty: missing, row kept
        "yesterday,S1,60.0,5.0,8.0,35.0,10,7.0",            // unparseable_time
        "2020-01-01T03:03:00Z,S1,60.0,5.0,warm,35.0,10,7.0", // non_numeric
        "2020-01-01T03:04:00Z,S1,95.0,5.0,8.0,35.0,10,7.0", // latitude_out_of_range
        "2020-01-01T03:05:00Z,S1,60.0,-200.0,8.0,35.0,10,7.0", // longitude_out_of_range
        "2020-01-01T03:06:00Z,,60.0,5.0,8.0,35.0,10,7.0",   // missing_station
        "2020-01-01T03:07:00Z,S1,60.0",                     // malformed
        "2020-01-01T00:30:00Z,S2,60.0,5.0,9.0,35.0,10,7.0", // too_late (> 1 h behind 03:07)
        "2020-01-01T02:30:00Z,S2,60.0,5.0,9.5,35.0,10,7.0", // late but within lateness: kept
    ];
    std::fs::write(&csv, format!("{header}\n{}\n", lines.join("\n"))).unwrap();
    let dead = dir.path().join("dead.ndjson");
    let out = dir.path().join("out.json");
    let doc = run_once(&csv, &out, &["--dead-letter", dead.to_str().unwrap()]);

    let mut reasons: Vec<String> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("dead letters are JSON lines");
            assert!(!v["record"].as_str().unwrap_or_default().is_empty(), "{l}");
            assert!(!v["detail"].as_str().unwrap_or_default().is_empty(), "{l}");
            v["reason"].as_str().unwrap().to_string()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "latitude_out_of_range",
            "longitude_out_of_range",
            "malformed",
            "missing_station",
            "non_numeric",
            "too_late",
            "unparseable_time"
        ]
    );

    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    };
    let good = [
        (
            "2020-01-01T03:00:00Z",
            "S1",
            60.0,
            5.0,
            [Some(8.5), Some(35.0), Some(10.0), Some(7.0)],
        ),
        (
            "2020-01-01T03:01:00Z",
            "S1",
            60.0,
            5.0,
            [None, Some(35.1), Some(10.0), Some(7.1)],
        ),
        (
            "2020-01-01T03:02:00Z",
            "S2",
            65.0,
            10.0,
            [None, Some(35.2), Some(25.0), None],
        ),
        (
            "2020-01-01T02:30:00Z",
            "S2",
            60.0,
            5.0,
            [Some(9.5), Some(35.0), Some(10.0), Some(7.0)],
        ),
    ];
    let rows: Vec<Row> = good
        .iter()
        .map(|(time, station, lat, lon, vars)| Row {
            time_us: t(time),
            station: station.to_string(),
            lat: Some(*lat),
            lon: Some(*lon),
            vars: vars.to_vec(),
            cats: vec![],
        })
        .collect();
    let problems = compute(&OracleSpec::tutorial(&[]), &rows).diff(&doc);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn validate_names_key_and_line_and_config_prints_a_valid_default() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[sources]]\nkind = \"synthetic\"\nname = \"s\"\nstations = 0\n\n[[regions]]\nname = \"r\"\nwkt = \"POINT(1 2)\"\n",
    )
    .unwrap();
    let out = Command::new(oceanflow_bin())
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("line 4, column 1: sources[0].stations"),
        "{text}"
    );
    assert!(text.contains("line 8, column 1: regions[0].wkt"), "{text}");

    let out = Command::new(oceanflow_bin())
        .arg("config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let default = dir.path().join("default.toml");
    std::fs::write(&default, &out.stdout).unwrap();
    let out = Command::new(oceanflow_bin())
        .args(["validate", "--config"])
        .arg(&default)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bounded_synthetic_run_repeats_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("synthetic.toml");
    let text = String::from_utf8(
        Command::new(oceanflow_bin())
            .arg("config")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .replace(
        "# limit = 1000000          # absent: unbounded",
        "limit = 20000",
    )
    // As fast as possible: the default paces the feed for live use.
    .replace("rows_per_second = 1000", "");
    std::fs::write(&config, text).unwrap();
    let mut docs = Vec::new();
    for workers in ["1", "3"] {
        let out = dir.path().join(format!("out-{workers}.json"));
        let status = Command::new(oceanflow_bin())
            .args(["run", "--once", "--workers", workers, "--config"])
            .arg(&config)
            .arg("--output")
            .arg(&out)
            .env("OCEANFLOW_LOG", "warn")
            .status()
            .unwrap();
        assert!(status.success());
        docs.push(serde_json::from_slice::<Value>(&std::fs::read(&out).unwrap()).unwrap());
    }
    let total: u64 = docs[0]["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 20_000);
    assert_eq!(docs[0]["stations"].as_array().unwrap().len(), 50);
    assert_eq!(counts(&docs[0]), counts(&docs[1]));
}

#[test]
fn an_unreadable_file_fails_its_partition_and_the_rest_is_aggregated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.parquet"),
        b"PAR1 this is not parquet",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("good.csv"),
        "timestamp,station_id,latitude,longitude,temperature_c\n2020-01-01T00:00:00Z,S1,60,5,8.5\n",
    )
    .unwrap();
    let config = dir.path().join("two.toml");
    std::fs::write(
        &config,
        format!(
            "variables = [\"temperature_c\"]\n\n[[sources]]\nkind = \"file\"\nname = \"broken\"\npath = {:?}\n\n[[sources]]\nkind = \"file\"\nname = \"good\"\npath = {:?}\n",
            dir.path().join("broken.parquet"),
            dir.path().join("good.csv")
        ),
    )
    .unwrap();
    let out = dir.path().join("out.json");
    let run = Command::new(oceanflow_bin())
        .args(["run", "--once", "--config"])
        .arg(&config)
        .arg("--output")
        .arg(&out)
        .env("OCEANFLOW_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("broken.parquet"));
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["stations"][0]["station"], "S1");
    assert_eq!(doc["stations"][0]["count"], 1);
}
