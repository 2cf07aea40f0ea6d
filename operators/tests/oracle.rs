//! End-to-end property tests: watermark split, pre-aggregation and the differential dataflow
//! (with 1 and 4 workers) against a plain row-by-row computation written independently here
//! (own point-in-polygon, own calendar math through chrono, two-pass mean and deviation).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use differential_dataflow::input::Input;
use oceanflow_config::region::parse_wkt_area;
use oceanflow_config::schema::observation_schema;
use oceanflow_config::{BucketWidth, CalendarPart, Region};
use oceanflow_operators::dataflow::{aggregates, distinct_values};
use oceanflow_operators::late::Watermark;
use oceanflow_operators::preagg::{Partials, PreAggregator};
use oceanflow_operators::spec::AggregateSpec;
use oceanflow_operators::view::{AggregateChange, AggregateView, DistinctChange};
use oceanflow_operators::{DistinctKey, GroupKey, Stats};
use proptest::prelude::*;

use common::{execute_on, step_until_done};

const LATENESS_US: i64 = 3_600_000_000;
const GRANULARITY_US: i64 = 1_000_000;
const VARIABLES: usize = 2;

const REGIONS: [&str; 4] = [
    // An axis-aligned rectangle (the index's fast path).
    "POLYGON((0 0, 4 0, 4 4, 0 4, 0 0))",
    // A triangle overlapping it.
    "POLYGON((2 2, 8 2, 2 8, 2 2))",
    // A square with a square hole.
    "POLYGON((5 5, 11 5, 11 11, 5 11, 5 5), (7 7, 9 7, 9 9, 7 9, 7 7))",
    // A multipolygon: two squares and a diamond.
    "MULTIPOLYGON(((0 6, 2 6, 2 8, 0 8, 0 6)), ((-1 -1, 0 -1, 0 0, -1 0, -1 -1)), \
     ((3 9, 4 10, 3 11, 2 10, 3 9)))",
];

const SPECIES: [&str; 4] = ["cod", "hake", "ling", "saithe"];

/// One observation of the test feed.
#[derive(Debug, Clone)]
struct Obs {
    partition: usize,
    time: i64,
    station: u8,
    lon: Option<f64>,
    lat: Option<f64>,
    vars: [Option<f64>; VARIABLES],
    species: Option<u8>,
}

/// A feed: rows (in arrival order per partition) and how each partition is cut into batches.
#[derive(Debug, Clone)]
struct Case {
    rows: Vec<Obs>,
    /// Batch sizes, cycled (0 makes an empty batch).
    batch_sizes: Vec<usize>,
    dictionary: bool,
}

fn regions() -> Vec<Region> {
    REGIONS
        .iter()
        .enumerate()
        .map(|(i, wkt)| Region {
            name: format!("region{i}"),
            geometry: parse_wkt_area(wkt).expect("test WKT parses"),
        })
        .collect()
}

fn spec() -> AggregateSpec {
    AggregateSpec {
        variables: (0..VARIABLES).map(|i| format!("v{i}")).collect(),
        station: true,
        buckets: BucketWidth::ALL.to_vec(),
        station_buckets: vec![BucketWidth::Day, BucketWidth::Hour],
        calendar: vec![
            CalendarPart::MonthOfYear,
            CalendarPart::DayOfWeek,
            CalendarPart::HourOfDay,
        ],
        regions: regions(),
        distinct_fields: vec!["species".into()],
    }
}

// ---------------------------------------------------------------------------------------------
// Input generation.

fn micros(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .expect("test time parses")
        .timestamp_micros()
}

fn time_strategy() -> impl Strategy<Value = i64> {
    let bases = prop::sample::select(vec![
        micros("2024-02-29T23:30:00Z"),
        micros("2023-12-31T23:00:00Z"),
        micros("1969-12-31T23:30:00Z"),
        micros("1900-02-28T23:30:00Z"),
        micros("2021-06-15T11:59:59Z"),
    ]);
    let offset = prop_oneof![
        // Coarse steps: many duplicate timestamps.
        (-6i64..6).prop_map(|k| k * 1_800_000_000),
        -10_800_000_000i64..10_800_000_000,
    ];
    (bases, offset).prop_map(|(b, o)| b + o)
}

