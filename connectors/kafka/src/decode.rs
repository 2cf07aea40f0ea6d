//! Payload decoding: JSON, CSV and Arrow IPC messages into raw Arrow batches whose rows are
//! traced back to their messages.
//!
//! JSON and CSV messages of one poll are decoded together by arrow's vectorised decoders into an
//! all-`Utf8` schema of the mapped columns (the [`Canonicalizer`] parses the text), like the file
//! readers do. A group of messages is accepted when it decodes to exactly the expected number of
//! rows; otherwise it is split in halves and retried down to single units, which are rejected as
//! `malformed`: a clean poll costs one decode, each bad message a logarithmic number of extra
//! decodes. Arrow IPC messages are decoded one by one (each is a stream with its own schema);
//! consecutive messages with the same schema are concatenated so the canonicalizer runs once per
//! run of equal schemas.
//!
//! [`Canonicalizer`]: oceanflow_connectors::canonical::Canonicalizer

use std::borrow::Cow;
use std::io::Cursor;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use oceanflow_connectors::{Lanes, Rejected};

/// Why a message (or one row of it) could not be decoded, and the text to report as its record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Malformed {
    /// Index of the message in the poll.
    pub message: usize,
    /// What is wrong.
    pub detail: String,
    /// The offending record as text (a JSON element or CSV line); `None` = the whole payload.
    pub record: Option<String>,
}

/// Rows of a decoded batch and the message each came from.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// Source columns as decoded (not yet canonical).
    pub batch: RecordBatch,
    /// `rows[i]` is the index (in the poll) of the message batch row `i` came from.
    pub rows: Vec<usize>,
}

/// One decodable piece of input: the bytes of one JSON object or CSV line.
struct Unit<'a> {
    message: usize,
    bytes: Cow<'a, [u8]>,
}

/// Decodes JSON payloads: each an object, or an array of objects. `payloads[i]` is message
/// `i`'s payload (`None` for a tombstone). Keys outside `schema` are ignored.
pub(crate) fn decode_json(
    schema: &SchemaRef,
    payloads: &[Option<&[u8]>],
) -> (Option<Decoded>, Vec<Malformed>) {
    let mut malformed = Vec::new();
    let mut units = Vec::with_capacity(payloads.len());
    for (message, payload) in payloads.iter().enumerate() {
        let Some(bytes) = payload.filter(|p| !p.iter().all(u8::is_ascii_whitespace)) else {
            malformed.push(Malformed {
                message,
                detail: "empty payload".into(),
                record: None,
            });
            continue;
        };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
            units.push(Unit {
                message,
                bytes: Cow::Borrowed(bytes),
            });
            continue;
        }
        match serde_json::from_slice::<Vec<serde_json::Value>>(bytes) {
            Ok(values) => {
                if let Some(i) = values.iter().position(|v| !v.is_object()) {
                    malformed.push(Malformed {
                        message,
                        detail: format!("array element {i} is not a JSON object"),
                        record: None,
                    });
                    continue;
                }
                units.extend(values.iter().map(|v| Unit {
                    message,
                    bytes: Cow::Owned(serde_json::to_vec(v).unwrap_or_default()),
                }));
            }
            Err(e) => malformed.push(Malformed {
                message,
                detail: format!("invalid JSON array: {e}"),
                record: None,
            }),
        }
    }
    let decode = |units: &[Unit<'_>]| -> Result<RecordBatch, ArrowError> {
        let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(schema))
            .with_coerce_primitive(true)
            .with_batch_size(units.len() + 1)
            .build_decoder()?;
        for unit in units {
            if decoder.decode(&unit.bytes)? < unit.bytes.len() {
                return Err(ArrowError::JsonError("trailing bytes".into()));
            }
        }
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
    };
    let decoded = decode_split(schema, &units, &decode, &mut malformed, true);
    (decoded, malformed)
}

