//! The Kafka connector's metric families (served on `/metrics` through the registry the
//! pipeline passes in [`SourceContext`](oceanflow_connectors::SourceContext)).
//!
//! The families are process-wide (one set, labelled by `source`), created on first use and
//! registered into every registry handed to [`crate::partitions`]; registering the same family
//! twice into one registry is ignored, so listing partitions more than once is harmless.

use std::sync::{Arc, OnceLock};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Every family of the connector.
#[derive(Debug, Clone)]
pub(crate) struct KafkaMetrics {
    /// `oceanflow_kafka_messages_total{source,topic,partition}`: messages delivered.
    pub messages: IntCounterVec,
    /// `oceanflow_kafka_bytes_total{source,topic,partition}`: payload bytes delivered.
    pub bytes: IntCounterVec,
    /// `oceanflow_kafka_consumer_lag{source,topic,partition}`: high watermark minus the
    /// consumer's position, from librdkafka's statistics, for assigned partitions.
    pub lag: IntGaugeVec,
    /// `oceanflow_kafka_decode_errors_total{source,reason}`: rows rejected by the connector.
    pub decode_errors: IntCounterVec,
    /// `oceanflow_kafka_commits_total{source,result}`: offset commits (`ok`, `error`).
    pub commits: IntCounterVec,
    /// `oceanflow_kafka_rebalances_total{source,kind}`: `assign` and `revoke` events.
    pub rebalances: IntCounterVec,
    /// `oceanflow_kafka_dead_lettered_total{source,result}`: rejected rows produced to the
    /// dead-letter topic (`delivered`, `failed`).
    pub dead_lettered: IntCounterVec,
}

impl KafkaMetrics {
    /// The process-wide families, registered into `registry`.
    pub fn register(registry: &Registry) -> Arc<KafkaMetrics> {
        static METRICS: OnceLock<Arc<KafkaMetrics>> = OnceLock::new();
        let metrics = Arc::clone(METRICS.get_or_init(|| Arc::new(KafkaMetrics::new())));
        let collectors: [Box<dyn prometheus::core::Collector>; 7] = [
            Box::new(metrics.messages.clone()),
            Box::new(metrics.bytes.clone()),
            Box::new(metrics.lag.clone()),
            Box::new(metrics.decode_errors.clone()),
            Box::new(metrics.commits.clone()),
            Box::new(metrics.rebalances.clone()),
            Box::new(metrics.dead_lettered.clone()),
        ];
        for collector in collectors {
            match registry.register(collector) {
                Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
                Err(error) => tracing::warn!(%error, "Kafka metric family not registered."),
            }
        }
        metrics
    }

    fn new() -> KafkaMetrics {
        let tp = ["source", "topic", "partition"];
        KafkaMetrics {
            messages: counter(
                "oceanflow_kafka_messages_total",
                "Kafka messages delivered to the pipeline.",
                &tp,
            ),
            bytes: counter(
                "oceanflow_kafka_bytes_total",
                "Kafka payload bytes delivered to the pipeline.",
                &tp,
            ),
            lag: IntGaugeVec::new(
                Opts::new(
                    "oceanflow_kafka_consumer_lag",
                    "Messages between the consumer's position and the high watermark.",
                ),
                &tp,
            )
            .expect("valid metric definition"),
            decode_errors: counter(
                "oceanflow_kafka_decode_errors_total",
                "Rows of Kafka messages rejected by the connector, by reason.",
                &["source", "reason"],
            ),
            commits: counter(
                "oceanflow_kafka_commits_total",
                "Consumer offset commits, by result.",
                &["source", "result"],
            ),
            rebalances: counter(
                "oceanflow_kafka_rebalances_total",
                "Consumer group rebalance events, by kind (assign, revoke).",
                &["source", "kind"],
            ),
            dead_lettered: counter(
                "oceanflow_kafka_dead_lettered_total",
                "Rejected rows produced to the dead-letter topic, by result.",
                &["source", "result"],
            ),
        }
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}