fn coordinate() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        // Half-degree grid: hits edges and vertices of every test polygon.
        4 => (-4i32..25).prop_map(|k| Some(f64::from(k) / 2.0)),
        2 => (-2.0f64..12.0).prop_map(Some),
        1 => Just(None),
        1 => Just(Some(f64::NAN)),
    ]
}

fn value() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        4 => (-50.0f64..50.0).prop_map(Some),
        2 => (1000.0f64..1001.0).prop_map(Some),
        1 => Just(None),
        1 => Just(Some(f64::NAN)),
    ]
}

fn obs(partitions: usize, stations: u8) -> impl Strategy<Value = Obs> {
    (
        0..partitions,
        time_strategy(),
        0..stations,
        coordinate(),
        coordinate(),
        [value(), value()],
        prop::option::of(0u8..4),
    )
        .prop_map(|(partition, time, station, lon, lat, vars, species)| Obs {
            partition,
            time,
            station,
            lon,
            lat,
            vars,
            species,
        })
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (1usize..6, 1u8..4)
        .prop_flat_map(|(partitions, stations)| {
            (
                prop::collection::vec(obs(partitions, stations), 0..120),
                prop::collection::vec(0usize..9, 1..6),
                any::<bool>(),
            )
        })
        .prop_map(|(rows, batch_sizes, dictionary)| Case {
            rows,
            batch_sizes,
            dictionary,
        })
}

// ---------------------------------------------------------------------------------------------
// Running the operators.

fn station_name(station: u8) -> String {
    format!("st{station}")
}

fn to_batch(rows: &[Obs], dictionary: bool) -> RecordBatch {
    let variables: Vec<String> = spec().variables;
    let schema = observation_schema(&variables, &["species".into()]);
    let names: Vec<String> = rows.iter().map(|r| station_name(r.station)).collect();
    let station: ArrayRef = if dictionary {
        Arc::new(
            names
                .iter()
                .map(String::as_str)
                .collect::<DictionaryArray<Int32Type>>(),
        )
    } else {
        Arc::new(StringArray::from(names))
    };
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[1] = fields[1]
        .clone()
        .with_data_type(station.data_type().clone());
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.time).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        station,
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.lat).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.lon).collect::<Vec<_>>(),
        )),
    ];
    for v in 0..VARIABLES {
        columns.push(Arc::new(Float64Array::from(
            rows.iter().map(|r| r.vars[v]).collect::<Vec<_>>(),
        )));
    }
    columns.push(Arc::new(StringArray::from(
        rows.iter()
            .map(|r| r.species.map(|s| SPECIES[s as usize]))
            .collect::<Vec<_>>(),
    )));
    assert_eq!(fields[1].data_type() == &DataType::Utf8, !dictionary);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("test batch is valid")
}

/// The batches of one partition, in order.
fn batches(case: &Case, partition: usize) -> Vec<Vec<Obs>> {
    let rows: Vec<Obs> = case
        .rows
        .iter()
        .filter(|r| r.partition == partition)
        .cloned()
        .collect();
    let mut out = Vec::new();
    if case.batch_sizes.iter().all(|size| *size == 0) {
        // Only empty batches would never finish: one empty batch, then everything.
        return vec![Vec::new(), rows];
    }
    let mut at = 0;
    for size in case.batch_sizes.iter().cycle() {
        if at >= rows.len() {
            break;
        }
        let end = (at + size).min(rows.len());
        out.push(rows[at..end].to_vec());
        at = end;
    }
    out
}

fn partitions(case: &Case) -> usize {
    case.rows.iter().map(|r| r.partition + 1).max().unwrap_or(0)
}

