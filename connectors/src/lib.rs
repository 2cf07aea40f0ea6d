//! Connectors: everything that moves bytes across the process boundary.
//!
//! Every source turns its input into Arrow `RecordBatch`es in the canonical observation schema
//! ([`oceanflow_config::schema`]) and reports the rows it could not convert as [`Rejected`]
//! values with a [`RejectReason`] — bad rows are data, never panics or silent drops.
//!
//! Layout:
//! - [`file`](mod@file): CSV, Parquet, Arrow IPC (stream and file) and NDJSON files, one path
//!   or a glob.
//! - [`synthetic`]: the seeded generator shaped like the ODP tutorial data.
//! - [`canonical`]: converting a source batch into the canonical schema through a column
//!   mapping, with per-row validation (time, numbers, position ranges).
//! - [`dead_letter`]: the NDJSON dead-letter writer.
//! - [`record`]: a batch row as a JSON record (dead letters of batch rows).
//!
//! A source is split into [`Partition`]s. A partition is the unit a timely worker reads and the
//! unit of lateness: its rows are judged late against the newest event time *of that
//! partition*, so results do not depend on how partitions are spread over workers. A partition
//! that interleaves independently ordered streams names them as [`Lanes`] (a Kafka member's
//! topic-partitions, a vessel's devices); lateness is then judged per lane. Files, Parquet row
//! groups, Arrow IPC files, the synthetic feed and ODP result streams are one lane each.

pub mod canonical;
pub mod dead_letter;
pub mod file;
pub mod record;
pub mod synthetic;

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

/// Why a row was rejected. A small fixed set: it is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The record could not be decoded at all (malformed CSV line, invalid JSON).
    Malformed,
    /// The event time is missing.
    MissingTime,
    /// The event time could not be parsed or is out of the representable range.
    UnparseableTime,
    /// The station id is missing or empty.
    MissingStation,
    /// A numeric column holds a value that is not a number.
    NonNumeric,
    /// Latitude outside [-90, 90] (or not finite).
    LatitudeOutOfRange,
    /// Longitude outside [-180, 180] (or not finite).
    LongitudeOutOfRange,
    /// The input has position columns but this row's latitude or longitude is empty.
    MissingPosition,
    /// Older than the partition's watermark (newest event time minus the allowed lateness).
    TooLate,
    /// A geometry (WKT/GeoJSON) could not be parsed.
    UnparseableGeometry,
    /// A line whose checksum is wrong, malformed or (where required) missing (NMEA).
    BadChecksum,
}

impl RejectReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::Malformed,
        RejectReason::MissingTime,
        RejectReason::UnparseableTime,
        RejectReason::MissingStation,
        RejectReason::NonNumeric,
        RejectReason::LatitudeOutOfRange,
        RejectReason::LongitudeOutOfRange,
        RejectReason::MissingPosition,
        RejectReason::TooLate,
        RejectReason::UnparseableGeometry,
        RejectReason::BadChecksum,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::MissingTime => "missing_time",
            RejectReason::UnparseableTime => "unparseable_time",
            RejectReason::MissingStation => "missing_station",
            RejectReason::NonNumeric => "non_numeric",
            RejectReason::LatitudeOutOfRange => "latitude_out_of_range",
            RejectReason::LongitudeOutOfRange => "longitude_out_of_range",
            RejectReason::MissingPosition => "missing_position",
            RejectReason::TooLate => "too_late",
            RejectReason::UnparseableGeometry => "unparseable_geometry",
            RejectReason::BadChecksum => "bad_checksum",
        }
    }
}

/// A rejected row, as written to the dead-letter output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// Source name from the config.
    pub source: String,
    /// Partition the row came from (e.g. `data/a.csv` or `data/a.parquet#rg3`).
    pub partition: String,
    /// 0-based row (or line, for text formats) index within the partition, when known.
    pub row: Option<u64>,
    /// Why it was rejected.
    pub reason: RejectReason,
    /// Human-readable detail: the column and the offending value.
    pub detail: String,
    /// The original record, as text (the raw line, or the row's values as JSON).
    pub record: String,
}

/// A batch read from a partition: canonical rows plus the rows rejected while converting.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// Rows in the canonical observation schema; may have zero rows.
    pub batch: RecordBatch,
    /// Rows that could not be converted, with reasons.
    pub rejected: Vec<Rejected>,
    /// Bytes of input consumed for this batch (for metrics), when known.
    pub bytes: u64,
    /// Where the partition stands after this batch: opening the partition again at this
    /// position resumes with the first row after it. `None` for sources that cannot resume
    /// (live feeds); checkpoints then record nothing for the partition.
    pub position: Option<Position>,
    /// The independently ordered streams (lanes) this batch's rows come from, when the
    /// partition interleaves several: a Kafka member's topic-partitions, a vessel source's
    /// devices. Lateness and the event-time watermark are judged per lane. `None`: the whole
    /// partition is one lane.
    pub lanes: Option<Lanes>,
}

/// The lane of every row of a [`SourceBatch`]: rows of one lane are in the lane's own order
/// (a Kafka topic-partition's offsets, one instrument's lines), lanes are interleaved freely.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lanes {
    /// Stable lane ids (e.g. `obs/3` for topic `obs`, partition 3; a device name), the same
    /// on every run; indexed by [`Lanes::of_row`].
    pub ids: Vec<String>,
    /// Per canonical row, the index of its lane in [`Lanes::ids`].
    pub of_row: Vec<u32>,
}

