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
use crate::checkpoint::{Checkpoint, CheckpointStore, Layout, PartitionState};
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
#[derive(Default)]
struct Durability {
    /// Outcome (written or not) of every finished round, for [`Checkpointer::wait_durable`].
    outcomes: Mutex<BTreeMap<u64, bool>>,
    outcome_changed: Condvar,
    /// The cut of the newest durable checkpoint; 0 before the first.
    durable_cut: AtomicU64,
    /// Checkpoints this process has written.
    written: AtomicU64,
}

impl Durability {
    fn settle(&self, cut: Epoch, written: bool) {
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
        let durability = Arc::new(Durability::default());
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
                self.durability.settle(cut, false);
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
                self.durability.settle(cut, true);
            }
            Err(error) => {
                metrics.checkpoints.with_label_values(&["failed"]).inc();
                tracing::error!(sequence, %error, "Checkpoint failed; the previous one stays the restore point.");
                self.durability.settle(cut, false);
            }
        }
    }
}
