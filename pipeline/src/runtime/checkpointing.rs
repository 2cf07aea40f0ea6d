//! Collecting the workers' parts of a checkpoint and writing it.
//!
//! Every worker contributes its part at the same cut epoch: its view (the keys it owns, which
//! at that moment reflect exactly the input before the cut) and the positions of its
//! partitions. The last worker to contribute hands the whole checkpoint to a writer thread, so
//! encoding and `fsync` never stall the dataflow; once the file is durable, the positions it
//! holds may be acknowledged upstream (Kafka offsets).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use oceanflow_operators::{DistinctKey, GroupKey, Stats};

use super::Epoch;
use crate::checkpoint::{Checkpoint, CheckpointStore, FinalCheckpoint, Layout, PartitionState};
use crate::metrics::PipelineMetrics;
use crate::sync::lock;

/// The cut of the final checkpoint, written when the workers stop.
pub(crate) const FINAL_CUT: u64 = u64::MAX;

/// Cuts scheduled and how far each worker has advanced.
struct Schedule {
    /// Cuts not yet passed by every worker, ascending.
    cuts: Vec<Epoch>,
    epochs: Vec<Epoch>,
    last_cut_at: Instant,
}

/// One worker's share of a checkpoint.
#[derive(Default)]
pub(crate) struct Part {
    pub groups: Vec<(GroupKey, Stats)>,
    pub distinct: Vec<DistinctKey>,
    pub partitions: Vec<PartitionState>,
}

/// Collects parts per cut and has whole checkpoints written.
pub(crate) struct Checkpointer {
    workers: usize,
    interval: Duration,
    schedule: Mutex<Schedule>,
    rounds: Mutex<BTreeMap<u64, (usize, Part)>>,
    /// Complete checkpoints to the writer thread, in cut order.
    to_writer: Mutex<Sender<(Epoch, Part)>>,
    durability: Arc<Durability>,
}

/// What the writer thread reports back.
struct Durability {
    /// Outcome (written or not) of every finished round, for [`Checkpointer::wait_durable`].
    outcomes: Mutex<BTreeMap<u64, bool>>,
    outcome_changed: Condvar,
    /// The cut of the newest durable checkpoint; 0 before the first.
    durable_cut: AtomicU64,
    /// Checkpoints this process has written.
    written: AtomicU64,
    /// The last outcome, for `/healthz` and the exit status.
    last: Mutex<LastOutcome>,
}

/// The newest checkpoint round's outcome.
struct LastOutcome {
    /// When the checkpointer started.
    started: Instant,
    /// When the newest durable checkpoint was taken (its write began).
    succeeded_at: Option<Instant>,
    /// The error of the newest round, when it failed.
    error: Option<String>,
    /// How the final checkpoint went, once it was attempted.
    final_outcome: Option<FinalCheckpoint>,
}

/// How the checkpoints stand, for `/healthz`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckpointHealth {
    /// The configured interval between checkpoints.
    pub interval: Duration,
    /// Age of the newest durable checkpoint, or time since start without one.
    pub since_success: Duration,
    /// Whether any checkpoint succeeded in this process.
    pub any_succeeded: bool,
    /// The error of the newest round, when it failed.
    pub last_error: Option<String>,
    /// How the final checkpoint went, once it was attempted (none follow it).
    pub final_outcome: Option<FinalCheckpoint>,
}

/// Checkpoints older than this many intervals make the service degraded.
const STALE_INTERVALS: u32 = 3;

impl CheckpointHealth {
    /// Why the checkpoints are not healthy, or `None` when they are: the newest round failed,
    /// or the newest durable checkpoint is older than three intervals (counted from start
    /// while none has succeeded). After a durable final checkpoint no others are due.
    pub fn problem(&self) -> Option<String> {
        match &self.final_outcome {
            Some(FinalCheckpoint::Durable) => return None,
            Some(FinalCheckpoint::NotDurable { reason }) => {
                return Some(format!("the final checkpoint is not durable: {reason}"))
            }
            None => {}
        }
        if let Some(error) = &self.last_error {
            return Some(format!("the last checkpoint failed: {error}"));
        }
        let limit = self.interval * STALE_INTERVALS;
        (self.since_success > limit).then(|| {
            let (age, limit) = (self.since_success.as_secs_f64(), limit.as_secs_f64());
            if self.any_succeeded {
                format!("the last durable checkpoint is {age:.1} s old (more than three intervals, {limit:.1} s)")
            } else {
                format!("no checkpoint has been durable since the start {age:.1} s ago (more than three intervals, {limit:.1} s)")
            }
        })
    }
}

impl Durability {
    fn new() -> Durability {
        Durability {
            outcomes: Mutex::new(BTreeMap::new()),
            outcome_changed: Condvar::new(),
            durable_cut: AtomicU64::new(0),
            written: AtomicU64::new(0),
            last: Mutex::new(LastOutcome {
                started: Instant::now(),
                succeeded_at: None,
                error: None,
                final_outcome: None,
            }),
        }
    }

