//! A plain batch computation of every aggregate family over rows held in memory — the oracle
//! the pipeline's output is compared with. Written independently of the operators: row by row,
//! two-pass statistics, chrono calendar math, its own boundary-inclusive point-in-polygon.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde_json::Value;

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
    for row in rows {
        let t = Utc
            .timestamp_micros(row.time_us)
            .single()
            .expect("valid time");
        e.stations.entry(row.station.clone()).or_default().add(row);
        for w in &spec.buckets {
            let key = (w.to_string(), rfc3339(bucket_start(w, t)), None);
            e.temporal.entry(key).or_default().add(row);
        }
        for w in &spec.station_buckets {
            let key = (
                w.to_string(),
                rfc3339(bucket_start(w, t)),
                Some(row.station.clone()),
            );
            e.temporal.entry(key).or_default().add(row);
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

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-7 * (1.0 + a.abs().max(b.abs()))
}

fn check_variables(
    what: &str,
    group: &Group,
    names: &[String],
    actual: &Value,
    problems: &mut Vec<String>,
) {
    for (i, name) in names.iter().enumerate() {
        let values = group.values.get(i).cloned().unwrap_or_default();
        let got = &actual["variables"][name];
        let n = values.len();
        if got["count"].as_u64() != Some(n as u64) {
            problems.push(format!(
                "{what} {name}: count {} expected {n}",
                got["count"]
            ));
            continue;
        }
        if n == 0 {
            if !got["mean"].is_null() {
                problems.push(format!("{what} {name}: mean should be null"));
            }
            continue;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut checks = vec![("mean", mean), ("min", min), ("max", max)];
        if n > 1 {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            checks.push(("stddev", var.sqrt()));
        } else if !got["stddev"].is_null() {
            problems.push(format!("{what} {name}: stddev of one value should be null"));
        }
        for (stat, want) in checks {
            match got[stat].as_f64() {
                Some(v) if close(v, want) => {}
                other => problems.push(format!("{what} {name}.{stat}: {other:?} expected {want}")),
            }
        }
    }
}

impl Expected {
    /// Compares an `--output` document with the expectation; returns every difference.
    pub fn diff(&self, actual: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        self.check_table(
            &actual["stations"],
            self.stations.len(),
            |row| row["station"].as_str().unwrap_or_default().to_string(),
            |name| self.stations.get(name),
            &mut problems,
        );
        self.check_table(
            &actual["temporal"],
            self.temporal.len(),
            |row| {
                (
                    row["grouping"].as_str().unwrap_or_default().to_string(),
                    row["key"].as_str().unwrap_or_default().to_string(),
                    row["station"].as_str().map(String::from),
                )
            },
            |key| self.temporal.get(key),
            &mut problems,
        );
        let regions = self.check_table(
            &actual["regions"],
            self.regions.len(),
            |row| row["region"].as_str().unwrap_or_default().to_string(),
            |name| self.regions.get(name).map(|(group, _)| group),
            &mut problems,
        );
        for (row, name) in regions {
            let sets = &self.regions[&name].1;
            for (field, set) in self.categorical.iter().zip(sets) {
                if row["distinct"][field].as_u64() != Some(set.len() as u64) {
                    problems.push(format!(
                        "region {name} distinct {field}: {} expected {}",
                        row["distinct"][field],
                        set.len()
                    ));
                }
            }
        }
        problems
    }

    /// Checks one table's rows (count and every variable) against the expected groups;
    /// returns the rows that have an expected group, with their keys.
    fn check_table<'a, K: std::fmt::Debug>(
        &self,
        table: &'a Value,
        expected_rows: usize,
        key_of: impl Fn(&Value) -> K,
        group_of: impl Fn(&K) -> Option<&'a Group>,
        problems: &mut Vec<String>,
    ) -> Vec<(&'a Value, K)>
    where
        Self: 'a,
    {
        let rows = table.as_array().map(Vec::as_slice).unwrap_or_default();
        if rows.len() != expected_rows {
            problems.push(format!("{} rows, expected {expected_rows}", rows.len()));
        }
        let mut matched = Vec::new();
        for row in rows {
            let key = key_of(row);
            let Some(group) = group_of(&key) else {
                problems.push(format!("unexpected row {key:?}"));
                continue;
            };
            if row["count"].as_u64() != Some(group.count) {
                problems.push(format!(
                    "{key:?}: count {} expected {}",
                    row["count"], group.count
                ));
            }
            check_variables(&format!("{key:?}"), group, &self.variables, row, problems);
            matched.push((row, key));
        }
        matched
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
    fn diff_reports_wrong_counts_values_and_missing_rows() {
        let spec = OracleSpec {
            variables: vec!["t".into()],
            categorical: vec![],
            buckets: vec![],
            station_buckets: vec![],
            calendar: vec![],
            regions: vec![],
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
