//! Fast tests against rdkafka's in-process mock cluster: a member reads JSON over several
//! partitions to the end, rejects bad messages into the dead-letter topic, reports positions,
//! commits them, and a second run resumes at the committed offsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;

use oceanflow_config::source::kafka::{KafkaFormat, KafkaStart};
use oceanflow_config::{ColumnMapping, KafkaSourceConfig};
use oceanflow_connectors::{Poll, Position, SourceContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::*;

fn source(brokers: &str, topic: &str, group: &str) -> KafkaSourceConfig {
    KafkaSourceConfig {
        name: format!("mock-{group}"),
        brokers: brokers.to_string(),
        topics: vec![topic.to_string()],
        group_id: group.to_string(),
        start: KafkaStart::Earliest,
        format: KafkaFormat::Json,
        csv_header: Vec::new(),
        event_time: Default::default(),
        max_batch_messages: 7,
        poll_budget: Duration::from_millis(20),
        stop_at_end: true,
        dead_letter_topic: Some(format!("{topic}.dlq")),
        // A member of an earlier run that did not leave cleanly holds the mock group's next
        // join for at most this long.
        client: [
            ("session.timeout.ms".to_string(), "6000".to_string()),
            ("heartbeat.interval.ms".to_string(), "500".to_string()),
        ]
        .into(),
        client_secrets: Default::default(),
        mapping: ColumnMapping::default(),
    }
}

fn context() -> SourceContext {
    SourceContext::new(vec!["temperature_c".into()], vec![])
}

fn produce(brokers: &str, topic: &str, payloads: &[(i32, String)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    for (partition, payload) in payloads {
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .partition(*partition)
                    .payload(payload),
            )
            .expect("queued");
    }
    producer.flush(Duration::from_secs(10)).expect("flushed");
}

/// Opens the source's only member and polls it until it finishes (bounded); returns the good
/// rows, the rejections and the last position, committing it when `commit` is set.
fn drain(cfg: &KafkaSourceConfig, commit: bool) -> (usize, Vec<String>, Option<Position>) {
    let ctx = context();
    let mut parts = partitions(cfg, &ctx).expect("partitions");
    assert_eq!(parts.len(), 1);
    let part = parts.remove(0);
    assert_eq!(part.id, format!("{}#member-0", cfg.name));
    let mut reader = (part.open)(None).expect("opens");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut rows, mut rejected, mut position) = (0, Vec::new(), None);
    loop {
        assert!(Instant::now() < deadline, "member did not finish in 60 s");
        match reader.poll().expect("poll") {
            Poll::Batch(batch) => {
                rows += batch.batch.num_rows();
                rejected.extend(batch.rejected.iter().map(|r| {
                    format!(
                        "{} {} {}",
                        r.reason.as_str(),
                        r.partition,
                        r.row.unwrap_or(0)
                    )
                }));
                position = batch.position;
            }
            Poll::Idle => std::thread::sleep(Duration::from_millis(5)),
            Poll::Finished => break,
        }
    }
    if commit {
        if let Some(p) = &position {
            reader.commit(p).expect("commit");
        }
    }
    drop(reader);
    (rows, rejected, position)
}

fn good(i: usize) -> String {
    format!(
        r#"{{"timestamp":"2020-01-01T00:{:02}:00Z","station_id":"S{}","latitude":60,"longitude":5,"temperature_c":{}}}"#,
        i % 60,
        i % 3,
        i
    )
}

