//! Pure incremental aggregate operators of oceanflow, on timely and differential dataflow.
//!
//! Nothing here touches files, sockets or clocks: inputs are canonical Arrow batches and
//! differential collections, outputs are collections.
//!
//! Layout:
//! - [`agg`]: the aggregate difference type ([`Stats`]): count, mean, M2, min, max.
//! - [`keys`]: [`GroupKey`] of every family, [`DistinctKey`] of distinct counts.
//! - [`spec`]: [`AggregateSpec`](spec::AggregateSpec), the typed settings taken from the
//!   config.
//! - [`calendar`]: UTC bucket ranges and calendar parts of event times (µs).
//! - [`regional`]: the polygon index ([`RegionIndex`](regional::RegionIndex),
//!   point-in-polygon through an R-tree; boundaries count as inside).
//! - [`late`]: per-partition [`Watermark`](late::Watermark) and the lateness split.
//! - [`preagg`]: columnar pre-aggregation of one batch into partial aggregates per key
//!   ([`PreAggregator`](preagg::PreAggregator) → [`Partials`](preagg::Partials)).
//! - [`dataflow`]: the differential dataflow that accumulates partials into aggregates
//!   ([`aggregates`](dataflow::aggregates), [`distinct_counts`](dataflow::distinct_counts)).
//! - [`view`]: [`AggregateView`](view::AggregateView), the current aggregates kept from the
//!   dataflow's changelogs, for export.
//!
//! Per batch: `Watermark::split` → `PreAggregator::aggregate_kept` → the partials enter the
//! dataflow as differences at the partition's watermark (one timestamp per batch) →
//! `aggregates` / `distinct_counts` emit changelogs → `AggregateView::apply_changes`.
#![deny(missing_docs)]

pub mod agg;
pub mod calendar;
pub mod dataflow;
pub mod keys;
pub mod late;
pub mod preagg;
pub mod regional;
pub mod spec;
pub mod view;

pub use agg::{Stats, VarStats};
pub use keys::{DistinctKey, GroupKey};