/// Decodes CSV payloads: one record per line (no header; quoted fields must not span lines),
/// blank lines skipped, columns named by `schema` (all `Utf8`).
pub(crate) fn decode_csv(
    schema: &SchemaRef,
    payloads: &[Option<&[u8]>],
) -> (Option<Decoded>, Vec<Malformed>) {
    let mut malformed = Vec::new();
    let mut units = Vec::with_capacity(payloads.len());
    for (message, payload) in payloads.iter().enumerate() {
        let lines: Vec<&[u8]> = payload
            .unwrap_or_default()
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        if lines.is_empty() {
            malformed.push(Malformed {
                message,
                detail: "empty payload".into(),
                record: None,
            });
        }
        units.extend(lines.into_iter().map(|line| Unit {
            message,
            bytes: Cow::Borrowed(line),
        }));
    }
    let decode = |units: &[Unit<'_>]| -> Result<RecordBatch, ArrowError> {
        let mut decoder = arrow_csv::ReaderBuilder::new(Arc::clone(schema))
            .with_header(false)
            .with_batch_size(units.len() + 1)
            .build_decoder();
        for unit in units {
            for part in [&unit.bytes[..], b"\n"] {
                let mut rest = part;
                while !rest.is_empty() {
                    let n = decoder.decode(rest)?;
                    if n == 0 {
                        return Err(ArrowError::CsvError("decoder made no progress".into()));
                    }
                    rest = &rest[n..];
                }
            }
        }
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
    };
    let decoded = decode_split(schema, &units, &decode, &mut malformed, false);
    (decoded, malformed)
}

