//! The Kafka source end to end, against a real Kafka-protocol broker (tansu) and an independent
//! producer (the confluent-kafka Python client): every payload format over several partitions
//! gives the oracle's aggregates; stopping oceanflow (SIGTERM, SIGKILL) and restarting resumes
//! at the committed offsets; a broker restart mid-stream is survived; two processes in one
//! group share the partitions; bad messages go to the dead-letter topic and `/metrics`.
//!
//! Message `i` of a topic goes to partition `i % P` at offset `i / P` (one producer, explicit
//! partitions), so the rows behind any set of committed offsets are known exactly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use oceanflow_tests::kafka::Broker;
use oceanflow_tests::oracle::{compute, OracleSpec, Row};
use oceanflow_tests::{api_snapshot, free_port, http_get, oceanflow_bin, wait_until, ChildGuard};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const START_US: i64 = 1_577_836_800_000_000; // 2020-01-01T00:00:00Z
const MINUTE_US: i64 = 60_000_000;

// The issue-10 acceptance tests, in files of their own (cargo treats tests/*.rs as targets).
#[path = "kafka/acknowledgements.rs"]
mod acknowledgements;
#[path = "kafka/backlog.rs"]
mod backlog;
const PARTITIONS: usize = 4;
const SPECIES: [&str; 5] = [
    "Gadus morhua",
    "Clupea harengus",
    "Calanus finmarchicus",
    "Pandalus borealis",
    "Sebastes mentella",
];
/// Bound on one oceanflow run.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Tutorial-shaped rows, three minutes apart, with missing values and points outside every
/// region.
fn rows(n: usize, seed: u64) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let (lat, lon) = match i % 40 {
                0 => (62.0, 9.0),
                3 => (10.0, 100.0),
                _ => (rng.random_range(50.0..80.0), rng.random_range(-6.0..40.0)),
            };
            let mut maybe = |v: f64| (rng.random_range(0..20) != 0).then_some(v);
            let vars = [
                (i % 97) as f64 * 0.17,
                34.5 + (i % 13) as f64 * 0.07,
                [5.0, 10.0, 25.0, 50.0, 100.0, 200.0][i % 6],
                6.5 + (i % 11) as f64 * 0.09,
            ]
            .iter()
            .map(|v| maybe(*v))
            .collect();
            let species =
                (i % 7 != 0).then(|| SPECIES[rng.random_range(0..SPECIES.len())].to_string());
            Row {
                time_us: START_US + i as i64 * 3 * MINUTE_US,
                station: format!("STATION-{:03}", rng.random_range(0..6)),
                lat: Some(lat),
                lon: Some(lon),
                vars,
                cats: vec![species],
            }
        })
        .collect()
}

/// Writes rows as NDJSON for the Python producer (`timestamp` as RFC 3339 text and
/// `timestamp_us` for Arrow).
fn write_rows(path: &Path, rows: &[Row]) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("rows file"));
    for r in rows {
        let time = Utc
            .timestamp_micros(r.time_us)
            .single()
            .expect("valid time")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let doc = json!({
            "timestamp": time,
            "timestamp_us": r.time_us,
            "station_id": r.station,
            "latitude": r.lat,
            "longitude": r.lon,
            "temperature_c": r.vars[0],
            "salinity_psu": r.vars[1],
            "depth_m": r.vars[2],
            "dissolved_oxygen": r.vars[3],
            "species": r.cats[0],
        });
        writeln!(out, "{doc}").expect("write row");
    }
}

fn spec() -> OracleSpec {
    OracleSpec::tutorial(&["species"])
}

/// A config reading `topic` as `format` in the group `{topic}-oceanflow`; `extra` lines go into
/// the source table.
fn config(
    dir: &Path,
    name: &str,
    brokers: &str,
    topic: &str,
    format: &str,
    extra: &str,
) -> PathBuf {
    let source = KafkaSource {
        brokers,
        topic,
        group: &format!("{topic}-oceanflow"),
        format,
        // Generous: these tests are not about lateness (the backlog tests are).
        allowed_lateness: "3650days",
    };
    config_for(dir, name, &source, extra)
}

