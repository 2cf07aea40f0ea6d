//! What a worker hands on: its part of each checkpoint, and acknowledgements upstream.

use oceanflow_connectors::Position;

use super::WorkerState;
use crate::runtime::checkpointing::Part;
use crate::runtime::ledger::{Positions, Progress};
use crate::runtime::partition::{OpenPartition, Reading};
use crate::runtime::Epoch;
use crate::sync::lock;

impl WorkerState<'_> {
    /// Hands this worker's view and partition states at `cut` to the checkpointer.
    pub(super) fn contribute(&mut self, cut: Epoch) {
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
        checkpointer.contribute(cut, part);
    }

    /// What the ledger waits on, as it stands now.
    pub(super) fn progress(&self) -> Progress {
        // The probe first: the sink's queued count must be read after it.
        let applied_before = self
            .probe
            .with_frontier(|f| f.first().copied().unwrap_or(Epoch::MAX));
        Progress {
            applied_before,
            sink: self.shared.sink.as_ref().map(|s| (s.queued(), s.settled())),
            durable_cut: self.shared.checkpointer.as_ref().map(|c| c.durable_cut()),
        }
    }

    /// Acknowledges every position the ledger releases.
    pub(super) fn release_acknowledgements(&mut self) {
        if let Some(positions) = self.ledger.release(self.progress()) {
            self.acknowledge(&positions);
        }
        if self
            .shared
            .checkpointer
            .as_ref()
            .is_some_and(|c| c.written() > 0)
        {
            for part in &mut self.open {
                part.replaying = false;
            }
        }
    }

    /// Where each partition this worker reads stands.
    pub(super) fn positions(&self) -> Positions {
        self.open
            .iter()
            .filter_map(|p| Some((p.id.clone(), p.position.clone()?)))
            .collect()
    }

    /// Hands `covered` positions to their readers (each once).
    pub(super) fn acknowledge(&mut self, covered: &[(String, Position)]) {
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
}
