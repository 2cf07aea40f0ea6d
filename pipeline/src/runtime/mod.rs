//! The timely workers: each reads its share of the source partitions, splits off rows that are
//! too late, pre-aggregates every batch and feeds the partials into the differential dataflow,
//! whose changelog maintains this worker's [`AggregateView`].
//!
//! **Time.** Dataflow time is an *epoch* of the wall clock (`pipeline.update_interval`),
//! shared by every worker of the process: a batch enters at the current epoch, and when the
//! probe passes an epoch everything read before it is in the aggregates. Event time is tracked
//! beside it: each worker records, when it moves to a new epoch, the lowest watermark of its
//! unfinished partitions; once that epoch is complete everywhere, aggregates over events
//! before the lowest such watermark are final (the frontier gauge, and the clock retention
//! runs on).
//!
//! **Checkpoints** are cuts at fixed epochs (`checkpoint.interval`): a worker advances to the
//! cut, waits until its probe reaches it (its view then holds exactly the input before the
//! cut, from every worker, and no worker can add later input to it until this worker moves
//! on), and hands its view and its partitions' positions to the [`Checkpointer`]. A final
//! checkpoint is written when the workers stop.
//!
//! **Acknowledgements** (`PartitionReader::commit`): a position is acknowledged once the
//! aggregates reflect every row before it — and, with checkpoints, once a durable checkpoint
//! holds it.

mod checkpointing;
mod plan;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::RecordBatch;
use differential_dataflow::input::{Input, InputSession};
use oceanflow_config::ValidConfig;
use oceanflow_connectors::dead_letter::DeadLetterWriter;
use oceanflow_connectors::{
    PartitionReader, Poll, Position, RejectReason, Rejected, SourceBatch, SourceContext,
};
use oceanflow_operators::calendar::HOUR_US;
use oceanflow_operators::dataflow::{aggregates, distinct_values};
use oceanflow_operators::late::Watermark;
use oceanflow_operators::preagg::{Partials, PreAggregator};
use oceanflow_operators::spec::AggregateSpec;
use oceanflow_operators::view::AggregateView;
use oceanflow_operators::{DistinctKey, GroupKey, Stats};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use crate::checkpoint::{CheckpointStore, Layout, PartitionState};
use crate::export::changelog::Changelog;
use crate::metrics::PipelineMetrics;
pub(crate) use checkpointing::Checkpointer;
use checkpointing::{Part, FINAL_CUT};
use plan::{Assigned, Pending};

/// The dataflow's timestamp: an epoch of the process's update clock.
pub type Epoch = u64;

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
    /// The Kafka changelog of aggregate changes, when `[export.changelog]` is set.
    pub changelog: Option<Arc<Changelog>>,
    watermarks: Mutex<HashMap<(usize, String), i64>>,
    /// Start of the update clock; epoch `n` begins `n` update intervals after it.
    clock_start: Instant,
    update_interval: Duration,
    /// Each worker's partitions, taken by the worker when it starts.
    dealt: Mutex<Vec<Vec<Pending>>>,
    /// Each worker's share of the restored aggregates and distinct values, taken (and so
    /// freed) when the worker inserts it.
    restored: Mutex<Vec<Part>>,
    checkpointer: Option<Checkpointer>,
    /// Per worker: event time before which its inputs are final (`i64::MAX`: no constraint).
    finality: Vec<AtomicI64>,
    /// Workers whose partitions are all finished.
    idle_workers: AtomicUsize,
    /// States of partitions the restored checkpoint records as finished without a position
    /// (not opened again; worker 0 carries them into the next checkpoints).
    carried: Mutex<Vec<PartitionState>>,
}