/// What a config's Kafka source reads, and how late its rows may be.
struct KafkaSource<'a> {
    brokers: &'a str,
    topic: &'a str,
    group: &'a str,
    format: &'a str,
    allowed_lateness: &'a str,
}

/// [`config`] for any group and lateness.
fn config_for(dir: &Path, name: &str, source: &KafkaSource, extra: &str) -> PathBuf {
    let KafkaSource {
        brokers,
        topic,
        group,
        format,
        allowed_lateness,
    } = source;
    let text = format!(
        r#"
variables = ["temperature_c", "salinity_psu", "depth_m", "dissolved_oxygen"]
categorical = ["species"]

[pipeline]
workers = 1
allowed_lateness = "{allowed_lateness}"

[[sources]]
kind = "kafka"
name = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
format = "{format}"
poll_budget = "20ms"
{extra}

[aggregates.station]
enabled = true

[aggregates.temporal]
enabled = true
buckets = ["hour", "day", "month", "year"]
station_buckets = ["day"]
calendar = ["month_of_year", "hour_of_day"]

[aggregates.temporal.retention]
hour = "30days"
day = "400days"

[aggregates.regional]
enabled = true

[[regions]]
name = "north_sea"
wkt = "POLYGON((-5 51, 9 51, 9 62, -5 62, -5 51))"

[[regions]]
name = "norwegian_sea"
wkt = "POLYGON((-5 62, 15 62, 15 72, -5 72, -5 62))"

[[regions]]
name = "barents_sea"
wkt = "POLYGON((15 68, 40 68, 40 80, 15 80, 15 68))"
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts `oceanflow run --config C --once --output OUT [--listen 127.0.0.1:PORT] ARGS`.
fn spawn(config: &Path, out: &Path, listen: Option<u16>, extra: &[&str]) -> ChildGuard {
    let mut cmd = Command::new(oceanflow_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .arg("--once")
        .arg("--output")
        .arg(out)
        .args(extra)
        .env("OCEANFLOW_LOG", "warn,oceanflow_kafka=info")
        .stdout(Stdio::null());
    if let Some(port) = listen {
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}"));
    }
    ChildGuard::spawn("oceanflow", &mut cmd).expect("oceanflow starts")
}

/// Waits (bounded) for the process to exit; returns its status.
fn wait_exit(child: &mut ChildGuard, timeout: Duration) -> std::process::ExitStatus {
    child
        .wait_exit(timeout)
        .unwrap_or_else(|| panic!("oceanflow did not exit within {timeout:?}"))
}

fn read_output(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out).expect("output written")).expect("output is JSON")
}

/// Stops a `--once` run over an unbounded topic: waits (bounded) until the served aggregates
/// hold every row the process accepted, takes them from the API, then SIGTERMs it — an
/// interrupted bounded run writes no output and exits 5.
fn stop_with_snapshot(run: &mut ChildGuard, port: u16) -> Value {
    let doc = wait_until(Duration::from_secs(60), || {
        let accepted = metric(&scrape(port)?, "oceanflow_source_rows_total", &[]);
        let doc = api_snapshot(port).ok()?;
        let served: u64 = doc["stations"]
            .as_array()?
            .iter()
            .filter_map(|row| row["count"].as_u64())
            .sum();
        (served as f64 == accepted).then_some(doc)
    })
    .expect("the served aggregates catch up with the accepted rows");
    run.signal("TERM");
    let status = wait_exit(run, RUN_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(5),
        "an interrupted --once run exits 5: {status}"
    );
    doc
}

/// Runs to the end of the topic (`stop_at_end`) and returns the output.
fn run_to_end(config: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut child = spawn(config, out, None, extra);
    let status = wait_exit(&mut child, RUN_TIMEOUT);
    assert!(status.success(), "oceanflow failed: {status}");
    read_output(out)
}

fn assert_matches(label: &str, expected_rows: &[Row], doc: &Value) {
    let problems = compute(&spec(), expected_rows).diff(doc);
    assert!(
        problems.is_empty(),
        "{label}: {} differences, first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
}

/// Sums the samples of `name` whose labels contain every `key="value"` of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(port: u16) -> Option<String> {
    http_get(&format!("http://127.0.0.1:{port}/metrics")).ok()
}

