//! `oceanflow-bench incremental --base FILE --extra FILE`: how long until every aggregate
//! reflects a small update after a large load (the bench harness's incremental case).
//!
//! Loads `--base` through the same connectors, pre-aggregation and differential dataflow as
//! the service (every aggregate family of the embedded default, one worker), waits until the
//! aggregates are final, then feeds the rows of `--extra` as the next event-time step and
//! measures the time until the probe shows them applied to every aggregate. The extra rows are
//! read and decoded before the clock starts (they "arrive"); the decode time is printed too.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arrow_array::RecordBatch;
use oceanflow_config::ValidConfig;
use oceanflow_connectors::Poll;
use oceanflow_operators::preagg::{Partials, PreAggregator};
use oceanflow_operators::spec::AggregateSpec;
use oceanflow_operators::view::AggregateView;
use oceanflow_pipeline::inputs::with_inputs;
use oceanflow_pipeline::runtime::build_dataflow;

const USAGE: &str = "usage: oceanflow-bench incremental --base FILE --extra FILE\n       \
                     oceanflow-bench checkpoint --keys N[,N...] [--dir DIR]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("incremental") => incremental(&args[1..]),
        Some("checkpoint") => checkpoint_cost(&args[1..]),
        _ => bail!("{USAGE}"),
    }
}

/// Checkpoint cost as the state grows: collecting a view's keys, writing the file (with
/// fsync), reading and verifying it, and restoring it into a fresh dataflow until every key
/// is back in the view.
fn checkpoint_cost(args: &[String]) -> Result<()> {
    let (keys, dir) = match args {
        [k, keys] if k == "--keys" => (keys, None),
        [k, keys, d, dir] if k == "--keys" && d == "--dir" => (keys, Some(dir.clone())),
        _ => bail!("{USAGE}"),
    };
    let sizes: Vec<usize> = keys
        .split(',')
        .map(|k| {
            k.trim()
                .parse()
                .context("--keys takes counts like 1000,100000")
        })
        .collect::<Result<_>>()?;
    let scratch = tempfile::Builder::new()
        .prefix("oceanflow-ckpt-bench")
        .tempdir_in(dir.unwrap_or_else(|| std::env::temp_dir().display().to_string()))?;
    println!("| keys | collect ms | write ms (fsync) | bytes | read+verify ms | restore ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let row = checkpoint_row(n, scratch.path())?;
        println!("{row}");
    }
    Ok(())
}