    /// Records the round at `cut`, taken at `taken`: written, or failed with an error.
    fn settle(&self, cut: Epoch, taken: Instant, outcome: Result<(), String>) {
        let written = outcome.is_ok();
        {
            let mut last = lock(&self.last);
            if cut == FINAL_CUT {
                last.final_outcome = Some(match &outcome {
                    Ok(()) => FinalCheckpoint::Durable,
                    Err(reason) => FinalCheckpoint::NotDurable {
                        reason: reason.clone(),
                    },
                });
            }
            match outcome {
                Ok(()) => {
                    last.succeeded_at = Some(taken);
                    last.error = None;
                }
                Err(error) => last.error = Some(error),
            }
        }
        if written {
            self.written.fetch_add(1, Ordering::AcqRel);
            self.durable_cut.fetch_max(cut, Ordering::AcqRel);
        }
        lock(&self.outcomes).insert(cut, written);
        self.outcome_changed.notify_all();
    }
}

/// The writer thread's side: encodes and stores checkpoints one after another.
struct Writer {
    store: CheckpointStore,
    layout: Layout,
    metrics: PipelineMetrics,
    next_sequence: u64,
    durability: Arc<Durability>,
}

impl Checkpointer {
    /// A checkpointer for `workers` workers that starts its writer thread.
    pub fn start(
        store: CheckpointStore,
        layout: Layout,
        workers: usize,
        interval: Duration,
        metrics: PipelineMetrics,
    ) -> Result<Self, crate::checkpoint::CheckpointError> {
        let durability = Arc::new(Durability::new());
        let mut writer = Writer {
            next_sequence: store.next_sequence()?,
            store,
            layout,
            metrics,
            durability: Arc::clone(&durability),
        };
        let (to_writer, from_workers) = channel::<(Epoch, Part)>();
        std::thread::Builder::new()
            .name("oceanflow-checkpoint".into())
            .spawn(move || {
                // Ends when the checkpointer (the sender) is dropped.
                for (cut, part) in from_workers {
                    writer.write(cut, part);
                }
            })
            .map_err(|source| crate::checkpoint::CheckpointError::Io {
                path: "checkpoint writer thread".into(),
                source,
            })?;
        Ok(Checkpointer {
            workers,
            interval,
            schedule: Mutex::new(Schedule {
                cuts: Vec::new(),
                epochs: vec![0; workers],
                last_cut_at: Instant::now(),
            }),
            rounds: Mutex::new(BTreeMap::new()),
            to_writer: Mutex::new(to_writer),
            durability,
        })
    }

    /// Where `worker`, at epoch `current`, may advance towards the clock's epoch `now`: the
    /// next cut if one is due (then `true`), else `now`. Cuts are scheduled here, under one
    /// lock, beyond every worker's epoch, so every worker visits every cut.
    pub fn next_target(&self, worker: usize, current: Epoch, now: Epoch) -> (Epoch, bool) {
        let mut schedule = lock(&self.schedule);
        let slowest = schedule.epochs.iter().copied().min().unwrap_or(0);
        schedule.cuts.retain(|cut| *cut > slowest);
        let upcoming = schedule.cuts.iter().any(|cut| *cut > current);
        if !upcoming && schedule.last_cut_at.elapsed() >= self.interval {
            let fastest = schedule.epochs.iter().copied().max().unwrap_or(0);
            let cut = fastest.max(current) + 1;
            schedule.cuts.push(cut);
            schedule.last_cut_at = Instant::now();
        }
        let next = schedule.cuts.iter().copied().find(|cut| *cut > current);
        let (target, is_cut) = match next {
            Some(cut) if cut <= now => (cut, true),
            _ => (now, false),
        };
        if let Some(epoch) = schedule.epochs.get_mut(worker) {
            *epoch = target;
        }
        (target, is_cut)
    }

    /// Waits until the round at `cut` has been written or has failed; whether it was written.
    pub fn wait_durable(&self, cut: Epoch, timeout: Duration) -> bool {
        let outcomes = lock(&self.durability.outcomes);
        let (outcomes, _) = self
            .durability
            .outcome_changed
            .wait_timeout_while(outcomes, timeout, |o| !o.contains_key(&cut))
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        outcomes.get(&cut).copied().unwrap_or(false)
    }

    /// The cut of the newest durable checkpoint (0 before the first).
    pub fn durable_cut(&self) -> u64 {
        self.durability.durable_cut.load(Ordering::Acquire)
    }

    /// Checkpoints written by this process.
    pub fn written(&self) -> u64 {
        self.durability.written.load(Ordering::Acquire)
    }

    /// How the checkpoints stand (the newest outcome and the age of the newest durable one).
    pub fn health(&self) -> CheckpointHealth {
        let last = lock(&self.durability.last);
        CheckpointHealth {
            interval: self.interval,
            since_success: last.succeeded_at.unwrap_or(last.started).elapsed(),
            any_succeeded: last.succeeded_at.is_some(),
            last_error: last.error.clone(),
            final_outcome: last.final_outcome.clone(),
        }
    }

