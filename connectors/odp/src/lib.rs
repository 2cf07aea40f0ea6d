//! oceanflow source: Ocean Data Platform tabular datasets over HTTP.

use oceanflow_config::OdpSourceConfig;
use oceanflow_connectors::{Partition, SourceContext, SourceError};

/// The partitions of a `kind = "odp"` source.
pub fn partitions(
    cfg: &OdpSourceConfig,
    _ctx: &SourceContext,
) -> Result<Vec<Partition>, SourceError> {
    Err(SourceError::Other {
        context: format!("source {}", cfg.name),
        message: "the odp connector is not built yet".into(),
    })
}
