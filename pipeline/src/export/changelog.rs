//! The aggregate changelog: every change of an aggregate, published to a Kafka topic
//! (`[export.changelog]`) so downstream systems follow the aggregates without polling.
//!
//! The views' changelogs are turned into records as they are applied; each worker sends its
//! records after every epoch, stamped with the event-time frontier. A record is
//! `{family, key, values, watermark}`; `values` is `null` when the key was removed (expired by
//! retention). Delivery is at-least-once: after a restart the restored aggregates are published
//! again, so consumers keep the latest value per key (a compacted topic does that).
//!
//! Records are numbered as they are queued; the runtime acknowledges input (Kafka offsets)
//! only once every record queued by the time its rows were applied is delivered
//! ([`ChangeSink::settled`]). Failed deliveries are sent again.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oceanflow_config::source::kafka::KafkaChangelogConfig;
use oceanflow_config::ValidConfig;
use oceanflow_kafka::{ChangelogError, ChangelogProducer, ChangelogRecord};
use oceanflow_operators::view::{AggregateChange, DistinctChange};
use oceanflow_operators::{GroupKey, Stats};
use serde_json::{json, Value};

use oceanflow_connectors::record::format_time_us;

use crate::export::output::VariableSummary;
use crate::runtime::{ChangeSink, Epoch};
use crate::sync::lock;

/// Records waiting for the producer.
const MAX_PENDING: usize = 1_000_000;

/// Turns aggregate changes into changelog records and sends them.
pub struct Changelog {
    producer: ChangelogProducer,
    config: Arc<ValidConfig>,
    queue: Mutex<Queue>,
}

/// Records not yet handed to the producer, and the number of the first of them.
#[derive(Default)]
struct Queue {
    first_seq: u64,
    pending: VecDeque<ChangelogRecord>,
}

impl Changelog {
    /// Connects the producer (it connects lazily; a bad setting fails here).
    pub fn start(
        settings: &KafkaChangelogConfig,
        base_dir: &Path,
        config: Arc<ValidConfig>,
    ) -> Result<Changelog, ChangelogError> {
        Ok(Changelog {
            producer: ChangelogProducer::new(settings, base_dir)?,
            config,
            queue: Mutex::new(Queue::default()),
        })
    }

    /// Queues the records of one batch of aggregate changes: per key its new value, or `null`
    /// when the batch only removes it.
    fn queue_aggregates<T>(&self, changes: &[AggregateChange<T>]) {
        let mut latest: BTreeMap<&GroupKey, Option<&Stats>> = BTreeMap::new();
        for ((key, stats), _, diff) in changes {
            if *diff > 0 {
                latest.insert(key, Some(stats));
            } else {
                latest.entry(key).or_insert(None);
            }
        }
        let records = latest
            .into_iter()
            .map(|(key, stats)| {
                let (family, key) = self.key(key);
                ChangelogRecord {
                    family: family.into(),
                    key,
                    values: stats.map(|s| self.values(s)),
                    watermark: 0,
                }
            })
            .collect::<Vec<_>>();
        self.queue(records);
    }

    /// Queues the distinct values that appeared (or, never for insert-only input, vanished).
    fn queue_distinct<T>(&self, changes: &[DistinctChange<T>]) {
        let records = changes
            .iter()
            .map(|((region, field, value), _, diff)| ChangelogRecord {
                family: "distinct".into(),
                key: json!({
                    "region": self.region(*region),
                    "field": self.config.distinct_fields().get(*field as usize),
                    "value": value,
                }),
                values: (*diff > 0).then(|| json!({ "present": true })),
                watermark: 0,
            })
            .collect();
        self.queue(records);
    }

    fn queue(&self, records: Vec<ChangelogRecord>) {
        let mut queue = lock(&self.queue);
        queue.pending.extend(records);
        if queue.pending.len() > MAX_PENDING {
            // A broker away for long must not take the ship's memory; consumers re-sync from
            // the API or a later change of the key. Dropped records count as settled, so
            // acknowledgements go on (and the warning says what was lost).
            let dropped = queue.pending.len() - MAX_PENDING;
            queue.pending.drain(..dropped);
            let first = queue.first_seq;
            queue.first_seq += dropped as u64;
            self.producer.skip(first..queue.first_seq);
            tracing::warn!(
                dropped,
                "Changelog backlog over {MAX_PENDING} records; oldest dropped."
            );
        }
    }

    fn region(&self, id: u32) -> Option<&str> {
        self.config
            .regions()
            .get(id as usize)
            .map(|r| r.name.as_str())
    }

    /// The family and the key, shaped like the rows of `/api/v1`.
    fn key(&self, key: &GroupKey) -> (&'static str, Value) {
        match key {
            GroupKey::Station(name) => ("station", json!({ "station": name })),
            GroupKey::Bucket {
                width,
                start_us,
                station,
            } => (
                "temporal",
                json!({
                    "grouping": width.as_str(),
                    "key": format_time_us(*start_us),
                    "station": station,
                }),
            ),
            GroupKey::Calendar { part, value } => (
                "temporal",
                json!({ "grouping": part.as_str(), "key": value.to_string(), "station": null }),
            ),
            GroupKey::Region(id) => ("regional", json!({ "region": self.region(*id) })),
        }
    }

    fn values(&self, stats: &Stats) -> Value {
        let variables: BTreeMap<&str, VariableSummary> = self
            .config
            .config()
            .variables
            .iter()
            .zip(&stats.vars)
            .map(|(name, v)| (name.as_str(), VariableSummary::from(v)))
            .collect();
        json!({ "count": stats.count, "variables": variables })
    }
}

impl ChangeSink for Changelog {
    fn aggregates(&self, changes: &[AggregateChange<Epoch>]) {
        self.queue_aggregates(changes);
    }

    fn distinct(&self, changes: &[DistinctChange<Epoch>]) {
        self.queue_distinct(changes);
    }

    /// Sends what is queued, stamped with the event-time frontier (µs); what the producer
    /// cannot take now stays queued for the next call.
    fn send(&self, frontier: i64) {
        let mut queue = lock(&self.queue);
        for record in queue.pending.iter_mut() {
            record.watermark = frontier;
        }
        let first_seq = queue.first_seq;
        let records = queue.pending.make_contiguous();
        let sent = match self.producer.send(first_seq, records) {
            Ok(()) => records.len(),
            Err(ChangelogError::QueueFull { sent, .. }) => sent,
            Err(error) => {
                tracing::warn!(%error, "Changelog records not sent; retried with the next epoch.");
                0
            }
        };
        queue.pending.drain(..sent);
        queue.first_seq += sent as u64;
    }

    fn queued(&self) -> u64 {
        let queue = lock(&self.queue);
        queue.first_seq + queue.pending.len() as u64
    }

    fn settled(&self) -> u64 {
        self.producer.settled()
    }

    /// Sends everything left and waits (bounded) for the broker to acknowledge it.
    fn flush(&self, frontier: i64, timeout: Duration) {
        self.send(frontier);
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "Changelog not fully delivered.");
        }
        let left = lock(&self.queue).pending.len();
        if left > 0 {
            tracing::warn!(records = left, "Changelog records left unsent.");
        }
    }
}
