//! oceanflow source: Kafka topics read as a consumer group; a dead-letter topic for rejected
//! rows; an aggregate changelog producer.
//!
//! # Members and workers
//!
//! [`partitions`] returns one [`Partition`] per timely worker (`NAME#member-i`); opening one
//! starts one member of the consumer group, so the group protocol spreads the Kafka partitions
//! over the workers (and over every oceanflow process sharing the `group_id`).
//!
//! # Polling
//!
//! `poll` never blocks: it drains librdkafka's prefetched queue with zero-timeout polls, up to
//! `max_batch_messages` messages or `poll_budget` of wall time, decodes them together (JSON,
//! CSV, or Arrow IPC — see [`decode`]) and canonicalises them once; with nothing queued it
//! returns [`Poll::Idle`](oceanflow_connectors::Poll::Idle).
//!
//! # Delivery guarantee
//!
//! Auto-commit and the auto offset store are off. A batch's position is the next offset per
//! partition the member has delivered; the runtime calls `commit(position)` once every aggregate
//! update derived from the messages before those offsets has been applied (and is durable, once
//! checkpoints exist), and exactly those offsets are committed. Hence:
//!
//! - **No loss**: an offset is committed only after its messages are reflected in the
//!   aggregates, so a restart from committed offsets (SIGTERM, SIGKILL, broker restart) never
//!   skips an uncommitted message.
//! - **Duplicates, bounded**: without checkpoints, a process that dies loses its in-memory
//!   aggregates; the restarted process reads from the committed offsets, so the messages
//!   delivered but not yet committed when it died are read again — at most the uncommitted tail
//!   of each partition (the runtime's commit lag). On SIGTERM the runtime drains and commits
//!   everything it applied, so a restart reads every message exactly once. With checkpoints
//!   that restore the state at the committed offsets, a restart is exactly-once.
//! - **Rebalances**: within a process, a partition moving between members continues at the
//!   next offset this process delivered (see [`member`]); messages fetched but not delivered
//!   when the revoke arrives are dropped and re-read by the new owner. A partition that moves to
//!   *another* process resumes there at the committed offset, so that process re-reads the
//!   uncommitted tail the old owner had delivered (each counted once per process; across the
//!   two processes' aggregates it appears twice).
//!
//! # End of input
//!
//! With `stop_at_end = true` each member looks up, when partitions are assigned, the high
//! watermark of each one and its start offset, and finishes once it has delivered every
//! assigned partition up to that end (a member assigned nothing finishes too). Its partitions
//! then move to the remaining members, which start where this process got to and so finish
//! at once. Messages produced after the assignment are left for the next run.

pub mod changelog;
mod client;
pub mod dead_letter;
pub mod decode;
pub mod member;
mod metrics;

use std::sync::Arc;
use std::time::Duration;

use oceanflow_config::source::kafka::{KafkaEventTime, KafkaFormat};
use oceanflow_config::KafkaSourceConfig;
use oceanflow_connectors::canonical::Canonicalizer;
use oceanflow_connectors::{
    Partition, PartitionReader, Position, RejectReason, SourceContext, SourceError,
};
use rdkafka::consumer::{BaseConsumer, Consumer};

pub use changelog::{ChangelogError, ChangelogProducer, ChangelogRecord};

use crate::member::{DecodeSettings, GroupState, Member, MemberContext, Offsets, PollLimits};
use crate::metrics::KafkaMetrics;

/// Errors of the Kafka connector, with the client or setting they concern. Secret values never
/// appear in them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A secret client setting could not be read.
    #[error("{context}: secret setting {key:?}: {message}")]
    Secret {
        /// Which client.
        context: String,
        /// The setting.
        key: String,
        /// Where it was looked for and why it failed.
        message: String,
    },
    /// librdkafka refused the settings or an operation.
    #[error("{context}: {source}")]
    Client {
        /// Which client and operation.
        context: String,
        /// The cause.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The source's configuration cannot work (e.g. a CSV header without the time column).
    #[error("{context}: {message}")]
    Invalid {
        /// Which source.
        context: String,
        /// What is wrong.
        message: String,
    },
}

impl From<Error> for SourceError {
    fn from(error: Error) -> Self {
        let context = match &error {
            Error::Secret { context, .. }
            | Error::Client { context, .. }
            | Error::Invalid { context, .. } => context.clone(),
        };
        SourceError::Other {
            context,
            message: error.to_string(),
        }
    }
}

/// The partitions of a `kind = "kafka"` source: one group member per worker. Registers the
/// connector's metric families in `ctx.registry`. Nothing connects to Kafka until a partition
/// is opened.
/// librdkafka's default `session.timeout.ms`.
const DEFAULT_SESSION_TIMEOUT_MS: u64 = 45_000;

