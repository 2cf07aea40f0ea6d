//! The runtime's guarantees, pinned with fake partition readers on in-process timely workers:
//! acknowledgements only for what the aggregates (and checkpoints) hold, every worker at every
//! checkpoint cut, lateness per lane, and a bounded run's retention as a function of its rows.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use oceanflow_config::schema::observation_schema;
use oceanflow_config::{SourceConfig, ValidConfig};
use oceanflow_connectors::{
    Lanes, Partition, PartitionReader, Poll, Position, SourceBatch, SourceContext, SourceError,
};
use oceanflow_operators::GroupKey;
use prometheus::Registry;

use super::{run_worker, RunShape, Shared};
use crate::checkpoint::{CheckpointStore, Layout};
use crate::metrics::PipelineMetrics;
use crate::sync::lock;

const HOUR: i64 = 3_600_000_000;

/// One canonical row: event time (µs), station, value.
type Row = (i64, String, f64);

fn batch(config: &ValidConfig, rows: &[Row]) -> RecordBatch {
    let cfg = config.config();
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.1.as_str()),
        )),
        Arc::new(Float64Array::from(vec![60.0; n])),
        Arc::new(Float64Array::from(vec![3.0; n])),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
    ];
    RecordBatch::try_new(
        observation_schema(&cfg.variables, &cfg.categorical),
        columns,
    )
    .expect("canonical batch")
}

/// What a fake reader saw of the run when it was asked to acknowledge.
#[derive(Debug, Clone)]
struct Commit {
    partition: String,
    /// Rows up to and including the acknowledged batch.
    rows_covered: u64,
    /// Rows of the partition's station in the views at that moment.
    rows_in_views: u64,
    /// Rows of the partition in the newest durable checkpoint, when checkpoints are on.
    rows_in_checkpoint: Option<u64>,
}

/// Everything the fake readers share with the test.
#[derive(Default)]
struct Probe {
    shared: OnceLock<Arc<Shared>>,
    commits: Mutex<Vec<Commit>>,
    checkpoint_dir: Option<std::path::PathBuf>,
}

/// A partition of canned batches; position = batches delivered. Every other poll is idle, so
/// reading spreads over many epochs.
struct FakeReader {
    id: String,
    station: String,
    batches: Vec<SourceBatch>,
    next: usize,
    rows_before: Vec<u64>,
    idle_turn: bool,
    probe: Arc<Probe>,
}

impl PartitionReader for FakeReader {
    fn poll(&mut self) -> Result<Poll, SourceError> {
        self.idle_turn = !self.idle_turn;
        if self.idle_turn {
            return Ok(Poll::Idle);
        }
        let Some(b) = self.batches.get(self.next) else {
            return Ok(Poll::Finished);
        };
        self.next += 1;
        let mut b = b.clone();
        b.position = Some(Position(serde_json::json!(self.next)));
        Ok(Poll::Batch(b))
    }

    fn commit(&mut self, position: &Position) -> Result<(), SourceError> {
        let delivered = position.0.as_u64().unwrap_or(0) as usize;
        let rows_covered = self.rows_before[delivered];
        let shared = self
            .probe
            .shared
            .get()
            .expect("shared is set before the run");
        let key = GroupKey::Station(self.station.clone());
        let rows_in_views = shared
            .views
            .iter()
            .filter_map(|v| lock(v).get(&key).map(|s| s.count))
            .sum();
        let rows_in_checkpoint = self.probe.checkpoint_dir.as_ref().map(|dir| {
            let store = CheckpointStore::open(dir, 100).expect("store");
            let (checkpoint, _) = store
                .load_latest(&Layout::of(&shared.config))
                .expect("readable")
                .expect("a checkpoint exists before any acknowledgement");
            let position = checkpoint
                .partitions
                .iter()
                .find(|p| p.id == self.id)
                .and_then(|p| p.position.as_deref()?.parse::<usize>().ok())
                .unwrap_or(0);
            self.rows_before[position]
        });
        lock(&self.probe.commits).push(Commit {
            partition: self.id.clone(),
            rows_covered,
            rows_in_views,
            rows_in_checkpoint,
        });
        Ok(())
    }
}

/// A run over fake partitions, one station per partition.
struct Run {
    config: Arc<ValidConfig>,
    workers: usize,
    bounded: bool,
    partitions: Vec<(String, Vec<SourceBatch>)>,
    checkpoint_dir: Option<std::path::PathBuf>,
}

impl Run {
    fn new(toml_extra: &str, workers: usize) -> Run {
        let text = format!(
            r#"
variables = ["depth_m"]
[pipeline]
workers = {workers}
update_interval = "2ms"
allowed_lateness = "1h"
{toml_extra}
[[sources]]
kind = "synthetic"
name = "fake"
[aggregates.station]
enabled = true
[aggregates.temporal]
enabled = true
buckets = ["hour"]
station_buckets = []
calendar = []
[aggregates.regional]
enabled = false
"#
        );
        Run {
            config: Arc::new(ValidConfig::from_toml(&text).expect("valid test config")),
            workers,
            bounded: true,
            partitions: Vec::new(),
            checkpoint_dir: None,
        }
    }

