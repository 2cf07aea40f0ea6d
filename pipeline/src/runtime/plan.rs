//! Listing the partitions of every source once per process and dealing them to the workers,
//! with what a checkpoint says about each.

use std::collections::{HashMap, VecDeque};

use oceanflow_connectors::{Partition, Position};

use super::{PartitionLister, Shared};
use crate::checkpoint::PartitionState;

/// A partition dealt to a worker, not yet opened.
pub(super) struct Assigned {
    pub source_index: usize,
    pub source: String,
    pub partition: Partition,
    /// Its state in the restored checkpoint.
    pub restored: Option<PartitionState>,
}

/// The partitions of one source that fall to one worker, in reading order.
pub(super) struct Pending {
    pub source_index: usize,
    pub parts: VecDeque<Assigned>,
}

/// Lists every source's partitions in a deterministic global order and deals them
/// round-robin to `workers` workers, each with its state in the restored checkpoint. A source
/// that cannot be listed is recorded as a failure.
pub(super) fn deal(
    shared: &Shared,
    workers: usize,
    restored: &HashMap<(String, String), PartitionState>,
    lister: &PartitionLister,
) -> Vec<Vec<Pending>> {
    let config = shared.config.config();
    let mut dealt: Vec<Vec<Pending>> = (0..workers).map(|_| Vec::new()).collect();
    let mut global = 0usize;
    for (source_index, source) in config.sources.iter().enumerate() {
        let name = source.name().to_string();
        let mut context = shared.source_context.clone();
        context.resume = restored
            .iter()
            .filter(|((s, _), _)| *s == name)
            .filter_map(|((_, id), state)| Some((id.clone(), position_of(state)?)))
            .collect();
        let parts = match lister(source, &context) {
            Ok(parts) => parts,
            Err(error) => {
                tracing::error!(source = %name, %error, "Source cannot be read.");
                shared.record_failure(&name, error.to_string());
                continue;
            }
        };
        let mut per_worker: Vec<VecDeque<Assigned>> =
            (0..workers).map(|_| VecDeque::new()).collect();
        for partition in parts {
            let state = restored.get(&(name.clone(), partition.id.clone())).cloned();
            // A finished partition with a position is opened again there: a file at its end
            // finishes at once, a topic or dataset continues with what arrived since. One
            // without a position cannot resume, so it is not read again.
            if state
                .as_ref()
                .is_some_and(|s| s.finished && s.position.is_none())
            {
                shared
                    .metrics
                    .source_partitions_finished
                    .with_label_values(&[name.as_str()])
                    .inc();
                continue;
            }
            per_worker[global % workers].push_back(Assigned {
                source_index,
                source: name.clone(),
                partition,
                restored: state,
            });
            global += 1;
        }
        for (worker, parts) in per_worker.into_iter().enumerate() {
            dealt[worker].push(Pending {
                source_index,
                parts,
            });
        }
    }
    dealt
}

/// The connector position stored for a partition, if it parses.
pub(super) fn position_of(state: &PartitionState) -> Option<Position> {
    let text = state.position.as_deref()?;
    match serde_json::from_str(text) {
        Ok(value) => Some(Position(value)),
        Err(error) => {
            tracing::warn!(source = %state.source, partition = %state.id, %error, "Stored position is not JSON; the partition starts over.");
            None
        }
    }
}