/// Watermark + PreAggregator + the dataflow on `workers` workers; the merged final view.
fn run_operators(case: &Case, workers: usize) -> AggregateView {
    let changes: Arc<Mutex<Vec<(usize, AggregateChange)>>> = Arc::default();
    let distinct: Arc<Mutex<Vec<(usize, DistinctChange)>>> = Arc::default();
    let shared = Arc::new(case.clone());
    let (changes_sink, distinct_sink) = (Arc::clone(&changes), Arc::clone(&distinct));
    execute_on(workers, move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let (changes_sink, distinct_sink) = (Arc::clone(&changes_sink), Arc::clone(&distinct_sink));
        let (mut groups, mut values, probe) = worker.dataflow::<i64, _, _>(|scope| {
            let (groups, partials) = scope.new_collection::<GroupKey, Stats>();
            let (values, present) = scope.new_collection::<DistinctKey, isize>();
            let (probe, _) = aggregates(partials)
                .inspect(move |c| changes_sink.lock().unwrap().push((index, c.clone())))
                .probe();
            distinct_values(present)
                .inspect(move |c| distinct_sink.lock().unwrap().push((index, c.clone())))
                .probe_with(&probe);
            (groups, values, probe)
        });
        let mut pre = PreAggregator::new(spec());
        let mut partials = Partials::default();
        for partition in (0..partitions(&shared)).filter(|p| p % peers == index) {
            let mut watermark = Watermark::new(Duration::from_micros(LATENESS_US as u64));
            for rows in batches(&shared, partition) {
                let batch = to_batch(&rows, shared.dictionary);
                let times: Vec<i64> = rows.iter().map(|r| r.time).collect();
                let split = watermark.split(&times);
                pre.aggregate_kept(&batch, Some(&split.keep), &mut partials)
                    .expect("canonical batch");
                // Any non-decreasing time works; the watermark, coarsened, is one.
                let t = watermark
                    .watermark()
                    .map_or(i64::MIN, |w| w.div_euclid(GRANULARITY_US) * GRANULARITY_US)
                    .max(*groups.time());
                groups.advance_to(t);
                values.advance_to(t);
                for (key, stats) in partials.groups.drain(..) {
                    groups.update(key, stats);
                }
                for (key, diff) in partials.distinct.drain(..) {
                    values.update(key, diff);
                }
                groups.flush();
                values.flush();
                worker.step();
            }
        }
        groups.close();
        values.close();
        step_until_done(worker, &probe);
    });

    let mut merged = AggregateView::new();
    for w in 0..workers {
        let mut view = AggregateView::new();
        view.apply_changes(&of_worker(&changes, w));
        view.apply_distinct(&of_worker(&distinct, w));
        merged.extend_from(&view);
    }
    merged
}

// ---------------------------------------------------------------------------------------------
// The oracle: row by row, no code shared with the operators.

/// Values per variable of one key.
#[derive(Debug, Default, Clone)]
struct Expected {
    rows: u64,
    values: [Vec<f64>; VARIABLES],
}

fn on_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> bool {
    let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
    cross == 0.0
        && p.0 >= a.0.min(b.0)
        && p.0 <= a.0.max(b.0)
        && p.1 >= a.1.min(b.1)
        && p.1 <= a.1.max(b.1)
}

fn ring_points(ring: &geo::LineString<f64>) -> Vec<(f64, f64)> {
    ring.0.iter().map(|c| (c.x, c.y)).collect()
}

fn on_ring(p: (f64, f64), ring: &[(f64, f64)]) -> bool {
    ring.windows(2).any(|e| on_segment(p, e[0], e[1]))
}

/// Even-odd ray casting; only meaningful off the boundary.
fn strictly_inside_ring(p: (f64, f64), ring: &[(f64, f64)]) -> bool {
    let mut inside = false;
    for e in ring.windows(2) {
        let ((x1, y1), (x2, y2)) = (e[0], e[1]);
        if (y1 > p.1) != (y2 > p.1) {
            let x = x1 + (p.1 - y1) * (x2 - x1) / (y2 - y1);
            if p.0 < x {
                inside = !inside;
            }
        }
    }
    inside
}

fn in_region(p: (f64, f64), region: &Region) -> bool {
    region.geometry.0.iter().any(|polygon| {
        let exterior = ring_points(polygon.exterior());
        let holes: Vec<_> = polygon.interiors().iter().map(ring_points).collect();
        if on_ring(p, &exterior) || holes.iter().any(|h| on_ring(p, h)) {
            return true;
        }
        strictly_inside_ring(p, &exterior) && !holes.iter().any(|h| strictly_inside_ring(p, h))
    })
}

fn utc(t: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(t).expect("test times are in range")
}

