//! The timely workers and the state they share with the exporters.
//!
//! Each worker reads its share of the source partitions, judges lateness per lane
//! ([`lanes`]), pre-aggregates every batch ([`ingest`]) and feeds the partials into the
//! differential dataflow ([`dataflow`]), whose changelog maintains this worker's
//! [`AggregateView`] and any [`ChangeSink`]. The worker loop is in [`worker`].
//!
//! **Time** ([`clock`]). Dataflow time is an *epoch* of the wall clock
//! (`pipeline.update_interval`), shared by every worker of the process: a batch enters at the
//! current epoch, and when the probe passes an epoch everything read before it is in the
//! aggregates. Event time is tracked beside it: each worker records, when it moves to a new
//! epoch, the lowest watermark of its unfinished partitions' lanes; once that epoch is complete
//! everywhere, aggregates over events before the lowest such watermark are final (the frontier
//! gauge, and the clock a service's retention runs on — [`retention`]).
//!
//! **Checkpoints** are cuts at fixed epochs (`checkpoint.interval`): a worker advances to the
//! cut, waits until its probe reaches it (its view then holds exactly the input before the
//! cut, from every worker), and hands its view and its partitions' positions to the
//! [`Checkpointer`]. A final checkpoint is written when the workers stop.
//!
//! **Acknowledgements** ([`ledger`]): a position is acknowledged upstream once the aggregates
//! reflect every row before it, a change sink has delivered the changes, and — with
//! checkpoints — a durable checkpoint holds it.

mod checkpointing;
mod clock;
mod dataflow;
mod ingest;
mod lanes;
mod ledger;
mod partition;
mod plan;
mod retention;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oceanflow_config::{SourceConfig, ValidConfig};
use oceanflow_connectors::dead_letter::DeadLetterWriter;
use oceanflow_connectors::{Partition, RejectReason, Rejected, SourceContext, SourceError};
use oceanflow_operators::view::AggregateView;

use crate::checkpoint::{CheckpointStore, Layout, PartitionState};
use crate::metrics::PipelineMetrics;
use crate::sync::lock;
pub(crate) use checkpointing::Checkpointer;
use checkpointing::Part;
use clock::UpdateClock;
pub use dataflow::{build_dataflow, ChangeSink, Inputs};
pub(crate) use lanes::WHOLE_PARTITION;
use plan::Pending;
pub use worker::run_worker;

/// The dataflow's timestamp: an epoch of the process's update clock.
pub type Epoch = u64;

/// Lists a configured source's partitions (the connectors' dispatch; tests pass their own).
pub type PartitionLister =
    dyn Fn(&SourceConfig, &SourceContext) -> Result<Vec<Partition>, SourceError>;

/// How a run ends and what its results feed besides the views.
pub struct RunShape {
    /// A bounded run (`--once`): retention is applied once, against the final frontier.
    pub bounded: bool,
    /// Dead-letter output, when configured.
    pub dead_letter: Option<DeadLetterWriter>,
    /// A consumer of every aggregate change (the Kafka changelog), when configured.
    pub sink: Option<Arc<dyn ChangeSink>>,
}

/// State shared by the workers and the exporters.
pub struct Shared {
    /// The configuration the run was started with.
    pub config: Arc<ValidConfig>,
    /// One view per worker; aggregate keys are disjoint across views (the dataflow exchanges
    /// by key), distinct values are spread over them by value.
    pub views: Vec<Arc<Mutex<AggregateView>>>,
    /// Health metrics.
    pub metrics: PipelineMetrics,
    /// Dead-letter output, when configured.
    pub dead_letter: Option<Mutex<DeadLetterWriter>>,
    /// Set to stop reading sources; the workers then drain, checkpoint and exit.
    pub shutdown: Arc<AtomicBool>,
    /// Partition failures (source name, partition id, error text), for the exit status.
    pub failures: Mutex<Vec<String>>,
    /// What connectors get besides their config.
    pub source_context: SourceContext,
    /// The consumer of aggregate changes beyond the views, when configured.
    pub sink: Option<Arc<dyn ChangeSink>>,
    /// A bounded run: see [`RunShape::bounded`].
    bounded: bool,
    watermarks: Mutex<HashMap<(usize, String), i64>>,
    clock: UpdateClock,
    /// Each worker's partitions, taken by the worker when it starts.
    dealt: Mutex<Vec<Vec<Pending>>>,
    /// Each worker's share of the restored aggregates and distinct values, taken (and so
    /// freed) when the worker inserts it.
    restored: Mutex<Vec<Part>>,
    checkpointer: Option<Checkpointer>,
    /// Per worker: event time before which its inputs are final (`i64::MAX`: no constraint).
    finality: Vec<AtomicI64>,
    /// Newest event time of any accepted row (a bounded run's final frontier starts here).
    max_event_us: AtomicI64,
    /// Workers whose partitions are all finished.
    idle_workers: AtomicUsize,
    /// States of partitions the restored checkpoint records as finished without a position
    /// (not opened again; worker 0 carries them into the next checkpoints).
    carried: Mutex<Vec<PartitionState>>,
}