fn checkpoint_row(n: usize, dir: &std::path::Path) -> Result<String> {
    use oceanflow_operators::{GroupKey, Stats, VarStats};
    use oceanflow_pipeline::checkpoint::{read, Checkpoint, CheckpointStore, Layout};

    let variables = 4;
    let changes: Vec<_> = (0..n)
        .map(|i| {
            let key = GroupKey::Bucket {
                width: oceanflow_config::BucketWidth::Hour,
                start_us: (i / 50) as i64 * 3_600_000_000,
                station: Some(format!("STATION-{:03}", i % 50)),
            };
            let stats = Stats {
                count: 60,
                vars: vec![VarStats::of(i as f64); variables],
                retracted: 0,
            };
            ((key, stats), 0u64, 1isize)
        })
        .collect();
    let mut view = AggregateView::new();
    view.apply_changes(&changes);
    drop(changes);

    let started = Instant::now();
    let groups: Vec<_> = view.groups().map(|(k, s)| (k, s.clone())).collect();
    let collect = started.elapsed();
    let checkpoint = Checkpoint {
        sequence: 1,
        created_unix_ms: 0,
        layout: Layout {
            variables: (0..variables).map(|v| format!("v{v}")).collect(),
            distinct_fields: Vec::new(),
            regions: Vec::new(),
        },
        groups,
        distinct: Vec::new(),
        partitions: Vec::new(),
    };
    let store = CheckpointStore::open(&dir.join(n.to_string()), 1)?;
    let started = Instant::now();
    let written = store.write(&checkpoint)?;
    let write = started.elapsed();
    drop(checkpoint);

    let started = Instant::now();
    let restored = read(&written.path)?;
    let verify = started.elapsed();
    let started = Instant::now();
    let restored_keys = timely::execute_directly(move |worker| {
        let view = Arc::new(Mutex::new(AggregateView::new()));
        let (mut groups_in, mut distinct_in, probe) =
            build_dataflow(worker, Arc::clone(&view), None);
        for (key, stats) in &restored.groups {
            groups_in.update(key.clone(), stats.clone());
        }
        groups_in.advance_to(1);
        distinct_in.advance_to(1);
        groups_in.flush();
        distinct_in.flush();
        worker.step_while(|| probe.less_than(&1));
        let keys = view.lock().map(|v| v.len()).unwrap_or(0);
        keys
    });
    let restore = started.elapsed() + verify;
    if restored_keys != n {
        bail!("restored {restored_keys} keys, expected {n}");
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    Ok(format!(
        "| {n} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
        ms(collect),
        ms(write),
        written.bytes,
        ms(verify),
        ms(restore)
    ))
}

fn incremental(args: &[String]) -> Result<()> {
    let (base, extra) = match args {
        [b, base, e, extra] if b == "--base" && e == "--extra" => (base.clone(), extra.clone()),
        _ => bail!("{USAGE}"),
    };
    let base_config = with_inputs(ValidConfig::embedded_default(), std::slice::from_ref(&base))?;
    let extra_config = with_inputs(
        ValidConfig::embedded_default(),
        std::slice::from_ref(&extra),
    )?;

    let read = |config: &ValidConfig| -> Result<Vec<RecordBatch>> {
        let c = config.config();
        let mut batches = Vec::new();
        let ctx = oceanflow_pipeline::sources::context(c, 1, None, prometheus::Registry::new());
        for source in &c.sources {
            for part in oceanflow_pipeline::sources::partitions(source, &ctx)? {
                let mut reader = (part.open)(None)?;
                while let Poll::Batch(b) = reader.poll()? {
                    batches.push(b.batch);
                }
            }
        }
        Ok(batches)
    };

    let spec = AggregateSpec::from_config(&base_config);
    let result = timely::execute_directly(move |worker| -> Result<String> {
        let view = Arc::new(Mutex::new(AggregateView::new()));
        let (mut groups_in, mut distinct_in, probe) =
            build_dataflow(worker, Arc::clone(&view), None);
        let mut preagg = PreAggregator::new(spec);
        let mut partials = Partials::default();
        let mut feed = |batches: &[RecordBatch],
                        groups_in: &mut differential_dataflow::input::InputSession<_, _, _>,
                        distinct_in: &mut differential_dataflow::input::InputSession<_, _, _>|
         -> Result<usize> {
            let mut rows = 0;
            for batch in batches {
                preagg.aggregate(batch, &mut partials)?;
                rows += batch.num_rows();
                for (k, s) in partials.groups.drain(..) {
                    groups_in.update(k, s);
                }
                for (k, d) in partials.distinct.drain(..) {
                    distinct_in.update(k, d);
                }
            }
            Ok(rows)
        };

        let started = Instant::now();
        let base_batches = read(&base_config).context("reading --base")?;
        let base_rows = feed(&base_batches, &mut groups_in, &mut distinct_in)?;
        drop(base_batches);
        groups_in.advance_to(1);
        distinct_in.advance_to(1);
        groups_in.flush();
        distinct_in.flush();
        worker.step_while(|| probe.less_than(&1));
        let load = started.elapsed();

        let decode_started = Instant::now();
        let extra_batches = read(&extra_config).context("reading --extra")?;
        let decode = decode_started.elapsed();

        let started = Instant::now();
        let extra_rows = feed(&extra_batches, &mut groups_in, &mut distinct_in)?;
        groups_in.advance_to(2);
        distinct_in.advance_to(2);
        groups_in.flush();
        distinct_in.flush();
        worker.step_while(|| probe.less_than(&2));
        let update = started.elapsed();
        let keys = view.lock().map(|v| v.len()).unwrap_or(0);
        Ok(format!(
            "oceanflow incremental: {extra_rows} rows reflected in every aggregate in {:.3} ms \
             (decode {:.3} ms) after {base_rows} rows loaded in {:.2} s; {keys} live keys",
            update.as_secs_f64() * 1e3,
            decode.as_secs_f64() * 1e3,
            load.as_secs_f64()
        ))
    })?;
    println!("{result}");
    Ok(())
}