/// Messages delivered so far by the process listening on `port`.
fn delivered(port: u16) -> f64 {
    scrape(port).map_or(0.0, |t| metric(&t, "oceanflow_kafka_messages_total", &[]))
}

/// Waits (bounded) until the process on `port` has delivered at least `min` messages, or has
/// finished after delivering some; fails at once if it exits without delivering.
fn wait_delivered(run: &mut ChildGuard, port: u16, min: f64, timeout: Duration) -> f64 {
    let mut last = 0.0;
    wait_until(timeout, || {
        let running = run.check_running().is_ok();
        last = delivered(port).max(last);
        assert!(running || last > 0.0, "oceanflow exited without delivering");
        (last >= min || !running).then_some(last)
    })
    .unwrap_or_else(|| panic!("oceanflow delivered {last} < {min} messages in {timeout:?}"))
}

/// The group's committed offset per partition (0 where nothing is committed).
fn committed(broker: &Broker, topic: &str) -> Vec<usize> {
    let doc = broker
        .client(
            "offsets",
            &[
                "--topic",
                topic,
                "--partitions",
                &PARTITIONS.to_string(),
                "--group",
                &format!("{topic}-oceanflow"),
            ],
        )
        .expect("offsets");
    doc["committed"]
        .as_array()
        .expect("committed list")
        .iter()
        .map(|o| o.as_i64().unwrap_or(0).max(0) as usize)
        .collect()
}

fn produce(broker: &Broker, topic: &str, rows_file: &Path, format: &str, args: &[&str]) -> Value {
    let mut all = vec![
        "--topic",
        topic,
        "--partitions",
        "4",
        "--format",
        format,
        "--input",
        rows_file.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    broker.client("produce", &all).expect("produce")
}

#[test]
fn every_format_over_several_partitions_matches_the_oracle() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(6_000, 11);
    let rows_file = dir.path().join("rows.ndjson");
    write_rows(&rows_file, &rows);
    let csv_header = r#"csv_header = ["timestamp", "station_id", "latitude", "longitude", "temperature_c", "salinity_psu", "depth_m", "dissolved_oxygen", "species"]"#;
    for (format, per_message, extra, workers) in [
        ("json", "3", "", "1"),
        ("csv", "3", csv_header, "1"),
        ("arrow_ipc", "50", "", "1"),
    ] {
        let topic = format!("obs-{}", format.replace('_', "-"));
        broker.create_topic(&topic, PARTITIONS as u32).unwrap();
        produce(
            &broker,
            &topic,
            &rows_file,
            format,
            &["--rows-per-message", per_message],
        );
        let cfg = config(
            dir.path(),
            format,
            &broker.address(),
            &topic,
            format,
            &format!("stop_at_end = true\n{extra}"),
        );
        let out = dir.path().join(format!("{format}.json"));
        let doc = run_to_end(&cfg, &out, &["--workers", workers]);
        assert_matches(&format!("{format} with {workers} worker(s)"), &rows, &doc);
    }
}