impl Lanes {
    /// The lanes of rows whose lane ids are `of_row`, in row order; ids are numbered in the
    /// order first seen.
    pub fn from_row_ids<'a>(of_row: impl IntoIterator<Item = &'a str>) -> Lanes {
        let mut lanes = Lanes::default();
        for id in of_row {
            let index = match lanes.ids.iter().position(|known| known == id) {
                Some(index) => index,
                None => {
                    lanes.ids.push(id.to_string());
                    lanes.ids.len() - 1
                }
            };
            lanes.of_row.push(index as u32);
        }
        lanes
    }

    /// The lane id of row `row`.
    pub fn of(&self, row: usize) -> Option<&str> {
        let index = *self.of_row.get(row)?;
        self.ids.get(index as usize).map(String::as_str)
    }
}

impl SourceBatch {
    /// A batch of one lane (the partition itself) with no rejections.
    pub fn new(batch: RecordBatch, bytes: u64, position: Option<Position>) -> SourceBatch {
        SourceBatch {
            batch,
            rejected: Vec::new(),
            bytes,
            position,
            lanes: None,
        }
    }
}

/// A partition's read position: enough to resume right after the last row delivered (a byte
/// offset, a row group and row, Kafka offsets, an ODP cursor…). Opaque to the pipeline, which
/// stores it in checkpoints and hands it back to [`Partition::open`]; each connector defines
/// and documents its content. JSON, so checkpoints stay readable and can be versioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub serde_json::Value);

/// Errors that stop a partition (I/O failures, unreadable files). Bad rows are not errors:
/// they come back as [`Rejected`].
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The path or glob matched nothing, or the glob is invalid.
    #[error("source {source_name}: {message}")]
    NoInput {
        /// Source name.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The format could not be determined from the extension.
    #[error("{path}: cannot tell the format from the extension; set `format` on the source")]
    UnknownFormat {
        /// The file.
        path: String,
    },
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid in its format (e.g. a broken Parquet footer).
    #[error("{path}: {source}")]
    Arrow {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A required column is missing from the file.
    #[error(
        "{path}: column {column:?} (mapped to {canonical:?}) is not in the file; found {found:?}"
    )]
    MissingColumn {
        /// The file.
        path: String,
        /// The source column the mapping names.
        column: String,
        /// The canonical column it maps to.
        canonical: String,
        /// The columns the file has.
        found: Vec<String>,
    },
    /// Any other failure of the source, with context.
    #[error("{context}: {message}")]
    Other {
        /// Where.
        context: String,
        /// What.
        message: String,
    },
}

/// What a partition reader yields on each poll.
#[derive(Debug)]
pub enum Poll {
    /// A batch (possibly with zero good rows when every row was rejected).
    Batch(SourceBatch),
    /// Nothing right now (a rate-limited or live source); poll again later.
    Idle,
    /// The partition is exhausted.
    Finished,
}

/// A readable unit of a source. Readers are pulled by a timely worker thread; they never block
/// for long (a live source returns [`Poll::Idle`] instead).
pub trait PartitionReader: Send {
    /// Reads the next batch.
    fn poll(&mut self) -> Result<Poll, SourceError>;

    /// Every row up to `position` (a position this reader returned) is reflected in the
    /// aggregates — and, when checkpoints are on, in a durable checkpoint. Sources with an
    /// upstream acknowledgement (Kafka offset commits) acknowledge here; others need nothing.
    fn commit(&mut self, _position: &Position) -> Result<(), SourceError> {
        Ok(())
    }
}

/// Opens a partition, resuming after a position from a checkpoint when one is given.
pub type Opener =
    Box<dyn FnOnce(Option<Position>) -> Result<Box<dyn PartitionReader>, SourceError> + Send>;

/// What a connector may need besides its own config when listing partitions.
#[derive(Clone)]
pub struct SourceContext {
    /// The canonical variables (configured order).
    pub variables: Vec<String>,
    /// The canonical categorical fields (configured order).
    pub categorical: Vec<String>,
    /// Number of timely workers in the whole computation (a consumer-group source starts one
    /// member per worker).
    pub workers: usize,
    /// Directory relative paths in the source config are resolved against (the config file's
    /// directory, or the working directory for the embedded default).
    pub base_dir: std::path::PathBuf,
    /// Registry for connector-specific metrics (served on `/metrics`); register each family
    /// once per process, not once per partition.
    pub registry: prometheus::Registry,
    /// Positions of this source's partitions in the checkpoint being restored, by partition
    /// id (empty on a fresh start). Each partition's own position is also handed to its
    /// [`Opener`]; this map is for sources whose partitions share state (a consumer group's
    /// members may be assigned each other's Kafka partitions after a restart).
    pub resume: std::collections::BTreeMap<String, Position>,
}

impl SourceContext {
    /// A context for one worker, relative paths from the working directory, a fresh registry
    /// and nothing to resume: what a connector's own tests and tools need.
    pub fn new(variables: Vec<String>, categorical: Vec<String>) -> SourceContext {
        SourceContext {
            variables,
            categorical,
            workers: 1,
            base_dir: std::path::PathBuf::from("."),
            registry: prometheus::Registry::new(),
            resume: Default::default(),
        }
    }
}

impl std::fmt::Debug for SourceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceContext")
            .field("variables", &self.variables)
            .field("categorical", &self.categorical)
            .field("workers", &self.workers)
            .field("base_dir", &self.base_dir)
            .finish_non_exhaustive()
    }
}

/// One partition of a source, not yet opened.
pub struct Partition {
    /// Stable identity, e.g. `data/a.parquet#rg3`; the same on every run and worker count.
    pub id: String,
    /// Opens the partition (at the start, or after a checkpointed position).
    pub open: Opener,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition").field("id", &self.id).finish()
    }
}
