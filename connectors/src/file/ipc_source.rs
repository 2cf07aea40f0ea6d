//! Arrow IPC: the stream format (`.arrows`) and the file format (`.arrow`, `.feather`, `.ipc`).
//!
//! Batches larger than `batch_rows` are re-sliced (zero-copy). Bytes are counted as the
//! reader pulls them from the file.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_schema::{ArrowError, SchemaRef};

use super::{arrow_error, io_error, rows_of, rows_position, Shared, Slicer};
use crate::{PartitionReader, Poll, Position, SourceError};

/// Opens an Arrow IPC stream partition.
pub(super) fn open_stream(
    path: &Path,
    partition: String,
    shared: Shared,
    resume: Option<Position>,
) -> Result<Box<dyn PartitionReader>, SourceError> {
    let (input, counter) = CountingReader::open(path)?;
    let reader = StreamReader::try_new(input, None).map_err(|e| arrow_error(path, e))?;
    IpcPartition::open(path, partition, shared, reader, counter, resume)
}

/// Opens an Arrow IPC file partition, projected to the mapped columns.
pub(super) fn open_file(
    path: &Path,
    partition: String,
    shared: Shared,
    resume: Option<Position>,
) -> Result<Box<dyn PartitionReader>, SourceError> {
    let schema = file_schema(path)?;
    let columns = shared.canon.source_columns();
    let projection: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| columns.contains(&schema.field(i).name().as_str()))
        .collect();
    let (input, counter) = CountingReader::open(path)?;
    let reader = FileReader::try_new(input, Some(projection)).map_err(|e| arrow_error(path, e))?;
    IpcPartition::open(path, partition, shared, reader, counter, resume)
}

/// The schema of an Arrow IPC stream.
pub(super) fn stream_schema(path: &Path) -> Result<SchemaRef, SourceError> {
    let (input, _) = CountingReader::open(path)?;
    let reader = StreamReader::try_new(input, None).map_err(|e| arrow_error(path, e))?;
    Ok(reader.schema())
}

/// The schema of an Arrow IPC file.
pub(super) fn file_schema(path: &Path) -> Result<SchemaRef, SourceError> {
    let (input, _) = CountingReader::open(path)?;
    let reader = FileReader::try_new(input, None).map_err(|e| arrow_error(path, e))?;
    Ok(reader.schema())
}

/// A buffered file reader that counts the bytes read through it.
struct CountingReader {
    inner: BufReader<File>,
    count: Arc<AtomicU64>,
}

impl CountingReader {
    fn open(path: &Path) -> Result<(Self, Arc<AtomicU64>), SourceError> {
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        let count = Arc::new(AtomicU64::new(0));
        let reader = CountingReader {
            inner: BufReader::new(file),
            count: Arc::clone(&count),
        };
        Ok((reader, count))
    }
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

impl Seek for CountingReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// An IPC file or stream converted to canonical batches.
struct IpcPartition<R> {
    path: PathBuf,
    partition: String,
    shared: Shared,
    reader: R,
    slicer: Slicer,
    counter: Arc<AtomicU64>,
    rows_read: u64,
}

impl<R> IpcPartition<R>
where
    R: Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'static,
{
    /// A reader that starts after the rows `resume` says were delivered (IPC has no row
    /// index, so they are decoded again and dropped).
    fn open(
        path: &Path,
        partition: String,
        shared: Shared,
        reader: R,
        counter: Arc<AtomicU64>,
        resume: Option<Position>,
    ) -> Result<Box<dyn PartitionReader>, SourceError> {
        let mut partition = IpcPartition {
            path: path.to_path_buf(),
            partition,
            shared,
            reader,
            slicer: Slicer::default(),
            counter,
            rows_read: 0,
        };
        if let Some(position) = resume {
            let skip = rows_of(path, &position)?;
            while partition.rows_read < skip {
                let left = usize::try_from(skip - partition.rows_read).unwrap_or(usize::MAX);
                match partition.next_slice(left)? {
                    Some(dropped) => partition.rows_read += dropped.num_rows() as u64,
                    None => break,
                }
            }
            partition.counter.store(0, Ordering::Relaxed);
        }
        Ok(Box::new(partition))
    }

    /// The next slice of at most `max` rows, reading a batch when the queued one is used up.
    fn next_slice(&mut self, max: usize) -> Result<Option<RecordBatch>, SourceError> {
        if let Some(slice) = self.slicer.next(max) {
            return Ok(Some(slice));
        }
        match self.reader.next() {
            Some(batch) => {
                self.slicer
                    .push(batch.map_err(|e| arrow_error(&self.path, e))?);
                Ok(self.slicer.next(max))
            }
            None => Ok(None),
        }
    }
}

impl<R> PartitionReader for IpcPartition<R>
where
    R: Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'static,
{
    fn poll(&mut self) -> Result<Poll, SourceError> {
        let Some(batch) = self.next_slice(self.shared.batch_rows)? else {
            return Ok(Poll::Finished);
        };
        let mut out = self
            .shared
            .canon
            .convert(&self.partition, self.rows_read, &batch)?;
        self.rows_read += batch.num_rows() as u64;
        out.bytes = self.counter.swap(0, Ordering::Relaxed);
        out.position = Some(rows_position(self.rows_read));
        Ok(Poll::Batch(out))
    }
}