/// Decodes `units` at once, splitting in halves on failure; returns the good rows in unit
/// order. `json` selects how a single bad unit is reported (its text as the record).
fn decode_split(
    schema: &SchemaRef,
    units: &[Unit<'_>],
    decode: &dyn Fn(&[Unit<'_>]) -> Result<RecordBatch, ArrowError>,
    malformed: &mut Vec<Malformed>,
    json: bool,
) -> Option<Decoded> {
    if units.is_empty() {
        return None;
    }
    let mut batches = Vec::new();
    let mut rows = Vec::new();
    let mut stack = vec![units];
    // Depth-first, left half first, so rows stay in unit order.
    while let Some(part) = stack.pop() {
        let error = match decode(part) {
            Ok(batch) if batch.num_rows() == part.len() => {
                rows.extend(part.iter().map(|u| u.message));
                batches.push(batch);
                continue;
            }
            Ok(batch) => format!(
                "{} rows decoded from {} records",
                batch.num_rows(),
                part.len()
            ),
            Err(e) => e.to_string(),
        };
        match part {
            [unit] => malformed.push(Malformed {
                message: unit.message,
                detail: if json {
                    format!("invalid JSON object: {error}")
                } else {
                    format!("invalid CSV line: {error}")
                },
                record: Some(String::from_utf8_lossy(&unit.bytes).into_owned()),
            }),
            _ => {
                let (left, right) = part.split_at(part.len() / 2);
                stack.push(right);
                stack.push(left);
            }
        }
    }
    let batch = match arrow_select::concat::concat_batches(schema, &batches) {
        Ok(batch) => batch,
        Err(error) => {
            // Batches of one schema always concatenate; report rather than panic.
            tracing::error!(%error, "Concatenating decoded batches failed.");
            return None;
        }
    };
    Some(Decoded { batch, rows })
}

/// The lanes of the canonical rows made from decoded rows: decoded row `i` came from message
/// `rows[i]` (of lane `message_lanes[rows[i]]`), and the canonicaliser kept the decoded rows
/// it did not reject, in order. `rejected` are its rejections, numbered by decoded row.
pub(crate) fn kept_lanes(message_lanes: &[String], rows: &[usize], rejected: &[Rejected]) -> Lanes {
    let mut dropped = vec![false; rows.len()];
    for row in rejected.iter().filter_map(|r| r.row) {
        if let Some(flag) = usize::try_from(row).ok().and_then(|i| dropped.get_mut(i)) {
            *flag = true;
        }
    }
    Lanes::from_row_ids(
        rows.iter()
            .zip(&dropped)
            .filter(|(_, dropped)| !**dropped)
            .map(|(&message, _)| message_lanes.get(message).map_or("", String::as_str)),
    )
}

/// Decodes one Arrow IPC stream payload into its record batches.
pub(crate) fn decode_ipc(payload: Option<&[u8]>) -> Result<Vec<RecordBatch>, String> {
    let bytes = payload.filter(|p| !p.is_empty()).ok_or("empty payload")?;
    let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| format!("invalid Arrow IPC stream: {e}"))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid Arrow IPC stream: {e}"))
}

/// An all-`Utf8` schema of `columns`.
pub(crate) fn text_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// `batch` with the column `name` replaced by (or extended with) the Kafka message timestamps
/// (milliseconds, UTC) of its rows; `None` where the message has no timestamp.
pub(crate) fn with_kafka_time(
    batch: &RecordBatch,
    name: &str,
    millis: impl Iterator<Item = Option<i64>>,
) -> Result<RecordBatch, ArrowError> {
    let time: ArrayRef =
        Arc::new(TimestampMillisecondArray::from_iter(millis).with_timezone("UTC"));
    let mut fields = Vec::with_capacity(batch.num_columns() + 1);
    let mut columns = Vec::with_capacity(batch.num_columns() + 1);
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.name() != name {
            fields.push(Arc::clone(field));
            columns.push(Arc::clone(column));
        }
    }
    fields.push(Arc::new(Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        true,
    )));
    if time.len() != batch.num_rows() {
        return Err(ArrowError::InvalidArgumentError(format!(
            "{} timestamps for {} rows",
            time.len(),
            batch.num_rows()
        )));
    }
    columns.push(time);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;

    use super::*;

    fn column(decoded: &Decoded, name: &str) -> Vec<Option<String>> {
        decoded
            .batch
            .column_by_name(name)
            .expect("column")
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn json_objects_arrays_and_bad_messages() {
        let schema = text_schema(&["station_id", "temperature_c"]);
        let payloads: Vec<Option<&[u8]>> = vec![
            Some(br#"{"station_id":"A","temperature_c":1.5,"other":true}"#),
            Some(b"{not json"),
            Some(br#"[{"station_id":"B"},{"station_id":"C","temperature_c":"2"}]"#),
            None,
            Some(br#"{"station_id":"D"}{"station_id":"E"}"#),
            Some(br#"[1, 2]"#),
            Some(br#"{"station_id":"F"}"#),
        ];
        let (decoded, malformed) = decode_json(&schema, &payloads);
        let decoded = decoded.expect("good rows");
        assert_eq!(decoded.rows, vec![0, 2, 2, 6]);
        assert_eq!(
            column(&decoded, "station_id"),
            vec![
                Some("A".into()),
                Some("B".into()),
                Some("C".into()),
                Some("F".into())
            ]
        );
        assert_eq!(column(&decoded, "temperature_c")[0].as_deref(), Some("1.5"));
        let mut bad: Vec<usize> = malformed.iter().map(|m| m.message).collect();
        bad.sort_unstable();
        assert_eq!(bad, vec![1, 3, 4, 5]);
    }

    #[test]
    fn csv_lines_and_field_count_errors() {
        let schema = text_schema(&["timestamp", "station_id", "temperature_c"]);
        let payloads: Vec<Option<&[u8]>> = vec![
            Some(b"2020-01-01T00:00:00Z,A,1.0\n2020-01-01T00:01:00Z,B,2.0\n"),
            Some(b"2020-01-01T00:02:00Z,C\r\n"),
            Some(b"2020-01-01T00:03:00Z,\"D, quoted\",3.0"),
            Some(b"\n"),
        ];
        let (decoded, malformed) = decode_csv(&schema, &payloads);
        let decoded = decoded.expect("good rows");
        assert_eq!(decoded.rows, vec![0, 0, 2]);
        assert_eq!(
            column(&decoded, "station_id")[2].as_deref(),
            Some("D, quoted")
        );
        assert_eq!(
            malformed.iter().map(|m| m.message).collect::<Vec<_>>(),
            vec![3, 1]
        );
        assert_eq!(
            malformed[1].record.as_deref(),
            Some("2020-01-01T00:02:00Z,C")
        );
    }

    /// A poll mixing partitions, with rejected rows between kept ones: each canonical row
    /// keeps the lane of its own message.
    #[test]
    fn kept_rows_carry_the_lane_of_their_message() {
        let canon = oceanflow_connectors::canonical::Canonicalizer::new(
            "k",
            &oceanflow_config::ColumnMapping::default(),
            &["temperature_c".into()],
            &[],
        );
        let schema = text_schema(&canon.source_columns());
        // (partition, payload): message 2 holds two rows, of which the first is rejected.
        let messages = [
            (
                "obs/0",
                r#"{"timestamp":"2020-01-01T00:00:00Z","station_id":"A","latitude":1,"longitude":1}"#,
            ),
            (
                "obs/1",
                r#"{"timestamp":"2020-01-01T00:00:00Z","station_id":"B","latitude":99,"longitude":1}"#,
            ),
            (
                "obs/2",
                r#"[{"timestamp":"never","station_id":"X","latitude":1,"longitude":1},{"timestamp":"2020-01-01T00:00:00Z","station_id":"C","latitude":1,"longitude":1}]"#,
            ),
            (
                "obs/1",
                r#"{"timestamp":"2020-01-01T00:00:00Z","station_id":"D","latitude":1,"longitude":1}"#,
            ),
            (
                "obs/0",
                r#"{"timestamp":"2020-01-01T00:00:00Z","station_id":"E","latitude":1,"longitude":1,"temperature_c":"warm"}"#,
            ),
            (
                "obs/2",
                r#"{"timestamp":"2020-01-01T00:00:00Z","station_id":"F","latitude":1,"longitude":1}"#,
            ),
        ];
        let payloads: Vec<Option<&[u8]>> =
            messages.iter().map(|(_, p)| Some(p.as_bytes())).collect();
        let (decoded, malformed) = decode_json(&schema, &payloads);
        assert!(malformed.is_empty(), "{malformed:?}");
        let decoded = decoded.expect("rows");
        let out = canon
            .convert("member", 0, &decoded.batch)
            .expect("converts");
        assert_eq!(out.rejected.len(), 3, "{:?}", out.rejected);
        let message_lanes: Vec<String> = messages.iter().map(|(l, _)| l.to_string()).collect();
        let lanes = kept_lanes(&message_lanes, &decoded.rows, &out.rejected);
        assert_eq!(lanes.of_row.len(), out.batch.num_rows());
        let stations = out.batch.column(1).as_string::<i32>();
        let tagged: Vec<(&str, &str)> = (0..out.batch.num_rows())
            .map(|row| (stations.value(row), lanes.of(row).expect("a lane")))
            .collect();
        assert_eq!(
            tagged,
            [
                ("A", "obs/0"),
                ("C", "obs/2"),
                ("D", "obs/1"),
                ("F", "obs/2")
            ]
        );
    }

    #[test]
    fn ipc_roundtrip_and_garbage() {
        let schema = text_schema(&["station_id"]);
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(arrow_array::StringArray::from(vec!["A", "B"]))],
        )
        .expect("batch");
        let mut bytes = Vec::new();
        {
            let mut writer =
                arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &schema).expect("writer");
            writer.write(&batch).expect("write");
            writer.finish().expect("finish");
        }
        let batches = decode_ipc(Some(&bytes)).expect("decodes");
        assert_eq!(batches, vec![batch]);
        assert!(decode_ipc(Some(b"garbage")).is_err());
        assert!(decode_ipc(None).is_err());
    }

    #[test]
    fn kafka_time_replaces_the_time_column() {
        let schema = text_schema(&["timestamp", "station_id"]);
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow_array::StringArray::from(vec!["x", "y"])),
                Arc::new(arrow_array::StringArray::from(vec!["A", "B"])),
            ],
        )
        .expect("batch");
        let out = with_kafka_time(&batch, "timestamp", [Some(1_000), None].into_iter())
            .expect("replaced");
        assert_eq!(out.num_columns(), 2);
        assert_eq!(out.schema().field(1).name(), "timestamp");
        assert_eq!(out.column(1).null_count(), 1);
        // A rejected row's dead-letter record renders the `Timestamp(ms, "UTC")` column.
        assert_eq!(
            oceanflow_connectors::record::row_as_json(&out, 0),
            r#"{"station_id":"A","timestamp":"1970-01-01T00:00:01Z"}"#
        );
    }
}
