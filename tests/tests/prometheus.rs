//! A real Prometheus server scrapes a running oceanflow and sees the same counts as the JSON
//! API. Needs the `prometheus` binary (Debian package `prometheus`); ./scripts/test.sh installs
//! it. The test fails, never skips, when it is missing.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use oceanflow_tests::{
    find_on_path, free_port, http_get, oceanflow_bin, url_encode, wait_until, ChildGuard,
};
use serde_json::Value;

const ROWS: u64 = 5000;
const STATION: &str = "STATION-000";

fn oceanflow_config(port: u16) -> String {
    format!(
        r#"variables = ["temperature_c", "salinity_psu", "depth_m", "dissolved_oxygen"]

[pipeline]
workers = 1

[[sources]]
kind = "synthetic"
name = "synthetic"
stations = 50
seed = 42
start = "2020-01-01T00:00:00Z"
interval = "1m"
limit = {ROWS}

[aggregates.station]
enabled = true

[aggregates.regional]
enabled = true

[[regions]]
name = "north_sea"
wkt = "POLYGON((-5 51, 9 51, 9 62, -5 62, -5 51))"

[[regions]]
name = "norwegian_sea"
wkt = "POLYGON((-5 62, 15 62, 15 72, -5 72, -5 62))"

[[regions]]
name = "barents_sea"
wkt = "POLYGON((15 68, 40 68, 40 80, 15 80, 15 68))"

[export]
listen = "127.0.0.1:{port}"
"#
    )
}

fn prometheus_config(target_port: u16) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: oceanflow
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
"#
    )
}

/// The station list of `/api/v1/stations`: a bare array, or an object with a `stations` array.
fn station_counts(body: &str) -> Option<Vec<(String, u64)>> {
    let v: Value = serde_json::from_str(body).ok()?;
    let list = match &v {
        Value::Array(a) => a,
        Value::Object(o) => o.get("stations")?.as_array()?,
        _ => return None,
    };
    list.iter()
        .map(|s| {
            let name = s
                .get("station")
                .or_else(|| s.get("station_id"))?
                .as_str()?
                .to_string();
            let count = s.get("count")?.as_u64()?;
            Some((name, count))
        })
        .collect()
}

/// The value of `name{station="..."}` in Prometheus text format, summed over any other labels.
fn metric_value(text: &str, name: &str, station: &str) -> Option<f64> {
    let label = format!("station=\"{station}\"");
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The value of an instant-vector Prometheus query, summed over its series (usually one);
/// `None` while the result is empty or the query fails.
fn prom_query_single(prom_port: u16, query: &str) -> Option<f64> {
    let url = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query={}",
        url_encode(query)
    );
    let body = http_get(&url).ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    if v.get("status")?.as_str()? != "success" {
        return None;
    }
    let result = v.get("data")?.get("result")?.as_array()?;
    if result.is_empty() {
        return None;
    }
    result
        .iter()
        .map(|r| r.get("value")?.get(1)?.as_str()?.parse::<f64>().ok())
        .sum()
}

fn log_file(dir: &Path, name: &str) -> File {
    File::create(dir.join(name)).expect("create log file")
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn real_prometheus_scrapes_station_counts() {
    let prometheus = find_on_path("prometheus").unwrap_or_else(|| {
        panic!(
            "the `prometheus` binary is not on PATH: run ./scripts/test.sh, which installs it \
             (Debian package `prometheus`), or `apt-get install prometheus`"
        )
    });
    let bin = oceanflow_bin();
    let dir = tempfile::tempdir().expect("tempdir");

    // 1. oceanflow with a finite synthetic source; it keeps serving after the source ends.
    let of_port = free_port();
    let of_config = dir.path().join("oceanflow.toml");
    std::fs::write(&of_config, oceanflow_config(of_port)).unwrap();
    let of_log = dir.path().join("oceanflow.log");
    let mut oceanflow = ChildGuard::spawn(
        "oceanflow",
        Command::new(&bin)
            .arg("run")
            .arg("--config")
            .arg(&of_config)
            .stdout(log_file(dir.path(), "oceanflow.log"))
            .stderr(Stdio::from(log_file(dir.path(), "oceanflow.err"))),
    )
    .expect("start oceanflow");

    let stations_url = format!("http://127.0.0.1:{of_port}/api/v1/stations");
    let expected = wait_until(Duration::from_secs(90), || {
        if let Err(e) = oceanflow.check_running() {
            panic!(
                "{e}\nstdout:\n{}\nstderr:\n{}",
                tail(&of_log),
                tail(&dir.path().join("oceanflow.err"))
            );
        }
        let counts = station_counts(&http_get(&stations_url).ok()?)?;
        let total: u64 = counts.iter().map(|(_, c)| c).sum();
        if total != ROWS {
            return None;
        }
        counts.iter().find(|(s, _)| s == STATION).map(|(_, c)| *c)
    })
    .unwrap_or_else(|| {
        panic!(
            "oceanflow's {stations_url} never showed {ROWS} rows in total within 90 s; last \
             body: {:?}\nstderr:\n{}",
            http_get(&stations_url),
            tail(&dir.path().join("oceanflow.err"))
        )
    });
    assert!(expected > 0, "{STATION} has no rows");

    // The exporter itself must already agree with the API.
    let metrics = http_get(&format!("http://127.0.0.1:{of_port}/metrics")).expect("/metrics");
    let exported = metric_value(&metrics, "oceanflow_station_observations_total", STATION);
    assert_eq!(
        exported,
        Some(expected as f64),
        "/metrics disagrees with /api/v1/stations on {STATION}"
    );

    // 2. A real Prometheus scraping it every second, loopback only.
    let prom_port = free_port();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(&prom_config, prometheus_config(of_port)).unwrap();
    if let Some(promtool) = find_on_path("promtool") {
        let out = Command::new(promtool)
            .args(["check", "config"])
            .arg(&prom_config)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool check config failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tsdb = dir.path().join("tsdb");
    let prom_log = dir.path().join("prometheus.log");
    let mut prom = ChildGuard::spawn(
        "prometheus",
        Command::new(&prometheus)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file(dir.path(), "prometheus.log"))),
    )
    .expect("start prometheus");

    let query = format!("oceanflow_station_observations_total{{station=\"{STATION}\"}}");
    let seen = wait_until(Duration::from_secs(60), || {
        if let Err(e) = prom.check_running() {
            panic!("{e}\nprometheus log:\n{}", tail(&prom_log));
        }
        prom_query_single(prom_port, &query).filter(|v| *v == expected as f64)
    });
    assert_eq!(
        seen,
        Some(expected as f64),
        "Prometheus never reported {query} == {expected} within 60 s (last: {:?})\nprometheus \
         log:\n{}",
        prom_query_single(prom_port, &query),
        tail(&prom_log)
    );

    let up = wait_until(Duration::from_secs(10), || {
        prom_query_single(prom_port, r#"up{job="oceanflow"}"#)
    });
    assert_eq!(up, Some(1.0), "up{{job=\"oceanflow\"}} is not 1");

    oceanflow.check_running().expect("oceanflow still serving");
}
