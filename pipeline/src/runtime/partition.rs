//! One partition as a worker reads it: its reader, its lanes' watermarks, where it stands and
//! what has been acknowledged.

use std::time::{Duration, Instant};

use oceanflow_connectors::{PartitionReader, Position};

use super::lanes::LaneWatermarks;
use crate::checkpoint::PartitionState;

/// How a partition's reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Being read.
    Open,
    /// Read to the end; kept until its last position is acknowledged and checkpointed.
    Finished,
    /// Stopped with an error; kept so checkpoints still hold where it got to.
    Failed,
}

/// One partition being read by a worker.
pub(crate) struct OpenPartition {
    pub source_index: usize,
    pub source: String,
    pub id: String,
    pub reader: Box<dyn PartitionReader>,
    pub lanes: LaneWatermarks,
    pub reading: Reading,
    /// Position after the last batch read.
    pub position: Option<Position>,
    /// The last position acknowledged to the reader.
    pub acknowledged: Option<Position>,
    /// Resumed from a checkpoint, and no checkpoint written since: its rows may have been
    /// counted before the crash (the replayed-rows metric).
    pub replaying: bool,
}

impl OpenPartition {
    /// What a checkpoint records of it.
    pub fn state(&self) -> PartitionState {
        PartitionState {
            source: self.source.clone(),
            id: self.id.clone(),
            position: self.position.as_ref().map(|p| p.0.to_string()),
            lanes: self.lanes.max_seen_per_lane(),
            finished: self.reading == Reading::Finished,
        }
    }

    /// Its contribution to the worker's low watermark: `None` when it is not being read or
    /// every lane is idle past `idle_timeout`.
    pub fn low_watermark(&self, now: Instant, idle_timeout: Duration) -> Option<i64> {
        if self.reading != Reading::Open {
            return None;
        }
        self.lanes.low_watermark(now, idle_timeout)
    }

    /// Whether it can be dropped: no longer read and its last position acknowledged.
    pub fn settled(&self) -> bool {
        self.reading != Reading::Open && self.position == self.acknowledged
    }
}