/// Interrupts a checkpointing run with `sig` once it has delivered `min_delivered` rows, lets
/// more messages arrive while it is down, restarts it from its checkpoints and checks that the
/// aggregates equal one pass over every message: exactly once, through the restore of the
/// aggregates and the Kafka offsets held in the checkpoint.
fn interrupted_then_restarted(sig: &str, topic: &str, seed: u64, min_delivered: f64) {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(12_000, seed);
    let (first, second) = rows.split_at(8_000);
    broker.create_topic(topic, PARTITIONS as u32).unwrap();
    let first_file = dir.path().join("first.ndjson");
    write_rows(&first_file, first);
    // One message per record batch: see `--batch-messages` in kafka_client.py (a tansu quirk
    // that would otherwise skip messages after any mid-batch resume).
    let one_per_batch = ["--batch-messages", "1"];
    produce(&broker, topic, &first_file, "json", &one_per_batch);
    let cfg = config(
        dir.path(),
        topic,
        &broker.address(),
        topic,
        "json",
        "stop_at_end = true\nmax_batch_messages = 50",
    );
    let checkpoints = dir.path().join("checkpoints");
    let checkpoint_args = [
        "--checkpoint-dir",
        checkpoints.to_str().expect("utf-8 path"),
    ];

    let port = free_port();
    let out1 = dir.path().join("out1.json");
    let mut run1 = spawn(&cfg, &out1, Some(port), &checkpoint_args);
    let seen = wait_delivered(&mut run1, port, min_delivered, Duration::from_secs(60));
    run1.signal(sig);
    let status = wait_exit(&mut run1, RUN_TIMEOUT);
    if sig == "TERM" {
        // Interrupted before the end of the topic: no output, exit 5, but a final checkpoint.
        assert_eq!(status.code(), Some(5), "first run after SIGTERM: {status}");
        // A graceful stop writes a final checkpoint and then commits what it covers.
        let after_first = committed(&broker, topic);
        assert!(
            after_first.iter().sum::<usize>() > 0,
            "nothing committed: {after_first:?}"
        );
    }
    let at_stop = committed(&broker, topic);

    // More messages arrive while oceanflow is down.
    let second_file = dir.path().join("second.ndjson");
    write_rows(&second_file, second);
    produce(&broker, topic, &second_file, "json", &one_per_batch);
    let out2 = dir.path().join("out2.json");
    let doc2 = run_to_end(&cfg, &out2, &checkpoint_args);
    assert_matches(&format!("restart after SIG{sig}"), &rows, &doc2);
    let end = committed(&broker, topic);
    assert_eq!(
        end.iter().sum::<usize>(),
        rows.len(),
        "final commits {end:?}"
    );
    eprintln!(
        "SIG{sig} after ≥{seen} rows delivered; committed at the stop {at_stop:?}; after the \
         restart every one of {} messages counted once",
        rows.len()
    );
}

#[test]
fn sigterm_mid_stream_then_restart_counts_every_message_exactly_once() {
    interrupted_then_restarted("TERM", "obs-sigterm", 12, 1.0);
}

#[test]
fn sigkill_mid_stream_then_restart_counts_every_message_exactly_once() {
    interrupted_then_restarted("KILL", "obs-sigkill", 13, 2_000.0);
}

/// What a broker restart looks like to a client — every connection drops, new ones are refused
/// for a while, then the broker is back with its log — through a proxy in front of tansu. (A
/// real tansu restart loses its in-memory topics; re-creating the topic to stand in for a
/// persistent log gives it a new topic id, which librdkafka 2.12.1 does not survive: it crashes
/// in its metadata cache. tansu 0.6's persistent engines need features or services this
/// machine does not have.)
#[test]
fn broker_outage_mid_stream_is_survived() {
    let backend = free_port();
    let proxy = oceanflow_tests::kafka::Proxy::start(backend).expect("proxy");
    let broker = Broker::start_advertising(backend, proxy.port()).expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(10_000, 14);
    let (first, second) = rows.split_at(6_000);
    let topic = "obs-outage";
    broker.create_topic(topic, PARTITIONS as u32).unwrap();
    let first_file = dir.path().join("first.ndjson");
    write_rows(&first_file, first);
    produce(&broker, topic, &first_file, "json", &[]);
    let cfg = config(
        dir.path(),
        "outage",
        &broker.address(),
        topic,
        "json",
        "max_batch_messages = 50",
    );
    let port = free_port();
    let out = dir.path().join("out.json");
    let mut run = spawn(&cfg, &out, Some(port), &[]);
    wait_delivered(&mut run, port, 1.0, Duration::from_secs(60));
    proxy.cut();
    // The fault itself lasts a fixed time (this is not synchronisation): long enough for the
    // client's requests to fail and its reconnects to be refused.
    std::thread::sleep(Duration::from_secs(3));
    proxy.restore();
    // More messages once the broker is back.
    let second_file = dir.path().join("second.ndjson");
    write_rows(&second_file, second);
    produce(&broker, topic, &second_file, "json", &[]);
    wait_delivered(&mut run, port, rows.len() as f64, Duration::from_secs(120));
    let doc = stop_with_snapshot(&mut run, port);
    assert_matches("across a broker outage", &rows, &doc);
}

