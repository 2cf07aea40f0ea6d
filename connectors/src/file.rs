//! The file source: CSV, NDJSON, Parquet and Arrow IPC (stream and file), one path or a glob.
//!
//! Paths are expanded and sorted, so partitions are the same on every run. Parquet files are
//! split into one partition per row group (id `PATH#rgN`) so that workers can share a large
//! file; every other format is one partition per file (id `PATH`). Readers stream: memory is
//! bounded by a few batches of `batch_rows` rows, whatever the file size. Each partition is one
//! lane ([`SourceBatch::lanes`](crate::SourceBatch) is `None`): a file's (or row group's) rows
//! are judged late against its own newest event time.
//!
//! Text formats are decoded as text (every column `Utf8`) and converted by the
//! [`Canonicalizer`], so a bad value rejects its row instead of failing a batch; lines that
//! cannot be decoded at all become [`RejectReason::Malformed`](crate::RejectReason) rejections
//! carrying the raw line. For text formats a rejection's `row` is the 0-based line number in
//! the file (the CSV header is line 0); for binary formats it is the row index within the
//! partition.

mod csv_source;
mod ipc_source;
mod json_source;
mod parquet_source;
mod text;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use oceanflow_config::{FileFormat, FileSourceConfig};

use crate::canonical::{parse_time_text, Canonicalizer};
use crate::{Partition, PartitionReader, Position, SourceError};

/// Rows examined per text column by [`probe_string_columns`] for CSV and NDJSON.
const PROBE_ROWS: usize = 1000;

/// The partitions of a file source: one per Parquet row group, one per file otherwise.
pub fn file_partitions(
    cfg: &FileSourceConfig,
    variables: &[String],
    categorical: &[String],
) -> Result<Vec<Partition>, SourceError> {
    let paths = expand(&cfg.name, &cfg.path)?;
    let shared = Shared {
        canon: Arc::new(Canonicalizer::new(
            &cfg.name,
            &cfg.mapping,
            variables,
            categorical,
        )),
        batch_rows: cfg.batch_rows.max(1),
    };
    let mut partitions = Vec::new();
    for path in paths {
        let open: Opener = match format_of(&path, cfg.format)? {
            FileFormat::Parquet => {
                partitions.extend(parquet_source::partitions(&path, &shared)?);
                continue;
            }
            FileFormat::Csv => csv_source::open,
            FileFormat::Ndjson => json_source::open,
            FileFormat::ArrowStream => ipc_source::open_stream,
            FileFormat::ArrowFile => ipc_source::open_file,
        };
        partitions.push(whole_file(path, open, shared.clone()));
    }
    Ok(partitions)
}

/// The names of the text columns (`Utf8`, `LargeUtf8`, `Utf8View`, dictionaries of text) of the
/// first file `path_or_glob` matches, in file order. For CSV and NDJSON, whose values are all
/// text, a column counts as text when its non-empty values among the first 1000 rows are
/// neither all numbers nor all times.
pub fn probe_string_columns(
    path_or_glob: &str,
    format: Option<FileFormat>,
) -> Result<Vec<String>, SourceError> {
    let paths = expand(path_or_glob, path_or_glob)?;
    let Some(path) = paths.first() else {
        return Ok(Vec::new());
    };
    let format = format_of(path, format)?;
    Ok(match format {
        FileFormat::Csv => text_like_columns(&csv_source::probe(path, PROBE_ROWS)?),
        FileFormat::Ndjson => text_like_columns(&json_source::probe(path, PROBE_ROWS)?),
        FileFormat::Parquet => text_typed_columns(&parquet_source::schema(path)?),
        FileFormat::ArrowStream => text_typed_columns(&ipc_source::stream_schema(path)?),
        FileFormat::ArrowFile => text_typed_columns(&ipc_source::file_schema(path)?),
    })
}

/// What every reader of one source shares.
#[derive(Debug, Clone)]
struct Shared {
    canon: Arc<Canonicalizer>,
    batch_rows: usize,
}

/// Opens a reader of a whole file: path, partition id, shared settings, resume position.
type Opener =
    fn(&Path, String, Shared, Option<Position>) -> Result<Box<dyn PartitionReader>, SourceError>;

