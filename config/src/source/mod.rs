//! Source configuration: which connectors feed the pipeline and how their columns map onto
//! the canonical schema.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod kafka;
pub mod odp;
pub mod vessel;

pub use kafka::KafkaSourceConfig;
pub use odp::OdpSourceConfig;
pub use vessel::VesselSourceConfig;

/// One input of the pipeline. The `kind` key selects the connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Files on disk: CSV, Parquet, Arrow IPC (stream or file), NDJSON.
    File(FileSourceConfig),
    /// A seeded generator shaped like the ODP tutorial data.
    Synthetic(SyntheticSourceConfig),
    /// Kafka topics, read as a consumer group.
    Kafka(KafkaSourceConfig),
    /// A vessel's sensor feeds (NMEA 0183 and instrument lines over UDP, TCP, serial, replay).
    Vessel(VesselSourceConfig),
    /// An Ocean Data Platform tabular dataset over HTTP.
    Odp(OdpSourceConfig),
}

impl SourceConfig {
    /// The source's name, used in metrics labels and dead-letter records.
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::File(f) => &f.name,
            SourceConfig::Synthetic(s) => &s.name,
            SourceConfig::Kafka(s) => &s.name,
            SourceConfig::Vessel(s) => &s.name,
            SourceConfig::Odp(s) => &s.name,
        }
    }
}

/// File formats the file source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC stream format (`.arrows`).
    ArrowStream,
    /// Arrow IPC file format (`.arrow`, `.feather`).
    ArrowFile,
    /// Newline-delimited JSON, one object per line.
    Ndjson,
}

impl FileFormat {
    /// Every format by its config name (as `format = "..."` and `--input-format` spell it).
    pub const NAMED: [(&'static str, FileFormat); 5] = [
        ("csv", FileFormat::Csv),
        ("parquet", FileFormat::Parquet),
        ("arrow_stream", FileFormat::ArrowStream),
        ("arrow_file", FileFormat::ArrowFile),
        ("ndjson", FileFormat::Ndjson),
    ];

    /// Guesses the format from a file name's extension.
    pub fn from_path(path: &std::path::Path) -> Option<FileFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" => FileFormat::Csv,
            "parquet" | "pq" => FileFormat::Parquet,
            "arrows" => FileFormat::ArrowStream,
            "arrow" | "feather" | "ipc" => FileFormat::ArrowFile,
            "ndjson" | "jsonl" | "json" => FileFormat::Ndjson,
            _ => return None,
        })
    }
}

impl std::str::FromStr for FileFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<FileFormat, String> {
        FileFormat::NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, format)| *format)
            .ok_or_else(|| {
                let names: Vec<_> = FileFormat::NAMED.iter().map(|(n, _)| *n).collect();
                format!("expected one of {}, got {name:?}", names.join(", "))
            })
    }
}

/// A file source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Name of the source (metrics label, dead-letter `source` field).
    pub name: String,
    /// A path or a glob (`data/*.parquet`). Relative paths are relative to the working directory.
    pub path: String,
    /// The format; guessed from each file's extension when absent.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// How the file's columns map onto the canonical schema.
    #[serde(default)]
    pub mapping: ColumnMapping,
    /// Rows per decoded batch. Default 65,536. Memory per source is bounded by a few batches.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

impl FileSourceConfig {
    /// Rows per decoded batch unless the config says otherwise.
    pub const DEFAULT_BATCH_ROWS: usize = 65_536;
}

/// The synthetic tutorial-shaped generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSourceConfig {
    /// Name of the source.
    pub name: String,
    /// Number of stations, named `STATION-000` upwards. Default 50.
    #[serde(default = "default_stations")]
    pub stations: u32,
    /// Seed of the generator; equal seeds give equal rows. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Event time of the first row (RFC 3339). Default `2020-01-01T00:00:00Z`.
    #[serde(default = "default_start")]
    pub start: String,
    /// Event-time step between consecutive rows. Default 1 minute.
    #[serde(default = "default_interval", with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Rows per second of wall-clock time; absent means as fast as possible.
    #[serde(default)]
    pub rows_per_second: Option<f64>,
    /// Stop after this many rows; absent means unbounded.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Rows per generated batch. Default 4,096.
    #[serde(default = "default_synthetic_batch_rows")]
    pub batch_rows: usize,
}