#[test]
fn two_processes_in_one_group_share_the_partitions_and_cover_every_message() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(8_000, 15);
    let (first, second) = rows.split_at(400);
    let topic = "obs-group";
    broker.create_topic(topic, PARTITIONS as u32).unwrap();
    let first_file = dir.path().join("first.ndjson");
    write_rows(&first_file, first);
    produce(&broker, topic, &first_file, "json", &[]);
    let cfg = config(dir.path(), "group", &broker.address(), topic, "json", "");

    let ports = [free_port(), free_port()];
    let outs = [dir.path().join("a.json"), dir.path().join("b.json")];
    let mut runs: Vec<ChildGuard> = (0..2)
        .map(|i| spawn(&cfg, &outs[i], Some(ports[i]), &[]))
        .collect();
    // Wait until the group is stable: each process reports lag for its own partitions only,
    // and together they own all of them.
    let owned = |port: u16| -> Vec<String> {
        let text = scrape(port).unwrap_or_default();
        let mut parts: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("oceanflow_kafka_consumer_lag{"))
            .filter_map(|l| {
                let start = l.find("partition=\"")? + 11;
                Some(l[start..start + l[start..].find('"')?].to_string())
            })
            .collect();
        parts.sort();
        parts
    };
    let split = wait_until(Duration::from_secs(90), || {
        let (a, b) = (owned(ports[0]), owned(ports[1]));
        let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
        all.sort();
        all.dedup();
        (!a.is_empty()
            && !b.is_empty()
            && all.len() == PARTITIONS
            && a.len() + b.len() == PARTITIONS)
            .then_some((a, b))
    })
    .expect("both processes get partitions");
    let second_file = dir.path().join("second.ndjson");
    write_rows(&second_file, second);
    produce(&broker, topic, &second_file, "json", &[]);
    let total = rows.len() as f64;
    wait_until(Duration::from_secs(120), || {
        (delivered(ports[0]) + delivered(ports[1]) >= total).then_some(())
    })
    .expect("together they deliver every message");
    let per_process = [delivered(ports[0]), delivered(ports[1])];
    let docs: Vec<Value> = runs
        .iter_mut()
        .zip(ports)
        .map(|(run, port)| stop_with_snapshot(run, port))
        .collect();
    // Every station's count over both outputs covers the oracle's; what exceeds it was read
    // by both processes around the rebalance (only the first messages, before the split).
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *want.entry(r.station.clone()).or_default() += 1;
    }
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for doc in &docs {
        for row in doc["stations"].as_array().expect("stations") {
            *got.entry(row["station"].as_str().unwrap_or_default().to_string())
                .or_default() += row["count"].as_u64().unwrap_or(0);
        }
    }
    for (station, n) in &want {
        let have = got.get(station).copied().unwrap_or(0);
        assert!(have >= *n, "{station}: {have} < {n}");
    }
    let duplicates = got.values().sum::<u64>() - want.values().sum::<u64>();
    assert!(
        duplicates <= first.len() as u64,
        "{duplicates} duplicates, more than the {} messages before the split",
        first.len()
    );
    eprintln!(
        "group: split {split:?}; delivered {per_process:?}; duplicates around the rebalance: {duplicates}"
    );
}

