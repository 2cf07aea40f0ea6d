//! Aggregate families: per station, temporal (UTC buckets and calendar parts), regional.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which aggregate families run, and how.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatesConfig {
    /// Per-station count and per-variable statistics.
    #[serde(default)]
    pub station: StationConfig,
    /// Counts and statistics per UTC bucket and per calendar part.
    #[serde(default)]
    pub temporal: TemporalConfig,
    /// Counts, statistics and distinct counts per region.
    #[serde(default)]
    pub regional: RegionalConfig,
}

impl AggregatesConfig {
    /// The names `--aggregates` takes: the families `station` and `regions`, bucket widths
    /// over all stations (`hour`, `day`, `month`, `year`), per station (`station_hour`, ...),
    /// and calendar parts (`month_of_year`, `day_of_week`, `hour_of_day`).
    pub const NAMES: &'static str = "station, regions, hour, day, month, year, station_hour, \
station_day, station_month, station_year, month_of_year, day_of_week, hour_of_day";

    /// Keeps only the aggregates `names` lists (see [`AggregatesConfig::NAMES`]); the
    /// retention of a width that stays and the distinct fields are kept. An unknown name is
    /// an error naming it and the known ones.
    pub fn select(&mut self, names: &[String]) -> Result<(), String> {
        let (mut buckets, mut station_buckets, mut calendar) = (Vec::new(), Vec::new(), Vec::new());
        let (mut station, mut regions) = (false, false);
        for name in names {
            let width = |n: &str| BucketWidth::ALL.into_iter().find(|w| w.as_str() == n);
            let part = CalendarPart::ALL.into_iter().find(|p| p.as_str() == name);
            match name.as_str() {
                "station" => station = true,
                "regions" => regions = true,
                n => match (width(n), n.strip_prefix("station_").and_then(width), part) {
                    (Some(w), _, _) => buckets.push(w),
                    (_, Some(w), _) => station_buckets.push(w),
                    (_, _, Some(p)) => calendar.push(p),
                    _ => {
                        return Err(format!(
                            "unknown aggregate {n:?}; expected some of: {}",
                            Self::NAMES
                        ))
                    }
                },
            }
        }
        let temporal = &mut self.temporal;
        temporal.enabled =
            !(buckets.is_empty() && station_buckets.is_empty() && calendar.is_empty());
        temporal
            .retention
            .retain(|w, _| buckets.contains(w) || station_buckets.contains(w));
        (
            temporal.buckets,
            temporal.station_buckets,
            temporal.calendar,
        ) = (buckets, station_buckets, calendar);
        self.station.enabled = station;
        self.regional.enabled = regions;
        Ok(())
    }
}

/// Per-station family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for StationConfig {
    fn default() -> Self {
        StationConfig { enabled: true }
    }
}

/// Temporal family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalConfig {
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// UTC bucket widths aggregated over all stations. Default `["hour", "day", "month", "year"]`.
    #[serde(default = "default_buckets")]
    pub buckets: Vec<BucketWidth>,
    /// UTC bucket widths aggregated per station. Default `["day"]`; each entry multiplies the
    /// state by the number of stations.
    #[serde(default = "default_station_buckets")]
    pub station_buckets: Vec<BucketWidth>,
    /// Calendar parts aggregated over all stations. Default `["month_of_year", "hour_of_day"]`.
    #[serde(default = "default_calendar")]
    pub calendar: Vec<CalendarPart>,
    /// How long a bucket stays in the live aggregates after it ends, per width, measured
    /// against the event-time watermark. A width without an entry is kept for ever.
    #[serde(default, with = "retention_serde")]
    pub retention: BTreeMap<BucketWidth, Duration>,
}

impl Default for TemporalConfig {
    fn default() -> Self {
        TemporalConfig {
            enabled: true,
            buckets: default_buckets(),
            station_buckets: default_station_buckets(),
            calendar: default_calendar(),
            retention: BTreeMap::new(),
        }
    }
}

/// Regional family. The regions themselves are `[[regions]]` at the top level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionalConfig {
    /// Default true (needs at least one region to produce anything).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Categorical fields whose distinct values are counted per region. Absent means every
    /// configured categorical field.
    #[serde(default)]
    pub distinct: Option<Vec<String>>,
}

impl Default for RegionalConfig {
    fn default() -> Self {
        RegionalConfig {
            enabled: true,
            distinct: None,
        }
    }
}

/// A UTC-aligned bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketWidth {
    /// `[hh:00, hh+1:00)`.
    Hour,
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
    /// A UTC calendar year.
    Year,
}

impl BucketWidth {
    /// The name used in output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketWidth::Hour => "hour",
            BucketWidth::Day => "day",
            BucketWidth::Month => "month",
            BucketWidth::Year => "year",
        }
    }

    /// All widths, finest first.
    pub const ALL: [BucketWidth; 4] = [
        BucketWidth::Hour,
        BucketWidth::Day,
        BucketWidth::Month,
        BucketWidth::Year,
    ];
}

/// A calendar part of the UTC event time; rows of different years share a key. (Counts by
/// year are the `year` bucket.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarPart {
    /// 1 to 12.
    MonthOfYear,
    /// 1 (Monday) to 7 (Sunday), ISO 8601.
    DayOfWeek,
    /// 0 to 23.
    HourOfDay,
}

impl CalendarPart {
    /// All parts.
    pub const ALL: [CalendarPart; 3] = [
        CalendarPart::MonthOfYear,
        CalendarPart::DayOfWeek,
        CalendarPart::HourOfDay,
    ];

    /// The name used in output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CalendarPart::MonthOfYear => "month_of_year",
            CalendarPart::DayOfWeek => "day_of_week",
            CalendarPart::HourOfDay => "hour_of_day",
        }
    }
}

fn yes() -> bool {
    true
}
fn default_buckets() -> Vec<BucketWidth> {
    BucketWidth::ALL.to_vec()
}
fn default_station_buckets() -> Vec<BucketWidth> {
    vec![BucketWidth::Day]
}
fn default_calendar() -> Vec<CalendarPart> {
    vec![CalendarPart::MonthOfYear, CalendarPart::HourOfDay]
}

mod retention_serde {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::BucketWidth;

    pub fn serialize<S: Serializer>(
        value: &BTreeMap<BucketWidth, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let text: BTreeMap<BucketWidth, String> = value
            .iter()
            .map(|(w, d)| (*w, humantime::format_duration(*d).to_string()))
            .collect();
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<BucketWidth, Duration>, D::Error> {
        let text = BTreeMap::<BucketWidth, String>::deserialize(d)?;
        text.into_iter()
            .map(|(w, t)| {
                humantime::parse_duration(&t).map(|d| (w, d)).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "expected a duration such as \"48h\" or \"400days\", got {t:?} ({e})"
                    ))
                })
            })
            .collect()
    }
}