    /// How the final checkpoint went; read after the workers stopped. Not attempted, or not
    /// finished in the time the workers waited, is not durable.
    pub fn final_outcome(&self) -> FinalCheckpoint {
        lock(&self.durability.last)
            .final_outcome
            .clone()
            .unwrap_or_else(|| FinalCheckpoint::NotDurable {
                reason: "it was not written before the workers stopped waiting for it".into(),
            })
    }

    /// Adds one worker's part of the checkpoint at `cut`; the last part sends the whole to
    /// the writer.
    pub fn contribute(&self, cut: u64, part: Part) {
        let complete = {
            let mut rounds = lock(&self.rounds);
            let (parts, whole) = rounds.entry(cut).or_default();
            *parts += 1;
            whole.groups.extend(part.groups);
            whole.distinct.extend(part.distinct);
            whole.partitions.extend(part.partitions);
            if *parts == self.workers {
                rounds.remove(&cut).map(|(_, whole)| whole)
            } else {
                None
            }
        };
        if let Some(whole) = complete {
            if lock(&self.to_writer).send((cut, whole)).is_err() {
                tracing::error!("The checkpoint writer thread is gone; no further checkpoints.");
                self.durability.settle(
                    cut,
                    Instant::now(),
                    Err("the checkpoint writer thread is gone".into()),
                );
            }
        }
    }
}

impl Writer {
    fn write(&mut self, cut: u64, mut part: Part) {
        let metrics = &self.metrics;
        let started = Instant::now();
        // Sorted, so equal states give equal files whatever the worker count.
        part.groups.sort_by(|a, b| a.0.cmp(&b.0));
        part.distinct.sort();
        part.partitions
            .sort_by(|a, b| (&a.source, &a.id).cmp(&(&b.source, &b.id)));
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let checkpoint = Checkpoint {
            sequence,
            created_unix_ms: chrono::Utc::now().timestamp_millis(),
            layout: self.layout.clone(),
            groups: part.groups,
            distinct: part.distinct,
            partitions: part.partitions,
        };
        match self.store.write(&checkpoint) {
            Ok(written) => {
                let ms = started.elapsed().as_millis();
                metrics.checkpoints.with_label_values(&["ok"]).inc();
                metrics
                    .checkpoint_duration_ms
                    .set(i64::try_from(ms).unwrap_or(i64::MAX));
                metrics
                    .checkpoint_bytes
                    .set(i64::try_from(written.bytes).unwrap_or(i64::MAX));
                metrics
                    .checkpoint_last_success
                    .set(checkpoint.created_unix_ms.div_euclid(1000));
                tracing::info!(
                    sequence,
                    keys = checkpoint.groups.len(),
                    bytes = written.bytes,
                    ms = ms as u64,
                    path = %written.path.display(),
                    "Checkpoint written."
                );
                self.durability.settle(cut, started, Ok(()));
            }
            Err(error) => {
                metrics.checkpoints.with_label_values(&["failed"]).inc();
                tracing::error!(sequence, %error, "Checkpoint failed; the previous one stays the restore point.");
                self.durability.settle(cut, started, Err(error.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(since_success: u64, any_succeeded: bool) -> CheckpointHealth {
        CheckpointHealth {
            interval: Duration::from_secs(10),
            since_success: Duration::from_secs(since_success),
            any_succeeded,
            last_error: None,
            final_outcome: None,
        }
    }

    #[test]
    fn degraded_when_the_last_failed_or_the_last_success_is_older_than_three_intervals() {
        assert_eq!(health(30, true).problem(), None);
        let stale = health(31, true).problem().unwrap();
        assert!(stale.contains("31.0 s old"), "{stale}");
        let never = health(31, false).problem().unwrap();
        assert!(never.contains("since the start"), "{never}");
        let failed = CheckpointHealth {
            last_error: Some("No space left on device".into()),
            ..health(1, true)
        };
        assert!(failed.problem().unwrap().contains("No space left"));
        let ended = CheckpointHealth {
            final_outcome: Some(FinalCheckpoint::Durable),
            ..health(3600, true)
        };
        assert_eq!(ended.problem(), None);
    }

    #[test]
    fn settling_records_the_newest_outcome_and_the_final_one() {
        let durability = Durability::new();
        let now = Instant::now();
        durability.settle(3, now, Err("disk full".into()));
        assert_eq!(lock(&durability.last).error.as_deref(), Some("disk full"));
        assert_eq!(durability.durable_cut.load(Ordering::Acquire), 0);
        durability.settle(5, now, Ok(()));
        assert_eq!(lock(&durability.last).error, None);
        assert_eq!(lock(&durability.last).succeeded_at, Some(now));
        assert_eq!(durability.durable_cut.load(Ordering::Acquire), 5);
        durability.settle(FINAL_CUT, now, Err("disk full".into()));
        assert_eq!(
            lock(&durability.last).final_outcome,
            Some(FinalCheckpoint::NotDurable {
                reason: "disk full".into()
            })
        );
        assert_eq!(lock(&durability.outcomes).get(&FINAL_CUT), Some(&false));
    }
}
