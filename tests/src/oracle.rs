//! A plain batch computation of every aggregate family over rows held in memory — the oracle
//! the pipeline's output is compared with. Written independently of the operators: row by row,
//! two-pass statistics over exactly rounded sums, chrono calendar math, its own
//! boundary-inclusive point-in-polygon, and the bounded-run retention rule applied once to the
//! final frontier.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Months, TimeDelta, TimeZone, Timelike, Utc};
use serde_json::{json, Map, Value};

use crate::compare::{compare_documents, Tolerance};
use crate::exact::exact_sum;

/// One hour in µs.
pub const HOUR_US: i64 = 3_600_000_000;
/// One day in µs.
pub const DAY_US: i64 = 24 * HOUR_US;

/// One observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Event time, µs since the epoch.
    pub time_us: i64,
    /// Station id.
    pub station: String,
    /// Latitude (None: unknown).
    pub lat: Option<f64>,
    /// Longitude (None: unknown).
    pub lon: Option<f64>,
    /// Variables in order (None: missing).
    pub vars: Vec<Option<f64>>,
    /// Categorical fields in order.
    pub cats: Vec<Option<String>>,
}

/// A polygon as rings of (lon, lat); the first ring is the exterior, the others holes.
pub type Polygon = Vec<Vec<(f64, f64)>>;

/// What the oracle aggregates.
#[derive(Debug, Clone)]
pub struct OracleSpec {
    /// Variable names, in row order.
    pub variables: Vec<String>,
    /// Categorical field names, in row order (all are distinct-counted).
    pub categorical: Vec<String>,
    /// Bucket widths over all stations (`hour`, `day`, `month`, `year`).
    pub buckets: Vec<&'static str>,
    /// Bucket widths per station.
    pub station_buckets: Vec<&'static str>,
    /// Calendar parts (`month_of_year`, `day_of_week`, `hour_of_day`).
    pub calendar: Vec<&'static str>,
    /// Regions: name and polygons (each polygon: rings of (lon, lat); first ring exterior).
    pub regions: Vec<(String, Vec<Polygon>)>,
    /// Retention of a bounded run; `None`: every bucket is kept.
    pub retention: Option<BoundedRetention>,
}

/// Retention of a bounded (`--once`) run: with the final frontier `F = (max event time of the
/// rows) - allowed_lateness`, a bucket of a width listed in `keep` is expired iff its end is
/// `<= F - keep` (over all stations and per station alike); nothing expires during the run.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundedRetention {
    /// `pipeline.allowed_lateness` in µs.
    pub allowed_lateness_us: i64,
    /// Bucket width and how long its buckets are kept (µs of event time).
    pub keep: Vec<(&'static str, i64)>,
}

impl BoundedRetention {
    /// What config/default.toml sets: lateness 1 h, hourly buckets 30 days, daily 400 days
    /// (pinned against the embedded default by a unit test).
    pub fn default_config() -> BoundedRetention {
        BoundedRetention {
            allowed_lateness_us: HOUR_US,
            keep: vec![("hour", 30 * DAY_US), ("day", 400 * DAY_US)],
        }
    }

    /// Is the bucket of `width` starting at `start` expired once every row up to `max_time_us`
    /// has been read?
    fn expires(&self, width: &str, start: DateTime<Utc>, max_time_us: i64) -> bool {
        let frontier = max_time_us - self.allowed_lateness_us;
        self.keep.iter().any(|(w, keep)| {
            *w == width && bucket_end(width, start).timestamp_micros() <= frontier - keep
        })
    }
}

impl OracleSpec {
    /// The embedded default's aggregates (tutorial variables, three tutorial regions).
    pub fn tutorial(categorical: &[&str]) -> OracleSpec {
        let rect = |x0: f64, y0: f64, x1: f64, y1: f64| {
            vec![vec![vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]]
        };
        OracleSpec {
            variables: [
                "temperature_c",
                "salinity_psu",
                "depth_m",
                "dissolved_oxygen",
            ]
            .map(String::from)
            .to_vec(),
            categorical: categorical.iter().map(|s| s.to_string()).collect(),
            buckets: vec!["hour", "day", "month", "year"],
            station_buckets: vec!["day"],
            calendar: vec!["month_of_year", "hour_of_day"],
            regions: vec![
                ("north_sea".into(), rect(-5.0, 51.0, 9.0, 62.0)),
                ("norwegian_sea".into(), rect(-5.0, 62.0, 15.0, 72.0)),
                ("barents_sea".into(), rect(15.0, 68.0, 40.0, 80.0)),
            ],
            retention: None,
        }
    }

    /// [`OracleSpec::tutorial`] with the retention of config/default.toml: what
    /// `oceanflow run --input … --once` computes with the embedded default.
    pub fn default_config(categorical: &[&str]) -> OracleSpec {
        OracleSpec {
            retention: Some(BoundedRetention::default_config()),
            ..OracleSpec::tutorial(categorical)
        }
    }
}

