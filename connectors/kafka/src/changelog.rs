//! The aggregate changelog sink: aggregate changes published to a Kafka topic so downstream
//! systems can follow the aggregates without polling the API.
//!
//! Each [`ChangelogRecord`] becomes one JSON message whose Kafka key is the aggregate key (JSON
//! text), so every change of one aggregate lands in the same partition, in order, and a
//! compacted topic keeps the latest value per aggregate (a removed key is a `null` `values`;
//! the message value is still JSON so consumers need no tombstone handling).

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oceanflow_config::source::kafka::KafkaChangelogConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};

use crate::client::client_config;
use crate::member::lock;
use crate::Error;

/// One change of one aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangelogRecord {
    /// The aggregate family, e.g. `station`, `temporal`, `regional`.
    pub family: String,
    /// The aggregate's key within the family (also the Kafka message key, as JSON text).
    pub key: serde_json::Value,
    /// The new values; `null` when the key was removed (e.g. expired by retention).
    pub values: Option<serde_json::Value>,
    /// The event-time watermark (µs since the Unix epoch, UTC) the change is final up to.
    pub watermark: i64,
}

/// Delivery outcomes: counters, readable through [`ChangelogProducer::delivered`] and
/// [`ChangelogProducer::failed`], which sequence numbers are settled, and the failed records
/// waiting to be sent again.
#[derive(Debug, Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    settled: Mutex<Settlement>,
    /// Records whose delivery failed, to be sent again.
    retry: Mutex<Vec<Undelivered>>,
}

/// A record whose delivery failed: its sequence number, key and payload.
type Undelivered = (u64, Vec<u8>, Vec<u8>);

/// Which sequence numbers are settled (delivered, or skipped by the caller): a contiguous
/// prefix, and the settled numbers beyond it (deliveries to different partitions complete in
/// any order).
#[derive(Debug, Default)]
struct Settlement {
    prefix: u64,
    ahead: BTreeSet<u64>,
}

impl Settlement {
    fn settle(&mut self, seq: u64) {
        if seq < self.prefix {
            return;
        }
        self.ahead.insert(seq);
        while self.ahead.remove(&self.prefix) {
            self.prefix += 1;
        }
    }
}

struct ChangelogContext(Arc<Deliveries>);

impl ClientContext for ChangelogContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::client::log("changelog", level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::client::error("changelog", &error, reason);
    }
}

impl ProducerContext for ChangelogContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let seq = seq as u64;
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
                lock(&self.0.settled).settle(seq);
            }
            Err((error, message)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, seq, "Changelog message not delivered; it is sent again.");
                let key = message.key().unwrap_or_default().to_vec();
                let payload = message.payload().unwrap_or_default().to_vec();
                lock(&self.0.retry).push((seq, key, payload));
            }
        }
    }
}