fn start_of(width: BucketWidth, t: i64) -> i64 {
    let d = utc(t);
    let date = match width {
        BucketWidth::Hour | BucketWidth::Day => d.date_naive(),
        BucketWidth::Month => NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap(),
        BucketWidth::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap(),
    };
    let hour = if width == BucketWidth::Hour {
        d.hour()
    } else {
        0
    };
    date.and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn calendar_of(part: CalendarPart, t: i64) -> u32 {
    let d = utc(t);
    match part {
        CalendarPart::MonthOfYear => d.month(),
        CalendarPart::DayOfWeek => d.weekday().number_from_monday(),
        CalendarPart::HourOfDay => d.hour(),
    }
}

/// The rows of a partition that are within the lateness, judged in order.
fn accepted(case: &Case) -> Vec<Obs> {
    let mut max_seen: BTreeMap<usize, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for r in &case.rows {
        let max = max_seen.get(&r.partition).copied();
        if max.is_some_and(|m| r.time < m - LATENESS_US) {
            continue;
        }
        max_seen.insert(r.partition, max.map_or(r.time, |m| m.max(r.time)));
        out.push(r.clone());
    }
    out
}

struct Oracle {
    groups: BTreeMap<GroupKey, Expected>,
    distinct: BTreeMap<(u32, u32), usize>,
}

fn oracle(case: &Case) -> Oracle {
    let spec = spec();
    let mut groups: BTreeMap<GroupKey, Expected> = BTreeMap::new();
    let mut seen: BTreeSet<(u32, u32, u8)> = BTreeSet::new();
    for r in accepted(case) {
        let name = station_name(r.station);
        let mut keys = vec![GroupKey::Station(name.clone())];
        for &width in &spec.buckets {
            keys.push(GroupKey::Bucket {
                width,
                start_us: start_of(width, r.time),
                station: None,
            });
        }
        for &width in &spec.station_buckets {
            keys.push(GroupKey::Bucket {
                width,
                start_us: start_of(width, r.time),
                station: Some(name.clone()),
            });
        }
        for &part in &spec.calendar {
            keys.push(GroupKey::Calendar {
                part,
                value: calendar_of(part, r.time),
            });
        }
        if let (Some(lon), Some(lat)) = (r.lon, r.lat) {
            if lon.is_finite() && lat.is_finite() {
                for (id, region) in (0u32..).zip(&spec.regions) {
                    if in_region((lon, lat), region) {
                        keys.push(GroupKey::Region(id));
                        if let Some(s) = r.species {
                            seen.insert((id, 0, s));
                        }
                    }
                }
            }
        }
        for key in keys {
            let e = groups.entry(key).or_default();
            e.rows += 1;
            for (v, value) in r.vars.iter().enumerate() {
                if let Some(x) = value.filter(|x| x.is_finite()) {
                    e.values[v].push(x);
                }
            }
        }
    }
    let mut distinct = BTreeMap::new();
    for (region, field, _) in seen {
        *distinct.entry((region, field)).or_insert(0) += 1;
    }
    Oracle { groups, distinct }
}

// ---------------------------------------------------------------------------------------------
// Comparison.

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + scale)
}

fn view_groups(view: &AggregateView) -> BTreeMap<GroupKey, Stats> {
    let mut out = BTreeMap::new();
    for (name, s) in view.stations() {
        out.insert(GroupKey::Station(name.to_string()), s.clone());
    }
    for (width, station, start_us, s) in view.buckets() {
        let key = GroupKey::Bucket {
            width,
            start_us,
            station: station.map(str::to_string),
        };
        out.insert(key, s.clone());
    }
    for (part, value, s) in view.calendar() {
        out.insert(GroupKey::Calendar { part, value }, s.clone());
    }
    for (region, s) in view.regions() {
        out.insert(GroupKey::Region(region), s.clone());
    }
    out
}