impl Shared {
    /// Creates the shared state, restoring from the newest checkpoint when checkpoints are
    /// configured, and deals the partitions to the workers.
    pub fn new(
        config: Arc<ValidConfig>,
        source_context: SourceContext,
        metrics: PipelineMetrics,
        dead_letter: Option<DeadLetterWriter>,
        changelog: Option<Changelog>,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self, crate::PipelineError> {
        let workers = source_context.workers;
        let pipeline = &config.config().pipeline;
        let update_interval = pipeline.update_interval;
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
            dead_letter: dead_letter.map(Mutex::new),
            shutdown,
            failures: Mutex::new(Vec::new()),
            watermarks: Mutex::new(HashMap::new()),
            source_context,
            changelog: changelog.map(Arc::new),
            clock_start: Instant::now(),
            update_interval,
            dealt: Mutex::new(Vec::new()),
            restored: Mutex::new(Vec::new()),
            checkpointer,
            finality: (0..workers).map(|_| AtomicI64::new(i64::MIN)).collect(),
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
        let dealt = plan::deal(&shared, workers, &positions);
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

    /// The current epoch of the update clock (epoch 0 is the restored state's).
    fn epoch_now(&self) -> Epoch {
        let ticks = self.clock_start.elapsed().as_nanos() / self.update_interval.as_nanos().max(1);
        u64::try_from(ticks)
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
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

/// How a partition's reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Being read.
    Open,
    /// Read to the end; kept until its last position is acknowledged and checkpointed.
    Finished,
    /// Stopped with an error; kept so checkpoints still hold where it got to.
    Failed,
}

/// One partition being read by this worker.
struct OpenPartition {
    source_index: usize,
    source: String,
    id: String,
    reader: Box<dyn PartitionReader>,
    watermark: Watermark,
    reading: Reading,
    /// Position after the last batch read.
    position: Option<Position>,
    /// The last position acknowledged to the reader.
    acknowledged: Option<Position>,
    /// When it last delivered a batch (for the idle timeout).
    last_data: Instant,
    /// Resumed from a checkpoint, and no checkpoint written since: its rows may have been
    /// counted before the crash (the replayed-rows metric).
    replaying: bool,
}

impl OpenPartition {
    fn state(&self) -> PartitionState {
        PartitionState {
            source: self.source.clone(),
            id: self.id.clone(),
            position: self.position.as_ref().map(|p| p.0.to_string()),
            max_event_us: self.watermark.max_seen(),
            finished: self.reading == Reading::Finished,
        }
    }
}

/// The body of one timely worker.
pub fn run_worker(worker: &mut Worker, shared: &Shared) {
    let index = worker.index();
    let view = Arc::clone(&shared.views[index]);
    let (groups_in, distinct_in, probe) = build_dataflow(worker, view, shared.changelog.clone());
    let pending = std::mem::take(
        lock(&shared.dealt)
            .get_mut(index)
            .unwrap_or(&mut Vec::new()),
    );
    let config = shared.config.config();
    let mut state = WorkerState {
        shared,
        index,
        peers: worker.peers(),
        groups_in,
        distinct_in,
        probe,
        pending,
        open: Vec::new(),
        preagg: PreAggregator::new(AggregateSpec::from_config(&shared.config)),
        partials: Partials::default(),
        epoch: 0,
        lateness_us: duration_us(config.pipeline.allowed_lateness),
        idle_timeout: config.pipeline.idle_timeout,
        marks: VecDeque::new(),
        acks: VecDeque::new(),
        floor: i64::MIN,
        expired_at: i64::MIN,
        retracted_at: 0,
        idle: false,
        done: if index == 0 {
            std::mem::take(&mut *lock(&shared.carried))
        } else {
            Vec::new()
        },
    };
    state.insert_restored();
    state.advance(worker, shared.epoch_now());
    loop {
        if shared.shutdown.load(Ordering::Relaxed) {
            break;
        }
        state.refill();
        if !state.idle && !state.has_work() {
            state.idle = true;
            shared.idle_workers.fetch_add(1, Ordering::AcqRel);
        }
        if state.idle && shared.idle_workers.load(Ordering::Acquire) == state.peers {
            break;
        }
        let progressed = state.poll_partitions();
        state.tick(worker);
        if progressed {
            worker.step();
        } else {
            worker.step_or_park(Some(shared.update_interval.min(Duration::from_millis(5))));
        }
    }
    state.finish(worker);
}

/// One worker's reading and dataflow state.
struct WorkerState<'a> {
    shared: &'a Shared,
    index: usize,
    peers: usize,
    groups_in: InputSession<Epoch, GroupKey, Stats>,
    distinct_in: InputSession<Epoch, DistinctKey, isize>,
    probe: ProbeHandle<Epoch>,
    pending: Vec<Pending>,
    open: Vec<OpenPartition>,
    preagg: PreAggregator,
    partials: Partials,
    /// The input epoch.
    epoch: Epoch,
    lateness_us: i64,
    idle_timeout: Duration,
    /// `(epoch, low watermark when moving to it)`, until the probe passes the epoch.
    marks: VecDeque<(Epoch, i64)>,
    /// Positions to acknowledge once the checkpoint at the cut is durable.
    acks: VecDeque<(Epoch, Vec<(String, Position)>)>,
    /// Rows older than this are too late: the strictest retention horizon applied so far.
    floor: i64,
    /// Event-time frontier at the last retention pass.
    expired_at: i64,
    /// Epoch of the last retractions; the next pass waits until they are applied.
    retracted_at: Epoch,
    /// Counted in `Shared::idle_workers`.
    idle: bool,
    /// Final states of partitions that finished or failed (here or before a restore); every
    /// checkpoint repeats them, so a restart neither re-reads nor forgets them.
    done: Vec<PartitionState>,
}

impl WorkerState<'_> {
    /// Inserts this worker's share of the restored aggregates at epoch 0.
    fn insert_restored(&mut self) {
        let share = lock(&self.shared.restored)
            .get_mut(self.index)
            .map(std::mem::take);
        let Some(Part {
            groups, distinct, ..
        }) = share
        else {
            return;
        };
        for (key, stats) in groups {
            self.groups_in.update(key, stats);
        }
        for value in distinct {
            self.distinct_in.update(value, 1);
        }
    }

    fn has_work(&self) -> bool {
        self.open.iter().any(|p| p.reading == Reading::Open)
            || self.pending.iter().any(|p| !p.parts.is_empty())
    }

    /// Keeps one partition of each source open: a source's partitions are read one after
    /// another, so memory holds one decoded batch per source, not one per partition.
    fn refill(&mut self) {
        for source in self.pending.iter_mut() {
            let busy = self
                .open
                .iter()
                .any(|o| o.source_index == source.source_index && o.reading == Reading::Open);
            if busy {
                continue;
            }
            while let Some(Assigned {
                source_index,
                source: name,
                partition,
                restored,
            }) = source.parts.pop_front()
            {
                let resume = restored.as_ref().and_then(plan::position_of);
                let resumed = resume.is_some();
                match (partition.open)(resume.clone()) {
                    Ok(reader) => {
                        let max_seen = restored.as_ref().and_then(|s| s.max_event_us);
                        let mut watermark = Watermark::resumed(self.lateness_us, max_seen);
                        watermark.raise_floor(self.floor);
                        self.open.push(OpenPartition {
                            source_index,
                            source: name,
                            id: partition.id,
                            reader,
                            watermark,
                            reading: Reading::Open,
                            position: resume.clone(),
                            acknowledged: resume,
                            last_data: Instant::now(),
                            replaying: resumed,
                        });
                        break;
                    }
                    Err(error) => {
                        tracing::error!(source = %name, partition = %partition.id, %error, "Partition cannot be opened.");
                        self.shared
                            .record_failure(&name, format!("{}: {error}", partition.id));
                    }
                }
            }
        }
    }

    /// Reads one batch from every open partition; whether any arrived.
    fn poll_partitions(&mut self) -> bool {
        let mut progressed = false;
        for part in self.open.iter_mut().filter(|p| p.reading == Reading::Open) {
            match part.reader.poll() {
                Ok(Poll::Batch(batch)) => {
                    if let Some(position) = &batch.position {
                        part.position = Some(position.clone());
                    }
                    part.last_data = Instant::now();
                    ingest(
                        self.shared,
                        part,
                        batch,
                        &mut self.preagg,
                        &mut self.partials,
                    );
                    for (key, stats) in self.partials.groups.drain(..) {
                        self.groups_in.update(key, stats);
                    }
                    for (key, diff) in self.partials.distinct.drain(..) {
                        self.distinct_in.update(key, diff);
                    }
                    progressed = true;
                }
                Ok(Poll::Idle) => {}
                Ok(Poll::Finished) => {
                    let source = part.source.as_str();
                    self.shared
                        .metrics
                        .source_partitions_finished
                        .with_label_values(&[source])
                        .inc();
                    self.shared.finish_partition(part.source_index, &part.id);
                    tracing::debug!(source, partition = %part.id, "Partition finished.");
                    part.reading = Reading::Finished;
                    self.done.push(part.state());
                }
                Err(error) => {
                    tracing::error!(source = %part.source, partition = %part.id, %error, "Partition failed; the other partitions go on.");
                    self.shared
                        .record_failure(&part.source, format!("{}: {error}", part.id));
                    self.shared.finish_partition(part.source_index, &part.id);
                    part.reading = Reading::Failed;
                    self.done.push(part.state());
                }
            }
        }
        progressed
    }

    /// Moves to the clock's epoch (through any checkpoint cut on the way), then acknowledges
    /// what is covered, publishes the event-time frontier and applies retention.
    fn tick(&mut self, worker: &mut Worker) {
        let now = self.shared.epoch_now();
        while self.epoch < now {
            let (target, cut) = match &self.shared.checkpointer {
                Some(c) => c.next_target(self.index, self.epoch, now),
                None => (now, false),
            };
            self.advance(worker, target);
            if cut {
                self.contribute(target);
            }
        }
        if self.shared.checkpointer.is_none() {
            // Everything read before the current epoch is in the aggregates.
            let covered = self.positions();
            self.acknowledge(&covered);
        } else {
            self.acknowledge_durable();
        }
        // A finished reader stays until its last position is acknowledged.
        self.open
            .retain(|p| p.reading == Reading::Open || p.position != p.acknowledged);
        self.publish_finality();
        self.expire();
        if let Some(changelog) = &self.shared.changelog {
            changelog.send(self.shared.event_frontier());
        }
    }

    /// Advances the inputs to `target` and steps until everything before it is applied.
    fn advance(&mut self, worker: &mut Worker, target: Epoch) {
        if target <= self.epoch {
            return;
        }
        self.marks.push_back((target, self.low_watermark()));
        self.epoch = target;
        self.groups_in.advance_to(target);
        self.distinct_in.advance_to(target);
        self.groups_in.flush();
        self.distinct_in.flush();
        // Park rather than spin while other workers catch up: with two cores, a spinning
        // worker takes the core the one it waits for needs.
        while self.probe.less_than(&target) {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    }

    /// The lowest watermark of this worker's inputs: its readable partitions' (not idle past
    /// the timeout), `i64::MIN` while a partition has not delivered or not been opened, and
    /// `i64::MAX` with nothing left to read.
    fn low_watermark(&self) -> i64 {
        let unopened = self.pending.iter().any(|p| !p.parts.is_empty());
        let now = Instant::now();
        self.open
            .iter()
            .filter(|p| p.reading == Reading::Open)
            .filter(|p| now.duration_since(p.last_data) < self.idle_timeout)
            .map(|p| p.watermark.watermark().unwrap_or(i64::MIN))
            .chain(unopened.then_some(i64::MIN))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Hands this worker's view and partition states at `cut` to the checkpointer.
    fn contribute(&mut self, cut: Epoch) {
        let Some(checkpointer) = &self.shared.checkpointer else {
            return;
        };
        let view = lock(&self.shared.views[self.index]);
        let mut part = Part {
            groups: view.groups().map(|(k, s)| (k, s.clone())).collect(),
            distinct: view
                .distinct_values()
                .map(|(r, f, v)| (r, f, v.to_string()))
                .collect(),
            partitions: self
                .open
                .iter()
                .filter(|p| p.reading == Reading::Open)
                .map(OpenPartition::state)
                .chain(self.done.iter().cloned())
                .collect(),
        };
        drop(view);
        // Partitions not reopened yet keep the state they were restored with.
        part.partitions.extend(
            self.pending
                .iter()
                .flat_map(|p| &p.parts)
                .filter_map(|a| a.restored.clone()),
        );
        let positions = self.positions();
        self.acks.push_back((cut, positions));
        checkpointer.contribute(cut, part);
    }

    /// Acknowledges the positions of every checkpoint that is durable.
    fn acknowledge_durable(&mut self) {
        let Some(checkpointer) = &self.shared.checkpointer else {
            return;
        };
        let durable = checkpointer.durable_cut();
        let mut covered = Vec::new();
        while self.acks.front().is_some_and(|(cut, _)| *cut <= durable) {
            if let Some((_, positions)) = self.acks.pop_front() {
                covered = positions;
            }
        }
        if checkpointer.written() > 0 {
            for part in &mut self.open {
                part.replaying = false;
            }
        }
        self.acknowledge(&covered);
    }

    /// Where each partition this worker reads stands.
    fn positions(&self) -> Vec<(String, Position)> {
        self.open
            .iter()
            .filter_map(|p| Some((p.id.clone(), p.position.clone()?)))
            .collect()
    }

    /// Hands `covered` positions to their readers (each once).
    fn acknowledge(&mut self, covered: &[(String, Position)]) {
        for (id, position) in covered {
            let Some(part) = self.open.iter_mut().find(|p| &p.id == id) else {
                continue;
            };
            if part.acknowledged.as_ref() == Some(position) {
                continue;
            }
            match part.reader.commit(position) {
                Ok(()) => part.acknowledged = Some(position.clone()),
                Err(error) => {
                    tracing::warn!(source = %part.source, partition = %part.id, %error, "Acknowledging the position failed; it is retried with the next one.");
                }
            }
        }
    }

    /// Publishes the event-time frontier this worker's completed epochs guarantee; worker 0
    /// sets the gauge from every worker's.
    fn publish_finality(&mut self) {
        let mut final_before = None;
        while let Some(&(epoch, mark)) = self.marks.front() {
            if self.probe.less_than(&epoch) {
                break;
            }
            final_before = Some(mark);
            self.marks.pop_front();
        }
        if let Some(mark) = final_before {
            self.shared.finality[self.index].store(mark, Ordering::Release);
        }
        if self.index == 0 {
            let frontier = self.shared.event_frontier();
            if frontier > i64::MIN && frontier < i64::MAX {
                self.shared
                    .metrics
                    .frontier
                    .set(frontier.div_euclid(1_000_000));
            }
        }
    }

    /// Retention: takes buckets past their horizon out of the dataflow (and so out of the
    /// view), at most once per hour of event time, and never while the previous retractions
    /// are still in flight (they would be taken twice).
    fn expire(&mut self) {
        let retention = &self.shared.config.config().aggregates.temporal.retention;
        if retention.is_empty() || self.probe.less_than(&(self.retracted_at + 1)) {
            return;
        }
        let frontier = self.shared.event_frontier();
        if frontier == i64::MIN
            || frontier == i64::MAX
            || frontier < self.expired_at.saturating_add(HOUR_US)
        {
            return;
        }
        self.expired_at = frontier;
        let view = lock(&self.shared.views[self.index]);
        let mut retracted = 0;
        for (width, keep) in retention {
            let horizon = frontier.saturating_sub(duration_us(*keep));
            self.floor = self.floor.max(horizon);
            let expired = view.expired_buckets(*width, horizon);
            if expired.is_empty() {
                continue;
            }
            self.shared
                .metrics
                .expired_buckets
                .with_label_values(&[width.as_str()])
                .inc_by(expired.len() as u64);
            retracted += expired.len();
            for (key, stats) in expired {
                self.groups_in.update(key, Stats::retraction(&stats));
            }
        }
        drop(view);
        for part in &mut self.open {
            part.watermark.raise_floor(self.floor);
        }
        if retracted > 0 {
            self.retracted_at = self.epoch;
        }
    }

    /// Closes the inputs, lets the dataflow drain, writes the final checkpoint and
    /// acknowledges every position read.
    fn finish(mut self, worker: &mut Worker) {
        if !self.idle {
            self.shared.idle_workers.fetch_add(1, Ordering::AcqRel);
        }
        let WorkerState {
            groups_in,
            distinct_in,
            probe,
            ..
        } = &mut self;
        drop(std::mem::replace(groups_in, InputSession::new()));
        drop(std::mem::replace(distinct_in, InputSession::new()));
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        self.shared.finality[self.index].store(i64::MAX, Ordering::Release);
        let covered = self.positions();
        if let Some(checkpointer) = &self.shared.checkpointer {
            self.contribute(FINAL_CUT);
            if !checkpointer.wait_durable(FINAL_CUT, Duration::from_secs(120)) {
                tracing::warn!("The final checkpoint is not durable; positions since the last one are not acknowledged.");
                self.acknowledge_durable();
                return;
            }
        }
        self.acknowledge(&covered);
    }
}

impl Shared {
    /// Event time before which every aggregate is final: the lowest over the workers.
    fn event_frontier(&self) -> i64 {
        self.finality
            .iter()
            .map(|f| f.load(Ordering::Acquire))
            .min()
            .unwrap_or(i64::MIN)
    }
}

/// The inputs of the aggregate dataflow and the probe on its outputs.
pub type Inputs = (
    InputSession<Epoch, GroupKey, Stats>,
    InputSession<Epoch, DistinctKey, isize>,
    ProbeHandle<Epoch>,
);

/// Builds the aggregate dataflow on `worker`; its changelogs maintain `view` and, when given,
/// feed the Kafka `changelog`.
pub fn build_dataflow(
    worker: &mut Worker,
    view: Arc<Mutex<AggregateView>>,
    changelog: Option<Arc<Changelog>>,
) -> Inputs {
    worker.dataflow::<Epoch, _, _>(|scope| {
        let (groups_in, groups) = scope.new_collection::<GroupKey, Stats>();
        let (distinct_in, values) = scope.new_collection::<DistinctKey, isize>();
        let probe = ProbeHandle::new();
        let (group_view, group_changelog) = (Arc::clone(&view), changelog.clone());
        aggregates(groups)
            .inspect_batch(move |_time, changes| {
                lock(&group_view).apply_changes(changes);
                if let Some(changelog) = &group_changelog {
                    changelog.aggregates(changes);
                }
            })
            .probe_with(&probe);
        distinct_values(values)
            .inspect_batch(move |_time, changes| {
                lock(&view).apply_distinct(changes);
                if let Some(changelog) = &changelog {
                    changelog.distinct(changes);
                }
            })
            .probe_with(&probe);
        (groups_in, distinct_in, probe)
    })
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
        lanes: _,
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

fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Shared {
    /// The checkpointer, when checkpoints are on (health and the final outcome).
    pub(crate) fn checkpointer(&self) -> Option<&Checkpointer> {
        self.checkpointer.as_ref()
    }
}
