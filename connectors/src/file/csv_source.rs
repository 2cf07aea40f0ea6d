//! CSV: a header line, then one record per line (quoted fields may span lines).
//!
//! Malformed-line handling, in one pass per chunk: a small quote-aware state machine splits the
//! byte stream into records and counts their fields (RFC 4180 quoting, the same rules as the
//! `csv-core` parser inside arrow-csv). A record whose field count differs from the header's,
//! that is not valid UTF-8, or whose quote never closes is rejected as `malformed` with its raw
//! line; if such a record spans several physical lines only its first line is rejected and
//! scanning resumes on the next line, so one stray quote cannot swallow the good lines after it.
//! The byte ranges of the good records (adjacent ones merged, nothing copied) are then fed to
//! arrow-csv's vectorised `Decoder` with an all-`Utf8` schema, which therefore never fails on
//! data: bad values become per-row rejections in the
//! [`Canonicalizer`](crate::canonical::Canonicalizer).

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_csv::reader::Format;
use arrow_csv::ReaderBuilder;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use super::text::{text_batch, trim_cr, LineNumbers, Malformed, TextInput};
use super::{arrow_error, Shared};
use crate::{PartitionReader, Poll, Position, SourceError};

/// A quoted field spanning more bytes than this is treated as a stray quote.
const MAX_QUOTED_BYTES: usize = 1 << 20;

/// Opens a CSV partition.
pub(super) fn open(
    path: &Path,
    partition: String,
    shared: Shared,
    resume: Option<Position>,
) -> Result<Box<dyn PartitionReader>, SourceError> {
    let mut reader = CsvReader::open(path)?;
    if let Some(position) = resume {
        reader.line = reader.input.resume(&position)?;
    }
    Ok(Box::new(CsvPartition {
        reader,
        partition,
        shared,
    }))
}

/// Up to `rows` raw (all-`Utf8`) rows of the file, for probing column types.
pub(super) fn probe(path: &Path, rows: usize) -> Result<RecordBatch, SourceError> {
    let mut reader = CsvReader::open(path)?;
    let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
    Ok(reader.next_chunk(rows)?.map_or(empty, |chunk| chunk.batch))
}

/// A CSV file converted to canonical batches.
struct CsvPartition {
    reader: CsvReader,
    partition: String,
    shared: Shared,
}

impl PartitionReader for CsvPartition {
    fn poll(&mut self) -> Result<Poll, SourceError> {
        let Some(chunk) = self.reader.next_chunk(self.shared.batch_rows)? else {
            return Ok(Poll::Finished);
        };
        let mut batch = text_batch(
            &self.shared.canon,
            &self.partition,
            &chunk.batch,
            &LineNumbers(&chunk.lines),
            chunk.malformed,
            chunk.bytes,
        )?;
        batch.position = Some(self.reader.input.position(self.reader.line));
        Ok(Poll::Batch(batch))
    }
}

/// The good records of a chunk as text, with their line numbers, and the malformed lines.
struct Chunk {
    batch: RecordBatch,
    lines: Vec<u64>,
    malformed: Vec<Malformed>,
    bytes: u64,
}

/// Reads a CSV file chunk by chunk as all-`Utf8` batches.
struct CsvReader {
    path: std::path::PathBuf,
    input: TextInput,
    /// The all-`Utf8` schema from the header; `None` for an empty file.
    schema: Option<SchemaRef>,
    /// 0-based line number of the next record.
    line: u64,
}

/// The state of the record scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// One record found by [`scan_record`], offsets relative to where the scan started.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scan {
    /// End of the record's bytes (its `\n`, or the end of the input).
    end: usize,
    /// Whether a `\n` ended it (otherwise the input ran out).
    terminated: bool,
    /// Number of fields.
    fields: usize,
    /// The input ran out inside a quoted field.
    open_quote: bool,
    /// The first `\n` inside a quoted field, if any.
    first_newline: Option<usize>,
    /// Number of `\n` inside quoted fields.
    newlines: u64,
}