impl Shared {
    /// Creates the shared state, restoring from the newest checkpoint when checkpoints are
    /// configured, and deals the partitions of the configured sources to the workers.
    pub fn new(
        config: Arc<ValidConfig>,
        source_context: SourceContext,
        metrics: PipelineMetrics,
        shape: RunShape,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self, crate::PipelineError> {
        Shared::with_lister(
            config,
            source_context,
            metrics,
            shape,
            shutdown,
            &crate::sources::partitions,
        )
    }

    /// As [`Shared::new`], with the partitions of each source listed by `lister`.
    pub fn with_lister(
        config: Arc<ValidConfig>,
        source_context: SourceContext,
        metrics: PipelineMetrics,
        shape: RunShape,
        shutdown: Arc<AtomicBool>,
        lister: &PartitionLister,
    ) -> Result<Self, crate::PipelineError> {
        let workers = source_context.workers;
        let pipeline = &config.config().pipeline;
        let clock = UpdateClock::start(pipeline.update_interval);
        let (checkpointer, restored) = match &pipeline.checkpoint {
            None => (None, None),
            Some(c) => {
                let store = CheckpointStore::open(&c.dir, c.keep)?;
                let layout = Layout::of(&config);
                let restored = store.load_latest(&layout)?;
                let checkpointer = Checkpointer::start(
                    store.clone(),
                    layout,
                    workers,
                    c.interval,
                    metrics.clone(),
                )?;
                let restored = restored.map(|(checkpoint, path)| {
                    tracing::info!(
                        path = %path.display(),
                        sequence = checkpoint.sequence,
                        keys = checkpoint.groups.len(),
                        partitions = checkpoint.partitions.len(),
                        "Restoring from checkpoint."
                    );
                    metrics.restores.inc();
                    metrics
                        .restored_keys
                        .set((checkpoint.groups.len() + checkpoint.distinct.len()) as i64);
                    checkpoint
                });
                (Some(checkpointer), restored)
            }
        };
        let mut shared = Shared {
            views: (0..workers)
                .map(|_| Arc::new(Mutex::new(AggregateView::new())))
                .collect(),
            config,
            metrics,
            dead_letter: shape.dead_letter.map(Mutex::new),
            shutdown,
            failures: Mutex::new(Vec::new()),
            watermarks: Mutex::new(HashMap::new()),
            source_context,
            sink: shape.sink,
            bounded: shape.bounded,
            clock,
            dealt: Mutex::new(Vec::new()),
            restored: Mutex::new(Vec::new()),
            checkpointer,
            finality: (0..workers).map(|_| AtomicI64::new(i64::MIN)).collect(),
            max_event_us: AtomicI64::new(i64::MIN),
            idle_workers: AtomicUsize::new(0),
            carried: Mutex::new(Vec::new()),
        };
        let mut shares: Vec<Part> = (0..workers).map(|_| Part::default()).collect();
        let mut positions: HashMap<(String, String), PartitionState> = HashMap::new();
        if let Some(checkpoint) = restored {
            for (i, group) in checkpoint.groups.into_iter().enumerate() {
                shares[i % workers].groups.push(group);
            }
            for (i, value) in checkpoint.distinct.into_iter().enumerate() {
                shares[i % workers].distinct.push(value);
            }
            positions = checkpoint
                .partitions
                .into_iter()
                .map(|p| ((p.source.clone(), p.id.clone()), p))
                .collect();
        }
        let dealt = plan::deal(&shared, workers, &positions, lister);
        shared.dealt = Mutex::new(dealt);
        shared.carried = Mutex::new(
            positions
                .into_values()
                .filter(|p| p.finished && p.position.is_none())
                .collect(),
        );
        shared.restored = Mutex::new(shares);
        Ok(shared)
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

    /// The checkpointer, when checkpoints are on (health and the final outcome).
    pub(crate) fn checkpointer(&self) -> Option<&Checkpointer> {
        self.checkpointer.as_ref()
    }

    /// Event time before which every aggregate is final: the lowest over the workers.
    fn event_frontier(&self) -> i64 {
        self.finality
            .iter()
            .map(|f| f.load(Ordering::Acquire))
            .min()
            .unwrap_or(i64::MIN)
    }
}