#[test]
fn malformed_messages_go_to_the_dead_letter_topic_and_metrics() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    // 333 × 9 good messages and a bad one after every 9th: 10% bad.
    let rows = rows(2_997, 16);
    let topic = "obs-bad";
    let dlq = "obs-bad.dlq";
    broker.create_topic(topic, PARTITIONS as u32).unwrap();
    broker.create_topic(dlq, 1).unwrap();
    let file = dir.path().join("rows.ndjson");
    write_rows(&file, &rows);
    // A bad message after every 9th good one: 10% of the messages.
    let produced = produce(&broker, topic, &file, "json", &["--bad-every", "9"]);
    let bad: BTreeMap<String, u64> = serde_json::from_value(produced["bad"].clone()).unwrap();
    let bad_total: u64 = bad.values().sum();
    let messages = produced["messages"].as_u64().unwrap();
    assert_eq!(bad_total * 10, messages, "{produced}");

    let cfg = config(
        dir.path(),
        "bad",
        &broker.address(),
        topic,
        "json",
        &format!("dead_letter_topic = \"{dlq}\""),
    );
    let port = free_port();
    let out = dir.path().join("out.json");
    let mut run = spawn(&cfg, &out, Some(port), &[]);
    wait_delivered(&mut run, port, messages as f64, Duration::from_secs(120));
    let text = wait_until(Duration::from_secs(30), || {
        let text = scrape(port)?;
        let sent = metric(
            &text,
            "oceanflow_kafka_dead_lettered_total",
            &[("result", "delivered")],
        );
        (sent >= bad_total as f64).then_some(text)
    })
    .expect("dead letters delivered");
    for (reason, n) in &bad {
        let counted = metric(
            &text,
            "oceanflow_kafka_decode_errors_total",
            &[("source", "kafka"), ("reason", reason)],
        );
        assert_eq!(counted, *n as f64, "decode errors {reason}");
        let rejected = metric(
            &text,
            "oceanflow_source_rejected_rows_total",
            &[("source", "kafka"), ("reason", reason)],
        );
        assert_eq!(rejected, *n as f64, "pipeline rejections {reason}");
    }
    let doc = stop_with_snapshot(&mut run, port);
    assert_matches("good rows of a topic with 10% bad messages", &rows, &doc);

    let letters = broker
        .client(
            "consume",
            &["--topic", dlq, "--count", &bad_total.to_string()],
        )
        .expect("consume dead letters");
    let letters = letters["messages"].as_array().expect("messages").clone();
    assert_eq!(letters.len() as u64, bad_total);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for letter in &letters {
        let h = &letter["headers"];
        *reasons
            .entry(h["oceanflow.reason"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
        assert_eq!(h["oceanflow.topic"], topic, "{letter}");
        assert_eq!(h["oceanflow.source"], "kafka", "{letter}");
        let partition: usize = h["oceanflow.partition"].as_str().unwrap().parse().unwrap();
        let offset: usize = h["oceanflow.offset"].as_str().unwrap().parse().unwrap();
        // Bad message k of the topic is message 10k + 9: its partition and offset follow.
        let index = offset * PARTITIONS + partition;
        assert_eq!(index % 10, 9, "{letter}");
    }
    assert_eq!(reasons, bad);
}

#[test]
fn changelog_producer_roundtrips_through_a_real_broker() {
    use oceanflow_config::source::kafka::KafkaChangelogConfig;
    use oceanflow_kafka::{ChangelogProducer, ChangelogRecord};

    let broker = Broker::start().expect("broker");
    let topic = "aggregates";
    broker.create_topic(topic, 3).unwrap();
    let cfg = KafkaChangelogConfig {
        brokers: broker.address(),
        topic: topic.to_string(),
        client: [("linger.ms".to_string(), "5".to_string())].into(),
        client_secrets: Default::default(),
    };
    assert_eq!(cfg.problems(), vec![]);
    let producer = ChangelogProducer::new(&cfg, Path::new(".")).expect("producer");
    let records: Vec<ChangelogRecord> = (0..50)
        .map(|i| ChangelogRecord {
            family: ["station", "temporal", "regional"][i % 3].to_string(),
            key: json!({"station": format!("STATION-{:03}", i % 7), "n": i}),
            values: (i % 10 != 9).then(|| json!({"count": i, "temperature_c": {"mean": 8.5}})),
            watermark: START_US + i as i64 * MINUTE_US,
        })
        .collect();
    producer.send(0, &records).expect("queued");
    producer.flush(Duration::from_secs(30)).expect("flushed");
    assert_eq!((producer.delivered(), producer.failed()), (50, 0));
    assert_eq!(producer.settled(), 50);

    let read = broker
        .client("consume", &["--topic", topic, "--count", "50"])
        .expect("consume");
    let mut got: Vec<ChangelogRecord> = read["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let record: ChangelogRecord =
                serde_json::from_str(m["value"].as_str().expect("value")).expect("record");
            let key: Value = serde_json::from_str(m["key"].as_str().expect("key")).expect("key");
            assert_eq!(key, record.key, "the message key is the aggregate key");
            record
        })
        .collect();
    got.sort_by_key(|r| r.key["n"].as_u64());
    assert_eq!(got, records);
}

