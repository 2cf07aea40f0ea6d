//! The pipeline's own health metrics, registered in a registry that is passed in (so tests can
//! use their own). Updated per batch, never per row.

pub mod names;

use oceanflow_connectors::RejectReason;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Health metrics of sources, dead letters and dataflow state.
#[derive(Clone)]
pub struct PipelineMetrics {
    /// See [`names::SOURCE_ROWS`].
    pub source_rows: IntCounterVec,
    /// See [`names::SOURCE_REJECTED`].
    pub source_rejected: IntCounterVec,
    /// See [`names::SOURCE_LATE`].
    pub source_late: IntCounterVec,
    /// See [`names::SOURCE_BATCHES`].
    pub source_batches: IntCounterVec,
    /// See [`names::SOURCE_BYTES`].
    pub source_bytes: IntCounterVec,
    /// See [`names::SOURCE_ERRORS`].
    pub source_errors: IntCounterVec,
    /// See [`names::SOURCE_PARTITIONS_FINISHED`].
    pub source_partitions_finished: IntCounterVec,
    /// See [`names::SOURCE_WATERMARK`].
    pub source_watermark: IntGaugeVec,
    /// See [`names::DEAD_LETTER_ROWS`].
    pub dead_letter_rows: IntCounter,
    /// See [`names::FRONTIER`].
    pub frontier: IntGauge,
    /// See [`names::STATE_KEYS`].
    pub state_keys: IntGaugeVec,
    /// See [`names::EXPIRED_BUCKETS`].
    pub expired_buckets: IntCounterVec,
    /// See [`names::CHECKPOINTS`].
    pub checkpoints: IntCounterVec,
    /// See [`names::CHECKPOINT_DURATION`].
    pub checkpoint_duration_ms: IntGauge,
    /// See [`names::CHECKPOINT_BYTES`].
    pub checkpoint_bytes: IntGauge,
    /// See [`names::CHECKPOINT_LAST_SUCCESS`].
    pub checkpoint_last_success: IntGauge,
    /// See [`names::RESTORES`].
    pub restores: IntCounter,
    /// See [`names::RESTORED_KEYS`].
    pub restored_keys: IntGauge,
    /// See [`names::REPLAYED_ROWS`].
    pub replayed_rows: IntCounterVec,
    /// See [`names::SOURCE_NON_FINITE`].
    pub source_non_finite: IntCounterVec,
}

impl PipelineMetrics {
    /// Registers every metric in `registry` and pre-creates the series of each source, so a
    /// source with no rejections shows zeros rather than nothing.
    pub fn register(registry: &Registry, sources: &[String]) -> prometheus::Result<Self> {
        fn counter_vec(
            registry: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
        ) -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        }
        fn gauge_vec(
            registry: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
        ) -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        }
        fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        }
        let source = &["source"];
        let metrics = PipelineMetrics {
            source_rows: counter_vec(
                registry,
                names::SOURCE_ROWS,
                "Rows accepted into the aggregates.",
                source,
            )?,
            source_rejected: counter_vec(
                registry,
                names::SOURCE_REJECTED,
                "Rows rejected, by reason.",
                &["source", "reason"],
            )?,
            source_late: counter_vec(
                registry,
                names::SOURCE_LATE,
                "Out-of-order rows accepted within the allowed lateness.",
                source,
            )?,
            source_batches: counter_vec(registry, names::SOURCE_BATCHES, "Batches read.", source)?,
            source_bytes: counter_vec(
                registry,
                names::SOURCE_BYTES,
                "Input bytes consumed.",
                source,
            )?,
            source_errors: counter_vec(
                registry,
                names::SOURCE_ERRORS,
                "Partitions that stopped with an error.",
                source,
            )?,
            source_partitions_finished: counter_vec(
                registry,
                names::SOURCE_PARTITIONS_FINISHED,
                "Partitions read to the end.",
                source,
            )?,
            source_watermark: gauge_vec(
                registry,
                names::SOURCE_WATERMARK,
                "Event-time watermark of the source, Unix seconds.",
                source,
            )?,
            dead_letter_rows: {
                let c = IntCounter::new(
                    names::DEAD_LETTER_ROWS,
                    "Rows written to the dead-letter output.",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            frontier: {
                let g = IntGauge::new(
                    names::FRONTIER,
                    "Event time up to which every aggregate is final, Unix seconds.",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            state_keys: gauge_vec(
                registry,
                names::STATE_KEYS,
                "Live aggregate keys per family.",
                &["family"],
            )?,
            expired_buckets: counter_vec(
                registry,
                names::EXPIRED_BUCKETS,
                "Buckets dropped from the live aggregates by retention.",
                &["grouping"],
            )?,
            checkpoints: counter_vec(
                registry,
                names::CHECKPOINTS,
                "Checkpoints attempted, by outcome.",
                &["outcome"],
            )?,
            checkpoint_duration_ms: gauge(
                registry,
                names::CHECKPOINT_DURATION,
                "Duration of the last checkpoint write, milliseconds.",
            )?,
            checkpoint_bytes: gauge(
                registry,
                names::CHECKPOINT_BYTES,
                "Size of the last checkpoint file, bytes.",
            )?,
            checkpoint_last_success: gauge(
                registry,
                names::CHECKPOINT_LAST_SUCCESS,
                "When the last good checkpoint was written, Unix seconds.",
            )?,
            restores: {
                let c = IntCounter::new(names::RESTORES, "Restores from a checkpoint at start.")?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            restored_keys: gauge(
                registry,
                names::RESTORED_KEYS,
                "Aggregate keys and distinct values loaded by the restore.",
            )?,
            replayed_rows: counter_vec(
                registry,
                names::REPLAYED_ROWS,
                "Rows read from resumed partitions before the first checkpoint after a restore.",
                source,
            )?,
            source_non_finite: counter_vec(
                registry,
                names::SOURCE_NON_FINITE,
                "Variable values that were not finite (NaN, inf, beyond f64) and count as missing.",
                &["source", "variable"],
            )?,
        };
        for outcome in ["ok", "failed"] {
            metrics.checkpoints.with_label_values(&[outcome]).reset();
        }
        let build_info = IntGaugeVec::new(
            Opts::new(names::BUILD_INFO, "Constant 1, labelled with the version."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for s in sources {
            for c in [
                &metrics.source_rows,
                &metrics.source_late,
                &metrics.source_batches,
                &metrics.source_bytes,
                &metrics.source_errors,
                &metrics.source_partitions_finished,
                &metrics.replayed_rows,
            ] {
                c.with_label_values(&[s]).reset();
            }
            for reason in RejectReason::ALL {
                metrics
                    .source_rejected
                    .with_label_values(&[s.as_str(), reason.as_str()])
                    .reset();
            }
        }
        Ok(metrics)
    }
}