/// Count and per-variable values of a group, kept whole for two-pass statistics.
#[derive(Debug, Default, Clone)]
struct Group {
    count: u64,
    values: Vec<Vec<f64>>,
}

impl Group {
    fn add(&mut self, row: &Row) {
        self.count += 1;
        self.values.resize(row.vars.len(), Vec::new());
        for (acc, v) in self.values.iter_mut().zip(&row.vars) {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                acc.push(v);
            }
        }
    }
}

/// The expected aggregates, keyed for comparison.
#[derive(Debug, Default)]
pub struct Expected {
    stations: BTreeMap<String, Group>,
    temporal: BTreeMap<(String, String, Option<String>), Group>,
    regions: BTreeMap<String, (Group, Vec<BTreeSet<String>>)>,
    variables: Vec<String>,
    categorical: Vec<String>,
}

fn bucket_start(width: &str, t: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m, d, h) = (t.year(), t.month(), t.day(), t.hour());
    let (m, d, h) = match width {
        "hour" => (m, d, h),
        "day" => (m, d, 0),
        "month" => (m, 1, 0),
        "year" => (1, 1, 0),
        other => panic!("unknown bucket width {other}"),
    };
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .expect("valid bucket start")
}

/// The (exclusive) end of the bucket of `width` starting at `start`.
fn bucket_end(width: &str, start: DateTime<Utc>) -> DateTime<Utc> {
    match width {
        "hour" => start + TimeDelta::hours(1),
        "day" => start + TimeDelta::days(1),
        "month" => start + Months::new(1),
        "year" => start + Months::new(12),
        other => panic!("unknown bucket width {other}"),
    }
}

