//! Pre-aggregation speed on synthetic data with every family on. Ignored by default; run with
//! `cargo test -p oceanflow-operators --release --test throughput -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use oceanflow_config::schema::observation_schema;
use oceanflow_config::{BucketWidth, CalendarPart, ValidConfig};
use oceanflow_operators::preagg::{Partials, PreAggregator};
use oceanflow_operators::spec::AggregateSpec;

const STATIONS: usize = 50;

/// `rows` observations of 50 interleaved moored stations, one per station per minute from
/// 2020-01-01, four variables with some nulls, one categorical field.
fn synthetic(rows: usize, spec: &AggregateSpec) -> RecordBatch {
    let schema = observation_schema(&spec.variables, &["species".into()]);
    let start = 1_577_836_800_000_000i64;
    let names: Vec<String> = (0..STATIONS).map(|s| format!("station-{s:03}")).collect();
    let time: Vec<i64> = (0..rows)
        .map(|i| start + (i / STATIONS) as i64 * 60_000_000)
        .collect();
    let station: Vec<&str> = (0..rows).map(|i| names[i % STATIONS].as_str()).collect();
    let lat: Vec<f64> = (0..rows)
        .map(|i| 50.0 + (i % STATIONS) as f64 * 0.5)
        .collect();
    let lon: Vec<f64> = (0..rows)
        .map(|i| -4.0 + (i % STATIONS) as f64 * 0.7)
        .collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(time).with_timezone("UTC")),
        Arc::new(StringArray::from(station)),
        Arc::new(Float64Array::from(lat)),
        Arc::new(Float64Array::from(lon)),
    ];
    for v in 0..spec.variables.len() {
        let values: Vec<Option<f64>> = (0..rows)
            .map(|i| (i % 23 != v).then_some(10.0 * v as f64 + (i % 97) as f64 * 0.1))
            .collect();
        columns.push(Arc::new(Float64Array::from(values)));
    }
    let species = ["cod", "hake", "ling"];
    columns.push(Arc::new(StringArray::from(
        (0..rows)
            .map(|i| (i % 7 != 0).then_some(species[i % 3]))
            .collect::<Vec<_>>(),
    )));
    RecordBatch::try_new(schema, columns).expect("valid batch")
}

/// Rows per second of `spec` over `batch`, cut into batches of `batch_rows`.
fn measure(spec: &AggregateSpec, batch: &RecordBatch, batch_rows: usize) -> (f64, usize) {
    let rows = batch.num_rows();
    let slices: Vec<RecordBatch> = (0..rows)
        .step_by(batch_rows)
        .map(|at| batch.slice(at, batch_rows.min(rows - at)))
        .collect();
    let mut pre = PreAggregator::new(spec.clone());
    let mut out = Partials::default();
    let mut keys = 0;
    let started = Instant::now();
    for slice in &slices {
        pre.aggregate(slice, &mut out).expect("canonical batch");
        keys += out.groups.len() + out.distinct.len();
    }
    (rows as f64 / started.elapsed().as_secs_f64(), keys)
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn preaggregation_throughput() {
    let mut all = AggregateSpec::from_config(&ValidConfig::embedded_default());
    all.buckets = BucketWidth::ALL.to_vec();
    all.calendar = vec![
        CalendarPart::MonthOfYear,
        CalendarPart::DayOfWeek,
        CalendarPart::HourOfDay,
    ];
    all.distinct_fields = vec!["species".into()];
    let station_only = AggregateSpec {
        buckets: vec![],
        station_buckets: vec![],
        calendar: vec![],
        regions: vec![],
        distinct_fields: vec![],
        ..all.clone()
    };
    let temporal = AggregateSpec {
        station: false,
        regions: vec![],
        distinct_fields: vec![],
        ..all.clone()
    };
    let regional = AggregateSpec {
        station: false,
        buckets: vec![],
        station_buckets: vec![],
        calendar: vec![],
        ..all.clone()
    };
    let rows = 1_000_000;
    let batch = synthetic(rows, &all);
    for (name, spec) in [
        ("station only", &station_only),
        ("temporal only", &temporal),
        ("regional only", &regional),
        ("all families", &all),
    ] {
        for batch_rows in [rows, 65_536, 8_192] {
            let (rate, keys) = measure(spec, &batch, batch_rows);
            println!(
                "{name:>14}, batches of {batch_rows:>7} rows: {:>5.1} M rows/s ({keys} partial keys)",
                rate / 1e6
            );
        }
    }
}