pub fn partitions(
    cfg: &KafkaSourceConfig,
    ctx: &SourceContext,
) -> Result<Vec<Partition>, SourceError> {
    let context = format!("source {}", cfg.name);
    let metrics = KafkaMetrics::register(&ctx.registry);
    for reason in RejectReason::ALL {
        metrics
            .decode_errors
            .with_label_values(&[&cfg.name, reason.as_str()]);
    }
    for result in ["ok", "error"] {
        metrics.commits.with_label_values(&[&cfg.name, result]);
    }
    for kind in ["assign", "revoke"] {
        metrics.rebalances.with_label_values(&[&cfg.name, kind]);
    }
    for result in ["delivered", "failed"] {
        metrics
            .dead_lettered
            .with_label_values(&[&cfg.name, result]);
    }

    let canon = Canonicalizer::new(&cfg.name, &cfg.mapping, &ctx.variables, &ctx.categorical);
    let payload_time = cfg.event_time == KafkaEventTime::Payload;
    let time_column = cfg.mapping.time.clone();
    let mut required = vec![cfg.mapping.station.clone()];
    if payload_time {
        required.push(time_column.clone());
    }
    let text_columns: Vec<&str> = match cfg.format {
        KafkaFormat::Csv => {
            if let Some(missing) = required
                .iter()
                .find(|c| !cfg.csv_header.iter().any(|h| h == *c))
            {
                return Err(Error::Invalid {
                    context,
                    message: format!(
                        "csv_header {:?} lacks the mapped column {missing:?}",
                        cfg.csv_header
                    ),
                }
                .into());
            }
            cfg.csv_header.iter().map(String::as_str).collect()
        }
        _ => canon
            .source_columns()
            .into_iter()
            .filter(|c| payload_time || *c != time_column)
            .collect(),
    };
    let text_schema = decode::text_schema(&text_columns);
    // Built once here so a missing secret fails the source at start, not per member.
    let base = client::client_config(
        &context,
        &cfg.brokers,
        &cfg.client,
        &cfg.client_secrets,
        &ctx.base_dir,
    )?;
    let group = Arc::new(GroupState::default());

    let members = ctx.workers.max(1);
    let mut parts = Vec::with_capacity(members);
    for i in 0..members {
        let id = format!("{}#member-{i}", cfg.name);
        let cfg = cfg.clone();
        let base = base.clone();
        let group = Arc::clone(&group);
        let metrics = Arc::clone(&metrics);
        let canon = canon.clone();
        let decode = DecodeSettings {
            format: cfg.format,
            event_time: cfg.event_time,
            text_schema: Arc::clone(&text_schema),
            time_column: time_column.clone(),
            required: required.clone(),
        };
        let member_id = id.clone();
        parts.push(Partition {
            id,
            open: Box::new(move |resume: Option<Position>| {
                open_member(&cfg, base, member_id, resume, group, metrics, canon, decode)
                    .map(|m| Box::new(m) as Box<dyn PartitionReader>)
                    .map_err(SourceError::from)
            }),
        });
    }
    Ok(parts)
}

/// Starts one group member: creates the consumer, subscribes, and the dead-letter producer.
#[allow(clippy::too_many_arguments)]
fn open_member(
    cfg: &KafkaSourceConfig,
    base: rdkafka::ClientConfig,
    id: String,
    resume: Option<Position>,
    group: Arc<GroupState>,
    metrics: Arc<KafkaMetrics>,
    canon: Canonicalizer,
    decode: DecodeSettings,
) -> Result<Member, Error> {
    let context = format!("source {} member {id}", cfg.name);
    if let Some(position) = &resume {
        let offsets = Offsets::from_position(position).map_err(|message| Error::Invalid {
            context: context.clone(),
            message,
        })?;
        tracing::info!(member = %id, offsets = ?offsets.offsets, "Resuming from a checkpointed position.");
        group.resume_from(&offsets.offsets);
    }
    let mut config = base.clone();
    config
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", cfg.start.as_str())
        .set("enable.partition.eof", "false");
    if !cfg.client.contains_key("client.id") {
        config.set("client.id", format!("oceanflow-{id}"));
    }
    if !cfg.client.contains_key("statistics.interval.ms") {
        // Consumer lag per partition comes from librdkafka's statistics.
        config.set("statistics.interval.ms", "1000");
    }
    // A member the group assigns nothing waits this long before it counts as read to its end:
    // a predecessor killed without leaving holds its partitions until its session expires.
    let session = config
        .get("session.timeout.ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .unwrap_or(DEFAULT_SESSION_TIMEOUT_MS);
    let ctx = MemberContext::new(
        &cfg.name,
        group,
        Arc::clone(&metrics),
        cfg.stop_at_end,
        cfg.start,
        Duration::from_millis(session),
    );
    let consumer: BaseConsumer<MemberContext> =
        config
            .create_with_context(ctx)
            .map_err(|source| Error::Client {
                context: context.clone(),
                source,
            })?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| Error::Client {
            context: format!("{context}: subscribing to {topics:?}"),
            source,
        })?;
    let dead_letter = match &cfg.dead_letter_topic {
        Some(topic) => Some(dead_letter::DeadLetterProducer::new(
            base,
            topic,
            &cfg.name,
            metrics
                .dead_lettered
                .with_label_values(&[&cfg.name, "delivered"]),
            metrics
                .dead_lettered
                .with_label_values(&[&cfg.name, "failed"]),
        )?),
        None => None,
    };
    tracing::info!(member = %id, topics = ?cfg.topics, group = %cfg.group_id, "Kafka group member started.");
    Ok(Member::new(
        consumer,
        id,
        canon,
        decode,
        PollLimits {
            max_messages: cfg.max_batch_messages.max(1),
            budget: cfg.poll_budget,
            stop_at_end: cfg.stop_at_end,
        },
        dead_letter,
    ))
}

#[cfg(test)]
mod tests;