#[test]
fn reads_to_the_end_dead_letters_and_resumes_at_committed_offsets() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("obs", 3, 1).expect("topic");
    cluster.create_topic("obs.dlq", 1, 1).expect("dlq topic");
    let mut payloads: Vec<(i32, String)> = (0..30).map(|i| ((i % 3) as i32, good(i))).collect();
    payloads.push((1, "{broken".into()));
    payloads.push((2, format!("[{},{}]", good(100), good(101))));
    produce(&brokers, "obs", &payloads);

    let cfg = source(&brokers, "obs", "g1");
    let (rows, rejected, position) = drain(&cfg, true);
    assert_eq!(rows, 32);
    assert_eq!(rejected, vec!["malformed obs/1 10".to_string()]);
    let position = position.expect("a position");
    assert_eq!(
        position.0,
        serde_json::json!({"offsets": {"obs/0": 10, "obs/1": 11, "obs/2": 11}})
    );

    // The dead letter carries the payload and where it came from.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["obs.dlq"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let letter = loop {
        assert!(Instant::now() < deadline, "no dead letter within 30 s");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            break m.detach();
        }
    };
    assert_eq!(letter.payload(), Some(&b"{broken"[..]));
    let headers: Vec<(String, String)> = letter
        .headers()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h.key.to_string(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    for (k, v) in [
        (dead_letter::headers::REASON, "malformed"),
        (dead_letter::headers::TOPIC, "obs"),
        (dead_letter::headers::PARTITION, "1"),
        (dead_letter::headers::OFFSET, "10"),
    ] {
        assert!(
            headers.contains(&(k.to_string(), v.to_string())),
            "{k}={v} not in {headers:?}"
        );
    }

    // More messages, then a second run of the same group reads only those.
    produce(&brokers, "obs", &[(0, good(200)), (1, good(201))]);
    let (rows, rejected, _) = drain(&cfg, true);
    assert_eq!((rows, rejected.len()), (2, 0));
}

#[test]
fn csv_with_kafka_timestamps() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("lines", 1, 1).expect("topic");
    produce(
        &brokers,
        "lines",
        &[
            (0, "A,60,5,1.5\nB,61,6,2.5\n".into()),
            (0, "C,62,7\n".into()),
            (0, "D,63,8,warm\n".into()),
        ],
    );
    let mut cfg = source(&brokers, "lines", "g-csv");
    cfg.format = KafkaFormat::Csv;
    cfg.event_time = oceanflow_config::source::kafka::KafkaEventTime::KafkaTimestamp;
    cfg.dead_letter_topic = None;
    cfg.csv_header = ["station_id", "latitude", "longitude", "temperature_c"]
        .map(String::from)
        .to_vec();
    let (rows, rejected, _) = drain(&cfg, false);
    assert_eq!(rows, 2);
    assert_eq!(
        rejected,
        vec![
            "malformed lines/0 1".to_string(),
            "non_numeric lines/0 2".to_string()
        ]
    );
}

#[test]
fn changelog_records_roundtrip_keyed_by_aggregate() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("changes", 2, 1).expect("topic");
    let cfg: oceanflow_config::source::kafka::KafkaChangelogConfig = toml_like(&brokers);
    let producer = ChangelogProducer::new(&cfg, std::path::Path::new(".")).expect("producer");
    let records = vec![
        ChangelogRecord {
            family: "station".into(),
            key: serde_json::json!({"station": "S1"}),
            values: Some(serde_json::json!({"count": 3})),
            watermark: 1_577_836_800_000_000,
        },
        ChangelogRecord {
            family: "temporal".into(),
            key: serde_json::json!({"grouping": "hour", "key": "2020-01-01T00"}),
            values: None,
            watermark: 1_577_836_800_000_000,
        },
    ];
    producer.send(0, &records).expect("queued");
    producer.flush(Duration::from_secs(10)).expect("flushed");
    assert_eq!((producer.delivered(), producer.failed()), (2, 0));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "changes-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["changes"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < 2 {
        assert!(Instant::now() < deadline, "changelog not read back in 30 s");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let record: ChangelogRecord =
                serde_json::from_slice(m.payload().expect("payload")).expect("JSON record");
            let key: serde_json::Value =
                serde_json::from_slice(m.key().expect("key")).expect("JSON key");
            assert_eq!(key, record.key);
            got.push(record);
        }
    }
    got.sort_by(|a, b| a.family.cmp(&b.family));
    assert_eq!(got, records);
}

