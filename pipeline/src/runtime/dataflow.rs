//! The aggregate dataflow of one worker, and the sinks its changelogs feed.
//!
//! The runtime knows the sinks only through [`ChangeSink`], so it does not depend on any
//! exporter: the view is always fed, a Kafka changelog (`export::changelog`) when configured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use differential_dataflow::input::{Input, InputSession};
use oceanflow_operators::dataflow::{aggregates, distinct_values};
use oceanflow_operators::view::{AggregateChange, AggregateView, DistinctChange};
use oceanflow_operators::{DistinctKey, GroupKey, Stats};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use super::Epoch;
use crate::sync::lock;

/// A downstream consumer of aggregate changes beyond the view (the Kafka changelog). Records
/// are numbered in the order they are queued, so the runtime can acknowledge input only once
/// the changes it caused are delivered.
pub trait ChangeSink: Send + Sync {
    /// Queues the records of one batch of aggregate changes.
    fn aggregates(&self, changes: &[AggregateChange<Epoch>]);
    /// Queues the records of one batch of distinct-value changes.
    fn distinct(&self, changes: &[DistinctChange<Epoch>]);
    /// Hands what is queued to the transport, stamped with the event-time frontier (µs).
    fn send(&self, frontier: i64);
    /// Records queued so far.
    fn queued(&self) -> u64;
    /// Every record numbered below this is delivered (or was knowingly given up, and counted).
    fn settled(&self) -> u64;
    /// Sends everything and waits (bounded) for delivery.
    fn flush(&self, frontier: i64, timeout: Duration);
}

/// The inputs of the aggregate dataflow and the probe on its outputs.
pub type Inputs = (
    InputSession<Epoch, GroupKey, Stats>,
    InputSession<Epoch, DistinctKey, isize>,
    ProbeHandle<Epoch>,
);

/// Builds the aggregate dataflow on `worker`; its changelogs maintain `view` and, when given,
/// feed `sink`.
pub fn build_dataflow(
    worker: &mut Worker,
    view: Arc<Mutex<AggregateView>>,
    sink: Option<Arc<dyn ChangeSink>>,
) -> Inputs {
    worker.dataflow::<Epoch, _, _>(|scope| {
        let (groups_in, groups) = scope.new_collection::<GroupKey, Stats>();
        let (distinct_in, values) = scope.new_collection::<DistinctKey, isize>();
        let probe = ProbeHandle::new();
        let (group_view, group_sink) = (Arc::clone(&view), sink.clone());
        aggregates(groups)
            .inspect_batch(move |_time, changes| {
                lock(&group_view).apply_changes(changes);
                if let Some(sink) = &group_sink {
                    sink.aggregates(changes);
                }
            })
            .probe_with(&probe);
        distinct_values(values)
            .inspect_batch(move |_time, changes| {
                lock(&view).apply_distinct(changes);
                if let Some(sink) = &sink {
                    sink.distinct(changes);
                }
            })
            .probe_with(&probe);
        (groups_in, distinct_in, probe)
    })
}
