//! Retention as a worker applies it: passes while reading, and a bounded run's final pass.

use std::sync::atomic::Ordering;

use timely::worker::Worker;

use super::WorkerState;
use crate::runtime::retention::{final_frontier, Expired};
use crate::sync::lock;

impl WorkerState<'_> {
    /// A retention pass while reading, when due and no earlier retractions are in flight (a
    /// key must not be taken back twice). A service runs on the event-time frontier and then
    /// rejects rows older than the horizon; a bounded run on the newest accepted event time
    /// and rejects nothing for age (see [`super::retention`]).
    pub(super) fn expire_while_reading(&mut self) {
        if self.probe.less_than(&(self.retracted_at + 1)) {
            return;
        }
        let frontier = if self.shared.bounded {
            let newest = self.shared.max_event_us.load(Ordering::Acquire);
            final_frontier(newest, self.lateness_us).unwrap_or(i64::MIN)
        } else {
            self.shared.event_frontier()
        };
        if !self.retention.due(frontier) {
            return;
        }
        let expired = self
            .retention
            .expire(&lock(&self.shared.views[self.index]), frontier);
        self.retract(expired);
        let floor = self.age_floor();
        for part in &mut self.open {
            part.lanes.raise_floor(floor);
        }
    }

    /// Rows older than this are too late for their age alone: a service's retention horizon;
    /// nothing in a bounded run.
    pub(super) fn age_floor(&self) -> i64 {
        if self.shared.bounded {
            i64::MIN
        } else {
            self.retention.floor()
        }
    }

    /// A bounded run's retention, once every row of every worker is in: against the final
    /// frontier, so the outcome depends on the rows alone. Stepping an epoch first applies
    /// every row and every earlier retraction.
    pub(super) fn final_retention(&mut self, worker: &mut Worker) {
        self.step_epoch(worker);
        let max_event = self.shared.max_event_us.load(Ordering::Acquire);
        let Some(frontier) = final_frontier(max_event, self.lateness_us) else {
            return;
        };
        let expired = self
            .retention
            .expire(&lock(&self.shared.views[self.index]), frontier);
        self.retract(expired);
        self.step_epoch(worker);
    }

    /// Feeds the retractions of expired buckets into the dataflow.
    pub(super) fn retract(&mut self, expired: Vec<Expired>) {
        for Expired { width, retractions } in expired {
            self.shared
                .metrics
                .expired_buckets
                .with_label_values(&[width.as_str()])
                .inc_by(retractions.len() as u64);
            for (key, undo) in retractions {
                self.groups_in.update(key, undo);
            }
            self.retracted_at = self.epoch;
        }
    }
}
