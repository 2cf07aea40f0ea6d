//! Acknowledgement order without checkpoints, on the real broker (issue 10): a consumer-group
//! offset may only be committed for rows the aggregates reflect *and* the changelog sink
//! (`[export.changelog]`) has delivered. oceanflow is killed (SIGKILL) at random moments while
//! it consumes; then every row below the group's committed offsets must be counted in the
//! latest changelog record of its station.

use std::collections::BTreeMap;
use std::time::Duration;

use oceanflow_tests::free_port;
use oceanflow_tests::kafka::Broker;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::{committed, config, produce, rows, spawn, wait_exit, write_rows};
use super::{PARTITIONS, RUN_TIMEOUT};

const TRIALS: u64 = 3;
const ROWS: usize = 40_000;

/// The latest changelog count of every station in `changes` (one partition: in order).
fn changelog_station_counts(broker: &Broker, changes: &str) -> BTreeMap<String, u64> {
    let read = broker
        .client(
            "consume",
            &["--topic", changes, "--to-end", "--timeout", "60"],
        )
        .expect("consume the changelog");
    let mut latest = BTreeMap::new();
    for message in read["messages"].as_array().expect("messages") {
        let record: Value =
            serde_json::from_str(message["value"].as_str().unwrap_or("null")).unwrap();
        if record["family"] != "station" {
            continue;
        }
        let station = record["key"]["station"].as_str().unwrap_or("?").to_string();
        let count = record["values"]["count"].as_u64().unwrap_or(0);
        latest.insert(station, count);
    }
    latest
}

#[test]
fn without_checkpoints_no_offset_is_committed_ahead_of_the_changelog() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(71);
    let mut failures = Vec::new();
    let mut committed_rows = 0;
    for trial in 0..TRIALS {
        let topic = format!("obs-ack-{trial}");
        let changes = format!("{topic}-changes");
        broker.create_topic(&topic, PARTITIONS as u32).unwrap();
        broker.create_topic(&changes, 1).unwrap();
        let rows = rows(ROWS, 71 + trial);
        let file = dir.path().join(format!("{topic}.ndjson"));
        write_rows(&file, &rows);
        produce(&broker, &topic, &file, "json", &[]);
        let extra = format!(
            "max_batch_messages = 500\n\n[export.changelog]\nbrokers = \"{}\"\ntopic = \"{changes}\"\n",
            broker.address()
        );
        let cfg = config(
            dir.path(),
            &topic,
            &broker.address(),
            &topic,
            "json",
            &extra,
        );
        let port = free_port();
        let out = dir.path().join(format!("{topic}.json"));
        let mut run = spawn(&cfg, &out, Some(port), &[]);
        // The kill moment: once a random share of the backlog has been read (by /metrics).
        let target = (rng.random_range(0.1..0.9) * ROWS as f64).round();
        let read = super::wait_delivered(&mut run, port, target, Duration::from_secs(120));
        run.check_running()
            .unwrap_or_else(|e| panic!("trial {trial}: finished before the kill: {e}"));
        run.signal("KILL");
        wait_exit(&mut run, RUN_TIMEOUT);

        let offsets = committed(&broker, &topic);
        let mut below: BTreeMap<String, u64> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            // Message i: partition i % P, offset i / P.
            if i / PARTITIONS < offsets[i % PARTITIONS] {
                *below.entry(row.station.clone()).or_default() += 1;
            }
        }
        let latest = changelog_station_counts(&broker, &changes);
        let below_total: u64 = below.values().sum();
        committed_rows += below_total;
        eprintln!(
            "trial {trial}: killed after {read} of {ROWS} messages read; committed {offsets:?} \
             ({below_total} rows); changelog station counts {latest:?}"
        );
        for (station, n) in &below {
            let reflected = latest.get(station).copied().unwrap_or(0);
            if reflected < *n {
                failures.push(format!(
                    "trial {trial}: {station}: {n} rows below the committed offsets \
                     {offsets:?}, the changelog counts {reflected}"
                ));
            }
        }
    }
    // An engine that never commits would pass the check above vacuously.
    assert!(committed_rows > 0, "nothing committed in {TRIALS} trials");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
