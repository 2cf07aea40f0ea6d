//! Adversarial numerics: groups near ±1e9 ± 1e-3 in the same batches as groups near 0,
//! constant series, single values and mixed signs, cut into random batches and merged in random
//! orders, through `PreAggregator` + `Stats::merge` and through the differential `aggregates`
//! operator (1 and 4 workers), compared with an exact oracle: rational arithmetic on the f64
//! inputs (every finite f64 is an exact rational).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use differential_dataflow::input::Input;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive, Zero};
use oceanflow_config::region::parse_wkt_area;
use oceanflow_config::schema::observation_schema;
use oceanflow_config::{BucketWidth, CalendarPart, Region};
use oceanflow_operators::dataflow::aggregates;
use oceanflow_operators::preagg::{Partials, PreAggregator};
use oceanflow_operators::spec::AggregateSpec;
use oceanflow_operators::{GroupKey, Stats, VarStats};
use proptest::prelude::*;

use common::{execute_on, step_until_done};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;
/// 2024-03-01T00:00:00Z.
const BASE_US: i64 = 1_709_251_200_000_000;
/// Stations below this id sit inside the one region.
const IN_REGION: u8 = 3;

/// Relative accuracy required of every mean and standard deviation.
const RELATIVE: f64 = 1e-9;
/// Ulps of the group's largest |x| allowed on top of `RELATIVE * |mean|`, see [`check_mean`].
const MEAN_ULPS: f64 = 4.0;

/// Rows `(station, value)` in arrival order, how they are cut into batches, and the seed of
/// the merge order.
#[derive(Debug, Clone)]
struct Case {
    rows: Vec<(u8, f64)>,
    batch_sizes: Vec<usize>,
    merge_seed: u64,
}

/// Deviations around a centre, each within ±1e-3.
fn around(centre: f64) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1e-3f64..1e-3, 1..40)
        .prop_map(move |ds| ds.into_iter().map(|d| centre + d).collect())
}

/// The values of one station: one of the adversarial shapes.
fn station_values() -> BoxedStrategy<Vec<f64>> {
    prop_oneof![
        3 => prop::sample::select(vec![1e9, -1e9]).prop_flat_map(around),
        2 => around(0.0),
        2 => prop::sample::select(vec![1.0, 5_000.0, 1e5, 1e7]).prop_flat_map(around),
        2 => (
            prop::sample::select(vec![1e9 + 1e-3, -7.25, 0.1, 5_000.000_1, 0.0, -3e-20]),
            1usize..40,
        )
            .prop_map(|(x, n)| vec![x; n]),
        2 => (-1e10f64..1e10).prop_map(|x| vec![x]),
        1 => prop::collection::vec(
            (any::<bool>(), 1e8f64..1e9).prop_map(|(neg, x)| if neg { -x } else { x }),
            1..40,
        ),
    ]
    .boxed()
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(station_values(), 1..8)
            .prop_map(|stations| {
                (0u8..)
                    .zip(stations)
                    .flat_map(|(s, values)| values.into_iter().map(move |v| (s, v)))
                    .collect::<Vec<_>>()
            })
            .prop_shuffle(),
        prop::collection::vec(1usize..60, 1..6),
        any::<u64>(),
    )
        .prop_map(|(rows, batch_sizes, merge_seed)| Case {
            rows,
            batch_sizes,
            merge_seed,
        })
}

fn spec() -> AggregateSpec {
    AggregateSpec {
        variables: vec!["v".into()],
        station: true,
        buckets: vec![BucketWidth::Hour, BucketWidth::Day],
        station_buckets: vec![BucketWidth::Hour],
        calendar: vec![CalendarPart::HourOfDay],
        regions: vec![Region {
            name: "first stations".into(),
            geometry: parse_wkt_area("POLYGON((-0.5 0, 2.5 0, 2.5 1, -0.5 1, -0.5 0))")
                .expect("test WKT parses"),
        }],
        distinct_fields: vec![],
    }
}

/// Event time of the `i`-th row: spread over six hours, out of order.
fn time_of(i: usize) -> i64 {
    BASE_US + (i as i64 * 37 % 360) * 60_000_000
}

/// Station `s` is moored at (s, 0.5).
fn position_of(station: u8) -> (f64, f64) {
    (f64::from(station), 0.5)
}

fn to_batch(rows: &[(usize, u8, f64)]) -> RecordBatch {
    let schema = observation_schema(&spec().variables, &[]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| time_of(r.0)).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(
            rows.iter()
                .map(|r| format!("st{}", r.1))
                .collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| position_of(r.1).1).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| position_of(r.1).0).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, columns).expect("test batch is valid")
}

