//! The aggregate tables as JSON: the shapes of `/api/v1/*` and of `run --once --output`.
//!
//! A [`Snapshot`] merges the per-worker views (their keys are disjoint) into sorted rows, so
//! output does not depend on the number of workers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use oceanflow_config::{BucketWidth, CalendarPart, ValidConfig};
use oceanflow_operators::view::AggregateView;
use oceanflow_operators::{Stats, VarStats};
use serde::Serialize;

use crate::sync::lock;
use oceanflow_connectors::record::format_time_us;

/// Statistics of one variable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariableSummary {
    /// Non-null values.
    pub count: u64,
    /// Mean (null without values).
    pub mean: Option<f64>,
    /// Minimum.
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Sample standard deviation, n − 1 (null below two values).
    pub stddev: Option<f64>,
}

impl From<&VarStats> for VariableSummary {
    fn from(s: &VarStats) -> Self {
        VariableSummary {
            count: s.count,
            mean: s.mean(),
            min: s.min(),
            max: s.max(),
            stddev: s.stddev(),
        }
    }
}

/// One row of `/api/v1/stations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationRow {
    /// Station id.
    pub station: String,
    /// Observations.
    pub count: u64,
    /// Per-variable statistics, by variable name.
    pub variables: BTreeMap<String, VariableSummary>,
}

/// One row of `/api/v1/temporal`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemporalRow {
    /// `hour`, `day`, `month`, `year`, `month_of_year`, `day_of_week` or `hour_of_day`.
    pub grouping: &'static str,
    /// Bucket start (RFC 3339, UTC) or the calendar part's number.
    pub key: String,
    /// The station, for per-station buckets; null over all stations.
    pub station: Option<String>,
    /// Observations.
    pub count: u64,
    /// Per-variable statistics.
    pub variables: BTreeMap<String, VariableSummary>,
    /// True for UTC buckets, false for calendar parts.
    #[serde(skip)]
    pub is_bucket: bool,
}

/// One row of `/api/v1/regions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionRow {
    /// Region name.
    pub region: String,
    /// Observations inside the region.
    pub count: u64,
    /// Per-variable statistics.
    pub variables: BTreeMap<String, VariableSummary>,
    /// Distinct values per categorical field.
    pub distinct: BTreeMap<String, u64>,
}

/// All aggregate tables, sorted: the `--output` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Per station, by station id.
    pub stations: Vec<StationRow>,
    /// Per bucket and calendar part: groupings in a fixed order, then key, then station.
    pub temporal: Vec<TemporalRow>,
    /// Per region, in config order (regions without observations included, with zeros).
    pub regions: Vec<RegionRow>,
}

impl Snapshot {
    /// Merges the per-worker views into sorted tables.
    pub fn collect(config: &ValidConfig, views: &[Arc<Mutex<AggregateView>>]) -> Snapshot {
        let variables = &config.config().variables;
        let summarise = |stats: &Stats| -> BTreeMap<String, VariableSummary> {
            variables
                .iter()
                .zip(&stats.vars)
                .map(|(name, v)| (name.clone(), VariableSummary::from(v)))
                .collect()
        };

        let mut stations = Vec::new();
        let mut temporal: Vec<(TemporalOrder, TemporalRow)> = Vec::new();
        let mut region_stats: BTreeMap<u32, Stats> = BTreeMap::new();
        let mut distinct: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for view in views {
            let view = lock(view);
            for (station, stats) in view.stations() {
                stations.push(StationRow {
                    station: station.to_string(),
                    count: stats.count,
                    variables: summarise(stats),
                });
            }
            for (width, station, start_us, stats) in view.buckets() {
                temporal.push((
                    (bucket_order(width), start_us, station.map(String::from)),
                    TemporalRow {
                        grouping: width.as_str(),
                        key: format_time_us(start_us),
                        station: station.map(String::from),
                        count: stats.count,
                        variables: summarise(stats),
                        is_bucket: true,
                    },
                ));
            }
            for (part, value, stats) in view.calendar() {
                temporal.push((
                    (calendar_order(part), i64::from(value), None),
                    TemporalRow {
                        grouping: part.as_str(),
                        key: value.to_string(),
                        station: None,
                        count: stats.count,
                        variables: summarise(stats),
                        is_bucket: false,
                    },
                ));
            }
            for (region, stats) in view.regions() {
                region_stats.entry(region).or_default().merge(stats);
            }
            for (key, count) in view.distinct_counts() {
                *distinct.entry(key).or_default() += count as u64;
            }
        }
        stations.sort_by(|a, b| a.station.cmp(&b.station));
        temporal.sort_by(|a, b| a.0.cmp(&b.0));

        let regions = config
            .regions()
            .iter()
            .enumerate()
            .map(|(i, region)| {
                let id = i as u32;
                let stats = region_stats
                    .remove(&id)
                    .unwrap_or_else(|| Stats::empty(variables.len()));
                RegionRow {
                    region: region.name.clone(),
                    count: stats.count,
                    variables: summarise(&Stats {
                        count: stats.count,
                        vars: pad(stats.vars, variables.len()),
                        retracted: 0,
                    }),
                    distinct: config
                        .distinct_fields()
                        .iter()
                        .enumerate()
                        .map(|(f, field)| {
                            (
                                field.clone(),
                                distinct.get(&(id, f as u32)).copied().unwrap_or(0),
                            )
                        })
                        .collect(),
                }
            })
            .collect();

        Snapshot {
            stations,
            temporal: temporal.into_iter().map(|(_, row)| row).collect(),
            regions,
        }
    }
}

/// Sort key of temporal rows: grouping (fixed order), bucket start or part value, station.
type TemporalOrder = (u8, i64, Option<String>);

fn pad(mut vars: Vec<VarStats>, len: usize) -> Vec<VarStats> {
    vars.resize(len.max(vars.len()), VarStats::EMPTY);
    vars
}

fn bucket_order(width: BucketWidth) -> u8 {
    match width {
        BucketWidth::Hour => 0,
        BucketWidth::Day => 1,
        BucketWidth::Month => 2,
        BucketWidth::Year => 3,
    }
}

fn calendar_order(part: CalendarPart) -> u8 {
    match part {
        CalendarPart::MonthOfYear => 4,
        CalendarPart::DayOfWeek => 5,
        CalendarPart::HourOfDay => 6,
    }
}
