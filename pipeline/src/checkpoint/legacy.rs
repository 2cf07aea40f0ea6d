//! Frozen copies of older checkpoint body layouts, and their conversion to today's
//! [`Checkpoint`]. A copy here never changes: it is what the files of its version hold.
//!
//! Types a version shares with today's layout ([`Layout`], [`PartitionState`], the keys) are
//! used directly; when one of them changes, its old shape is copied here first.

use oceanflow_operators::{DistinctKey, GroupKey, Stats, VarStats};
use serde::Deserialize;

use super::{Checkpoint, Layout, PartitionState};
use crate::runtime::WHOLE_PARTITION;

/// The body of a version 1 checkpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct CheckpointV1 {
    pub sequence: u64,
    pub created_unix_ms: i64,
    pub layout: Layout,
    pub groups: Vec<(GroupKey, StatsV1)>,
    pub distinct: Vec<DistinctKey>,
    pub partitions: Vec<PartitionStateV1>,
}

/// `PartitionState` in version 1: one newest event time per partition (a partition was one
/// lane).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct PartitionStateV1 {
    pub source: String,
    pub id: String,
    pub position: Option<String>,
    pub max_event_us: Option<i64>,
    pub finished: bool,
}

/// `Stats` in version 1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct StatsV1 {
    pub count: u64,
    pub vars: Vec<VarStatsV1>,
    pub retracted: u64,
}

/// `VarStats` in version 1: moments about the mean, no shift.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct VarStatsV1 {
    pub count: u64,
    pub mean: f64,
    pub m2: f64,
    pub min: f64,
    pub max: f64,
}

/// Decodes a version 1 body into today's checkpoint.
pub(super) fn decode_v1(body: &[u8]) -> Result<Checkpoint, bincode::Error> {
    bincode::deserialize::<CheckpointV1>(body).map(Checkpoint::from)
}

impl From<CheckpointV1> for Checkpoint {
    fn from(v1: CheckpointV1) -> Checkpoint {
        Checkpoint {
            sequence: v1.sequence,
            created_unix_ms: v1.created_unix_ms,
            layout: v1.layout,
            groups: v1
                .groups
                .into_iter()
                .map(|(key, stats)| (key, stats.into()))
                .collect(),
            distinct: v1.distinct,
            partitions: v1
                .partitions
                .into_iter()
                .map(PartitionState::from)
                .collect(),
        }
    }
}

impl From<PartitionStateV1> for PartitionState {
    fn from(v1: PartitionStateV1) -> PartitionState {
        PartitionState {
            source: v1.source,
            id: v1.id,
            position: v1.position,
            lanes: v1
                .max_event_us
                .map(|t| (WHOLE_PARTITION.to_string(), t))
                .into_iter()
                .collect(),
            finished: v1.finished,
        }
    }
}

impl From<StatsV1> for Stats {
    fn from(v1: StatsV1) -> Stats {
        Stats {
            count: v1.count,
            vars: v1
                .vars
                .into_iter()
                .map(|v| VarStats::from_moments(v.count, v.mean, v.m2, v.min, v.max))
                .collect(),
            retracted: v1.retracted,
        }
    }
}
