//! oceanflow source: vessel sensor feeds: NMEA 0183 and instrument lines.

use oceanflow_config::VesselSourceConfig;
use oceanflow_connectors::{Partition, SourceContext, SourceError};

/// The partitions of a `kind = "vessel"` source.
pub fn partitions(
    cfg: &VesselSourceConfig,
    _ctx: &SourceContext,
) -> Result<Vec<Partition>, SourceError> {
    Err(SourceError::Other {
        context: format!("source {}", cfg.name),
        message: "the vessel connector is not built yet".into(),
    })
}
