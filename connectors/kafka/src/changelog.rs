//! The aggregate changelog sink: aggregate changes published to a Kafka topic so downstream
//! systems can follow the aggregates without polling the API.
//!
//! Each [`ChangelogRecord`] becomes one JSON message whose Kafka key is the aggregate key (JSON
//! text), so every change of one aggregate lands in the same partition, in order, and a
//! compacted topic keeps the latest value per aggregate (a removed key is a `null` `values`;
//! the message value is still JSON so consumers need no tombstone handling).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oceanflow_config::source::kafka::KafkaChangelogConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};

use crate::client::client_config;
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

/// Delivery outcome counters, readable through [`ChangelogProducer::delivered`] and
/// [`ChangelogProducer::failed`].
#[derive(Debug, Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
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
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "Changelog message not delivered.");
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

    /// Queues `records` in order. On a full queue it stops and reports how many were queued.
    pub fn send(&self, records: &[ChangelogRecord]) -> Result<(), ChangelogError> {
        for (sent, record) in records.iter().enumerate() {
            let key = serde_json::to_vec(&record.key).unwrap_or_default();
            let value = serde_json::to_vec(record).unwrap_or_default();
            let message = BaseRecord::to(&self.topic).key(&key).payload(&value);
            if let Err((error, _)) = self.producer.send(message) {
                return Err(match error.rdkafka_error_code() {
                    Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                        ChangelogError::QueueFull {
                            topic: self.topic.clone(),
                            sent,
                        }
                    }
                    _ => ChangelogError::Send {
                        topic: self.topic.clone(),
                        source: error,
                    },
                });
            }
        }
        Ok(())
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
