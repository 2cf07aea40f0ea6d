//! Parquet: one partition per row group, read with a projection to the mapped columns.
//!
//! The footer is read once per file and shared by the row-group partitions. Columns keep their
//! file types (a dictionary-encoded station stays a dictionary); the canonicalizer converts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;

use super::{arrow_error, io_error, rows_of, rows_position, Shared};
use crate::{Partition, PartitionReader, Poll, SourceError};

/// One partition per row group of the file at `path`, with ids `PATH#rgN`.
pub(super) fn partitions(path: &Path, shared: &Shared) -> Result<Vec<Partition>, SourceError> {
    let metadata = load(path)?;
    let groups = metadata.metadata().num_row_groups();
    Ok((0..groups)
        .map(|group| {
            let id = format!("{}#rg{group}", path.display());
            let (path, metadata, shared) = (path.to_path_buf(), metadata.clone(), shared.clone());
            let partition = id.clone();
            Partition {
                id,
                open: Box::new(move |resume| {
                    let skip = match resume {
                        Some(position) => rows_of(&path, &position)?,
                        None => 0,
                    };
                    let reader =
                        RowGroupReader::open(path, metadata, group, partition, shared, skip)?;
                    Ok(Box::new(reader) as Box<dyn PartitionReader>)
                }),
            }
        })
        .collect())
}

/// The Arrow schema of the file at `path`.
pub(super) fn schema(path: &Path) -> Result<SchemaRef, SourceError> {
    Ok(Arc::clone(load(path)?.schema()))
}

/// Reads the footer.
fn load(path: &Path) -> Result<ArrowReaderMetadata, SourceError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| parquet_error(path, e))
}

fn parquet_error(path: &Path, error: ParquetError) -> SourceError {
    arrow_error(path, ArrowError::from(error))
}

/// Reads one row group.
struct RowGroupReader {
    path: PathBuf,
    partition: String,
    shared: Shared,
    reader: ParquetRecordBatchReader,
    /// Compressed bytes of the row group per row, for the `bytes` metric.
    bytes_per_row: f64,
    rows_read: u64,
}

impl RowGroupReader {
    fn open(
        path: PathBuf,
        metadata: ArrowReaderMetadata,
        group: usize,
        partition: String,
        shared: Shared,
        skip: u64,
    ) -> Result<Self, SourceError> {
        let row_group = metadata.metadata().row_group(group);
        let bytes_per_row = row_group.compressed_size() as f64 / row_group.num_rows().max(1) as f64;
        let columns = shared.canon.source_columns();
        let roots: Vec<usize> = metadata
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| columns.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata);
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_row_groups(vec![group])
            .with_projection(mask)
            .with_batch_size(shared.batch_rows)
            .with_offset(usize::try_from(skip).unwrap_or(usize::MAX))
            .build()
            .map_err(|e| parquet_error(&path, e))?;
        Ok(RowGroupReader {
            path,
            partition,
            shared,
            reader,
            bytes_per_row,
            rows_read: skip,
        })
    }
}

impl PartitionReader for RowGroupReader {
    fn poll(&mut self) -> Result<Poll, SourceError> {
        let Some(batch) = self.reader.next() else {
            return Ok(Poll::Finished);
        };
        let batch = batch.map_err(|e| arrow_error(&self.path, e))?;
        let mut out = self
            .shared
            .canon
            .convert(&self.partition, self.rows_read, &batch)?;
        let rows = batch.num_rows() as u64;
        self.rows_read += rows;
        out.bytes = (self.bytes_per_row * rows as f64).round() as u64;
        out.position = Some(rows_position(self.rows_read));
        Ok(Poll::Batch(out))
    }
}
