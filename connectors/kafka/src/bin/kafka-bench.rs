//! Kafka benchmark helper (`bench/kafka/run.sh` drives it).
//!
//! - `produce`: writes N tutorial-shaped observations into an existing topic, as JSON (one
//!   object per message) or Arrow IPC streams (R rows per message), round-robin over its
//!   partitions.
//! - `consume`: the ceiling — a bare consumer (no group, no decoding) that reads every message
//!   of the topic from the beginning and only counts bytes; prints JSON with the rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use clap::{Parser, Subcommand, ValueEnum};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

#[derive(Debug, Parser)]
#[command(about = "Kafka benchmark helper for oceanflow")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    ArrowIpc,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce observations into an existing topic.
    Produce {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partitions: i32,
        #[arg(long, value_enum)]
        format: Format,
        #[arg(long)]
        rows: usize,
        /// Rows per Arrow IPC message.
        #[arg(long, default_value_t = 1000)]
        rows_per_message: usize,
    },
    /// Read the whole topic with a bare consumer and report the rate.
    Consume {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partitions: i32,
        /// Stop after this many messages.
        #[arg(long)]
        messages: u64,
    },
}

const START_US: i64 = 1_577_836_800_000_000;

/// Row `i`: 50 stations, one observation per station per minute.
fn row(i: usize) -> (i64, String, f64, f64, [f64; 4]) {
    let f = i as f64;
    (
        START_US + (i / 50) as i64 * 60_000_000,
        format!("STATION-{:03}", i % 50),
        58.0 + (f * 0.37) % 14.0,
        (f * 0.53) % 30.0,
        [
            8.0 + (f * 0.11) % 4.0,
            35.0 + (f * 0.07) % 1.0,
            [5.0, 10.0, 25.0, 50.0, 100.0, 200.0][i % 6],
            7.0 + (f * 0.13) % 1.0,
        ],
    )
}

fn json_row(i: usize) -> Vec<u8> {
    let (t, station, lat, lon, v) = row(i);
    let time = chrono_like(t);
    format!(
        r#"{{"timestamp":"{time}","station_id":"{station}","latitude":{lat},"longitude":{lon},"temperature_c":{},"salinity_psu":{},"depth_m":{},"dissolved_oxygen":{}}}"#,
        v[0], v[1], v[2], v[3]
    )
    .into_bytes()
}

/// RFC 3339 UTC text of a microsecond timestamp (whole seconds).
fn chrono_like(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn ipc_message(first: usize, n: usize) -> Result<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("station_id", DataType::Utf8, false),
        Field::new("latitude", DataType::Float64, true),
        Field::new("longitude", DataType::Float64, true),
        Field::new("temperature_c", DataType::Float64, true),
        Field::new("salinity_psu", DataType::Float64, true),
        Field::new("depth_m", DataType::Float64, true),
        Field::new("dissolved_oxygen", DataType::Float64, true),
    ]));
    let rows: Vec<_> = (first..first + n).map(row).collect();
    let var = |k: usize| -> ArrayRef {
        Arc::new(rows.iter().map(|r| Some(r.4[k])).collect::<Float64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.1.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(rows.iter().map(|r| Some(r.2)).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| Some(r.3)).collect::<Float64Array>()),
        var(0),
        var(1),
        var(2),
        var(3),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema)?;
    writer.write(&batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn produce(
    brokers: &str,
    topic: &str,
    partitions: i32,
    format: Format,
    rows: usize,
    per_message: usize,
) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .context("creating the producer")?;
    let started = Instant::now();
    let (mut messages, mut bytes, mut i) = (0u64, 0u64, 0usize);
    while i < rows {
        let (payload, n) = match format {
            Format::Json => (json_row(i), 1),
            Format::ArrowIpc => {
                let n = per_message.min(rows - i);
                (ipc_message(i, n)?, n)
            }
        };
        let partition = (messages % partitions as u64) as i32;
        loop {
            let record = BaseRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&payload);
            match producer.send(record) {
                Ok(()) => break,
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => bail!("producing: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
        messages += 1;
        bytes += payload.len() as u64;
        i += n;
    }
    producer
        .flush(Duration::from_secs(300))
        .context("flushing")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"messages": messages, "rows": rows, "bytes": bytes, "seconds": secs})
    );
    Ok(())
}

fn consume(brokers: &str, topic: &str, partitions: i32, target: u64) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-bench-ceiling")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(1800);
    let (mut messages, mut bytes) = (0u64, 0u64);
    while messages < target {
        if Instant::now() > deadline {
            bail!("read {messages} of {target} messages in 30 minutes");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                messages += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "messages": messages, "bytes": bytes, "seconds": secs,
            "messages_per_second": messages as f64 / secs,
            "megabytes_per_second": bytes as f64 / secs / 1e6,
        })
    );
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Produce {
            brokers,
            topic,
            partitions,
            format,
            rows,
            rows_per_message,
        } => produce(
            &brokers,
            &topic,
            partitions,
            format,
            rows,
            rows_per_message.max(1),
        ),
        Command::Consume {
            brokers,
            topic,
            partitions,
            messages,
        } => consume(&brokers, &topic, partitions, messages),
    }
}
