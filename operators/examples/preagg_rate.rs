//! Pre-aggregation rate on tutorial-shaped rows with the embedded default config's every family
//! (station; hour, day, month and year buckets; day per station; month of year and hour of day;
//! the three regions), in batches of 65,536 rows. Prints rows/s per repetition and the median,
//! by wall-clock time and (on Linux) by the thread's CPU time, which a loaded machine disturbs
//! less.
//!
//! The rows have the shape of the default synthetic source (connectors/src/synthetic.rs): one
//! row per minute from 2020-01-01, a station drawn from 50, latitude U(58, 72), longitude
//! U(0, 30), temperature N(8, 4), salinity N(35, 1), depth one of six, oxygen N(7, 1).
//!
//! `cargo run -p oceanflow-operators --release --example preagg_rate -- [rows] [repetitions]`
//! (default 10,485,760 rows, 3 repetitions).

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use oceanflow_config::schema::observation_schema;
use oceanflow_config::ValidConfig;
use oceanflow_operators::preagg::{Partials, PreAggregator};
use oceanflow_operators::spec::AggregateSpec;

const BATCH_ROWS: usize = 65_536;
const STATIONS: u64 = 50;
const DEPTHS: [f64; 6] = [5.0, 10.0, 25.0, 50.0, 100.0, 200.0];
/// 2020-01-01T00:00:00Z.
const START_US: i64 = 1_577_836_800_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let rows = args.next().transpose()?.unwrap_or(160 * BATCH_ROWS);
    let repetitions = args.next().transpose()?.unwrap_or(3);

    let spec = AggregateSpec::from_config(&ValidConfig::embedded_default());
    let mut rng = Rng(42);
    let batches: Vec<RecordBatch> = (0..rows)
        .step_by(BATCH_ROWS)
        .map(|first| tutorial_batch(&spec, first..(first + BATCH_ROWS).min(rows), &mut rng))
        .collect::<Result<_, _>>()?;

    let mut rates = Vec::new();
    for _ in 0..repetitions {
        let mut pre = PreAggregator::new(spec.clone());
        let mut out = Partials::default();
        let mut keys = 0;
        let (started, cpu_started) = (Instant::now(), thread_cpu_seconds());
        for batch in &batches {
            pre.aggregate(batch, &mut out)?;
            keys += out.groups.len();
        }
        let rate = rows as f64 / started.elapsed().as_secs_f64();
        let cpu_rate = match (thread_cpu_seconds(), cpu_started) {
            (Some(end), Some(start)) => rows as f64 / (end - start),
            _ => f64::NAN,
        };
        println!(
            "{rows} rows: {:.3} M rows/s, {:.3} M rows per CPU second ({keys} partial keys)",
            rate / 1e6,
            cpu_rate / 1e6
        );
        rates.push((rate, cpu_rate));
    }
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!(
        "median: {:.3} M rows/s, {:.3} M rows per CPU second",
        median(rates.iter().map(|r| r.0).collect()) / 1e6,
        median(rates.iter().map(|r| r.1).collect()) / 1e6
    );
    Ok(())
}

/// CPU time of this thread so far (Linux: `/proc/thread-self/schedstat`), `None` elsewhere.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(nanos / 1e9)
}

/// Rows `range` of the feed, in the default config's canonical layout.
fn tutorial_batch(
    spec: &AggregateSpec,
    range: std::ops::Range<usize>,
    rng: &mut Rng,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let names: Vec<String> = (0..STATIONS).map(|s| format!("STATION-{s:03}")).collect();
    let n = range.len();
    let time = range
        .map(|i| START_US + i as i64 * 60_000_000)
        .collect::<Vec<_>>();
    let mut station = Vec::with_capacity(n);
    let mut columns: [Vec<f64>; 6] = Default::default();
    for _ in 0..n {
        station.push(names[rng.below(STATIONS) as usize].as_str());
        columns[0].push(58.0 + 14.0 * rng.unit());
        columns[1].push(30.0 * rng.unit());
        columns[2].push(8.0 + 4.0 * rng.normal());
        columns[3].push(35.0 + rng.normal());
        columns[4].push(DEPTHS[rng.below(DEPTHS.len() as u64) as usize]);
        columns[5].push(7.0 + rng.normal());
    }
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(time).with_timezone("UTC")),
        Arc::new(StringArray::from(station)),
    ];
    arrays.extend(
        columns
            .into_iter()
            .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef),
    );
    RecordBatch::try_new(observation_schema(&spec.variables, &[]), arrays)
}

/// SplitMix64: enough randomness for a benchmark feed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// U(0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// N(0, 1), Box–Muller.
    fn normal(&mut self) -> f64 {
        let (u, v) = (1.0 - self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}
