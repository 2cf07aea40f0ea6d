//! The connector's metrics, registered in `partitions()`. Every family carries a constant
//! `source` label, so two ODP sources register distinct series in the same registry. The
//! pipeline may list a source's partitions more than once per process (once per timely
//! worker), so a source whose families are already registered reuses them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// The metrics last registered per source name in this process.
fn registered() -> &'static Mutex<HashMap<String, Arc<OdpMetrics>>> {
    static REGISTERED: OnceLock<Mutex<HashMap<String, Arc<OdpMetrics>>>> = OnceLock::new();
    REGISTERED.get_or_init(Default::default)
}

/// Counters and the page-latency histogram of one ODP source.
#[derive(Debug, Clone)]
pub struct OdpMetrics {
    /// HTTP requests by call (`stats`, `schema`, `select`).
    pub requests: IntCounterVec,
    /// Retried failures by HTTP status (`429`, `503`…) or `connection`.
    pub retries: IntCounterVec,
    /// Response body bytes read.
    pub bytes: IntCounter,
    /// Record batches received (zero-row carriers included).
    pub batches: IntCounter,
    /// Rows delivered to the pipeline (before canonical validation).
    pub rows: IntCounter,
    /// Seconds per select page, retries included.
    pub page_seconds: Histogram,
}

impl OdpMetrics {
    /// The metrics of `source` in `registry`: registered now, or — when this process already
    /// registered them there — the same collectors again.
    pub fn shared(registry: &Registry, source: &str) -> Result<Arc<OdpMetrics>, prometheus::Error> {
        let mut known = registered().lock().unwrap_or_else(PoisonError::into_inner);
        match OdpMetrics::register(registry, source) {
            Ok(metrics) => {
                let metrics = Arc::new(metrics);
                known.insert(source.to_string(), Arc::clone(&metrics));
                Ok(metrics)
            }
            Err(prometheus::Error::AlreadyReg) => known
                .get(source)
                .cloned()
                .ok_or(prometheus::Error::AlreadyReg),
            Err(e) => Err(e),
        }
    }

    /// Creates the families for `source` and registers them in `registry`.
    pub fn register(registry: &Registry, source: &str) -> Result<OdpMetrics, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("source", source);
        let metrics = OdpMetrics {
            requests: IntCounterVec::new(
                opts("oceanflow_odp_requests_total", "ODP HTTP requests by call."),
                &["call"],
            )?,
            retries: IntCounterVec::new(
                opts(
                    "oceanflow_odp_retries_total",
                    "ODP requests retried, by HTTP status or `connection`.",
                ),
                &["status"],
            )?,
            bytes: IntCounter::with_opts(opts(
                "oceanflow_odp_bytes_total",
                "ODP response body bytes read.",
            ))?,
            batches: IntCounter::with_opts(opts(
                "oceanflow_odp_batches_total",
                "Arrow record batches received from ODP.",
            ))?,
            rows: IntCounter::with_opts(opts(
                "oceanflow_odp_rows_total",
                "Rows received from ODP and handed to the pipeline.",
            ))?,
            page_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "oceanflow_odp_page_seconds",
                    "Seconds to read one ODP select page, retries included.",
                )
                .const_label("source", source)
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.retries.clone()))?;
        registry.register(Box::new(metrics.bytes.clone()))?;
        registry.register(Box::new(metrics.batches.clone()))?;
        registry.register(Box::new(metrics.rows.clone()))?;
        registry.register(Box::new(metrics.page_seconds.clone()))?;
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_a_source_twice_reuses_its_metrics_and_sources_do_not_collide() {
        let registry = Registry::new();
        let a = OdpMetrics::shared(&registry, "metrics-test-a").unwrap();
        let again = OdpMetrics::shared(&registry, "metrics-test-a").unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        let b = OdpMetrics::shared(&registry, "metrics-test-b").unwrap();
        a.rows.inc_by(3);
        b.rows.inc_by(4);
        let rows = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "oceanflow_odp_rows_total")
            .unwrap();
        assert_eq!(rows.get_metric().len(), 2);
        // A fresh registry (another pipeline in the same process) gets its own.
        let other = Registry::new();
        let fresh = OdpMetrics::shared(&other, "metrics-test-a").unwrap();
        assert!(!Arc::ptr_eq(&a, &fresh));
    }
}
