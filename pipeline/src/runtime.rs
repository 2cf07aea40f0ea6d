//! The timely workers: each reads its share of the source partitions, splits off rows that are
//! too late, pre-aggregates every batch and feeds the partials into the differential dataflow,
//! whose changelog maintains this worker's [`AggregateView`].
//!
//! Dataflow time is event time: a batch enters at its worker's current input time, the lowest
//! watermark (newest event time minus the allowed lateness, rounded down to the granularity)
//! over the worker's unfinished partitions. A partition that has produced nothing yet holds the
//! time at its minimum. When the probe passes time `t`, every aggregate over events before `t`
//! is final.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::RecordBatch;
use differential_dataflow::input::{Input, InputSession};
use oceanflow_config::ValidConfig;
use oceanflow_connectors::dead_letter::DeadLetterWriter;
use oceanflow_connectors::{
    Partition, PartitionReader, Poll, RejectReason, Rejected, SourceBatch, SourceContext,
};
use oceanflow_operators::calendar::HOUR_US;
use oceanflow_operators::dataflow::{aggregates, distinct_counts};
use oceanflow_operators::late::Watermark;
use oceanflow_operators::preagg::{Partials, PreAggregator};
use oceanflow_operators::spec::AggregateSpec;
use oceanflow_operators::view::AggregateView;
use oceanflow_operators::{DistinctKey, GroupKey, Stats};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use crate::metrics::PipelineMetrics;

/// State shared by the workers and the exporters.
pub struct Shared {
    /// The configuration the run was started with.
    pub config: Arc<ValidConfig>,
    /// One view per worker; keys are disjoint across views (the dataflow exchanges by key).
    pub views: Vec<Arc<Mutex<AggregateView>>>,
    /// Health metrics.
    pub metrics: PipelineMetrics,
    /// Dead-letter output, when configured.
    pub dead_letter: Option<Mutex<DeadLetterWriter>>,
    /// Set to stop reading sources; the workers then drain and exit.
    pub shutdown: Arc<AtomicBool>,
    /// Partition failures (source name, partition id, error text), for the exit status.
    pub failures: Mutex<Vec<String>>,
    /// What connectors get besides their config.
    pub source_context: SourceContext,
    watermarks: Mutex<HashMap<(usize, String), i64>>,
}

impl Shared {
    /// Creates the shared state for `workers` workers.
    pub fn new(
        config: Arc<ValidConfig>,
        source_context: SourceContext,
        metrics: PipelineMetrics,
        dead_letter: Option<DeadLetterWriter>,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        Shared {
            views: (0..source_context.workers)
                .map(|_| Arc::new(Mutex::new(AggregateView::new())))
                .collect(),
            config,
            metrics,
            dead_letter: dead_letter.map(Mutex::new),
            shutdown,
            failures: Mutex::new(Vec::new()),
            watermarks: Mutex::new(HashMap::new()),
            source_context,
        }
    }

    /// Counts rejected rows and writes them to the dead-letter output.
    fn reject(&self, source: &str, rejected: &[Rejected]) {
        if rejected.is_empty() {
            return;
        }
        let mut per_reason: HashMap<RejectReason, u64> = HashMap::new();
        for r in rejected {
            *per_reason.entry(r.reason).or_default() += 1;
        }
        for (reason, n) in per_reason {
            self.metrics
                .source_rejected
                .with_label_values(&[source, reason.as_str()])
                .inc_by(n);
        }
        if let Some(writer) = &self.dead_letter {
            let mut writer = lock(writer);
            match writer.write(rejected).and_then(|()| writer.flush()) {
                Ok(()) => self.metrics.dead_letter_rows.inc_by(rejected.len() as u64),
                Err(error) => {
                    tracing::error!(%error, rows = rejected.len(), "Dead-letter write failed.")
                }
            }
        }
    }

