//! Writing an Arrow IPC stream whose record-batch messages carry custom metadata (`cursor`,
//! `error`, `stats`), as the ODP server does. arrow-rs' `StreamWriter` cannot attach metadata
//! to a single message, so the record-batch message is re-encoded here with its
//! `custom_metadata` set, and the framing (continuation marker, length, padding, body, EOS) is
//! written by `arrow_ipc::writer::write_message`.

use arrow_array::RecordBatch;
use arrow_ipc::writer::{
    write_message, DictionaryTracker, EncodedData, IpcDataGenerator, IpcWriteContext,
    IpcWriteOptions,
};
use arrow_ipc::{KeyValue, KeyValueArgs, MessageBuilder, MessageHeader, RecordBatchBuilder};
use arrow_schema::{ArrowError, Schema};
use flatbuffers::FlatBufferBuilder;

/// Writes one IPC stream into a byte vector.
pub struct IpcStream {
    out: Vec<u8>,
    generator: IpcDataGenerator,
    tracker: DictionaryTracker,
    compression: IpcWriteContext,
    options: IpcWriteOptions,
}

impl IpcStream {
    /// Starts a stream with the schema message.
    pub fn new(schema: &Schema) -> Result<IpcStream, ArrowError> {
        let mut stream = IpcStream {
            out: Vec::new(),
            generator: IpcDataGenerator::default(),
            tracker: DictionaryTracker::new(false),
            compression: IpcWriteContext::default(),
            options: IpcWriteOptions::default(),
        };
        let encoded = stream.generator.schema_to_bytes_with_dictionary_tracker(
            schema,
            &mut stream.tracker,
            &stream.options,
        );
        write_message(&mut stream.out, encoded, &stream.options)?;
        Ok(stream)
    }

    /// Appends a record batch whose message carries `metadata` (may be empty).
    pub fn batch(
        &mut self,
        batch: &RecordBatch,
        metadata: &[(&str, &str)],
    ) -> Result<(), ArrowError> {
        let (dictionaries, encoded) = self.generator.encode(
            batch,
            &mut self.tracker,
            &self.options,
            &mut self.compression,
        )?;
        for dictionary in dictionaries {
            write_message(&mut self.out, dictionary, &self.options)?;
        }
        let encoded = if metadata.is_empty() {
            encoded
        } else {
            with_custom_metadata(encoded, metadata)?
        };
        write_message(&mut self.out, encoded, &self.options)?;
        Ok(())
    }

    /// Bytes written so far (the cut-mid-stream fault truncates here).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing has been written (never true after `new`).
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Writes the end-of-stream marker and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.out
            .extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
        self.out
    }
}

/// Re-encodes a record-batch message with `custom_metadata` (the body is unchanged).
fn with_custom_metadata(
    encoded: EncodedData,
    metadata: &[(&str, &str)],
) -> Result<EncodedData, ArrowError> {
    let message = arrow_ipc::root_as_message(&encoded.ipc_message)
        .map_err(|e| ArrowError::IpcError(format!("re-reading an encoded message: {e}")))?;
    let batch = message
        .header_as_record_batch()
        .ok_or_else(|| ArrowError::IpcError("not a record batch message".into()))?;
    let mut fbb = FlatBufferBuilder::new();
    let nodes: Vec<arrow_ipc::FieldNode> = batch
        .nodes()
        .map(|n| n.iter().copied().collect())
        .unwrap_or_default();
    let buffers: Vec<arrow_ipc::Buffer> = batch
        .buffers()
        .map(|b| b.iter().copied().collect())
        .unwrap_or_default();
    let variadic: Option<Vec<i64>> = batch.variadicBufferCounts().map(|v| v.iter().collect());
    let nodes = fbb.create_vector(&nodes);
    let buffers = fbb.create_vector(&buffers);
    let variadic = variadic.map(|v| fbb.create_vector(&v));
    let header = {
        let mut b = RecordBatchBuilder::new(&mut fbb);
        b.add_length(batch.length());
        b.add_nodes(nodes);
        b.add_buffers(buffers);
        if let Some(v) = variadic {
            b.add_variadicBufferCounts(v);
        }
        b.finish()
    };
    let pairs: Vec<_> = metadata
        .iter()
        .map(|(k, v)| {
            let key = Some(fbb.create_string(k));
            let value = Some(fbb.create_string(v));
            KeyValue::create(&mut fbb, &KeyValueArgs { key, value })
        })
        .collect();
    let custom = fbb.create_vector(&pairs);
    let mut m = MessageBuilder::new(&mut fbb);
    m.add_version(message.version());
    m.add_header_type(MessageHeader::RecordBatch);
    m.add_header(header.as_union_value());
    m.add_bodyLength(message.bodyLength());
    m.add_custom_metadata(custom);
    let root = m.finish();
    fbb.finish(root, None);
    Ok(EncodedData {
        ipc_message: fbb.finished_data().to_vec(),
        arrow_data: encoded.arrow_data,
    })
}