impl Scan {
    /// Offset just after the record and its terminator.
    fn next(&self) -> usize {
        self.end + usize::from(self.terminated)
    }
}

/// Finds the end of the record at the start of `bytes` and counts its fields.
fn scan_record(bytes: &[u8]) -> Scan {
    let mut state = State::FieldStart;
    let mut fields = 1;
    let mut first_newline = None;
    let mut newlines = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Runs of ordinary bytes only move a field out of its start (or out of a closing
        // quote) into unquoted text; skip them in a tight loop.
        let run = bytes[i..].iter().take_while(|b| !is_special(**b)).count();
        if run > 0 {
            if state != State::Quoted {
                state = State::Unquoted;
            }
            i += run;
            continue;
        }
        state = match (state, bytes[i]) {
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, b'\n') => {
                newlines += 1;
                first_newline.get_or_insert(i);
                State::Quoted
            }
            (State::Quoted, _) => State::Quoted,
            (_, b'\n') => {
                return Scan {
                    end: i,
                    terminated: true,
                    fields,
                    open_quote: false,
                    first_newline,
                    newlines,
                }
            }
            (_, b',') => {
                fields += 1;
                State::FieldStart
            }
            (State::FieldStart, b'"') | (State::QuoteInQuoted, b'"') => State::Quoted,
            _ => State::Unquoted,
        };
        i += 1;
    }
    Scan {
        end: bytes.len(),
        terminated: false,
        fields,
        open_quote: state == State::Quoted,
        first_newline,
        newlines,
    }
}

/// Bytes that change the scanner's state.
fn is_special(b: u8) -> bool {
    matches!(b, b',' | b'"' | b'\n')
}

/// The good records of a chunk being collected.
#[derive(Default)]
struct Collected {
    ranges: Vec<Range<usize>>,
    lines: Vec<u64>,
    malformed: Vec<Malformed>,
    /// The last good record has no line terminator (end of file).
    unterminated: bool,
}

impl Collected {
    fn records(&self) -> usize {
        self.lines.len() + self.malformed.len()
    }

    /// Adds a good record, merging it with the previous range when adjacent.
    fn push_good(&mut self, range: Range<usize>, line: u64) {
        match self.ranges.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => self.ranges.push(range),
        }
        self.lines.push(line);
    }
}

impl CsvReader {
    /// Opens the file and reads its header.
    fn open(path: &Path) -> Result<Self, SourceError> {
        let mut reader = CsvReader {
            path: path.to_path_buf(),
            input: TextInput::open(path)?,
            schema: None,
            line: 0,
        };
        reader.schema = reader.read_header()?;
        Ok(reader)
    }

    /// Reads the header record into an all-`Utf8` schema.
    fn read_header(&mut self) -> Result<Option<SchemaRef>, SourceError> {
        let Some(scan) = self.next_scan()? else {
            return Ok(None);
        };
        let start = self.input.pos;
        let mut header = trim_cr(&self.input.buf[start..start + scan.end]).to_vec();
        header.push(b'\n');
        self.input.pos = start + scan.next();
        self.line = 1 + scan.newlines;
        let (inferred, _) = Format::default()
            .with_header(true)
            .infer_schema(header.as_slice(), Some(0))
            .map_err(|e| arrow_error(&self.path, e))?;
        let fields: Vec<Field> = inferred
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect();
        Ok(Some(Arc::new(Schema::new(fields))))
    }

    /// Scans the record at the read position, reading more of the file until it is complete
    /// (or the file ends); `None` at the end of the file.
    fn next_scan(&mut self) -> Result<Option<Scan>, SourceError> {
        loop {
            let rest = self.input.rest();
            if rest.is_empty() && !self.input.fill()? {
                return Ok(None);
            }
            let scan = scan_record(self.input.rest());
            let stray_quote = scan.open_quote && scan.end > MAX_QUOTED_BYTES;
            if scan.terminated || self.input.eof || stray_quote || !self.input.fill()? {
                return Ok(Some(scan));
            }
        }
    }

