//! The acknowledgement ledger: which read positions may be acknowledged upstream (Kafka offset
//! commits), and when.
//!
//! A worker records where its partitions stand each time it moves its input to a new epoch:
//! those positions cover exactly the rows fed at earlier epochs. They may be acknowledged once
//!
//! 1. the dataflow has applied those epochs (the probe passed the epoch), so the aggregates
//!    reflect the rows;
//! 2. a change sink (the Kafka changelog), if any, has delivered every change queued by then —
//!    the changes those rows caused are among them;
//! 3. with checkpoints, a durable checkpoint holds the positions: only positions recorded at a
//!    checkpoint cut are acknowledged, once that cut is durable.
//!
//! Entries are released strictly in order; for each partition its newest released position is
//! returned.

use std::collections::{BTreeMap, VecDeque};

use oceanflow_connectors::Position;

use super::Epoch;

/// Positions of a worker's partitions, by partition id.
pub(crate) type Positions = Vec<(String, Position)>;

/// What the ledger waits on, as observed now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// Every epoch before this is applied (the probe's frontier; `Epoch::MAX` when done).
    pub applied_before: Epoch,
    /// The change sink's `(queued, settled)` record counts, when there is a sink.
    pub sink: Option<(u64, u64)>,
    /// The newest durable checkpoint cut, when checkpoints are on.
    pub durable_cut: Option<Epoch>,
}

#[derive(Debug)]
struct Entry {
    epoch: Epoch,
    positions: Positions,
    /// The sink's queued count once the epoch was applied: deliveries must reach it.
    sink_mark: Option<u64>,
}

/// The positions a worker has read and not yet acknowledged.
#[derive(Debug)]
pub(crate) struct AckLedger {
    checkpoints: bool,
    entries: VecDeque<Entry>,
}

impl AckLedger {
    /// A ledger for a run with or without checkpoints.
    pub fn new(checkpoints: bool) -> AckLedger {
        AckLedger {
            checkpoints,
            entries: VecDeque::new(),
        }
    }

    /// Records `positions` as the worker moves its input to `epoch` (they cover the rows fed
    /// before it); `cut` says whether `epoch` is a checkpoint cut. With checkpoints, only cuts
    /// are recorded: nothing else can be acknowledged.
    pub fn record(&mut self, epoch: Epoch, positions: Positions, cut: bool) {
        if self.checkpoints && !cut {
            return;
        }
        if positions.is_empty() && self.entries.is_empty() {
            return;
        }
        self.entries.push_back(Entry {
            epoch,
            positions,
            sink_mark: None,
        });
    }

    /// Releases every entry whose conditions hold, in order; per partition the newest released
    /// position (`None` when nothing was released).
    pub fn release(&mut self, progress: Progress) -> Option<Positions> {
        let mut released: Option<BTreeMap<String, Position>> = None;
        while let Some(entry) = self.entries.front_mut() {
            if entry.epoch > progress.applied_before {
                break;
            }
            if let Some((queued, settled)) = progress.sink {
                let mark = *entry.sink_mark.get_or_insert(queued);
                if settled < mark {
                    break;
                }
            }
            if self.checkpoints && progress.durable_cut.is_none_or(|cut| cut < entry.epoch) {
                break;
            }
            if let Some(entry) = self.entries.pop_front() {
                released.get_or_insert_default().extend(entry.positions);
            }
        }
        released.map(|r| r.into_iter().collect())
    }

    /// Entries waiting.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> Positions {
        vec![("p".to_string(), Position(serde_json::json!(offset)))]
    }

    fn offset(p: Option<Positions>) -> Option<u64> {
        p.and_then(|p| p[0].1 .0.as_u64())
    }

    fn applied(before: Epoch) -> Progress {
        Progress {
            applied_before: before,
            sink: None,
            durable_cut: None,
        }
    }

    #[test]
    fn without_checkpoints_positions_wait_for_their_epoch_to_be_applied() {
        let mut ledger = AckLedger::new(false);
        ledger.record(2, at(10), false);
        ledger.record(3, at(20), false);
        // Rows read during epoch 3 (after offset 20) are not covered by anything yet.
        assert_eq!(offset(ledger.release(applied(1))), None);
        assert_eq!(offset(ledger.release(applied(2))), Some(10));
        assert_eq!(offset(ledger.release(applied(2))), None);
        assert_eq!(offset(ledger.release(applied(Epoch::MAX))), Some(20));
        assert_eq!(ledger.waiting(), 0);
    }

    #[test]
    fn a_change_sink_must_have_delivered_what_was_queued_when_the_epoch_was_applied() {
        let mut ledger = AckLedger::new(false);
        ledger.record(2, at(10), false);
        ledger.record(3, at(20), false);
        let with_sink = |applied_before, queued, settled| Progress {
            applied_before,
            sink: Some((queued, settled)),
            durable_cut: None,
        };
        // Epoch 2 applied while 5 records were queued; 4 delivered: wait.
        assert_eq!(offset(ledger.release(with_sink(2, 5, 4))), None);
        // More records queued later do not move the mark of epoch 2.
        assert_eq!(offset(ledger.release(with_sink(2, 9, 5))), Some(10));
        assert_eq!(offset(ledger.release(with_sink(3, 12, 11))), None);
        assert_eq!(offset(ledger.release(with_sink(3, 12, 12))), Some(20));
    }

    #[test]
    fn with_checkpoints_only_durable_cuts_are_acknowledged() {
        let mut ledger = AckLedger::new(true);
        ledger.record(2, at(10), false);
        ledger.record(4, at(30), true);
        ledger.record(9, at(90), true);
        assert_eq!(ledger.waiting(), 2);
        let progress = |durable_cut| Progress {
            applied_before: 100,
            sink: None,
            durable_cut,
        };
        assert_eq!(offset(ledger.release(progress(None))), None);
        assert_eq!(offset(ledger.release(progress(Some(3)))), None);
        assert_eq!(offset(ledger.release(progress(Some(9)))), Some(90));
    }

    #[test]
    fn nothing_recorded_before_the_first_position() {
        let mut ledger = AckLedger::new(false);
        ledger.record(2, Vec::new(), false);
        assert_eq!(ledger.waiting(), 0);
        ledger.record(3, at(1), false);
        ledger.record(4, Vec::new(), false);
        assert_eq!(ledger.waiting(), 2);
        // A later entry without the partition does not hide its earlier position.
        assert_eq!(offset(ledger.release(applied(4))), Some(1));
    }
}