/// The rows cut into batches of the case's sizes (cycled), each row with its index.
fn batches(case: &Case) -> Vec<RecordBatch> {
    let indexed: Vec<(usize, u8, f64)> = case
        .rows
        .iter()
        .enumerate()
        .map(|(i, &(s, v))| (i, s, v))
        .collect();
    let mut out = Vec::new();
    let mut at = 0;
    for size in case.batch_sizes.iter().cycle() {
        if at >= indexed.len() {
            break;
        }
        let end = (at + size).min(indexed.len());
        out.push(to_batch(&indexed[at..end]));
        at = end;
    }
    out
}

/// A small deterministic generator (64-bit LCG) for the merge orders.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Pre-aggregates every batch, then merges each key's partials as a random binary tree.
fn run_preaggregation(case: &Case) -> BTreeMap<GroupKey, Stats> {
    let mut pre = PreAggregator::new(spec());
    let mut out = Partials::default();
    let mut partials: BTreeMap<GroupKey, Vec<Stats>> = BTreeMap::new();
    for batch in batches(case) {
        pre.aggregate(&batch, &mut out).expect("canonical batch");
        for (key, stats) in out.groups.drain(..) {
            partials.entry(key).or_default().push(stats);
        }
    }
    let mut rng = Lcg(case.merge_seed);
    partials
        .into_iter()
        .map(|(key, mut parts)| {
            while parts.len() > 1 {
                let a = parts.swap_remove(rng.below(parts.len()));
                let b = rng.below(parts.len());
                parts[b].merge(&a);
            }
            (key, parts.pop().expect("a key has a partial"))
        })
        .collect()
}

/// A key's value and whether it was added (+1) or taken back (-1).
type Change = ((GroupKey, Stats), isize);

/// The batches pre-aggregated round-robin by `workers` timely workers into `aggregates`; the
/// final accumulated value of every key.
fn run_dataflow(case: &Case, workers: usize) -> BTreeMap<GroupKey, Stats> {
    let changes: Arc<Mutex<Vec<Change>>> = Arc::default();
    let sink = Arc::clone(&changes);
    let shared = Arc::new(case.clone());
    execute_on(workers, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let sink = Arc::clone(&sink);
        let (mut groups, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (groups, partials) = scope.new_collection::<GroupKey, Stats>();
            let (probe, _) = aggregates(partials)
                .inspect(move |(change, _, diff)| {
                    sink.lock().unwrap().push((change.clone(), *diff))
                })
                .probe();
            (groups, probe)
        });
        let mut pre = PreAggregator::new(spec());
        let mut out = Partials::default();
        for (at, batch) in (0u64..).zip(batches(&shared)) {
            if at as usize % peers != index {
                continue;
            }
            pre.aggregate(&batch, &mut out).expect("canonical batch");
            groups.advance_to(at);
            for (key, stats) in out.groups.drain(..) {
                groups.update(key, stats);
            }
            groups.flush();
            worker.step();
        }
        groups.close();
        step_until_done(worker, &probe);
    });

    // The changelog adds up to +1 for each key's final value.
    let mut net: BTreeMap<(GroupKey, Stats), isize> = BTreeMap::new();
    for (change, diff) in changes.lock().unwrap().drain(..) {
        *net.entry(change).or_insert(0) += diff;
    }
    let mut last = BTreeMap::new();
    for ((key, stats), diff) in net {
        if diff != 0 {
            assert_eq!(diff, 1, "{key:?}: the changelog nets to {diff}");
            assert!(
                last.insert(key, stats).is_none(),
                "two final values of a key"
            );
        }
    }
    last
}

// ---------------------------------------------------------------------------------------------
// The exact oracle.

/// The values of every key, from the rows alone.
fn oracle_values(case: &Case) -> BTreeMap<GroupKey, Vec<f64>> {
    let mut groups: BTreeMap<GroupKey, Vec<f64>> = BTreeMap::new();
    for (i, &(station, value)) in case.rows.iter().enumerate() {
        let t = time_of(i);
        let (hour, day) = (t - t.rem_euclid(HOUR_US), t - t.rem_euclid(DAY_US));
        let name = format!("st{station}");
        let bucket = |width, start_us, station| GroupKey::Bucket {
            width,
            start_us,
            station,
        };
        let mut keys = vec![
            GroupKey::Station(name.clone()),
            bucket(BucketWidth::Hour, hour, None),
            bucket(BucketWidth::Day, day, None),
            bucket(BucketWidth::Hour, hour, Some(name)),
            GroupKey::Calendar {
                part: CalendarPart::HourOfDay,
                value: (t.rem_euclid(DAY_US) / HOUR_US) as u32,
            },
        ];
        if station < IN_REGION {
            keys.push(GroupKey::Region(0));
        }
        for key in keys {
            groups.entry(key).or_default().push(value);
        }
    }
    groups
}

fn exact(x: f64) -> BigRational {
    BigRational::from_float(x).expect("test values are finite")
}