    /// Reads up to `max_rows` records; `None` at the end of the file.
    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk>, SourceError> {
        let Some(schema) = self.schema.clone() else {
            return Ok(None);
        };
        self.input.compact();
        let mut collected = Collected::default();
        while collected.records() < max_rows {
            let Some(scan) = self.next_scan()? else {
                break;
            };
            self.classify(&scan, schema.fields().len(), &mut collected);
        }
        if collected.records() == 0 {
            return Ok(None);
        }
        let batch = self
            .decode(&schema, &collected)
            .map_err(|e| arrow_error(&self.path, e))?;
        Ok(Some(Chunk {
            batch,
            lines: collected.lines,
            malformed: collected.malformed,
            bytes: self.input.pos as u64,
        }))
    }

    /// Files the scanned record at the read position as good, malformed or blank, and moves
    /// past it (past its first line only, for a malformed multi-line record).
    fn classify(&mut self, scan: &Scan, fields: usize, collected: &mut Collected) {
        let start = self.input.pos;
        let record = trim_cr(&self.input.buf[start..start + scan.end]);
        let problem = if scan.open_quote {
            Some("a quoted field is not closed".to_string())
        } else if record.is_empty() {
            self.input.pos = start + scan.next();
            self.line += 1;
            return;
        } else if scan.fields != fields {
            Some(format!("{} fields, the header has {fields}", scan.fields))
        } else if std::str::from_utf8(record).is_err() {
            Some("not valid UTF-8".to_string())
        } else {
            None
        };
        let Some(detail) = problem else {
            collected.push_good(start..start + scan.next(), self.line);
            collected.unterminated = !scan.terminated;
            self.input.pos = start + scan.next();
            self.line += 1 + scan.newlines;
            return;
        };
        let (raw_end, next) = match scan.first_newline {
            Some(newline) => (newline, newline + 1),
            None => (scan.end, scan.next()),
        };
        let raw = trim_cr(&self.input.buf[start..start + raw_end]);
        collected.malformed.push(Malformed {
            line: self.line,
            raw: String::from_utf8_lossy(raw).into_owned(),
            detail,
        });
        self.input.pos = start + next;
        self.line += 1;
    }

    /// Decodes the good records with arrow-csv.
    fn decode(&self, schema: &SchemaRef, collected: &Collected) -> Result<RecordBatch, ArrowError> {
        if collected.lines.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(schema)));
        }
        let mut decoder = ReaderBuilder::new(Arc::clone(schema))
            .with_header(false)
            // One spare row: a `\r\n` ending the last record is consumed as `\r` plus an
            // empty record, which the decoder skips but only while it has room.
            .with_batch_size(collected.lines.len() + 1)
            .build_decoder();
        for range in &collected.ranges {
            feed(&mut decoder, &self.input.buf[range.clone()])?;
        }
        if collected.unterminated {
            feed(&mut decoder, b"\n")?;
        }
        let batch = decoder.flush()?;
        Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
    }
}

/// Feeds all of `bytes` to the decoder.
fn feed(decoder: &mut arrow_csv::reader::Decoder, mut bytes: &[u8]) -> Result<(), ArrowError> {
    while !bytes.is_empty() {
        let read = decoder.decode(bytes)?;
        if read == 0 {
            return Err(ArrowError::CsvError(
                "the decoder stopped before the end of the chunk".into(),
            ));
        }
        bytes = &bytes[read..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_counts_fields_and_respects_quotes() {
        let scan = scan_record(b"a,\"b,c\",d\nnext");
        assert_eq!((scan.end, scan.fields, scan.terminated), (9, 3, true));
        let scan = scan_record(b"a,\"line\nbreak\",\"x\"\"y\"\n");
        assert_eq!(scan.fields, 3);
        assert_eq!((scan.newlines, scan.first_newline), (1, Some(7)));
        let scan = scan_record(b"a,\"open");
        assert!(scan.open_quote && !scan.terminated);
        let scan = scan_record(b"ab\"c,d\n");
        assert_eq!(scan.fields, 2);
    }
}
