//! An incremental Arrow IPC *stream* reader that keeps what arrow-rs' `StreamReader` hides:
//! each record-batch message's custom metadata (ODP's `cursor`, `error` and `stats` keys) and
//! the bytes after the end-of-stream marker (ODP's JSON trailer with `cursor`).
//!
//! Framing, per the Arrow spec: `0xFFFFFFFF` continuation marker (absent in pre-0.15 streams),
//! little-endian `i32` metadata length, the flatbuffer `Message`, padding, then `bodyLength`
//! bytes of body. A length of 0 is the end-of-stream marker. Bodies are decoded with
//! `arrow_ipc::reader::read_record_batch` / `read_dictionary`. One message is held at a time,
//! so memory is bounded by one batch, not one page.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::MessageHeader;
use arrow_schema::SchemaRef;

/// Most bytes read after the end-of-stream marker looking for the JSON trailer (the R SDK
/// searches 256 KiB).
const MAX_TRAILER: u64 = 256 * 1024;
/// Largest flatbuffer message accepted (a schema of thousands of columns is far smaller).
const MAX_METADATA: usize = 64 << 20;

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The transport failed (connection dropped, timeout): the page may be retried.
    #[error("reading the response: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid Arrow IPC stream.
    #[error("invalid Arrow IPC stream: {0}")]
    Format(String),
}

/// One item of the stream.
#[derive(Debug)]
pub enum Item {
    /// A record batch with its message's custom metadata and its size on the wire.
    Batch {
        /// The rows.
        batch: RecordBatch,
        /// Custom metadata of the message (empty when none).
        metadata: HashMap<String, String>,
        /// Bytes of the message (metadata and body).
        bytes: u64,
    },
    /// The end of the stream, with the JSON trailer that followed it, if any.
    End {
        /// The trailer object.
        trailer: Option<serde_json::Value>,
    },
}

/// Reads one IPC stream from `R`, message by message.
pub struct IpcStreamReader<R> {
    input: R,
    schema: Option<SchemaRef>,
    dictionaries: HashMap<i64, ArrayRef>,
    ended: bool,
}

impl<R: Read> IpcStreamReader<R> {
    /// Wraps `input`; nothing is read yet.
    pub fn new(input: R) -> Self {
        IpcStreamReader {
            input,
            schema: None,
            dictionaries: HashMap::new(),
            ended: false,
        }
    }

    /// The stream's schema, once its first message has been read.
    pub fn schema(&self) -> Option<SchemaRef> {
        self.schema.clone()
    }

    /// The next batch, or the end. After `End`, keeps returning `End { trailer: None }`.
    pub fn next_item(&mut self) -> Result<Item, IpcError> {
        while !self.ended {
            // Message length, with or without the continuation marker. A clean EOF here (an
            // empty body, or a stream without an EOS marker) ends the stream.
            let Some(first) = read_u32(&mut self.input, true)? else {
                self.ended = true;
                return Ok(Item::End { trailer: None });
            };
            let length = if first == 0xFFFF_FFFF {
                read_u32(&mut self.input, false)?.unwrap_or(0)
            } else {
                first
            };
            if length == 0 {
                self.ended = true;
                return Ok(Item::End {
                    trailer: self.read_trailer()?,
                });
            }
            let length = usize::try_from(length)
                .ok()
                .filter(|l| *l <= MAX_METADATA)
                .ok_or_else(|| IpcError::Format(format!("message length {length} is too large")))?;
            let mut meta = vec![0u8; length];
            self.input.read_exact(&mut meta)?;
            let message = arrow_ipc::root_as_message(&meta)
                .map_err(|e| IpcError::Format(format!("bad message header: {e}")))?;
            let body_len = usize::try_from(message.bodyLength())
                .map_err(|_| IpcError::Format("negative body length".into()))?;
            let mut body = vec![0u8; body_len];
            self.input.read_exact(&mut body)?;
            let body = Buffer::from_vec(body);
            let version = message.version();
            match message.header_type() {
                MessageHeader::Schema => {
                    let fb = message
                        .header_as_schema()
                        .ok_or_else(|| IpcError::Format("schema message without schema".into()))?;
                    let schema = arrow_ipc::convert::try_fb_to_schema(fb)
                        .map_err(|e| IpcError::Format(format!("bad schema: {e}")))?;
                    self.schema = Some(Arc::new(schema));
                }
                MessageHeader::DictionaryBatch => {
                    let schema = self.require_schema()?;
                    let dict = message.header_as_dictionary_batch().ok_or_else(|| {
                        IpcError::Format("dictionary message without a batch".into())
                    })?;
                    arrow_ipc::reader::read_dictionary(
                        &body,
                        dict,
                        &schema,
                        &mut self.dictionaries,
                        &version,
                    )
                    .map_err(|e| IpcError::Format(e.to_string()))?;
                }
                MessageHeader::RecordBatch => {
                    let schema = self.require_schema()?;
                    let fb = message.header_as_record_batch().ok_or_else(|| {
                        IpcError::Format("record batch message without a batch".into())
                    })?;
                    let batch = arrow_ipc::reader::read_record_batch(
                        &body,
                        fb,
                        schema,
                        &self.dictionaries,
                        None,
                        &version,
                    )
                    .map_err(|e| IpcError::Format(e.to_string()))?;
                    let metadata = message
                        .custom_metadata()
                        .map(|kvs| {
                            kvs.iter()
                                .filter_map(|kv| {
                                    Some((kv.key()?.to_string(), kv.value()?.to_string()))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    return Ok(Item::Batch {
                        batch,
                        metadata,
                        bytes: (8 + length + body_len) as u64,
                    });
                }
                other => {
                    return Err(IpcError::Format(format!(
                        "unexpected message type {other:?} in a stream"
                    )))
                }
            }
        }
        Ok(Item::End { trailer: None })
    }

    fn require_schema(&self) -> Result<SchemaRef, IpcError> {
        self.schema
            .clone()
            .ok_or_else(|| IpcError::Format("a batch came before the schema".into()))
    }

    /// The JSON object after the end-of-stream marker, if there is one. Anything else there
    /// (nothing, whitespace, non-JSON) is ignored, as pyarrow ignores it.
    fn read_trailer(&mut self) -> Result<Option<serde_json::Value>, IpcError> {
        let mut rest = Vec::new();
        (&mut self.input).take(MAX_TRAILER).read_to_end(&mut rest)?;
        let text = String::from_utf8_lossy(&rest);
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        Ok(text
            .find('{')
            .and_then(|start| serde_json::from_str::<serde_json::Value>(&text[start..]).ok())
            .filter(serde_json::Value::is_object))
    }
}

/// Reads a little-endian u32. `None` on a clean EOF before its first byte when `eof_ok`.
fn read_u32(input: &mut impl Read, eof_ok: bool) -> Result<Option<u32>, IpcError> {
    let mut buf = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 && eof_ok => return Ok(None),
            Ok(0) => {
                return Err(IpcError::Io(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the stream ends inside a message",
                )))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(u32::from_le_bytes(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("v{i}")),
                )),
            ],
        )
        .unwrap()
    }

