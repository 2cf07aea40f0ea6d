//! The body of one timely worker: read its partitions, feed the dataflow, move through epochs
//! and checkpoint cuts, acknowledge what is covered, publish the event-time frontier, and
//! apply retention.

mod expiry;
mod handoff;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::input::InputSession;
use oceanflow_connectors::Poll;
use oceanflow_operators::preagg::{Partials, PreAggregator};
use oceanflow_operators::spec::AggregateSpec;
use oceanflow_operators::{DistinctKey, GroupKey, Stats};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use super::checkpointing::{Part, FINAL_CUT};
use super::dataflow::build_dataflow;
use super::ingest::ingest;
use super::lanes::LaneWatermarks;
use super::ledger::AckLedger;
use super::partition::{OpenPartition, Reading};
use super::plan::{self, Assigned, Pending};
use super::retention::{duration_us, Retention};
use super::{Epoch, Shared};
use crate::checkpoint::PartitionState;
use crate::sync::lock;

/// How long a worker waits for the change sink to deliver at shutdown.
const SINK_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one worker until its inputs are exhausted (every worker's, so `--once` ends) or a
/// shutdown is requested; then drains, writes the final checkpoint and acknowledges.
pub fn run_worker(worker: &mut Worker, shared: &Shared) {
    let mut state = WorkerState::new(worker, shared);
    state.insert_restored();
    state.advance_to(worker, shared.clock.now());
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
            if shared.bounded {
                state.final_retention(worker);
            }
            break;
        }
        let progressed = state.poll_partitions();
        state.tick(worker);
        if progressed {
            worker.step();
        } else {
            worker.step_or_park(Some(shared.clock.interval().min(Duration::from_millis(5))));
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
    ledger: AckLedger,
    retention: Retention,
    /// Epoch of the last retractions; the next pass waits until they are applied.
    retracted_at: Epoch,
    /// Counted in `Shared::idle_workers`.
    idle: bool,
    /// Final states of partitions that finished or failed (here or before a restore); every
    /// checkpoint repeats them, so a restart neither re-reads nor forgets them.
    done: Vec<PartitionState>,
}

impl<'a> WorkerState<'a> {
    fn new(worker: &mut Worker, shared: &'a Shared) -> WorkerState<'a> {
        let index = worker.index();
        let view = Arc::clone(&shared.views[index]);
        let (groups_in, distinct_in, probe) = build_dataflow(worker, view, shared.sink.clone());
        let pending = std::mem::take(
            lock(&shared.dealt)
                .get_mut(index)
                .unwrap_or(&mut Vec::new()),
        );
        let pipeline = &shared.config.config().pipeline;
        WorkerState {
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
            lateness_us: duration_us(pipeline.allowed_lateness),
            idle_timeout: pipeline.idle_timeout,
            marks: VecDeque::new(),
            ledger: AckLedger::new(shared.checkpointer.is_some()),
            retention: Retention::from_config(&shared.config),
            retracted_at: 0,
            idle: false,
            done: if index == 0 {
                std::mem::take(&mut *lock(&shared.carried))
            } else {
                Vec::new()
            },
        }
    }

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
        let floor = self.age_floor();
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
                        let seen = restored.map(|s| s.lanes).unwrap_or_default();
                        let mut lanes =
                            LaneWatermarks::resumed(self.lateness_us, seen, Instant::now());
                        lanes.raise_floor(floor);
                        self.open.push(OpenPartition {
                            source_index,
                            source: name,
                            id: partition.id,
                            reader,
                            lanes,
                            reading: Reading::Open,
                            position: resume.clone(),
                            acknowledged: resume,
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
                    ingest(
                        self.shared,
                        part,
                        batch,
                        &mut self.preagg,
                        &mut self.partials,
                        Instant::now(),
                    );
                    // A bounded run's final frontier starts from the newest accepted time,
                    // which the partition's lanes already hold.
                    if let Some(newest) = part.lanes.newest() {
                        self.shared.max_event_us.fetch_max(newest, Ordering::AcqRel);
                    }
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
    /// what is covered, publishes the event-time frontier and, in a service, applies retention.
    fn tick(&mut self, worker: &mut Worker) {
        self.advance_to(worker, self.shared.clock.now());
        self.release_acknowledgements();
        // A finished reader stays until its last position is acknowledged.
        self.open.retain(|p| !p.settled());
        self.publish_finality();
        self.expire_while_reading();
        if let Some(sink) = &self.shared.sink {
            sink.send(self.shared.event_frontier());
        }
    }

    /// Advances epoch by epoch (stopping at every checkpoint cut the checkpointer schedules)
    /// until the input is at `now`.
    fn advance_to(&mut self, worker: &mut Worker, now: Epoch) {
        while self.epoch < now {
            let (target, cut) = match &self.shared.checkpointer {
                Some(c) => c.next_target(self.index, self.epoch, now),
                None => (now, false),
            };
            self.advance(worker, target, cut);
        }
    }

    /// Moves at least one epoch on, so everything fed so far gets applied.
    fn step_epoch(&mut self, worker: &mut Worker) {
        let now = self.shared.clock.now().max(self.epoch + 1);
        self.advance_to(worker, now);
    }

    /// Advances the inputs to `target` and steps until everything before it is applied; at a
    /// cut, hands this worker's part of the checkpoint over.
    fn advance(&mut self, worker: &mut Worker, target: Epoch, cut: bool) {
        if target <= self.epoch {
            return;
        }
        self.ledger.record(target, self.positions(), cut);
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
        if cut {
            self.contribute(target);
        }
    }

    /// The lowest watermark of this worker's inputs: its readable partitions' lanes (not idle
    /// past the timeout), `i64::MIN` while a partition has delivered nothing or is not opened
    /// yet, and `i64::MAX` with nothing left to read.
    fn low_watermark(&self) -> i64 {
        let unopened = self.pending.iter().any(|p| !p.parts.is_empty());
        let now = Instant::now();
        self.open
            .iter()
            .filter_map(|p| p.low_watermark(now, self.idle_timeout))
            .chain(unopened.then_some(i64::MIN))
            .min()
            .unwrap_or(i64::MAX)
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

    /// Closes the inputs, lets the dataflow drain, has the sink deliver, writes the final
    /// checkpoint and acknowledges every position the aggregates (and checkpoint) hold.
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
        if let Some(sink) = &self.shared.sink {
            sink.flush(self.shared.event_frontier(), SINK_FLUSH_TIMEOUT);
        }
        self.ledger.record(FINAL_CUT, self.positions(), true);
        if let Some(checkpointer) = &self.shared.checkpointer {
            self.contribute(FINAL_CUT);
            if !checkpointer.wait_durable(FINAL_CUT, Duration::from_secs(120)) {
                tracing::warn!("The final checkpoint is not durable; positions since the last one are not acknowledged.");
            }
        }
        self.release_acknowledgements();
    }
}
