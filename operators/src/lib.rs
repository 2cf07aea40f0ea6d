//! Pure incremental aggregate operators of oceanflow, on timely and differential dataflow.
//!
//! Nothing here touches files, sockets or clocks: inputs are canonical Arrow batches and
//! differential collections, outputs are collections.
//!
//! Layout:
//! - [`agg`]: the aggregate difference type ([`Stats`]): count, mean, M2, min, max.
//! - [`keys`]: [`GroupKey`] of every family, [`DistinctKey`] of distinct counts.
//! - [`spec`]: [`AggregateSpec`], the typed settings taken from the config.
//! - [`regional`]: the polygon index (point-in-polygon through an R-tree).
//! - [`preagg`]: columnar pre-aggregation of one batch into partial aggregates per key.
//! - [`late`]: per-partition watermark and lateness split.
//! - [`dataflow`]: the differential dataflow that accumulates partials into aggregates.
#![deny(missing_docs)]

pub mod agg;
pub mod keys;

pub use agg::{Stats, VarStats};
pub use keys::{DistinctKey, GroupKey};
