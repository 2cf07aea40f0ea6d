//! Keys of the aggregate families.

use oceanflow_config::{BucketWidth, CalendarPart};
use serde::{Deserialize, Serialize};

/// The key of one aggregate. All families share one key type so that one arrangement (and one
/// exchange) serves them all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GroupKey {
    /// Per station.
    Station(String),
    /// A UTC bucket, over all stations (`station: None`) or one station.
    Bucket {
        /// Bucket width.
        width: BucketWidth,
        /// Bucket start, microseconds since the Unix epoch (UTC).
        start_us: i64,
        /// The station, for per-station buckets.
        station: Option<String>,
    },
    /// A calendar part over all stations, e.g. month_of_year = 1.
    Calendar {
        /// Which part.
        part: CalendarPart,
        /// Its value (1–12 for months, 0–23 for hours, 1–7 for ISO weekdays).
        value: u32,
    },
    /// A region, by index into the configured regions.
    Region(u32),
}

/// A distinct value of a categorical field inside a region: `(region, field, value)`, with the
/// region index into the configured regions and the field index into the distinct fields.
pub type DistinctKey = (u32, u32, String);
