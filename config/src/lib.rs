//! Configuration of oceanflow: the TOML schema, its validation, the embedded default, and the
//! canonical Arrow schema of observations.
//!
//! Layout:
//! - [`schema`]: canonical observation columns and the Arrow schema builder.
//! - [`source`]: `[[sources]]` (file, synthetic, kafka, vessel, odp) and per-source column
//!   mappings.
//! - [`aggregate`]: `[aggregates]` families (station, temporal, regional).
//! - [`region`]: `[[regions]]`, WKT polygons parsed into `geo` geometries.
//! - [`validate`]: parsing plus cross-field checks; every problem names its key and line.
//!
//! The pipeline accepts only a [`ValidConfig`], so nothing starts on a config with errors.
#![deny(missing_docs)]

pub mod aggregate;
mod locate;
pub mod region;
pub mod schema;
pub mod source;
pub mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use aggregate::{AggregatesConfig, BucketWidth, CalendarPart, TemporalConfig};
pub use region::{Region, RegionConfig};
pub use source::{
    ColumnMapping, DeadLetterConfig, FileFormat, FileSourceConfig, KafkaSourceConfig,
    OdpSourceConfig, SourceCheck, SourceConfig, SyntheticSourceConfig, VesselSourceConfig,
};
pub use validate::{ConfigError, ConfigErrors, ValidConfig};

/// The embedded default configuration: a synthetic tutorial-shaped feed, the three tutorial
/// regions, every aggregate family on. `oceanflow config` prints it.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../default.toml");

/// The variables of the tutorial data, in its column order.
pub const TUTORIAL_VARIABLES: [&str; 4] = [
    "temperature_c",
    "salinity_psu",
    "depth_m",
    "dissolved_oxygen",
];

/// A whole configuration file, as written. Turn it into a [`ValidConfig`] with
/// [`ValidConfig::from_toml`] before use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Runtime settings of the dataflow.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Numeric variables of the canonical schema (f64), e.g. `temperature_c`.
    #[serde(default = "default_variables")]
    pub variables: Vec<String>,
    /// Categorical fields of the canonical schema (text), e.g. `species`.
    #[serde(default)]
    pub categorical: Vec<String>,
    /// The inputs; at least one.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Which aggregates to keep.
    #[serde(default)]
    pub aggregates: AggregatesConfig,
    /// Regions for the regional family.
    #[serde(default)]
    pub regions: Vec<RegionConfig>,
    /// The HTTP listener for `/metrics` and the JSON API.
    #[serde(default)]
    pub export: ExportConfig,
}

fn default_variables() -> Vec<String> {
    TUTORIAL_VARIABLES.iter().map(|v| v.to_string()).collect()
}

/// `[pipeline]`: event time, lateness, workers, dead letters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Timely worker threads. Default 1. Results do not depend on it.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How far behind the newest event time of a partition a row may be and still update its
    /// buckets. Older rows are rejected as `too_late`. Default 1 hour.
    #[serde(default = "default_lateness", with = "source::humantime_serde_compat")]
    pub allowed_lateness: Duration,
    /// How often the dataflow's time advances (wall clock). Aggregates, `/metrics` and the API
    /// move forward at this cadence; shorter means fresher results and more progress
    /// messages. Default 250 ms.
    #[serde(
        default = "default_update_interval",
        with = "source::humantime_serde_compat"
    )]
    pub update_interval: Duration,
    /// A partition that has delivered nothing for this long no longer holds back the
    /// event-time frontier (and so retention), so a silent instrument cannot stall
    /// compaction. Its later rows are still judged against its own watermark and the
    /// retention horizon. Default 5 minutes.
    #[serde(
        default = "default_idle_timeout",
        with = "source::humantime_serde_compat"
    )]
    pub idle_timeout: Duration,
    /// Periodic checkpoints of the aggregates and source positions; off when absent.
    #[serde(default)]
    pub checkpoint: Option<CheckpointConfig>,
    /// Dead-letter output for rejected rows; rejections are always counted in metrics.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: default_workers(),
            allowed_lateness: default_lateness(),
            update_interval: default_update_interval(),
            idle_timeout: default_idle_timeout(),
            checkpoint: None,
            dead_letter: None,
        }
    }
}

fn default_workers() -> usize {
    1
}
fn default_lateness() -> Duration {
    Duration::from_secs(3600)
}
fn default_update_interval() -> Duration {
    Duration::from_millis(250)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

/// `[pipeline.checkpoint]`: where and how often the state is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Directory of the checkpoint files (created if missing). Relative paths are relative to
    /// the working directory. May be left out of the file when `--checkpoint-dir` gives it.
    #[serde(default)]
    pub dir: std::path::PathBuf,
    /// Time between checkpoints. Default 10 s. A final checkpoint is written on shutdown.
    #[serde(
        default = "default_checkpoint_interval",
        with = "source::humantime_serde_compat"
    )]
    pub interval: Duration,
    /// How many checkpoints to keep (the newest); older ones are deleted. Default 3.
    #[serde(default = "default_checkpoint_keep")]
    pub keep: usize,
    /// What to do when the directory holds checkpoint files and none of them can be loaded
    /// (all torn or corrupt). Default: refuse to start.
    #[serde(default)]
    pub on_damaged: OnDamaged,
}

/// `[pipeline.checkpoint] on_damaged`: starting over a directory whose every checkpoint is
/// damaged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDamaged {
    /// Refuse to start, naming every file and why it was refused (the default): starting
    /// from nothing would silently drop the state they held.
    #[default]
    Refuse,
    /// Begin from nothing, with a warning naming the files (they are renamed to
    /// `*.damaged` and kept).
    StartFresh,
    /// Any other value as written; validation rejects it, naming the key and line.
    #[serde(untagged)]
    Unrecognised(String),
}

impl CheckpointConfig {
    /// Checkpoints in `dir` with the default interval and retention.
    pub fn in_dir(dir: std::path::PathBuf) -> CheckpointConfig {
        CheckpointConfig {
            dir,
            interval: default_checkpoint_interval(),
            keep: default_checkpoint_keep(),
            on_damaged: OnDamaged::default(),
        }
    }
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_checkpoint_keep() -> usize {
    3
}

/// Default address of the HTTP listener: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

/// `[export]`: the HTTP listener and what `/metrics` exposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Address of `/metrics`, `/api/v1/*` and `/healthz`. Default `127.0.0.1:9187`; binding
    /// a non-loopback address is a deliberate choice and is logged as a warning.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How many of the newest buckets per (grouping, station) `/metrics` exposes; older buckets
    /// stay in the JSON API. Keeps label cardinality bounded. Default 48.
    #[serde(default = "default_bucket_series")]
    pub metrics_buckets: usize,
    /// Publish every aggregate change to a Kafka topic (off when absent).
    #[serde(default)]
    pub changelog: Option<source::kafka::KafkaChangelogConfig>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            listen: default_listen(),
            metrics_buckets: default_bucket_series(),
            changelog: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("the default address parses")
}
fn default_bucket_series() -> usize {
    48
}