    fn stock_stream(batches: &[RecordBatch], trailer: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w =
            arrow_ipc::writer::StreamWriter::try_new(&mut out, &batches[0].schema()).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        drop(w);
        out.extend_from_slice(trailer.as_bytes());
        out
    }

    #[test]
    fn reads_batches_and_the_json_trailer() {
        let bytes = stock_stream(
            &[batch(3), batch(0), batch(5)],
            r#"{"cursor":"abc","started":"x"}"#,
        );
        let mut r = IpcStreamReader::new(bytes.as_slice());
        let mut rows = Vec::new();
        let trailer = loop {
            match r.next_item().unwrap() {
                Item::Batch {
                    batch,
                    metadata,
                    bytes,
                } => {
                    assert!(metadata.is_empty());
                    assert!(bytes > 0);
                    rows.push(batch.num_rows());
                }
                Item::End { trailer } => break trailer,
            }
        };
        assert_eq!(rows, [3, 0, 5]);
        assert_eq!(trailer.unwrap()["cursor"], "abc");
        assert!(matches!(
            r.next_item().unwrap(),
            Item::End { trailer: None }
        ));
    }

    #[test]
    fn keeps_the_custom_metadata_of_each_batch_message() {
        let mut s = oceanflow_odp_server::ipc::IpcStream::new(&batch(1).schema()).unwrap();
        s.batch(&batch(2), &[]).unwrap();
        s.batch(&batch(3), &[("cursor", "c1"), ("stats", "{}")])
            .unwrap();
        s.batch(&batch(0), &[("error", "boom")]).unwrap();
        let bytes = s.finish();
        let mut r = IpcStreamReader::new(bytes.as_slice());
        let mut seen = Vec::new();
        while let Item::Batch {
            batch, metadata, ..
        } = r.next_item().unwrap()
        {
            let mut keys: Vec<String> = metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
            keys.sort();
            seen.push((batch.num_rows(), keys));
        }
        assert_eq!(
            seen,
            [
                (2, vec![]),
                (3, vec!["cursor=c1".to_string(), "stats={}".to_string()]),
                (0, vec!["error=boom".to_string()]),
            ]
        );
    }

    #[test]
    fn an_empty_body_is_an_empty_stream_and_a_cut_is_an_io_error() {
        let mut r = IpcStreamReader::new(&[][..]);
        assert!(matches!(
            r.next_item().unwrap(),
            Item::End { trailer: None }
        ));
        let bytes = stock_stream(&[batch(100)], "");
        let cut = &bytes[..bytes.len() - 200];
        let mut r = IpcStreamReader::new(cut);
        assert!(matches!(r.next_item(), Err(IpcError::Io(_))));
        let mut r = IpcStreamReader::new(&b"\xff\xff\xff\xff\x10\x00\x00\x00garbagegarbage!!"[..]);
        assert!(matches!(r.next_item(), Err(IpcError::Format(_))));
    }
}