fn compare(case: &Case, view: &AggregateView, workers: usize) -> Result<(), String> {
    let expected = oracle(case);
    let actual = view_groups(view);
    let expected_keys: Vec<_> = expected.groups.keys().collect();
    let actual_keys: Vec<_> = actual.keys().collect();
    if expected_keys != actual_keys {
        return Err(format!(
            "{workers} workers: keys differ\nexpected {expected_keys:?}\nactual   {actual_keys:?}"
        ));
    }
    for (key, e) in &expected.groups {
        let a = &actual[key];
        let fail = |what: &str| {
            Err(format!(
                "{workers} workers, {key:?}: {what}: {e:?} vs {a:?}"
            ))
        };
        if a.count != e.rows || a.vars.len() != VARIABLES {
            return fail("row count");
        }
        for (values, s) in e.values.iter().zip(&a.vars) {
            if s.count != values.len() as u64 {
                return fail("value count");
            }
            if values.is_empty() {
                continue;
            }
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let scale = min.abs().max(max.abs());
            if !s.mean().is_some_and(|m| close(m, mean, scale)) || s.min != min || s.max != max {
                return fail("mean/min/max");
            }
            let sd = (values.len() > 1).then(|| {
                (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            });
            match (s.stddev(), sd) {
                (None, None) => {}
                (Some(x), Some(y)) if close(x, y, scale) => {}
                _ => return fail("stddev"),
            }
        }
    }
    let actual_distinct: BTreeMap<(u32, u32), usize> = view.distinct_counts().collect();
    if actual_distinct != expected.distinct {
        return Err(format!(
            "{workers} workers: distinct {actual_distinct:?} vs {:?}",
            expected.distinct
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn operators_match_the_row_by_row_oracle(case in case_strategy()) {
        for workers in [1, 4] {
            let view = run_operators(&case, workers);
            if let Err(message) = compare(&case, &view, workers) {
                prop_assert!(false, "{message}\ncase: {case:?}");
            }
        }
    }
}

/// A deterministic feed (linear congruential generator), for the fixed-input tests.
fn fixed_case(rows: usize, batch_sizes: Vec<usize>) -> Case {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |m: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % m
    };
    let base = micros("2024-02-28T22:00:00Z");
    let rows = (0..rows)
        .map(|i| Obs {
            partition: next(3) as usize,
            time: base + i as i64 * 60_000_000 - next(90) as i64 * 60_000_000,
            station: next(3) as u8,
            lon: Some(next(25) as f64 / 2.0 - 1.0),
            lat: (next(10) > 0).then(|| next(25) as f64 / 2.0 - 1.0),
            vars: [
                (next(8) > 0).then(|| next(10_000) as f64 / 100.0),
                Some(1000.0 + next(100) as f64 / 1000.0),
            ],
            species: (next(4) > 0).then(|| next(4) as u8),
        })
        .collect();
    Case {
        rows,
        batch_sizes,
        dictionary: false,
    }
}

#[test]
fn one_batch_or_many_batches_give_equal_results() {
    let whole = fixed_case(600, vec![600]);
    let pieces = Case {
        batch_sizes: vec![1, 0, 7, 3, 25],
        ..whole.clone()
    };
    let one = run_operators(&whole, 1);
    let many = run_operators(&pieces, 1);
    let (a, b) = (view_groups(&one), view_groups(&many));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, x) in &a {
        let y = &b[key];
        assert_eq!(x.count, y.count, "{key:?}");
        for (u, v) in x.vars.iter().zip(&y.vars) {
            assert_eq!((u.count, u.min, u.max), (v.count, v.min, v.max), "{key:?}");
            let scale = u.max.abs().max(u.min.abs());
            // Equal counts: both means are present or both absent.
            let (a, b) = (u.mean().unwrap_or(0.0), v.mean().unwrap_or(0.0));
            assert!(close(a, b, scale), "{key:?}");
            assert!(
                close(u.m2(), v.m2(), scale * scale * u.count as f64),
                "{key:?}"
            );
        }
    }
    assert_eq!(
        one.distinct_counts().collect::<Vec<_>>(),
        many.distinct_counts().collect::<Vec<_>>()
    );
    compare(&whole, &one, 1).unwrap();
    compare(&pieces, &run_operators(&pieces, 4), 4).unwrap();
}

/// The changes worker `w` captured, in capture order.
fn of_worker<T: Clone>(log: &Mutex<Vec<(usize, T)>>, w: usize) -> Vec<T> {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|(i, _)| *i == w)
        .map(|(_, c)| c.clone())
        .collect()
}
