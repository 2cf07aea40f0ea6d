//! One source batch into the aggregates: metrics, non-finite values, lateness per lane,
//! pre-aggregation, rejections.

use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_buffer::BooleanBuffer;
use oceanflow_config::schema::FIRST_VARIABLE_COLUMN;
use oceanflow_connectors::{RejectReason, Rejected, SourceBatch};
use oceanflow_operators::preagg::{Partials, PreAggregator};

use super::partition::OpenPartition;
use super::Shared;
use oceanflow_connectors::record::{format_time_us, row_as_json};

/// Handles one source batch of `part`: counts it, judges lateness per lane, pre-aggregates
/// the kept rows into `partials` and rejects the rest (counted and dead-lettered).
pub(crate) fn ingest(
    shared: &Shared,
    part: &mut OpenPartition,
    source_batch: SourceBatch,
    preagg: &mut PreAggregator,
    partials: &mut Partials,
    now: Instant,
) {
    let SourceBatch {
        batch,
        mut rejected,
        bytes,
        position: _,
        lanes,
    } = source_batch;
    let metrics = &shared.metrics;
    let source = part.source.as_str();
    metrics.source_batches.with_label_values(&[source]).inc();
    metrics
        .source_bytes
        .with_label_values(&[source])
        .inc_by(bytes);
    if part.replaying {
        metrics
            .replayed_rows
            .with_label_values(&[source])
            .inc_by(batch.num_rows() as u64);
    }

    let times = batch
        .column(0)
        .as_primitive::<TimestampMicrosecondType>()
        .values();
    let judged = part.lanes.split(times, lanes.as_ref(), now);
    let split = &judged.split;
    rejected.extend(
        split
            .too_late
            .iter()
            .zip(&judged.too_late_marks)
            .map(|(&row, &mark)| too_late(part, &batch, row, mark)),
    );
    metrics
        .source_late
        .with_label_values(&[source])
        .inc_by(split.late_accepted as u64);
    if let Some(w) = part.lanes.lowest() {
        shared.set_watermark(part.source_index, source, &part.id, w);
    }
    let keep = (!split.keeps_all()).then_some(&split.keep);
    count_non_finite(shared, source, &batch, keep);
    let accepted = batch.num_rows() - split.too_late.len();
    match preagg.aggregate_kept(&batch, keep, partials) {
        Ok(()) => metrics
            .source_rows
            .with_label_values(&[source])
            .inc_by(accepted as u64),
        Err(error) => {
            // The connector produced a batch outside the canonical layout: a bug, reported
            // and dead-lettered rather than a panic or a silent drop.
            tracing::error!(source, partition = %part.id, %error, "Batch is not canonical.");
            partials.clear();
            rejected.extend((0..batch.num_rows()).map(|row| Rejected {
                source: part.source.clone(),
                partition: part.id.clone(),
                row: None,
                reason: RejectReason::Malformed,
                detail: format!("batch not in the canonical schema: {error}"),
                record: row_as_json(&batch, row),
            }));
        }
    }
    shared.reject(source, &rejected);
}

/// Counts the kept rows' non-finite variable values (NaN, ±inf, overflowing literals such as
/// `1e400`): the operators treat them as missing, and the count says how many there were.
fn count_non_finite(
    shared: &Shared,
    source: &str,
    batch: &RecordBatch,
    keep: Option<&BooleanBuffer>,
) {
    let variables = &shared.config.config().variables;
    for (i, name) in variables.iter().enumerate() {
        let Some(column) = batch.columns().get(FIRST_VARIABLE_COLUMN + i) else {
            continue;
        };
        let Some(values) = column.as_primitive_opt::<Float64Type>() else {
            continue;
        };
        if values.null_count() == values.len() {
            continue;
        }
        let n = values
            .values()
            .iter()
            .enumerate()
            .filter(|(row, v)| {
                !v.is_finite() && values.is_valid(*row) && keep.is_none_or(|k| k.value(*row))
            })
            .count();
        if n > 0 {
            shared
                .metrics
                .source_non_finite
                .with_label_values(&[source, name])
                .inc_by(n as u64);
        }
    }
}

fn too_late(part: &OpenPartition, batch: &RecordBatch, row: usize, watermark: i64) -> Rejected {
    Rejected {
        source: part.source.clone(),
        partition: part.id.clone(),
        row: None,
        reason: RejectReason::TooLate,
        detail: format!(
            "event time is older than its lane's watermark {}",
            format_time_us(watermark)
        ),
        record: row_as_json(batch, row),
    }
}