/// Errors of the changelog sink.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    /// The producer could not be created (bad settings, unreadable secret).
    #[error(transparent)]
    Setup(#[from] Error),
    /// librdkafka's queue is full: `sent` records of the call were queued; send the rest later.
    #[error("changelog topic {topic}: producer queue full after {sent} records")]
    QueueFull {
        /// The topic.
        topic: String,
        /// Records of the call that were queued.
        sent: usize,
    },
    /// A record could not be queued for another reason.
    #[error("changelog topic {topic}: {source}")]
    Send {
        /// The topic.
        topic: String,
        /// The cause.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Not every queued record was delivered within the flush timeout.
    #[error("changelog topic {topic}: flush: {source}")]
    Flush {
        /// The topic.
        topic: String,
        /// The cause.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// Publishes aggregate changes to a topic. `send` only queues (librdkafka's background thread
/// delivers), so it never waits on the network.
pub struct ChangelogProducer {
    producer: ThreadedProducer<ChangelogContext>,
    topic: String,
    deliveries: Arc<Deliveries>,
}

impl std::fmt::Debug for ChangelogProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangelogProducer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl ChangelogProducer {
    /// Creates the producer; secrets with relative `file` paths are read relative to
    /// `base_dir`.
    pub fn new(config: &KafkaChangelogConfig, base_dir: &Path) -> Result<Self, ChangelogError> {
        let context = format!("changelog {}", config.topic);
        let mut client = client_config(
            &context,
            &config.brokers,
            &config.client,
            &config.client_secrets,
            base_dir,
        )?;
        if !config.client.contains_key("client.id") {
            client.set("client.id", "oceanflow-changelog");
        }
        let deliveries = Arc::new(Deliveries::default());
        let producer = client
            .create_with_context(ChangelogContext(Arc::clone(&deliveries)))
            .map_err(|source| Error::Client { context, source })?;
        Ok(ChangelogProducer {
            producer,
            topic: config.topic.clone(),
            deliveries,
        })
    }

    /// Queues `records` in order, numbered from `first_seq` (the caller numbers every record
    /// it means to deliver, see [`ChangelogProducer::settled`]). Failed deliveries are sent
    /// again first. On a full queue it stops and reports how many of `records` were queued.
    pub fn send(&self, first_seq: u64, records: &[ChangelogRecord]) -> Result<(), ChangelogError> {
        self.resend_failed()?;
        for (sent, record) in records.iter().enumerate() {
            let key = serde_json::to_vec(&record.key).unwrap_or_default();
            let value = serde_json::to_vec(record).unwrap_or_default();
            self.send_one(first_seq + sent as u64, &key, &value)
                .map_err(|error| self.send_error(error, sent))?;
        }
        Ok(())
    }

    /// Marks sequence numbers that will never be sent (dropped by the caller) as settled.
    pub fn skip(&self, seqs: Range<u64>) {
        let mut settled = lock(&self.deliveries.settled);
        for seq in seqs {
            settled.settle(seq);
        }
    }

    /// Every record numbered below this is delivered (or skipped).
    pub fn settled(&self) -> u64 {
        lock(&self.deliveries.settled).prefix
    }

    fn send_one(&self, seq: u64, key: &[u8], value: &[u8]) -> Result<(), KafkaError> {
        let message = BaseRecord::with_opaque_to(&self.topic, seq as usize)
            .key(key)
            .payload(value);
        self.producer.send(message).map_err(|(error, _)| error)
    }

    /// Sends the records whose delivery failed again; those the queue cannot take wait.
    fn resend_failed(&self) -> Result<(), ChangelogError> {
        let failed = std::mem::take(&mut *lock(&self.deliveries.retry));
        let mut failed = failed.into_iter();
        while let Some((seq, key, value)) = failed.next() {
            if let Err(error) = self.send_one(seq, &key, &value) {
                let mut retry = lock(&self.deliveries.retry);
                retry.push((seq, key, value));
                retry.extend(failed);
                return Err(self.send_error(error, 0));
            }
        }
        Ok(())
    }

    fn send_error(&self, error: KafkaError, sent: usize) -> ChangelogError {
        match error.rdkafka_error_code() {
            Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => ChangelogError::QueueFull {
                topic: self.topic.clone(),
                sent,
            },
            _ => ChangelogError::Send {
                topic: self.topic.clone(),
                source: error,
            },
        }
    }

    /// Waits up to `timeout` until every queued record is delivered (or failed).
    pub fn flush(&self, timeout: Duration) -> Result<(), ChangelogError> {
        self.producer
            .flush(timeout)
            .map_err(|source| ChangelogError::Flush {
                topic: self.topic.clone(),
                source,
            })
    }

    /// Records delivered so far.
    pub fn delivered(&self) -> u64 {
        self.deliveries.delivered.load(Ordering::Relaxed)
    }

    /// Records whose delivery failed so far (each is also logged).
    pub fn failed(&self) -> u64 {
        self.deliveries.failed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::Settlement;

    #[test]
    fn the_settled_prefix_waits_for_every_earlier_number() {
        let mut s = Settlement::default();
        s.settle(1);
        s.settle(2);
        assert_eq!(s.prefix, 0);
        s.settle(0);
        assert_eq!(s.prefix, 3);
        s.settle(0);
        s.settle(5);
        assert_eq!((s.prefix, s.ahead.len()), (3, 1));
        s.settle(3);
        s.settle(4);
        assert_eq!((s.prefix, s.ahead.len()), (6, 0));
    }
}