    fn partition(&mut self, id: &str, batches: Vec<Vec<Row>>, lanes: Option<Vec<Vec<u32>>>) {
        let ids: Vec<String> = (0..4).map(|l| format!("lane-{l}")).collect();
        let batches = batches
            .iter()
            .enumerate()
            .map(|(i, rows)| {
                let mut b = SourceBatch::new(batch(&self.config, rows), 0, None);
                if let Some(lanes) = &lanes {
                    b.lanes = Some(Lanes {
                        ids: ids.clone(),
                        of_row: lanes[i].clone(),
                    });
                }
                b
            })
            .collect();
        self.partitions.push((id.to_string(), batches));
    }

    /// Runs to the end; the shared state and what the readers were asked to acknowledge.
    fn run(self) -> (Arc<Shared>, Vec<Commit>) {
        let probe = Arc::new(Probe {
            checkpoint_dir: self.checkpoint_dir.clone(),
            ..Probe::default()
        });
        let canned = Mutex::new(self.partitions);
        let reader_probe = Arc::clone(&probe);
        let lister = move |_: &SourceConfig,
                           _: &SourceContext|
              -> Result<Vec<Partition>, SourceError> {
            let parts = std::mem::take(&mut *lock(&canned));
            Ok(parts
                .into_iter()
                .map(|(id, batches)| {
                    let mut rows_before = vec![0];
                    for b in &batches {
                        rows_before.push(rows_before.last().unwrap() + b.batch.num_rows() as u64);
                    }
                    let reader = FakeReader {
                        id: id.clone(),
                        station: id.clone(),
                        batches,
                        next: 0,
                        rows_before,
                        idle_turn: false,
                        probe: Arc::clone(&reader_probe),
                    };
                    Partition {
                        id,
                        open: Box::new(move |_| Ok(Box::new(reader) as Box<dyn PartitionReader>)),
                    }
                })
                .collect())
        };
        let cfg = self.config.config();
        let registry = Registry::new();
        let metrics = PipelineMetrics::register(&registry, &["fake".to_string()]).expect("metrics");
        let mut context = SourceContext::new(cfg.variables.clone(), cfg.categorical.clone());
        context.workers = self.workers;
        let shared = Arc::new(
            Shared::with_lister(
                Arc::clone(&self.config),
                context,
                metrics,
                RunShape {
                    bounded: self.bounded,
                    dead_letter: None,
                    sink: None,
                },
                Arc::new(AtomicBool::new(false)),
                &lister,
            )
            .expect("shared state"),
        );
        assert!(probe.shared.set(Arc::clone(&shared)).is_ok());
        let worker_shared = Arc::clone(&shared);
        timely::execute(timely::Config::process(self.workers), move |w| {
            run_worker(w, &worker_shared)
        })
        .expect("workers start")
        .join()
        .into_iter()
        .for_each(|r| r.expect("worker"));
        let commits = lock(&probe.commits).clone();
        (shared, commits)
    }
}

/// `n` batches of `rows` rows of `station`, one row per minute from `start`.
fn minutes(station: &str, start: i64, n: usize, rows: usize) -> Vec<Vec<Row>> {
    (0..n)
        .map(|b| {
            (0..rows)
                .map(|r| {
                    let i = (b * rows + r) as i64;
                    (start + i * 60_000_000, station.to_string(), i as f64)
                })
                .collect()
        })
        .collect()
}

fn station_counts(shared: &Shared) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = shared
        .views
        .iter()
        .flat_map(|v| {
            lock(v)
                .stations()
                .map(|(s, stats)| (s.to_string(), stats.count))
                .collect::<Vec<_>>()
        })
        .collect();
    counts.sort();
    counts
}

fn hour_buckets(shared: &Shared) -> Vec<(i64, u64)> {
    let mut hours: Vec<(i64, u64)> = shared
        .views
        .iter()
        .flat_map(|v| {
            lock(v)
                .buckets()
                .map(|(_, _, start, stats)| (start, stats.count))
                .collect::<Vec<_>>()
        })
        .collect();
    hours.sort();
    hours
}

#[test]
fn without_checkpoints_a_position_is_acknowledged_only_once_the_views_hold_its_rows() {
    for workers in [1, 2] {
        let mut run = Run::new("", workers);
        for p in ["a", "b", "c"] {
            run.partition(p, minutes(p, 0, 30, 7), None);
        }
        let (shared, commits) = run.run();
        assert_eq!(
            station_counts(&shared),
            vec![("a".into(), 210), ("b".into(), 210), ("c".into(), 210)]
        );
        assert!(!commits.is_empty());
        for p in ["a", "b", "c"] {
            let mine: Vec<&Commit> = commits.iter().filter(|c| c.partition == p).collect();
            assert!(
                mine.windows(2)
                    .all(|w| w[0].rows_covered < w[1].rows_covered),
                "{mine:?}"
            );
            assert_eq!(
                mine.last().map(|c| c.rows_covered),
                Some(210),
                "{p}: the end is acknowledged"
            );
        }
        for c in &commits {
            assert!(
                c.rows_in_views >= c.rows_covered,
                "acknowledged ahead of the aggregates: {c:?}"
            );
        }
    }
}