    /// Records a partition's watermark and updates its source's gauge (lowest over partitions).
    fn set_watermark(&self, source_index: usize, source: &str, partition: &str, us: i64) {
        let mut marks = lock(&self.watermarks);
        marks.insert((source_index, partition.to_string()), us);
        if let Some(lowest) = marks
            .iter()
            .filter(|((s, _), _)| *s == source_index)
            .map(|(_, w)| *w)
            .min()
        {
            self.metrics
                .source_watermark
                .with_label_values(&[source])
                .set(lowest.div_euclid(1_000_000));
        }
    }

    /// Counts a source or partition that stopped with an error and keeps it for the exit
    /// status and `/healthz`.
    fn record_failure(&self, source: &str, what: String) {
        self.metrics
            .source_errors
            .with_label_values(&[source])
            .inc();
        lock(&self.failures).push(what);
    }

    fn finish_partition(&self, source_index: usize, partition: &str) {
        lock(&self.watermarks).remove(&(source_index, partition.to_string()));
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the views and writers
/// stay consistent per call, so the data is still good).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One partition being read by this worker.
struct OpenPartition {
    source_index: usize,
    source: String,
    id: String,
    reader: Box<dyn PartitionReader>,
    watermark: Watermark,
}

/// The body of one timely worker.
pub fn run_worker(worker: &mut Worker, shared: &Shared) {
    let index = worker.index();
    let peers = worker.peers();
    let config = Arc::clone(&shared.config);
    let spec = AggregateSpec::from_config(&config);
    let lateness_us = duration_us(config.config().pipeline.allowed_lateness);
    let granularity_us = duration_us(config.config().pipeline.time_granularity).max(1);

    let view = Arc::clone(&shared.views[index]);
    let (mut groups_in, mut distinct_in, probe) = build_dataflow(worker, view);

    let mut pending = plan_partitions(shared, index, peers);
    let mut open: Vec<OpenPartition> = Vec::new();
    let mut preagg = PreAggregator::new(spec);
    let mut partials = Partials::default();
    let mut time = i64::MIN;
    let mut expired_at = i64::MIN;

    loop {
        refill(shared, &mut pending, &mut open, lateness_us);
        if open.is_empty() || shared.shutdown.load(Ordering::Relaxed) {
            break;
        }
        let mut progressed = false;
        let mut i = 0;
        while i < open.len() {
            let part = &mut open[i];
            match part.reader.poll() {
                Ok(Poll::Batch(batch)) => {
                    ingest(shared, part, batch, &mut preagg, &mut partials);
                    for (key, stats) in partials.groups.drain(..) {
                        groups_in.update(key, stats);
                    }
                    for (key, diff) in partials.distinct.drain(..) {
                        distinct_in.update(key, diff);
                    }
                    progressed = true;
                    i += 1;
                }
                Ok(Poll::Idle) => i += 1,
                Ok(Poll::Finished) => {
                    shared
                        .metrics
                        .source_partitions_finished
                        .with_label_values(&[part.source.as_str()])
                        .inc();
                    shared.finish_partition(part.source_index, &part.id);
                    tracing::debug!(source = %part.source, partition = %part.id, "Partition finished.");
                    open.swap_remove(i);
                }
                Err(error) => {
                    tracing::error!(source = %part.source, partition = %part.id, %error, "Partition failed; the other partitions go on.");
                    shared.record_failure(&part.source, format!("{}: {error}", part.id));
                    shared.finish_partition(part.source_index, &part.id);
                    open.swap_remove(i);
                }
            }
        }

        // Advance to the lowest watermark of what is still open (a partition without one, or
        // one not opened yet, holds the time at its minimum); with nothing left the inputs are
        // closed below.
        let unopened = pending.iter().any(|p| !p.parts.is_empty());
        let next = open
            .iter()
            .map(|p| p.watermark.watermark().unwrap_or(i64::MIN))
            .chain(unopened.then_some(i64::MIN))
            .min()
            .map(|w| coarsen(w, granularity_us))
            .unwrap_or(time);
        if next > time {
            time = next;
            groups_in.advance_to(time);
            distinct_in.advance_to(time);
        }
        groups_in.flush();
        distinct_in.flush();
        // Keep at most the current time in flight: bounded memory, and the frontier follows
        // the watermark closely.
        worker.step_while(|| probe.less_than(&time));
        publish_frontier(shared, index, &probe);
        expire_buckets(shared, index, &probe, &mut expired_at);
        if !progressed {
            worker.step_or_park(Some(Duration::from_millis(5)));
        }
    }

    drop(groups_in);
    drop(distinct_in);
    while !probe.done() {
        worker.step();
    }
    publish_frontier(shared, index, &probe);
}

/// The inputs of the aggregate dataflow and the probe on its outputs.
pub type Inputs = (
    InputSession<i64, GroupKey, Stats>,
    InputSession<i64, DistinctKey, isize>,
    ProbeHandle<i64>,
);

/// Builds the aggregate dataflow on `worker`; its changelogs maintain `view`.
pub fn build_dataflow(worker: &mut Worker, view: Arc<Mutex<AggregateView>>) -> Inputs {
    worker.dataflow::<i64, _, _>(|scope| {
        let (groups_in, groups) = scope.new_collection::<GroupKey, Stats>();
        let (distinct_in, values) = scope.new_collection::<DistinctKey, isize>();
        let probe = ProbeHandle::new();
        let group_view = Arc::clone(&view);
        aggregates(groups)
            .inspect_batch(move |_time, changes| lock(&group_view).apply_changes(changes))
            .probe_with(&probe);
        distinct_counts(values)
            .inspect_batch(move |_time, changes| lock(&view).apply_distinct(changes))
            .probe_with(&probe);
        (groups_in, distinct_in, probe)
    })
}

/// The partitions of one source that fall to this worker, not yet opened.
struct Pending {
    source_index: usize,
    source: String,
    parts: VecDeque<Partition>,
}

/// Lists the partitions of every source and keeps this worker's share (round-robin over the
/// global, deterministic partition order).
fn plan_partitions(shared: &Shared, index: usize, peers: usize) -> Vec<Pending> {
    let config = shared.config.config();
    let mut pending = Vec::new();
    let mut global = 0usize;
    for (source_index, source) in config.sources.iter().enumerate() {
        let parts = match crate::sources::partitions(source, &shared.source_context) {
            Ok(parts) => parts,
            Err(error) => {
                if index == 0 {
                    tracing::error!(source = source.name(), %error, "Source cannot be read.");
                    shared.record_failure(source.name(), error.to_string());
                }
                continue;
            }
        };
        let mut mine = VecDeque::new();
        for part in parts {
            if global % peers == index {
                mine.push_back(part);
            }
            global += 1;
        }
        pending.push(Pending {
            source_index,
            source: source.name().to_string(),
            parts: mine,
        });
    }
    pending
}

/// Keeps one partition of each source open: a source's partitions are read one after another,
/// so memory holds one decoded batch per source, not one per partition.
fn refill(
    shared: &Shared,
    pending: &mut [Pending],
    open: &mut Vec<OpenPartition>,
    lateness_us: i64,
) {
    for source in pending.iter_mut() {
        if open.iter().any(|o| o.source_index == source.source_index) {
            continue;
        }
        while let Some(part) = source.parts.pop_front() {
            match (part.open)(None) {
                Ok(reader) => {
                    open.push(OpenPartition {
                        source_index: source.source_index,
                        source: source.source.clone(),
                        id: part.id,
                        reader,
                        watermark: Watermark::from_micros(lateness_us),
                    });
                    break;
                }
                Err(error) => {
                    tracing::error!(source = %source.source, partition = %part.id, %error, "Partition cannot be opened.");
                    shared.record_failure(&source.source, format!("{}: {error}", part.id));
                }
            }
        }
    }
}

/// Handles one source batch: rejections, lateness, pre-aggregation into `partials`.
fn ingest(
    shared: &Shared,
    part: &mut OpenPartition,
    source_batch: SourceBatch,
    preagg: &mut PreAggregator,
    partials: &mut Partials,
) {
    let SourceBatch {
        batch,
        mut rejected,
        bytes,
        position: _,
    } = source_batch;
    let metrics = &shared.metrics;
    let source = part.source.as_str();
    metrics.source_batches.with_label_values(&[source]).inc();
    metrics
        .source_bytes
        .with_label_values(&[source])
        .inc_by(bytes);

    let times = batch
        .column(0)
        .as_primitive::<TimestampMicrosecondType>()
        .values();
    let split = part.watermark.split(times);
    let watermark = part.watermark.watermark().unwrap_or(i64::MIN);
    rejected.extend(
        split
            .too_late
            .iter()
            .map(|&row| too_late(part, &batch, row, watermark)),
    );
    metrics
        .source_late
        .with_label_values(&[source])
        .inc_by(split.late_accepted as u64);
    if let Some(w) = part.watermark.watermark() {
        shared.set_watermark(part.source_index, source, &part.id, w);
    }
    let keep = (!split.keeps_all()).then_some(&split.keep);
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
                record: crate::export::output::row_as_json(&batch, row),
            }));
        }
    }
    shared.reject(source, &rejected);
}

