//! Every metric name oceanflow exports, in one place (see README "Metrics").

/// Rows accepted into the aggregates, per source. Labels: `source`.
pub const SOURCE_ROWS: &str = "oceanflow_source_rows_total";
/// Rows rejected, per source and reason (dead-lettered when configured). Labels: `source`, `reason`.
pub const SOURCE_REJECTED: &str = "oceanflow_source_rejected_rows_total";
/// Rows behind their partition's newest event time but within the allowed lateness (accepted). Labels: `source`.
pub const SOURCE_LATE: &str = "oceanflow_source_late_rows_total";
/// Batches read, per source. Labels: `source`.
pub const SOURCE_BATCHES: &str = "oceanflow_source_batches_total";
/// Input bytes consumed, per source. Labels: `source`.
pub const SOURCE_BYTES: &str = "oceanflow_source_bytes_total";
/// Partitions that failed with an error, per source. Labels: `source`.
pub const SOURCE_ERRORS: &str = "oceanflow_source_errors_total";
/// Partitions read to the end, per source. Labels: `source`.
pub const SOURCE_PARTITIONS_FINISHED: &str = "oceanflow_source_partitions_finished_total";
/// Event-time watermark of the source (lowest over its active partitions), Unix seconds. Labels: `source`.
pub const SOURCE_WATERMARK: &str = "oceanflow_source_watermark_seconds";
/// Rows written to the dead-letter output.
pub const DEAD_LETTER_ROWS: &str = "oceanflow_dead_letter_rows_total";
/// Event-time frontier up to which every aggregate is final, Unix seconds.
pub const FRONTIER: &str = "oceanflow_aggregates_frontier_seconds";
/// Live aggregate keys, per family. Labels: `family`.
pub const STATE_KEYS: &str = "oceanflow_state_keys";
/// Buckets dropped from the live aggregates by retention. Labels: `grouping`.
pub const EXPIRED_BUCKETS: &str = "oceanflow_expired_buckets_total";
/// Checkpoints attempted, by outcome (`ok`, `failed`). Labels: `outcome`.
pub const CHECKPOINTS: &str = "oceanflow_checkpoints_total";
/// Duration of the last checkpoint write, milliseconds.
pub const CHECKPOINT_DURATION: &str = "oceanflow_checkpoint_duration_milliseconds";
/// Size of the last checkpoint file, bytes.
pub const CHECKPOINT_BYTES: &str = "oceanflow_checkpoint_bytes";
/// When the last good checkpoint was written, Unix seconds (its age is `time() - this`).
pub const CHECKPOINT_LAST_SUCCESS: &str = "oceanflow_checkpoint_last_success_timestamp_seconds";
/// Restores from a checkpoint at start (0 or 1 per process).
pub const RESTORES: &str = "oceanflow_restores_total";
/// Aggregate keys and distinct values loaded by the restore.
pub const RESTORED_KEYS: &str = "oceanflow_restored_keys";
/// Rows read from resumed partitions before the first checkpoint after a restore: an upper
/// bound on the rows processed again because of the crash. Labels: `source`.
pub const REPLAYED_ROWS: &str = "oceanflow_replayed_rows_total";
/// Variable values that were not finite (NaN, ±inf, or a literal beyond f64 such as `1e400`)
/// and so were treated as missing. Labels: `source`, `variable`.
pub const SOURCE_NON_FINITE: &str = "oceanflow_source_non_finite_values_total";
/// Constant 1, labelled with the version.
pub const BUILD_INFO: &str = "oceanflow_build_info";

/// Observations per station. Labels: `station`.
pub const STATION_OBSERVATIONS: &str = "oceanflow_station_observations_total";
/// Prefix of the per-station variable statistics (`_observations_total`, `_mean`, `_min`, `_max`, `_stddev`). Labels: `station`, `variable`.
pub const STATION_VARIABLE: &str = "oceanflow_station_variable";
/// Observations per temporal bucket or calendar part. Labels: `grouping`, `bucket`, `station` (empty for all stations).
pub const TEMPORAL_OBSERVATIONS: &str = "oceanflow_temporal_observations_total";
/// Prefix of the temporal variable statistics. Labels: `grouping`, `bucket`, `station`, `variable`.
pub const TEMPORAL_VARIABLE: &str = "oceanflow_temporal_variable";
/// Observations per region. Labels: `region`.
pub const REGION_OBSERVATIONS: &str = "oceanflow_region_observations_total";
/// Prefix of the regional variable statistics. Labels: `region`, `variable`.
pub const REGION_VARIABLE: &str = "oceanflow_region_variable";
/// Distinct values of a categorical field per region. Labels: `region`, `field`.
pub const REGION_DISTINCT: &str = "oceanflow_region_distinct_values";