/// `[export.changelog]` end to end: a run's aggregate changes, read back from the changelog
/// topic by an independent client, end at exactly the values of the final output.
#[test]
fn aggregate_changes_are_published_to_the_changelog_topic() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(3_000, 21);
    let (topic, changes) = ("obs-changelog", "obs-changelog-aggregates");
    broker.create_topic(topic, PARTITIONS as u32).unwrap();
    // One partition: the changes of every key in the order they were made.
    broker.create_topic(changes, 1).unwrap();
    let file = dir.path().join("rows.ndjson");
    write_rows(&file, &rows);
    produce(&broker, topic, &file, "json", &[]);
    let extra = format!(
        "stop_at_end = true\n\n[export.changelog]\nbrokers = \"{}\"\ntopic = \"{changes}\"\n",
        broker.address()
    );
    let cfg = config(
        dir.path(),
        "changelog",
        &broker.address(),
        topic,
        "json",
        &extra,
    );
    let doc = run_to_end(&cfg, &dir.path().join("out.json"), &[]);
    assert_matches("changelog run", &rows, &doc);

    let read = broker
        .client(
            "consume",
            &["--topic", changes, "--count", "1000000", "--timeout", "10"],
        )
        .expect("consume");
    let mut latest: BTreeMap<(String, String), Value> = BTreeMap::new();
    for message in read["messages"].as_array().expect("messages") {
        let record: Value = serde_json::from_str(message["value"].as_str().unwrap()).unwrap();
        assert!(record["watermark"].is_i64(), "{record}");
        let family = record["family"].as_str().unwrap().to_string();
        latest.insert(
            (family, record["key"].to_string()),
            record["values"].clone(),
        );
    }
    assert!(!latest.is_empty(), "no changelog messages");
    for row in doc["stations"].as_array().unwrap() {
        let key = json!({ "station": row["station"] }).to_string();
        let values = &latest[&("station".to_string(), key)];
        assert_eq!(values["count"], row["count"], "{row}");
    }
    for row in doc["regions"].as_array().unwrap() {
        if row["count"].as_u64() == Some(0) {
            continue;
        }
        let key = json!({ "region": row["region"] }).to_string();
        let values = &latest[&("regional".to_string(), key)];
        assert_eq!(values["count"], row["count"], "{row}");
    }
    let temporal = latest.keys().filter(|(f, _)| f == "temporal").count();
    assert_eq!(temporal, doc["temporal"].as_array().unwrap().len());
}

/// The recovery crash loop with a real broker: a Kafka topic and a file feed one run, which is
/// killed with SIGKILL at random moments and restarted from its checkpoints until both are
/// drained; the aggregates then equal one pass over every row — nothing lost, nothing counted
/// twice, on either source.
#[test]
fn crash_loop_over_a_kafka_topic_and_a_file_counts_every_row_once() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(16_000, 31);
    let (from_kafka, from_file) = rows.split_at(8_000);
    let topic = "obs-crash-loop";
    broker.create_topic(topic, PARTITIONS as u32).unwrap();
    let kafka_rows = dir.path().join("kafka.ndjson");
    write_rows(&kafka_rows, from_kafka);
    produce(
        &broker,
        topic,
        &kafka_rows,
        "json",
        &["--batch-messages", "1"],
    );
    let file = dir.path().join("file.ndjson");
    write_rows(&file, from_file);
    let extra = format!(
        "stop_at_end = true\nmax_batch_messages = 200\n\n[[sources]]\nkind = \"file\"\n\
         name = \"file\"\npath = \"{}\"\nbatch_rows = 200\n\n[pipeline.checkpoint]\n\
         dir = \"{}\"\ninterval = \"500ms\"\n",
        file.display(),
        dir.path().join("checkpoints").display()
    );
    let cfg = config(
        dir.path(),
        "crash-loop",
        &broker.address(),
        topic,
        "json",
        &extra,
    );
    let out = dir.path().join("out.json");
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut kills = 0;
    while kills < 5 {
        let mut run = spawn(&cfg, &out, None, &[]);
        // Killed at a random moment: the point of the test, not a synchronisation.
        let delay = Duration::from_millis(rng.random_range(300..2_500));
        if run.wait_exit(delay).is_some() {
            break;
        }
        run.signal("KILL");
        wait_exit(&mut run, Duration::from_secs(30));
        kills += 1;
    }
    let doc = run_to_end(&cfg, &out, &[]);
    assert_matches(&format!("after {kills} SIGKILLs"), &rows, &doc);
    assert!(kills > 0, "no run was killed: the input is too small");
}
