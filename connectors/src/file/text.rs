//! A growable read buffer over a text file, shared by the CSV and NDJSON readers.
//!
//! Readers scan records in `buf[pos..]`, call [`TextInput::fill`] when a record is cut off at
//! the end of the buffer, and [`TextInput::compact`] between batches, so the buffer holds one
//! batch of records plus one partial record.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;

use super::io_error;
use crate::canonical::{Canonicalizer, RowOrigin};
use crate::{Position, RejectReason, Rejected, SourceBatch, SourceError};

/// Bytes read from the file at a time.
const READ_BLOCK: usize = 1 << 20;

/// The file, its unread bytes and how far the reader got.
#[derive(Debug)]
pub(super) struct TextInput {
    path: PathBuf,
    file: File,
    /// Bytes read but not yet dropped; `buf[..pos]` is consumed.
    pub buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    pub pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    /// The file has no more bytes.
    pub eof: bool,
}

impl TextInput {
    /// Opens `path`, skipping a UTF-8 byte-order mark.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        let mut input = TextInput {
            path: path.to_path_buf(),
            file,
            buf: Vec::new(),
            pos: 0,
            base: 0,
            eof: false,
        };
        while input.buf.len() < 3 && input.fill()? {}
        if input.buf.starts_with(b"\xEF\xBB\xBF") {
            input.pos = 3;
        }
        Ok(input)
    }

    /// The unconsumed bytes.
    pub fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads one more block; returns `false` at the end of the file.
    pub fn fill(&mut self) -> Result<bool, SourceError> {
        if self.eof {
            return Ok(false);
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_BLOCK, 0);
        let read = loop {
            match self.file.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(io_error(&self.path, e));
                }
            }
        };
        self.buf.truncate(len + read);
        self.eof = read == 0;
        Ok(!self.eof)
    }

    /// Drops the consumed bytes.
    pub fn compact(&mut self) {
        self.buf.drain(..self.pos);
        self.base += self.pos as u64;
        self.pos = 0;
    }

    /// File offset of the first unconsumed byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The position of a reader whose next record is the one at the read position, numbered
    /// `line`.
    pub fn position(&self, line: u64) -> Position {
        Position(serde_json::json!({ "offset": self.offset(), "line": line }))
    }

    /// Continues at a [`TextInput::position`]; returns the line number of the next record.
    pub fn resume(&mut self, position: &Position) -> Result<u64, SourceError> {
        let at: TextPosition =
            serde_json::from_value(position.0.clone()).map_err(|e| SourceError::Other {
                context: self.path.display().to_string(),
                message: format!("cannot resume from position {}: {e}", position.0),
            })?;
        self.seek(at.offset)?;
        Ok(at.line)
    }

    /// Continues reading at file offset `offset` (a value [`TextInput::offset`] returned).
    fn seek(&mut self, offset: u64) -> Result<(), SourceError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(&self.path, e))?;
        self.buf.clear();
        self.pos = 0;
        self.base = offset;
        self.eof = false;
        Ok(())
    }
}

/// Where a text file's reader stands: the byte offset of the next record and its 0-based line
/// number (so rejections keep their line numbers after a resume). JSON: `{"offset", "line"}`.
#[derive(Debug, serde::Deserialize)]
struct TextPosition {
    offset: u64,
    line: u64,
}

/// Strips one trailing `\r` (CRLF line ends).
pub(super) fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A line that could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Malformed {
    /// 0-based line number.
    pub line: u64,
    /// The raw line (invalid UTF-8 replaced).
    pub raw: String,
    /// What is wrong with it.
    pub detail: String,
}

/// Converts a chunk of a text file (its good records decoded as `batch`, numbered and traced
/// back by `origin`) and adds its malformed lines as `Malformed` rejections, in line order.
pub(super) fn text_batch(
    canon: &Canonicalizer,
    partition: &str,
    batch: &RecordBatch,
    origin: &dyn RowOrigin,
    malformed: Vec<Malformed>,
    bytes: u64,
) -> Result<SourceBatch, SourceError> {
    let mut out = canon.convert_with(partition, batch, origin)?;
    out.rejected.extend(malformed.into_iter().map(|m| Rejected {
        source: canon.source().to_string(),
        partition: partition.to_string(),
        row: Some(m.line),
        reason: RejectReason::Malformed,
        detail: m.detail,
        record: m.raw,
    }));
    out.rejected.sort_by_key(|r| r.row);
    out.bytes = bytes;
    Ok(out)
}

/// Batch rows numbered by the file lines they came from.
pub(super) struct LineNumbers<'a>(pub &'a [u64]);

impl RowOrigin for LineNumbers<'_> {
    fn row(&self, index: usize) -> u64 {
        self.0.get(index).copied().unwrap_or_default()
    }
}
