//! oceanflow source: Ocean Data Platform (ODP) tabular datasets over HTTP.
//!
//! Reads `dataset(ID).table.select(filter, vars, cols)` the way HubOcean's `odp-sdk` does —
//! `POST /api/table/v2/sdk/select`, Arrow IPC stream pages chained by a cursor — straight into
//! the canonical schema, then optionally follows the dataset for new rows.
//!
//! - [`client`]: credentials (`ApiKey` from the config or `ODP_API_KEY`, or a bearer token),
//!   the calls, status mapping (204 no table, 400 bad request, 401/403 credential refused,
//!   429/502/503/504 retried).
//! - [`ipc`]: the stream read message by message, keeping per-batch custom metadata
//!   (`cursor`, `error`) and the JSON trailer after end-of-stream.
//! - [`retry`]: bounded exponential backoff honouring `Retry-After`.
//! - [`progress`]: the checkpointable position (page cursor, rows of the page delivered,
//!   follow bound).
//! - [`transform`]: centroid of a WKT column as the position, default station, then the
//!   shared canonical conversion.
//! - [`worker`]: the background thread and the non-blocking reader.
//! - [`metrics`]: requests, retries, bytes, batches, rows, page latency.
//!
//! A source is one partition (`odp:<dataset>`): pages come in cursor order, and one reader
//! keeps lateness judged in that order.

pub mod client;
pub mod ipc;
pub mod metrics;
pub mod progress;
pub mod retry;
pub mod transform;
pub mod worker;

use std::sync::Arc;

use oceanflow_config::OdpSourceConfig;
use oceanflow_connectors::{Partition, SourceContext, SourceError};

use crate::client::{Credential, OdpClient};
use crate::metrics::OdpMetrics;
use crate::progress::Progress;
use crate::transform::Converter;

/// The partitions of a `kind = "odp"` source: one, `odp:<dataset>`. Registers the source's
/// metrics in `ctx.registry` (this is called once per process). Fails when no credential is
/// configured.
pub fn partitions(
    cfg: &OdpSourceConfig,
    ctx: &SourceContext,
) -> Result<Vec<Partition>, SourceError> {
    let context = format!("source {} (ODP dataset {})", cfg.name, cfg.dataset);
    let other = |message: String| SourceError::Other {
        context: context.clone(),
        message,
    };
    let credential = Credential::resolve(cfg).map_err(|e| other(e.to_string()))?;
    tracing::info!(source = %cfg.name, credential = credential.source(), "ODP credential");
    let metrics = OdpMetrics::shared(&ctx.registry, &cfg.name)
        .map_err(|e| other(format!("registering metrics: {e}")))?;
    let cfg = Arc::new(cfg.clone());
    let converter = Converter::new(&cfg, &ctx.variables, &ctx.categorical);
    let id = format!("odp:{}", cfg.dataset);
    let partition = id.clone();
    let open: oceanflow_connectors::Opener = Box::new(move |position| {
        let progress = match position {
            Some(p) => Progress::from_position(&p).map_err(|message| SourceError::Other {
                context: format!("source {} (ODP dataset {})", cfg.name, cfg.dataset),
                message,
            })?,
            None => Progress::start(),
        };
        let client = OdpClient::new(&cfg, credential, Arc::clone(&metrics)).map_err(|e| {
            SourceError::Other {
                context: format!("source {} (ODP dataset {})", cfg.name, cfg.dataset),
                message: e.to_string(),
            }
        })?;
        let reader = worker::spawn(worker::Job {
            cfg,
            partition,
            client,
            converter,
            metrics,
            progress,
        })?;
        Ok(Box::new(reader) as Box<dyn oceanflow_connectors::PartitionReader>)
    });
    Ok(vec![Partition { id, open }])
}