/// A partition covering a whole file of a non-Parquet format.
fn whole_file(path: PathBuf, open: Opener, shared: Shared) -> Partition {
    let id = path.display().to_string();
    let partition = id.clone();
    Partition {
        id,
        open: Box::new(move |resume| open(&path, partition, shared, resume)),
    }
}

/// The position of a reader that has delivered `rows` rows of its partition: `{"rows": N}`.
fn rows_position(rows: u64) -> Position {
    Position(serde_json::json!({ "rows": rows }))
}

/// The row count of a [`rows_position`].
fn rows_of(path: &Path, position: &Position) -> Result<u64, SourceError> {
    position
        .0
        .get("rows")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| SourceError::Other {
            context: path.display().to_string(),
            message: format!(
                "cannot resume from position {}: expected {{\"rows\": N}}",
                position.0
            ),
        })
}

/// Expands a path or glob into the sorted list of matching files.
fn expand(source: &str, pattern: &str) -> Result<Vec<PathBuf>, SourceError> {
    let plain = Path::new(pattern);
    if plain.is_file() {
        return Ok(vec![plain.to_path_buf()]);
    }
    let entries = glob::glob(pattern).map_err(|e| SourceError::NoInput {
        source_name: source.to_string(),
        message: format!("invalid glob {pattern:?}: {e}"),
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| SourceError::Io {
            path: e.path().display().to_string(),
            source: e.into(),
        })?;
        if path.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(SourceError::NoInput {
            source_name: source.to_string(),
            message: format!("{pattern:?} matches no file"),
        });
    }
    paths.sort();
    Ok(paths)
}

/// The configured format, or the one the extension names.
fn format_of(path: &Path, configured: Option<FileFormat>) -> Result<FileFormat, SourceError> {
    configured
        .or_else(|| FileFormat::from_path(path))
        .ok_or_else(|| SourceError::UnknownFormat {
            path: path.display().to_string(),
        })
}

fn io_error(path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn arrow_error(path: &Path, source: arrow_schema::ArrowError) -> SourceError {
    SourceError::Arrow {
        path: path.display().to_string(),
        source,
    }
}

/// Columns whose type is text.
fn text_typed_columns(schema: &SchemaRef) -> Vec<String> {
    fn is_text(t: &DataType) -> bool {
        match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
            DataType::Dictionary(_, value) => is_text(value),
            _ => false,
        }
    }
    schema
        .fields()
        .iter()
        .filter(|f| is_text(f.data_type()))
        .map(|f| f.name().clone())
        .collect()
}

/// Columns of an all-`Utf8` sample whose non-empty values are neither all numbers nor all times.
fn text_like_columns(sample: &RecordBatch) -> Vec<String> {
    let schema = sample.schema();
    schema
        .fields()
        .iter()
        .zip(sample.columns())
        .filter(|(_, column)| {
            column
                .as_string_opt::<i32>()
                .is_some_and(|values| looks_like_text(values.iter().flatten()))
        })
        .map(|(field, _)| field.name().clone())
        .collect()
}

fn looks_like_text<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    let (mut any, mut all_numbers, mut all_times) = (false, true, true);
    for value in values.map(str::trim).filter(|v| !v.is_empty()) {
        any = true;
        all_numbers &= value.parse::<f64>().is_ok();
        all_times &= parse_time_text(value).is_some();
        if !all_numbers && !all_times {
            return true;
        }
    }
    any && !all_numbers && !all_times
}

/// Splits batches larger than `batch_rows` into slices (zero-copy).
#[derive(Debug, Default)]
struct Slicer {
    pending: Option<(RecordBatch, usize)>,
}

impl Slicer {
    /// Queues a batch.
    fn push(&mut self, batch: RecordBatch) {
        self.pending = Some((batch, 0));
    }

    /// The next slice of at most `max` rows of the queued batch.
    fn next(&mut self, max: usize) -> Option<RecordBatch> {
        let (batch, offset) = self.pending.take()?;
        let len = max.min(batch.num_rows() - offset);
        let slice = batch.slice(offset, len);
        if offset + len < batch.num_rows() {
            self.pending = Some((batch, offset + len));
        }
        Some(slice)
    }
}

#[cfg(test)]
mod tests;