fn calendar_value(part: &str, t: DateTime<Utc>) -> u32 {
    match part {
        "month_of_year" => t.month(),
        "day_of_week" => t.weekday().number_from_monday(),
        "hour_of_day" => t.hour(),
        other => panic!("unknown calendar part {other}"),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Is (x, y) on the segment a–b (within floating-point exactness)?
fn on_segment(x: f64, y: f64, a: (f64, f64), b: (f64, f64)) -> bool {
    let cross = (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0);
    cross == 0.0 && x >= a.0.min(b.0) && x <= a.0.max(b.0) && y >= a.1.min(b.1) && y <= a.1.max(b.1)
}

/// Even-odd test; the boundary counts as inside.
fn in_ring(x: f64, y: f64, ring: &[(f64, f64)]) -> (bool, bool) {
    let mut inside = false;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if on_segment(x, y, a, b) {
            return (true, true);
        }
        if (a.1 > y) != (b.1 > y) && x < (b.0 - a.0) * (y - a.1) / (b.1 - a.1) + a.0 {
            inside = !inside;
        }
    }
    (inside, false)
}

fn in_polygon(x: f64, y: f64, rings: &[Vec<(f64, f64)>]) -> bool {
    let Some((exterior, holes)) = rings.split_first() else {
        return false;
    };
    let (inside, _) = in_ring(x, y, exterior);
    if !inside {
        return false;
    }
    // Inside a hole (but not on its edge) is outside the polygon.
    !holes.iter().any(|hole| {
        let (inside_hole, on_edge) = in_ring(x, y, hole);
        inside_hole && !on_edge
    })
}

/// Computes every family over `rows`.
pub fn compute(spec: &OracleSpec, rows: &[Row]) -> Expected {
    let mut e = Expected {
        variables: spec.variables.clone(),
        categorical: spec.categorical.clone(),
        ..Expected::default()
    };
    for (name, _) in &spec.regions {
        e.regions.insert(
            name.clone(),
            (
                Group::default(),
                vec![BTreeSet::new(); spec.categorical.len()],
            ),
        );
    }
    let max_time_us = rows.iter().map(|r| r.time_us).max().unwrap_or(i64::MIN);
    let kept = |width: &str, start: DateTime<Utc>| {
        spec.retention
            .as_ref()
            .is_none_or(|r| !r.expires(width, start, max_time_us))
    };
    for row in rows {
        let t = Utc
            .timestamp_micros(row.time_us)
            .single()
            .expect("valid time");
        e.stations.entry(row.station.clone()).or_default().add(row);
        for (w, station) in spec
            .buckets
            .iter()
            .map(|w| (w, None))
            .chain(spec.station_buckets.iter().map(|w| (w, Some(&row.station))))
        {
            let start = bucket_start(w, t);
            if kept(w, start) {
                let key = (w.to_string(), rfc3339(start), station.cloned());
                e.temporal.entry(key).or_default().add(row);
            }
        }
        for part in &spec.calendar {
            let key = (part.to_string(), calendar_value(part, t).to_string(), None);
            e.temporal.entry(key).or_default().add(row);
        }
        if let (Some(lat), Some(lon)) = (row.lat, row.lon) {
            for (name, polygons) in &spec.regions {
                if polygons.iter().any(|p| in_polygon(lon, lat, p)) {
                    let (group, sets) = e.regions.get_mut(name).expect("region");
                    group.add(row);
                    for (set, value) in sets.iter_mut().zip(&row.cats) {
                        if let Some(v) = value {
                            set.insert(v.clone());
                        }
                    }
                }
            }
        }
    }
    e
}

/// A group's statistics in the `--output` shape: two passes over exactly rounded sums, so the
/// only roundings are the final divisions and square root.
fn summary(group: &Group, names: &[String]) -> (Value, Map<String, Value>) {
    let mut vars = Map::new();
    for (i, name) in names.iter().enumerate() {
        let values = group.values.get(i).map(Vec::as_slice).unwrap_or_default();
        let n = values.len();
        let stat = if n == 0 {
            json!({"count": 0, "mean": null, "min": null, "max": null, "stddev": null})
        } else {
            let mean = exact_sum(values.iter().copied()) / n as f64;
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // Σ(v − m)² − (Σ(v − m))²/n corrects for the rounding of m itself.
            let dev = exact_sum(values.iter().map(|v| v - mean));
            let sq = exact_sum(values.iter().map(|v| (v - mean) * (v - mean)));
            let stddev = (n > 1).then(|| ((sq - dev * dev / n as f64) / (n - 1) as f64).sqrt());
            json!({"count": n, "mean": mean, "min": min, "max": max, "stddev": stddev})
        };
        vars.insert(name.clone(), stat);
    }
    (group.count.into(), vars)
}

impl Expected {
    /// The expectation as an `--output` document (same tables, keys and fields).
    pub fn document(&self) -> Value {
        let names = &self.variables;
        let stations: Vec<Value> = self
            .stations
            .iter()
            .map(|(station, g)| {
                let (count, vars) = summary(g, names);
                json!({"station": station, "count": count, "variables": vars})
            })
            .collect();
        let temporal: Vec<Value> = self
            .temporal
            .iter()
            .map(|((grouping, key, station), g)| {
                let (count, vars) = summary(g, names);
                json!({"grouping": grouping, "key": key, "station": station,
                       "count": count, "variables": vars})
            })
            .collect();
        let regions: Vec<Value> = self
            .regions
            .iter()
            .map(|(region, (g, sets))| {
                let (count, vars) = summary(g, names);
                let distinct: Map<String, Value> = self
                    .categorical
                    .iter()
                    .zip(sets)
                    .map(|(field, set)| (field.clone(), set.len().into()))
                    .collect();
                json!({"region": region, "count": count, "variables": vars,
                       "distinct": distinct})
            })
            .collect();
        json!({"stations": stations, "temporal": temporal, "regions": regions})
    }

    /// Compares an `--output` document with the expectation within [`Tolerance::Loose`];
    /// returns every difference.
    pub fn diff(&self, actual: &Value) -> Vec<String> {
        self.diff_within(actual, Tolerance::Loose)
    }

    /// Compares an `--output` document with the expectation within `tolerance`.
    pub fn diff_within(&self, actual: &Value, tolerance: Tolerance) -> Vec<String> {
        compare_documents(&self.document(), actual, tolerance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_points_are_inside_and_holes_exclude() {
        let square = vec![vec![
            (0.0, 0.0),
            (10.0, 0.0),
            (10.0, 10.0),
            (0.0, 10.0),
            (0.0, 0.0),
        ]];
        assert!(in_polygon(0.0, 5.0, &square));
        assert!(in_polygon(10.0, 10.0, &square));
        assert!(in_polygon(5.0, 5.0, &square));
        assert!(!in_polygon(10.5, 5.0, &square));
        let mut with_hole = square.clone();
        with_hole.push(vec![
            (4.0, 4.0),
            (6.0, 4.0),
            (6.0, 6.0),
            (4.0, 6.0),
            (4.0, 4.0),
        ]);
        assert!(!in_polygon(5.0, 5.0, &with_hole));
        assert!(in_polygon(4.0, 5.0, &with_hole));
    }

    #[test]
    fn buckets_align_in_utc() {
        let t = Utc.with_ymd_and_hms(2020, 2, 29, 13, 45, 10).unwrap();
        assert_eq!(rfc3339(bucket_start("hour", t)), "2020-02-29T13:00:00Z");
        assert_eq!(rfc3339(bucket_start("month", t)), "2020-02-01T00:00:00Z");
        assert_eq!(calendar_value("day_of_week", t), 6);
    }

    #[test]
    fn default_retention_is_what_the_embedded_default_config_says() {
        let config = oceanflow_config::ValidConfig::embedded_default();
        let config = config.config();
        let keep: Vec<(&str, i64)> = config
            .aggregates
            .temporal
            .retention
            .iter()
            .map(|(w, keep)| (w.as_str(), keep.as_micros() as i64))
            .collect();
        let want = BoundedRetention::default_config();
        assert_eq!(keep, want.keep);
        assert_eq!(
            config.pipeline.allowed_lateness.as_micros() as i64,
            want.allowed_lateness_us
        );
    }

    #[test]
    fn bounded_retention_expires_against_the_final_frontier_only() {
        let spec = OracleSpec {
            buckets: vec!["hour", "day"],
            station_buckets: vec!["hour"],
            calendar: vec!["hour_of_day"],
            retention: Some(BoundedRetention {
                allowed_lateness_us: HOUR_US,
                keep: vec![("hour", DAY_US)],
            }),
            ..OracleSpec::tutorial(&[])
        };
        let at = |time_us: i64| Row {
            time_us,
            station: "S".into(),
            lat: None,
            lon: None,
            vars: vec![Some(1.0); 4],
            cats: vec![],
        };
        // Frontier F = 2 d 2 h - 1 h = 2 d 1 h: hourly buckets ending at or before 1 d 1 h go.
        let rows = [
            at(0),
            at(DAY_US),
            at(DAY_US + HOUR_US / 2),
            at(DAY_US + HOUR_US),
            at(2 * DAY_US + 2 * HOUR_US),
        ];
        let doc = compute(&spec, &rows).document();
        let hours: Vec<(&str, &str)> = doc["temporal"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["grouping"] == "hour")
            .map(|r| {
                (
                    r["key"].as_str().unwrap(),
                    r["station"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            hours,
            [
                ("1970-01-02T01:00:00Z", "-"),
                ("1970-01-02T01:00:00Z", "S"),
                ("1970-01-03T02:00:00Z", "-"),
                ("1970-01-03T02:00:00Z", "S"),
            ]
        );
        // Days, calendar parts and stations keep every row.
        let days = doc["temporal"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["grouping"] == "day");
        assert_eq!(days.map(|r| r["count"].as_u64().unwrap()).sum::<u64>(), 5);
        assert_eq!(doc["stations"][0]["count"], 5);
    }

    #[test]
    fn statistics_of_a_group_near_1e9_keep_its_spread() {
        let spec = OracleSpec {
            variables: vec!["t".into()],
            ..OracleSpec::tutorial(&[])
        };
        let row = |v: f64| Row {
            time_us: 0,
            station: "S".into(),
            lat: None,
            lon: None,
            vars: vec![Some(v)],
            cats: vec![],
        };
        let rows: Vec<Row> = (0..4_000)
            .map(|i| row(1e9 + [-1e-3, 1e-3][i % 2]))
            .collect();
        let doc = compute(&spec, &rows).document();
        let t = &doc["stations"][0]["variables"]["t"];
        // Offsets ±1e-3 as stored: 1e9 ± 0.0009999275207519531.
        let d = 1e9 + 1e-3 - 1e9;
        let stddev = d * (4_000.0f64 / 3_999.0).sqrt();
        assert_eq!(t["mean"], 1e9);
        assert!(
            (t["stddev"].as_f64().unwrap() - stddev).abs() <= 1e-15 * stddev,
            "{t}"
        );
        let single = compute(&spec, &[row(0.1)]).document();
        assert_eq!(single["stations"][0]["variables"]["t"]["mean"], 0.1);
    }

    #[test]
    fn diff_reports_wrong_counts_values_and_missing_rows() {
        let spec = OracleSpec {
            variables: vec!["t".into()],
            categorical: vec![],
            buckets: vec![],
            station_buckets: vec![],
            calendar: vec![],
            regions: vec![],
            retention: None,
        };
        let row = |t: f64| Row {
            time_us: 0,
            station: "S".into(),
            lat: None,
            lon: None,
            vars: vec![Some(t)],
            cats: vec![],
        };
        let expected = compute(&spec, &[row(1.0), row(3.0)]);
        let good = serde_json::json!({"stations": [{"station": "S", "count": 2, "variables":
            {"t": {"count": 2, "mean": 2.0, "min": 1.0, "max": 3.0, "stddev": 2f64.sqrt()}}}],
            "temporal": [], "regions": []});
        assert_eq!(expected.diff(&good), Vec::<String>::new());
        let mut wrong = good.clone();
        wrong["stations"][0]["count"] = 3.into();
        wrong["stations"][0]["variables"]["t"]["max"] = 4.0.into();
        assert_eq!(
            expected.diff(&wrong).len(),
            2,
            "{:?}",
            expected.diff(&wrong)
        );
        let empty = serde_json::json!({"stations": [], "temporal": [], "regions": []});
        assert_eq!(expected.diff(&empty).len(), 1);
    }
}