fn toml_like(brokers: &str) -> oceanflow_config::source::kafka::KafkaChangelogConfig {
    oceanflow_config::source::kafka::KafkaChangelogConfig {
        brokers: brokers.to_string(),
        topic: "changes".into(),
        client: Default::default(),
        client_secrets: Default::default(),
    }
}

/// A 3-partition backlog, each partition in time order with days of skew between them, and
/// some rows rejected among the kept ones: every canonical row carries its own
/// topic-partition as lane, and within each lane event times never go back, so per-lane
/// lateness rejects nothing however the member interleaves the partitions.
#[test]
fn rows_carry_their_topic_partition_as_lane() {
    const PER_PARTITION: usize = 2_000;
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("skewed", 3, 1).expect("topic");
    let payloads: Vec<(i32, String)> = (0..PER_PARTITION)
        .flat_map(|i| (0..3).map(move |p| (p, i)))
        .map(|(p, i)| {
            let day = 1 + 2 * p as usize + i / 1440;
            let latitude = if i % 50 == 7 { 95 } else { 60 };
            let payload = format!(
                r#"{{"timestamp":"2020-01-{day:02}T{:02}:{:02}:00Z","station_id":"P{p}","latitude":{latitude},"longitude":5,"temperature_c":{i}}}"#,
                (i / 60) % 24,
                i % 60,
            );
            (p, payload)
        })
        .collect();
    produce(&brokers, "skewed", &payloads);

    let mut cfg = source(&brokers, "skewed", "g-lanes");
    cfg.max_batch_messages = 500;
    cfg.dead_letter_topic = None;
    let ctx = context();
    let mut parts = partitions(&cfg, &ctx).expect("partitions");
    let mut reader = (parts.remove(0).open)(None).expect("opens");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut newest_per_lane: HashMap<String, i64> = HashMap::new();
    let (mut rows, mut rejected, mut mixed_batches) = (0, 0, 0);
    let (mut member_newest, mut late_per_member) = (i64::MIN, 0);
    loop {
        assert!(Instant::now() < deadline, "member did not finish in 120 s");
        let batch = match reader.poll().expect("poll") {
            Poll::Batch(batch) => batch,
            Poll::Idle => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Poll::Finished => break,
        };
        rejected += batch.rejected.len();
        let lanes = batch.lanes.expect("a member's batches have lanes");
        assert_eq!(lanes.of_row.len(), batch.batch.num_rows());
        let stations = batch.batch.column(1).as_string::<i32>();
        let times = batch
            .batch
            .column(0)
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        let mut used = std::collections::BTreeSet::new();
        for row in 0..batch.batch.num_rows() {
            let lane = lanes.of(row).expect("every row has a lane");
            let partition = &stations.value(row)[1..];
            assert_eq!(lane, format!("skewed/{partition}"), "row {row}");
            used.insert(lane.to_string());
            let time = times.value(row);
            let newest = newest_per_lane.entry(lane.to_string()).or_insert(i64::MIN);
            assert!(time >= *newest, "{lane}: time went back within the lane");
            *newest = time;
            if time < member_newest.saturating_sub(3_600_000_000) {
                late_per_member += 1;
            }
            member_newest = member_newest.max(time);
        }
        mixed_batches += usize::from(used.len() > 1);
        rows += batch.batch.num_rows();
    }
    let bad = 3 * (0..PER_PARTITION).filter(|i| i % 50 == 7).count();
    assert_eq!((rows, rejected), (3 * PER_PARTITION - bad, bad));
    assert_eq!(newest_per_lane.len(), 3);
    println!(
        "{rows} rows, {mixed_batches} batches mixing partitions, {late_per_member} would be \
         too_late with lateness judged per member"
    );
}
