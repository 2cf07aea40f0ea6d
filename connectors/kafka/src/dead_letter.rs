//! The dead-letter topic: every row the connector rejects is produced there, the raw payload
//! (or the rejected row's text) as the value and the reason, source topic, partition and
//! offset as headers, so a consumer of the topic can find and replay the original message.
//!
//! Producing never blocks a worker: records go to librdkafka's queue and delivery reports are
//! served on every poll of the source; a full queue or a failed delivery is counted
//! (`oceanflow_kafka_dead_lettered_total{result="failed"}`) and logged, and processing
//! continues. The producer is flushed (bounded) when the member closes.

use std::time::Duration;

use prometheus::IntCounter;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use crate::Error;

/// Header names of a dead-lettered message.
pub mod headers {
    /// The [`RejectReason`](oceanflow_connectors::RejectReason) label, e.g. `malformed`.
    pub const REASON: &str = "oceanflow.reason";
    /// Human-readable detail: column and offending value, or the decoder's error.
    pub const DETAIL: &str = "oceanflow.detail";
    /// The oceanflow source name.
    pub const SOURCE: &str = "oceanflow.source";
    /// The topic the message was read from.
    pub const TOPIC: &str = "oceanflow.topic";
    /// Its partition (decimal text).
    pub const PARTITION: &str = "oceanflow.partition";
    /// Its offset (decimal text).
    pub const OFFSET: &str = "oceanflow.offset";
}

/// Counts delivery outcomes.
pub(crate) struct DeliveryCounter {
    delivered: IntCounter,
    failed: IntCounter,
}

impl ClientContext for DeliveryCounter {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::client::log("dead-letter", level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::client::error("dead-letter", &error, reason);
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(_) => self.delivered.inc(),
            Err((error, _)) => {
                self.failed.inc();
                tracing::warn!(%error, "Dead-letter message not delivered.");
            }
        }
    }
}

/// One rejected row to dead-letter.
pub(crate) struct DeadLetter<'a> {
    pub payload: &'a [u8],
    pub reason: &'a str,
    pub detail: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Produces rejected rows to the dead-letter topic.
pub(crate) struct DeadLetterProducer {
    producer: BaseProducer<DeliveryCounter>,
    topic: String,
    source: String,
}

impl DeadLetterProducer {
    /// Creates the producer from the source's client settings.
    pub fn new(
        mut config: ClientConfig,
        topic: &str,
        source: &str,
        delivered: IntCounter,
        failed: IntCounter,
    ) -> Result<Self, Error> {
        config.set("client.id", format!("oceanflow-{source}-dead-letter"));
        // Consumer-only settings would make the producer warn at creation.
        for key in ["group.id", "session.timeout.ms", "max.poll.interval.ms"] {
            config.remove(key);
        }
        let producer = config
            .create_with_context(DeliveryCounter { delivered, failed })
            .map_err(|source_error| Error::Client {
                context: format!("source {source}: dead-letter producer"),
                source: source_error,
            })?;
        Ok(DeadLetterProducer {
            producer,
            topic: topic.to_string(),
            source: source.to_string(),
        })
    }

    /// Queues one dead letter; a full queue is counted as a failure, never waited on.
    pub fn send(&self, letter: &DeadLetter<'_>) {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new_with_capacity(6)
            .insert(Header {
                key: headers::REASON,
                value: Some(letter.reason),
            })
            .insert(Header {
                key: headers::DETAIL,
                value: Some(letter.detail),
            })
            .insert(Header {
                key: headers::SOURCE,
                value: Some(self.source.as_str()),
            })
            .insert(Header {
                key: headers::TOPIC,
                value: Some(letter.topic),
            })
            .insert(Header {
                key: headers::PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: headers::OFFSET,
                value: Some(offset.as_str()),
            });
        let record = BaseRecord::<(), _>::to(&self.topic)
            .payload(letter.payload)
            .headers(headers);
        if let Err((error, _)) = self.producer.send(record) {
            self.producer.context().failed.inc();
            tracing::warn!(%error, topic = %self.topic, "Dead-letter message not queued.");
        }
    }

    /// Serves delivery reports without waiting.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits up to `timeout` for queued dead letters to be delivered.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, topic = %self.topic, "Dead-letter messages not flushed.");
        }
    }
}