#[test]
fn with_checkpoints_a_position_is_acknowledged_only_once_a_durable_checkpoint_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[pipeline.checkpoint]\ndir = {:?}\ninterval = \"5ms\"\nkeep = 100\n",
        dir.path().display().to_string()
    );
    let mut run = Run::new(&extra, 2);
    run.checkpoint_dir = Some(dir.path().to_path_buf());
    for p in ["a", "b", "c"] {
        run.partition(p, minutes(p, 0, 40, 5), None);
    }
    let (shared, commits) = run.run();
    assert_eq!(station_counts(&shared).len(), 3);
    assert!(!commits.is_empty());
    for c in &commits {
        let held = c.rows_in_checkpoint.expect("checkpoints are on");
        assert!(
            held >= c.rows_covered,
            "acknowledged beyond the durable checkpoint: {c:?}"
        );
    }
    // Every worker contributed to every checkpoint: each holds all three partitions.
    let store = CheckpointStore::open(dir.path(), 100).expect("store");
    let (last, _) = store
        .load_latest(&Layout::of(&shared.config))
        .expect("readable")
        .expect("written");
    let mut ids: Vec<&str> = last.partitions.iter().map(|p| p.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(last.partitions.iter().all(|p| p.finished));
    let written = std::fs::read_dir(dir.path()).expect("dir").count();
    assert!(
        written > 1,
        "cuts were scheduled during the run, not only at the end"
    );
}

#[test]
fn lanes_days_apart_in_one_partition_lose_no_row_to_lateness() {
    let mut run = Run::new("", 1);
    // Two lanes interleaved row by row; lane 1 is three days behind lane 0.
    let lane0 = minutes("k", 3 * 24 * HOUR, 20, 10);
    let lane1 = minutes("k", 0, 20, 10);
    let mut batches = Vec::new();
    let mut lanes = Vec::new();
    for (a, b) in lane0.into_iter().zip(lane1) {
        let mut rows = Vec::new();
        let mut of_row = Vec::new();
        for (x, y) in a.into_iter().zip(b) {
            rows.push(x);
            of_row.push(0);
            rows.push(y);
            of_row.push(1);
        }
        batches.push(rows);
        lanes.push(of_row);
    }
    run.partition("k", batches, Some(lanes));
    let (shared, _) = run.run();
    assert_eq!(station_counts(&shared), vec![("k".into(), 400)]);
    let rejected = shared
        .metrics
        .source_rejected
        .with_label_values(&["fake", "too_late"])
        .get();
    assert_eq!(rejected, 0);
}

#[test]
fn a_bounded_run_applies_retention_once_against_the_final_frontier() {
    let retention = "[aggregates.temporal.retention]\nhour = \"2days\"\n";
    let mut results = Vec::new();
    for (workers, split) in [(1, 1), (2, 3), (3, 5)] {
        let mut run = Run::new(retention, workers);
        // Ten days, one row per minute, dealt round-robin over `split` partitions (each in
        // time order).
        let rows = minutes("s", 0, 1, 10 * 24 * 60).remove(0);
        for p in 0..split {
            let mine: Vec<Row> = rows.iter().skip(p).step_by(split).cloned().collect();
            let batches: Vec<Vec<Row>> = mine.chunks(997).map(|c| c.to_vec()).collect();
            run.partition(&format!("p{p}"), batches, None);
        }
        let (shared, _) = run.run();
        results.push(hour_buckets(&shared));
    }
    // Final frontier: last row (day 10 minus a minute) minus 1 h lateness; buckets ending at
    // or before it minus 2 days are gone.
    let last = (10 * 24 * 60 - 1) * 60_000_000i64;
    let horizon = last - HOUR - 48 * HOUR;
    let expected: Vec<(i64, u64)> = (0..240)
        .map(|h| h * HOUR)
        .filter(|start| start + HOUR > horizon)
        .map(|start| (start, 60))
        .collect();
    for r in &results {
        assert_eq!(r, &expected);
    }
}

#[test]
fn non_finite_values_count_as_missing_and_are_counted_per_variable() {
    let mut run = Run::new("", 1);
    let rows: Vec<Row> = [1.0, f64::INFINITY, f64::NAN, f64::NEG_INFINITY, 3.0]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64 * 60_000_000, "s".to_string(), *v))
        .collect();
    run.partition("s", vec![rows], None);
    let (shared, _) = run.run();
    let counted = shared
        .metrics
        .source_non_finite
        .with_label_values(&["fake", "depth_m"])
        .get();
    assert_eq!(counted, 3);
    let key = GroupKey::Station("s".into());
    let stats = shared
        .views
        .iter()
        .find_map(|v| lock(v).get(&key).cloned())
        .expect("station aggregated");
    assert_eq!(stats.count, 5, "rows with a missing value still count");
    assert_eq!(stats.vars[0].count, 2);
    assert_eq!(stats.vars[0].mean(), Some(2.0));
}
