//! The single dispatch from a configured source to its connector's partitions.

use std::path::PathBuf;

use oceanflow_config::{Config, SourceConfig};
use oceanflow_connectors::{file, synthetic, Partition, SourceContext, SourceError};

/// The partitions of a configured source.
pub fn partitions(
    source: &SourceConfig,
    ctx: &SourceContext,
) -> Result<Vec<Partition>, SourceError> {
    match source {
        SourceConfig::File(cfg) => file::file_partitions(cfg, &ctx.variables, &ctx.categorical),
        SourceConfig::Synthetic(cfg) => {
            synthetic::synthetic_partitions(cfg, &ctx.variables, &ctx.categorical)
        }
        SourceConfig::Kafka(cfg) => oceanflow_kafka::partitions(cfg, ctx),
        SourceConfig::Vessel(cfg) => oceanflow_vessel::partitions(cfg, ctx),
        SourceConfig::Odp(cfg) => oceanflow_odp::partitions(cfg, ctx),
    }
}

/// The context connectors get: the canonical columns, the worker count, where relative paths
/// start, and the registry for their own metrics.
pub fn context(
    config: &Config,
    workers: usize,
    base_dir: Option<PathBuf>,
    registry: prometheus::Registry,
) -> SourceContext {
    SourceContext {
        variables: config.variables.clone(),
        categorical: config.categorical.clone(),
        workers,
        base_dir: base_dir.unwrap_or_else(|| PathBuf::from(".")),
        registry,
        resume: Default::default(),
    }
}
