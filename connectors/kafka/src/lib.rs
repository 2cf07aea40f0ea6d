//! oceanflow source: Kafka topics as a consumer group.

use oceanflow_config::KafkaSourceConfig;
use oceanflow_connectors::{Partition, SourceContext, SourceError};

/// The partitions of a `kind = "kafka"` source.
pub fn partitions(
    cfg: &KafkaSourceConfig,
    _ctx: &SourceContext,
) -> Result<Vec<Partition>, SourceError> {
    Err(SourceError::Other {
        context: format!("source {}", cfg.name),
        message: "the kafka connector is not built yet".into(),
    })
}
