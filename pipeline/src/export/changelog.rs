//! The aggregate changelog: every change of an aggregate, published to a Kafka topic
//! (`[export.changelog]`) so downstream systems follow the aggregates without polling.
//!
//! The views' changelogs are turned into records as they are applied; each worker sends its
//! records after every epoch, stamped with the event-time frontier. A record is
//! `{family, key, values, watermark}`; `values` is `null` when the key was removed (expired by
//! retention). Delivery is at-least-once: after a restart the restored aggregates are published
//! again, so consumers keep the latest value per key (a compacted topic does that).

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

use crate::export::output::{format_time_us, VariableSummary};
use crate::runtime::lock;

/// Records waiting for the producer.
const MAX_PENDING: usize = 1_000_000;

/// Turns aggregate changes into changelog records and sends them.
pub struct Changelog {
    producer: ChangelogProducer,
    config: Arc<ValidConfig>,
    pending: Mutex<VecDeque<ChangelogRecord>>,
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
            pending: Mutex::new(VecDeque::new()),
        })
    }

    /// Queues the records of one batch of aggregate changes: per key its new value, or `null`
    /// when the batch only removes it.
    pub fn aggregates<T>(&self, changes: &[AggregateChange<T>]) {
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
    pub fn distinct<T>(&self, changes: &[DistinctChange<T>]) {
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

    /// Sends what is queued, stamped with the event-time frontier `watermark` (µs); what the
    /// producer cannot take now stays queued for the next call.
    pub fn send(&self, watermark: i64) {
        let mut pending = lock(&self.pending);
        if pending.is_empty() {
            return;
        }
        for record in pending.iter_mut() {
            record.watermark = watermark;
        }
        let records = pending.make_contiguous();
        let sent = match self.producer.send(records) {
            Ok(()) => records.len(),
            Err(ChangelogError::QueueFull { sent, .. }) => sent,
            Err(error) => {
                tracing::warn!(%error, "Changelog records not sent; retried with the next epoch.");
                0
            }
        };
        pending.drain(..sent);
    }

    /// Sends everything left and waits (bounded) for the broker to acknowledge it.
    pub fn close(&self, watermark: i64, timeout: Duration) {
        self.send(watermark);
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "Changelog not fully delivered at shutdown.");
        }
        let left = lock(&self.pending).len();
        if left > 0 {
            tracing::warn!(records = left, "Changelog records left unsent at shutdown.");
        }
    }

    fn queue(&self, records: Vec<ChangelogRecord>) {
        let mut pending = lock(&self.pending);
        pending.extend(records);
        if pending.len() > MAX_PENDING {
            // A broker away for long must not take the ship's memory; consumers re-sync from
            // the API or a later change of the key.
            let dropped = pending.len() - MAX_PENDING;
            pending.drain(..dropped);
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