fn too_late(part: &OpenPartition, batch: &RecordBatch, row: usize, watermark: i64) -> Rejected {
    let record = crate::export::output::row_as_json(batch, row);
    Rejected {
        source: part.source.clone(),
        partition: part.id.clone(),
        row: None,
        reason: RejectReason::TooLate,
        detail: format!(
            "event time is older than the partition watermark {}",
            crate::export::output::format_time_us(watermark)
        ),
        record,
    }
}

/// Worker 0 publishes the frontier (every worker's probe sees the same, global one).
fn publish_frontier(shared: &Shared, index: usize, probe: &ProbeHandle<i64>) {
    if index != 0 {
        return;
    }
    if let Some(t) = probe.with_frontier(|f| f.first().copied()) {
        if t > i64::MIN {
            shared.metrics.frontier.set(t.div_euclid(1_000_000));
        }
    }
}

/// Drops buckets past their retention horizon (measured from the aggregates' frontier) from
/// this worker's view, at most once per hour of event time (the finest bucket).
fn expire_buckets(shared: &Shared, index: usize, probe: &ProbeHandle<i64>, expired_at: &mut i64) {
    let retention = &shared.config.config().aggregates.temporal.retention;
    if retention.is_empty() {
        return;
    }
    let Some(frontier) = probe.with_frontier(|f| f.first().copied()) else {
        return;
    };
    if frontier == i64::MIN || frontier < expired_at.saturating_add(HOUR_US) {
        return;
    }
    *expired_at = frontier;
    let mut view = lock(&shared.views[index]);
    for (width, keep) in retention {
        let horizon = frontier.saturating_sub(duration_us(*keep));
        let dropped = view.expire_buckets(*width, horizon);
        if dropped > 0 {
            shared
                .metrics
                .expired_buckets
                .with_label_values(&[width.as_str()])
                .inc_by(dropped as u64);
        }
    }
}

fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Rounds a time down to a multiple of the granularity (towards minus infinity).
fn coarsen(t: i64, granularity_us: i64) -> i64 {
    if t == i64::MIN {
        return t;
    }
    t - t.rem_euclid(granularity_us)
}

#[cfg(test)]
mod tests {
    use super::coarsen;

    #[test]
    fn coarsen_rounds_towards_minus_infinity() {
        assert_eq!(coarsen(1_500_000, 1_000_000), 1_000_000);
        assert_eq!(coarsen(-1_500_000, 1_000_000), -2_000_000);
        assert_eq!(coarsen(i64::MIN, 1_000_000), i64::MIN);
    }
}
