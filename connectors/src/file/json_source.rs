//! NDJSON: one JSON object per line; blank lines are skipped.
//!
//! The lines of a chunk are decoded together by arrow-json's vectorised decoder into an
//! all-`Utf8` schema of the mapped columns (`with_coerce_primitive(true)` turns numbers into
//! their text, which the [`Canonicalizer`](crate::canonical::Canonicalizer) parses; other keys
//! are ignored). A chunk is accepted when it decodes to exactly one row per line. Otherwise it
//! is split in halves and each half retried, down to single lines, which are rejected as
//! `malformed` with the raw line: chunks without bad lines cost one decode, and each bad line
//! costs a logarithmic number of extra decodes. Rows rejected later by the canonicalizer carry
//! their raw line as the record.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::text::{text_batch, trim_cr, Malformed, TextInput};
use super::{arrow_error, Shared};
use crate::canonical::RowOrigin;
use crate::{PartitionReader, Poll, Position, SourceError};

/// Opens an NDJSON partition.
pub(super) fn open(
    path: &Path,
    partition: String,
    shared: Shared,
    resume: Option<Position>,
) -> Result<Box<dyn PartitionReader>, SourceError> {
    let columns = shared.canon.source_columns();
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|name| Field::new(*name, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let mut reader = JsonReader::open(path, schema)?;
    if let Some(position) = resume {
        reader.line = reader.input.resume(&position)?;
    }
    Ok(Box::new(JsonPartition {
        reader,
        partition,
        shared,
    }))
}

/// Up to `rows` raw rows of the file, every key of those rows as a `Utf8` column in the order
/// first seen, for probing column types.
pub(super) fn probe(path: &Path, rows: usize) -> Result<RecordBatch, SourceError> {
    let mut input = TextInput::open(path)?;
    let mut keys: Vec<String> = Vec::new();
    let mut seen = 0;
    while seen < rows {
        let Some(line) = next_line(&mut input)? else {
            break;
        };
        let bytes = trim_cr(&input.buf[line]);
        if let Ok(ObjectKeys(object_keys)) = serde_json::from_slice(bytes) {
            seen += 1;
            for key in object_keys {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    let schema = Arc::new(Schema::new(
        keys.iter()
            .map(|k| Field::new(k, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let mut reader = JsonReader::open(path, schema)?;
    let empty = RecordBatch::new_empty(reader.schema());
    Ok(reader.next_chunk(rows)?.map_or(empty, |chunk| chunk.batch))
}

/// The keys of a JSON object, in the order they appear.
struct ObjectKeys(Vec<String>);

impl<'de> Deserialize<'de> for ObjectKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;

        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = ObjectKeys;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(ObjectKeys(keys))
            }
        }

        deserializer.deserialize_map(KeysVisitor)
    }
}

/// Finds the next line (without its `\n`) at the read position and moves past it; `None` at
/// the end of the file.
fn next_line(input: &mut TextInput) -> Result<Option<Range<usize>>, SourceError> {
    let mut searched = 0;
    loop {
        let rest = input.rest();
        if let Some(i) = rest[searched..].iter().position(|&b| b == b'\n') {
            let start = input.pos;
            input.pos += searched + i + 1;
            return Ok(Some(start..start + searched + i));
        }
        searched = rest.len();
        if !input.fill()? {
            if searched == 0 {
                return Ok(None);
            }
            let start = input.pos;
            input.pos += searched;
            return Ok(Some(start..start + searched));
        }
    }
}

/// An NDJSON file converted to canonical batches.
struct JsonPartition {
    reader: JsonReader,
    partition: String,
    shared: Shared,
}

impl PartitionReader for JsonPartition {
    fn poll(&mut self) -> Result<Poll, SourceError> {
        let Some(chunk) = self.reader.next_chunk(self.shared.batch_rows)? else {
            return Ok(Poll::Finished);
        };
        let origin = JsonLines {
            buf: &self.reader.input.buf,
            lines: &chunk.good,
        };
        let mut batch = text_batch(
            &self.shared.canon,
            &self.partition,
            &chunk.batch,
            &origin,
            chunk.malformed,
            chunk.bytes,
        )?;
        batch.position = Some(self.reader.input.position(self.reader.line));
        Ok(Poll::Batch(batch))
    }
}

/// Batch rows numbered by line, with their raw lines as records.
struct JsonLines<'a> {
    buf: &'a [u8],
    lines: &'a [(u64, Range<usize>)],
}

impl RowOrigin for JsonLines<'_> {
    fn row(&self, index: usize) -> u64 {
        self.lines.get(index).map_or(0, |(line, _)| *line)
    }

    fn raw_record(&self, index: usize) -> Option<String> {
        let (_, range) = self.lines.get(index)?;
        let bytes = self.buf.get(range.clone())?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// The decoded lines of a chunk: good lines (number and byte range in the buffer, valid until
/// the next chunk) and malformed lines.
struct Chunk {
    batch: RecordBatch,
    good: Vec<(u64, Range<usize>)>,
    malformed: Vec<Malformed>,
    bytes: u64,
}

/// Reads an NDJSON file chunk by chunk.
struct JsonReader {
    path: std::path::PathBuf,
    input: TextInput,
    schema: SchemaRef,
    /// 0-based number of the next line.
    line: u64,
}

impl JsonReader {
    fn open(path: &Path, schema: SchemaRef) -> Result<Self, SourceError> {
        Ok(JsonReader {
            path: path.to_path_buf(),
            input: TextInput::open(path)?,
            schema,
            line: 0,
        })
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Reads up to `max_rows` non-blank lines; `None` at the end of the file.
    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk>, SourceError> {
        self.input.compact();
        let mut lines: Vec<(u64, Range<usize>)> = Vec::new();
        while lines.len() < max_rows {
            let Some(range) = next_line(&mut self.input)? else {
                break;
            };
            let line = self.line;
            self.line += 1;
            let trimmed = trim_cr(&self.input.buf[range.clone()]);
            if !trimmed.iter().all(u8::is_ascii_whitespace) {
                lines.push((line, range.start..range.start + trimmed.len()));
            }
        }
        if lines.is_empty() {
            return Ok(None);
        }
        let mut decoded = Decoded::default();
        self.decode_split(&lines, &mut decoded);
        let batch = arrow_select::concat::concat_batches(&self.schema, &decoded.batches)
            .map_err(|e| arrow_error(&self.path, e))?;
        Ok(Some(Chunk {
            batch,
            good: decoded.good,
            malformed: decoded.malformed,
            bytes: self.input.pos as u64,
        }))
    }

    /// Decodes `lines` at once, or splits them in halves when that fails.
    fn decode_split(&self, lines: &[(u64, Range<usize>)], out: &mut Decoded) {
        match self.decode(lines) {
            Ok(batch) => {
                out.batches.push(batch);
                out.good.extend_from_slice(lines);
            }
            Err(error) => match lines {
                [(line, range)] => out.malformed.push(Malformed {
                    line: *line,
                    raw: String::from_utf8_lossy(&self.input.buf[range.clone()]).into_owned(),
                    detail: error,
                }),
                _ => {
                    let (left, right) = lines.split_at(lines.len() / 2);
                    self.decode_split(left, out);
                    self.decode_split(right, out);
                }
            },
        }
    }

    /// Decodes `lines`, requiring exactly one row per line.
    fn decode(&self, lines: &[(u64, Range<usize>)]) -> Result<RecordBatch, String> {
        let decode_all = || -> Result<Option<RecordBatch>, ArrowError> {
            let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(&self.schema))
                .with_coerce_primitive(true)
                .with_batch_size(lines.len() + 1)
                .build_decoder()?;
            for (_, range) in lines {
                let bytes = &self.input.buf[range.clone()];
                if decoder.decode(bytes)? < bytes.len() {
                    return Err(ArrowError::JsonError("more than one value".into()));
                }
            }
            decoder.flush()
        };
        let batch = decode_all().map_err(|e| e.to_string())?;
        let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema()));
        if batch.num_rows() == lines.len() {
            Ok(batch)
        } else {
            Err("not one JSON object per line".to_string())
        }
    }
}

/// What [`JsonReader::decode_split`] produced, in line order.
#[derive(Default)]
struct Decoded {
    batches: Vec<RecordBatch>,
    good: Vec<(u64, Range<usize>)>,
    malformed: Vec<Malformed>,
}