/// Maps source columns onto the canonical schema. Keys are canonical names, values the
/// source's column names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMapping {
    /// Source column holding the event time (RFC 3339 / ISO-8601 text, an Arrow timestamp,
    /// or integer epoch seconds). Default `timestamp`.
    #[serde(default = "default_time_column")]
    pub time: String,
    /// Source column holding the station id. Default `station_id`.
    #[serde(default = "default_station_column")]
    pub station: String,
    /// Source column holding the latitude. Default `latitude`.
    #[serde(default = "default_latitude_column")]
    pub latitude: String,
    /// Source column holding the longitude. Default `longitude`.
    #[serde(default = "default_longitude_column")]
    pub longitude: String,
    /// Canonical variable name → source column. A configured variable that is not listed
    /// here is read from the column of the same name (and is all-null if there is none).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Canonical categorical field → source column; unlisted fields map by name.
    #[serde(default)]
    pub categorical: BTreeMap<String, String>,
}

impl Default for ColumnMapping {
    fn default() -> Self {
        ColumnMapping {
            time: default_time_column(),
            station: default_station_column(),
            latitude: default_latitude_column(),
            longitude: default_longitude_column(),
            variables: BTreeMap::new(),
            categorical: BTreeMap::new(),
        }
    }
}

impl ColumnMapping {
    /// The source column for a canonical variable.
    pub fn variable_column<'a>(&'a self, variable: &'a str) -> &'a str {
        self.variables
            .get(variable)
            .map(String::as_str)
            .unwrap_or(variable)
    }

    /// The source column for a canonical categorical field.
    pub fn categorical_column<'a>(&'a self, field: &'a str) -> &'a str {
        self.categorical
            .get(field)
            .map(String::as_str)
            .unwrap_or(field)
    }
}

/// Collects the problems of one source during validation. Keys are relative to the source
/// (`"mapping.time"`); the report adds `sources[i].` and the line.
pub struct SourceCheck<'a> {
    /// The configured canonical variables.
    pub variables: &'a [String],
    /// The configured categorical fields.
    pub categorical: &'a [String],
    pub(crate) problems: Vec<(String, String)>,
}

impl SourceCheck<'_> {
    /// Records a problem: the key (relative to the source) and what was expected.
    pub fn error(&mut self, key: impl Into<String>, expected: impl Into<String>) {
        self.problems.push((key.into(), expected.into()));
    }

    /// Checks that a mapping only names configured variables and categorical fields.
    pub fn mapping(&mut self, key: &str, mapping: &ColumnMapping) {
        for var in mapping.variables.keys() {
            if !self.variables.contains(var) {
                let expected = format!("{var:?} is not in `variables` ({:?})", self.variables);
                self.error(format!("{key}.variables.{var}"), expected);
            }
        }
        for field in mapping.categorical.keys() {
            if !self.categorical.contains(field) {
                let expected =
                    format!("{field:?} is not in `categorical` ({:?})", self.categorical);
                self.error(format!("{key}.categorical.{field}"), expected);
            }
        }
    }
}

/// Where rejected rows go, besides the rejection counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// NDJSON file that receives one object per rejected row: source, reason, detail, record.
    pub path: PathBuf,
}

fn default_batch_rows() -> usize {
    FileSourceConfig::DEFAULT_BATCH_ROWS
}
fn default_synthetic_batch_rows() -> usize {
    4_096
}
fn default_stations() -> u32 {
    50
}
fn default_seed() -> u64 {
    42
}
fn default_start() -> String {
    "2020-01-01T00:00:00Z".into()
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_time_column() -> String {
    "timestamp".into()
}
fn default_station_column() -> String {
    "station_id".into()
}
fn default_latitude_column() -> String {
    "latitude".into()
}
fn default_longitude_column() -> String {
    "longitude".into()
}

/// Durations as human-readable strings (`"90s"`, `"1h"`, `"30days"`) through `humantime`.
pub(crate) mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration such as \"90s\", \"1h\" or \"30days\", got {text:?} ({e})"
            ))
        })
    }
}