/// The exact mean and sample variance (`None` below two values) of `values`.
fn exact_moments(values: &[f64]) -> (BigRational, Option<BigRational>) {
    let n = BigRational::from_integer(values.len().into());
    let xs: Vec<BigRational> = values.iter().map(|x| exact(*x)).collect();
    let mean = xs.iter().fold(BigRational::zero(), |s, x| s + x) / &n;
    let variance = (values.len() > 1).then(|| {
        let m2 = xs.iter().fold(BigRational::zero(), |s, x| {
            let d = x - &mean;
            s + &d * &d
        });
        m2 / (n - BigRational::from_integer(1.into()))
    });
    (mean, variance)
}

/// The mean within `RELATIVE * |mean| + MEAN_ULPS ulps of max|x|`. A relative bound alone is
/// ill-conditioned where large values of both signs cancel to a mean near 0: the rounding of
/// any f64 sum (or shift difference) of such values is of the order of an ulp of max|x|,
/// whatever the mean, so the error allowed there is a few of those ulps.
fn check_mean(s: &VarStats, mean: &BigRational, values: &[f64]) -> Result<(), String> {
    let got = s.mean().ok_or("no mean")?;
    let largest = values.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let error = (exact(got) - mean).abs().to_f64().unwrap_or(f64::INFINITY);
    let mean = mean.to_f64().unwrap_or(f64::INFINITY);
    let bound = RELATIVE * mean.abs() + MEAN_ULPS * f64::EPSILON * largest;
    if error > bound {
        return Err(format!("mean {got:e}: error {error:e} > {bound:e}"));
    }
    Ok(())
}

/// The standard deviation within `RELATIVE` of the exact one (compared through its square).
fn check_stddev(s: &VarStats, variance: &Option<BigRational>) -> Result<(), String> {
    match (s.stddev(), variance) {
        (None, None) => Ok(()),
        (Some(sd), Some(var)) if var.is_zero() => {
            if sd == 0.0 {
                Ok(())
            } else {
                Err(format!("stddev {sd:e} of a constant series"))
            }
        }
        (Some(sd), Some(var)) => {
            let ratio = (exact(sd) * exact(sd) / var)
                .to_f64()
                .unwrap_or(f64::INFINITY);
            let error = (ratio.sqrt() - 1.0).abs();
            if error <= RELATIVE {
                Ok(())
            } else {
                Err(format!("stddev {sd:e}: relative error {error:e}"))
            }
        }
        (got, _) => Err(format!("stddev {got:?} for {variance:?}")),
    }
}

fn check_group(s: &Stats, values: &[f64]) -> Result<(), String> {
    let v = s.vars.first().ok_or("no variable")?;
    if (s.count, v.count) != (values.len() as u64, values.len() as u64) {
        return Err(format!("counts {} / {}", s.count, v.count));
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if (v.min(), v.max()) != (Some(min), Some(max)) {
        return Err(format!("min/max {:?} {:?}", v.min(), v.max()));
    }
    if min == max && v.mean() != Some(min) {
        return Err(format!(
            "mean {:?} of a constant series of {min:e}",
            v.mean()
        ));
    }
    let (mean, variance) = exact_moments(values);
    check_mean(v, &mean, values)?;
    check_stddev(v, &variance)
}

fn compare(what: &str, actual: &BTreeMap<GroupKey, Stats>, case: &Case) -> Result<(), String> {
    let expected = oracle_values(case);
    let (keys, expected_keys): (Vec<_>, Vec<_>) =
        (actual.keys().collect(), expected.keys().collect());
    if keys != expected_keys {
        return Err(format!("{what}: keys {keys:?} vs {expected_keys:?}"));
    }
    for (key, values) in &expected {
        check_group(&actual[key], values).map_err(|e| format!("{what}, {key:?}: {e}"))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn statistics_match_the_exact_oracle(case in case_strategy()) {
        let mut runs = vec![("pre-aggregation and merges".to_string(), run_preaggregation(&case))];
        for workers in [1, 4] {
            runs.push((format!("dataflow on {workers} workers"), run_dataflow(&case, workers)));
        }
        for (what, actual) in &runs {
            if let Err(message) = compare(what, actual, &case) {
                prop_assert!(false, "{message}\ncase: {case:?}");
            }
        }
    }
}

/// The case users measured: two devices share a column; the first reads near 5,000, 1e5 or
/// 1e7, the second 1.0 ± 0.001, all in one batch.
#[test]
fn a_group_is_precise_whatever_the_first_value_of_its_batch() {
    for first in [5_000.0, 1e5, 1e7, -1e9] {
        let mut rows = vec![(0, first)];
        rows.extend((0..30).map(|i| (1, 1.0 + f64::from(i % 7 - 3) * 3.3e-4)));
        let case = Case {
            rows,
            batch_sizes: vec![31],
            merge_seed: 1,
        };
        compare("one batch", &run_preaggregation(&case), &case).unwrap();
    }
}
