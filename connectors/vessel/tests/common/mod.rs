//! Helpers of the vessel connector tests: the sample logs, building a source from TOML,
//! reading every batch, and reading the vessel metrics back.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::Array;
use oceanflow_config::VesselSourceConfig;
use oceanflow_connectors::{PartitionReader, Poll, Position, Rejected, SourceBatch, SourceContext};

/// The NBP1406 sample logs (`../shared/data/nbp1406` next to the repository).
pub fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nbp1406");
    assert!(
        dir.is_dir(),
        "the NBP1406 sample logs are expected at {}",
        dir.display()
    );
    dir
}

/// Canonical variables of the tests.
pub const VARIABLES: [&str; 8] = [
    "sea_temperature_c",
    "conductivity_s_m",
    "salinity_psu",
    "sound_velocity_m_s",
    "intake_temperature_c",
    "depth_m",
    "heading_deg",
    "speed_knots",
];

/// The six devices of the sample, replayed from `dir` (a `[[devices]]` TOML fragment).
pub fn nbp1406_devices(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        r#"
[[devices]]
id = "s330"
transport = {{ kind = "replay", path = "{d}/NBP1406_s330-2014-08-01" }}
checksum = "require"
variables = {{ speed_knots = "RMC.speed_knots", heading_deg = "HDT.heading_deg" }}

[[devices]]
id = "pcod"
transport = {{ kind = "replay", path = "{d}/NBP1406_PCOD-2014-08-01" }}
time = "sentence"
variables = {{ speed_knots = "RMC.speed_knots" }}

[[devices]]
id = "gyr1"
transport = {{ kind = "replay", path = "{d}/NBP1406_gyr1-2014-08-01" }}
variables = {{ heading_deg = "HDT.heading_deg" }}

[[devices]]
id = "tsg1"
format = "instrument"
transport = {{ kind = "replay", path = "{d}/NBP1406_tsg1-2014-08-01" }}
fields = ["sea_temperature_c", "conductivity_s_m", "salinity_psu", "sound_velocity_m_s"]

[[devices]]
id = "rtmp"
format = "instrument"
transport = {{ kind = "replay", path = "{d}/NBP1406_rtmp-2014-08-01" }}
fields = ["intake_temperature_c"]

[[devices]]
id = "mbdp"
transport = {{ kind = "replay", path = "{d}/NBP1406_mbdp-2014-08-01" }}
variables = {{ depth_m = "DPT.depth_m" }}
"#
    )
}

/// A vessel source config from the TOML of one `[[sources]]` table (without `kind`).
pub fn config(toml_text: &str) -> VesselSourceConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("test config: {e}\n{toml_text}"))
}

/// A context with the test variables and a fresh registry.
pub fn context() -> SourceContext {
    SourceContext::new(VARIABLES.iter().map(|s| s.to_string()).collect(), vec![])
}

/// Opens the single partition of `cfg`.
pub fn open(
    cfg: &VesselSourceConfig,
    ctx: &SourceContext,
    position: Option<Position>,
) -> Box<dyn PartitionReader> {
    let mut parts = oceanflow_vessel::partitions(cfg, ctx).expect("partitions");
    assert_eq!(parts.len(), 1, "one partition per vessel");
    (parts.remove(0).open)(position).expect("open")
}

/// Polls until the replay finishes (at most `limit` batches when given).
pub fn read_all(reader: &mut dyn PartitionReader, limit: Option<usize>) -> Vec<SourceBatch> {
    let mut out = Vec::new();
    loop {
        if limit.is_some_and(|l| out.len() >= l) {
            return out;
        }
        match reader.poll().expect("poll") {
            Poll::Batch(b) => out.push(b),
            Poll::Finished => return out,
            Poll::Idle => panic!("a replay as fast as possible is never idle"),
        }
    }
}

/// Polls a live reader until `done(rows so far)` or the timeout.
pub fn read_until(
    reader: &mut dyn PartitionReader,
    timeout: Duration,
    mut done: impl FnMut(&[Row], &[Rejected]) -> bool,
) -> (Vec<Row>, Vec<Rejected>) {
    let deadline = Instant::now() + timeout;
    let (mut rows_out, mut rejected) = (Vec::new(), Vec::new());
    while !done(&rows_out, &rejected) {
        assert!(
            Instant::now() < deadline,
            "timed out with {} rows, {} rejected",
            rows_out.len(),
            rejected.len()
        );
        match reader.poll().expect("poll") {
            Poll::Batch(b) => {
                rows_out.extend(rows(std::slice::from_ref(&b)));
                rejected.extend(b.rejected);
            }
            Poll::Idle => std::thread::sleep(Duration::from_millis(5)),
            Poll::Finished => panic!("a live source never finishes"),
        }
    }
    (rows_out, rejected)
}

/// A canonical row, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub station: String,
    pub time_us: i64,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub vars: Vec<Option<f64>>,
}

impl Row {
    pub fn var(&self, name: &str) -> Option<f64> {
        self.vars[VARIABLES
            .iter()
            .position(|v| *v == name)
            .expect("known variable")]
    }
}

/// Decodes every row of `batches`.
pub fn rows(batches: &[SourceBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let batch = &b.batch;
        let time = batch.column(0).as_primitive::<TimestampMicrosecondType>();
        let station = batch.column(1).as_dictionary::<Int32Type>();
        let names = station.values().as_string::<i32>();
        let lat = batch.column(2).as_primitive::<Float64Type>();
        let lon = batch.column(3).as_primitive::<Float64Type>();
        let opt = |a: &arrow_array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            let key = station.keys().value(i) as usize;
            out.push(Row {
                station: names.value(key).to_string(),
                time_us: time.value(i),
                lat: opt(lat, i),
                lon: opt(lon, i),
                vars: (0..VARIABLES.len())
                    .map(|v| opt(batch.column(4 + v).as_primitive::<Float64Type>(), i))
                    .collect(),
            });
        }
    }
    out
}

/// The value of metric `name` with exactly these labels (0 when absent).
pub fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    for family in registry.gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if matches {
                return if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
                    m.get_counter().get_value()
                } else {
                    m.get_gauge().get_value()
                };
            }
        }
    }
    0.0
}

/// Reception time (µs) and payload of a log line, parsed independently of the connector.
pub fn split_log_line(line: &str) -> (i64, &str) {
    let (t, payload) = line.split_once(' ').expect("timestamped line");
    let t = chrono::DateTime::parse_from_rfc3339(t)
        .expect("ISO-8601 time")
        .timestamp_micros();
    (t, payload)
}
