//! One consumer-group member: the [`PartitionReader`] a timely worker polls.
//!
//! # Offsets and rebalances
//!
//! Each member tracks, per assigned Kafka partition, the next offset after the last message it
//! delivered in a batch. A batch's [`Position`] is that map (`{"offsets":{"topic/3":1234}}`),
//! limited to the partitions the member currently owns. [`PartitionReader::commit`] commits
//! exactly those offsets (asynchronously, see [`Member::commit`]) for the partitions the member
//! still owns, and never moves a committed offset backwards.
//!
//! The members of one process share [`GroupState`]: the next offset this *process* has
//! delivered into its dataflow per partition. When the group moves a partition between two
//! members of the same process, the new owner seeks to that offset, so the rows the old owner
//! already fed in are neither read twice nor skipped. The same map carries a checkpointed
//! position to whichever member is assigned the partition after a restart. Messages fetched
//! but not yet delivered when a revoke arrives are dropped (the new owner reads them again).
//! Partitions that move to another *process* resume there from the committed offset.
//!
//! # Lanes
//!
//! A member interleaves the messages of all its partitions in a batch; each Kafka partition is
//! in offset order on its own. Every canonical row is tagged with its topic-partition
//! (`topic/partition`) as its [`Lanes`] id, so lateness is judged per Kafka partition, not per
//! member.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use oceanflow_config::source::kafka::{KafkaEventTime, KafkaFormat, KafkaStart};
use oceanflow_connectors::canonical::Canonicalizer;
use oceanflow_connectors::{
    Lanes, PartitionReader, Poll, Position, RejectReason, Rejected, SourceBatch, SourceError,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};

use crate::dead_letter::{DeadLetter, DeadLetterProducer};
use crate::decode::{self, Decoded, Malformed};
use crate::metrics::KafkaMetrics;

/// A topic and partition.
pub(crate) type Tp = (String, i32);

/// How long a closing member waits for its last commits and dead letters.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on the broker round trips made when a partition is assigned with `stop_at_end`.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by the members of one source in this process.
#[derive(Debug, Default)]
pub(crate) struct GroupState {
    /// Next offset delivered into this process's dataflow per partition (or restored from a
    /// checkpoint): where a member newly assigned the partition starts.
    delivered: Mutex<HashMap<Tp, i64>>,
    /// Highest offset committed per partition by this process: commits never go backwards.
    committed: Mutex<HashMap<Tp, i64>>,
    /// With `stop_at_end`: the end offset of every partition any member of this process was
    /// assigned. A member finishes only when all of them are delivered to their end, so a
    /// rebalance cannot hand unread partitions to a member that no longer reads.
    ends: Mutex<HashMap<Tp, i64>>,
}

impl GroupState {
    /// Adds resume offsets (a checkpointed position), keeping the higher offset per partition.
    pub fn resume_from(&self, offsets: &BTreeMap<String, i64>) {
        let mut delivered = lock(&self.delivered);
        for (key, &offset) in offsets {
            if let Some(tp) = parse_tp(key) {
                let entry = delivered.entry(tp).or_insert(offset);
                *entry = (*entry).max(offset);
            }
        }
    }
}

/// The serialised form of a member's position.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Offsets {
    /// `"topic/partition"` → next offset to consume.
    pub offsets: BTreeMap<String, i64>,
}

impl Offsets {
    /// Parses a position this connector produced.
    pub fn from_position(position: &Position) -> Result<Offsets, String> {
        serde_json::from_value(position.0.clone())
            .map_err(|e| format!("not a Kafka position ({e}): {}", position.0))
    }
}

fn tp_key(tp: &Tp) -> String {
    format!("{}/{}", tp.0, tp.1)
}

fn parse_tp(key: &str) -> Option<Tp> {
    let (topic, partition) = key.rsplit_once('/')?;
    Some((topic.to_string(), partition.parse().ok()?))
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a member knows about one assigned partition.
#[derive(Debug, Clone, Copy, Default)]
struct Assigned {
    /// Next offset to deliver: after the last delivered message, or the start offset.
    next: Option<i64>,
    /// Whether this member delivered rows from it since the assignment (only those partitions
    /// go into positions).
    delivered: bool,
    /// With `stop_at_end`: the high watermark observed at assignment.
    end: Option<i64>,
}

/// The member's view of its assignment, updated by the rebalance callback.
#[derive(Debug, Default)]
struct Assignment {
    partitions: BTreeMap<Tp, Assigned>,
    /// Bumped on every revoke, so a poll notices messages it holds may be stale.
    generation: u64,
    /// Whether the last rebalance event was an assignment (possibly of nothing): after a
    /// revoke (a rebalance, a lost session, a restarted broker) the member is not at its end
    /// until the group has assigned it again.
    joined: bool,
    /// Since when the group has assigned this member nothing (`None` while it owns some).
    empty_since: Option<Instant>,
}

/// The consumer's callbacks: rebalances, commit results, statistics (lag).
pub(crate) struct MemberContext {
    source: String,
    group: Arc<GroupState>,
    metrics: Arc<KafkaMetrics>,
    assignment: Mutex<Assignment>,
    stop_at_end: bool,
    start: KafkaStart,
    commits_requested: Mutex<u64>,
    commits_done: Mutex<u64>,
    /// How long an empty assignment must last before the member counts as read to its end.
    empty_grace: Duration,
}

impl MemberContext {
    pub fn new(
        source: &str,
        group: Arc<GroupState>,
        metrics: Arc<KafkaMetrics>,
        stop_at_end: bool,
        start: KafkaStart,
        empty_grace: Duration,
    ) -> Self {
        MemberContext {
            empty_grace,
            source: source.to_string(),
            group,
            metrics,
            assignment: Mutex::new(Assignment::default()),
            stop_at_end,
            start,
            commits_requested: Mutex::new(0),
            commits_done: Mutex::new(0),
        }
    }

    /// Sets each newly assigned partition's start offset: where this process got to, else the
    /// committed offset (librdkafka's default), else `start`. With `stop_at_end` the committed
    /// offset and the watermarks are looked up here so the end is known.
    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let delivered = lock(&self.group.delivered).clone();
        let mut known: BTreeMap<Tp, Assigned> = BTreeMap::new();
        let mut unknown = TopicPartitionList::new();
        for elem in tpl.elements() {
            let tp = (elem.topic().to_string(), elem.partition());
            match delivered.get(&tp) {
                Some(&next) => {
                    known.insert(
                        tp,
                        Assigned {
                            next: Some(next),
                            ..Assigned::default()
                        },
                    );
                }
                None => {
                    unknown.add_partition(&tp.0, tp.1);
                    known.insert(tp, Assigned::default());
                }
            }
        }
        if self.stop_at_end {
            self.look_up_ends(consumer, &unknown, &mut known);
        }
        for (tp, state) in &known {
            if let Some(next) = state.next {
                if let Err(error) = tpl.set_partition_offset(&tp.0, tp.1, Offset::Offset(next)) {
                    tracing::warn!(source = %self.source, partition = %tp_key(tp), %error, "Cannot set the start offset.");
                }
            }
        }
        let mut assignment = lock(&self.assignment);
        assignment.joined = true;
        assignment.partitions.extend(known);
        if assignment.partitions.is_empty() {
            assignment.empty_since.get_or_insert_with(Instant::now);
        } else {
            assignment.empty_since = None;
        }
        tracing::info!(
            source = %self.source,
            partitions = ?tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>(),
            "Kafka partitions assigned."
        );
    }

    /// With `stop_at_end`: the start offset of partitions this process has not read (committed
    /// offset, else `start`) and the high watermark of every assigned partition.
    fn look_up_ends(
        &self,
        consumer: &BaseConsumer<Self>,
        unknown: &TopicPartitionList,
        known: &mut BTreeMap<Tp, Assigned>,
    ) {
        let committed = if unknown.count() > 0 {
            match consumer.committed_offsets(unknown.clone(), LOOKUP_TIMEOUT) {
                Ok(list) => list.to_topic_map(),
                Err(error) => {
                    tracing::warn!(source = %self.source, %error, "Committed offsets unknown.");
                    HashMap::new()
                }
            }
        } else {
            HashMap::new()
        };
        for (tp, state) in known.iter_mut() {
            match consumer.fetch_watermarks(&tp.0, tp.1, LOOKUP_TIMEOUT) {
                Ok((low, high)) => {
                    state.end = Some(high);
                    let mut ends = lock(&self.group.ends);
                    let end = ends.entry(tp.clone()).or_insert(high);
                    *end = (*end).max(high);
                    drop(ends);
                    if state.next.is_none() {
                        state.next = Some(match committed.get(tp) {
                            Some(Offset::Offset(o)) => *o,
                            _ => match self.start {
                                KafkaStart::Earliest => low,
                                KafkaStart::Latest => high,
                            },
                        });
                    }
                    // Where the partition starts counts as delivered so far: an empty partition
                    // is at its end without a message.
                    if let Some(next) = state.next {
                        lock(&self.group.delivered)
                            .entry(tp.clone())
                            .or_insert(next);
                    }
                }
                Err(error) => tracing::warn!(
                    source = %self.source, partition = %tp_key(tp), %error,
                    "Watermarks unknown; looked up again while polling."
                ),
            }
        }
    }

    fn on_revoke(&self, tpl: &TopicPartitionList) {
        let mut assignment = lock(&self.assignment);
        assignment.generation += 1;
        assignment.joined = false;
        for elem in tpl.elements() {
            let tp = (elem.topic().to_string(), elem.partition());
            assignment.partitions.remove(&tp);
            let partition = tp.1.to_string();
            let _ = self
                .metrics
                .lag
                .remove_label_values(&[&self.source, &tp.0, &partition]);
        }
        tracing::info!(source = %self.source, revoked = tpl.count(), "Kafka partitions revoked.");
    }
}

impl ClientContext for MemberContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::client::log(&self.source, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::client::error(&self.source, &error, reason);
    }

    /// Lag per assigned partition: librdkafka's high watermark minus the next offset this
    /// member delivers (its own count, since the auto offset store is off).
    fn stats(&self, statistics: Statistics) {
        let assignment = lock(&self.assignment);
        tracing::trace!(source = %self.source, topics = statistics.topics.len(), "Statistics.");
        for ((topic, partition), state) in assignment.partitions.iter() {
            let Some(stats) = statistics
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition))
            else {
                continue;
            };
            // Before the first delivery: the committed offset, when there is one.
            let next = state
                .next
                .or((stats.committed_offset >= 0).then_some(stats.committed_offset));
            if let (true, Some(next)) = (stats.hi_offset >= 0, next) {
                let high = stats.hi_offset;
                self.metrics
                    .lag
                    .with_label_values(&[&self.source, topic, &partition.to_string()])
                    .set((high - next).max(0));
            }
        }
    }
}

impl ConsumerContext for MemberContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.metrics
                    .rebalances
                    .with_label_values(&[&self.source, "assign"])
                    .inc();
                self.on_assign(consumer, tpl);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.metrics
                    .rebalances
                    .with_label_values(&[&self.source, "revoke"])
                    .inc();
                self.on_revoke(tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(source = %self.source, error = ?other, "Rebalance failed; dropping the assignment.");
                self.on_revoke(tpl);
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            tracing::error!(source = %self.source, %error, "Applying the rebalance failed.");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        *lock(&self.commits_done) += 1;
        match result {
            Ok(()) => {
                self.metrics
                    .commits
                    .with_label_values(&[&self.source, "ok"])
                    .inc();
                let mut committed = lock(&self.group.committed);
                for elem in offsets.elements() {
                    if let Offset::Offset(o) = elem.offset() {
                        let entry = committed
                            .entry((elem.topic().to_string(), elem.partition()))
                            .or_insert(o);
                        *entry = (*entry).max(o);
                    }
                }
            }
            Err(error) => {
                self.metrics
                    .commits
                    .with_label_values(&[&self.source, "error"])
                    .inc();
                tracing::warn!(source = %self.source, %error, "Offset commit failed; the next commit supersedes it.");
            }
        }
    }
}

/// Decoding settings of a member.
pub(crate) struct DecodeSettings {
    pub format: KafkaFormat,
    pub event_time: KafkaEventTime,
    /// The payload columns decoded as text (JSON, CSV).
    pub text_schema: arrow_schema::SchemaRef,
    /// The mapped time column (replaced by the Kafka timestamp with `kafka_timestamp`).
    pub time_column: String,
    /// Columns an Arrow IPC message must have.
    pub required: Vec<String>,
}

/// The limits of one poll.
pub(crate) struct PollLimits {
    pub max_messages: usize,
    pub budget: Duration,
    pub stop_at_end: bool,
}

/// A consumer-group member read by one worker.
pub(crate) struct Member {
    consumer: BaseConsumer<MemberContext>,
    id: String,
    canon: Canonicalizer,
    decode: DecodeSettings,
    limits: PollLimits,
    dead_letter: Option<DeadLetterProducer>,
    /// An Arrow IPC message read but held back because its schema differs from the batch
    /// being built; delivered first by the next poll.
    carried: Option<IpcMessage>,
    last_error_log: Option<Instant>,
}

/// What a batch needs from a message once the message itself is released.
#[derive(Debug, Clone)]
struct Meta {
    tp: Tp,
    offset: i64,
    timestamp_ms: Option<i64>,
    bytes: usize,
}

/// A decoded Arrow IPC message.
struct IpcMessage {
    meta: Meta,
    batches: Vec<RecordBatch>,
}

impl Member {
    pub fn new(
        consumer: BaseConsumer<MemberContext>,
        id: String,
        canon: Canonicalizer,
        decode: DecodeSettings,
        limits: PollLimits,
        dead_letter: Option<DeadLetterProducer>,
    ) -> Self {
        Member {
            consumer,
            id,
            canon,
            decode,
            limits,
            dead_letter,
            carried: None,
            last_error_log: None,
        }
    }

    fn ctx(&self) -> &MemberContext {
        self.consumer.context()
    }

    /// Logs consumer errors, at most once a second (a down broker reports on every retry).
    fn log_errors(&mut self, errors: &[KafkaError]) {
        let Some(error) = errors.last() else { return };
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_error_log = Some(now);
            tracing::warn!(source = %self.ctx().source, member = %self.id, %error, errors = errors.len(), "Kafka consumer error.");
        }
    }

    /// Whether every partition the member owns has been read to its end offset. A member
    /// assigned nothing is at its end only once that has lasted a session timeout: the
    /// partitions may still be held by a predecessor that was killed without leaving the group
    /// (they come to this member when its session expires).
    fn at_end(&self) -> bool {
        let assignment = lock(&self.ctx().assignment);
        let waiting_for_partitions = assignment
            .empty_since
            .is_some_and(|since| since.elapsed() < self.ctx().empty_grace);
        let delivered = lock(&self.ctx().group.delivered);
        let process_at_end = lock(&self.ctx().group.ends)
            .iter()
            .all(|(tp, end)| delivered.get(tp).is_some_and(|next| next >= end));
        drop(delivered);
        assignment.joined
            && !waiting_for_partitions
            && process_at_end
            && self.carried.is_none()
            && assignment
                .partitions
                .values()
                .all(|p| matches!((p.next, p.end), (Some(next), Some(end)) if next >= end))
    }

    /// Looks up watermarks that could not be looked up at assignment.
    fn retry_ends(&self) {
        let missing: Vec<Tp> = lock(&self.ctx().assignment)
            .partitions
            .iter()
            .filter(|(_, p)| p.end.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut known: BTreeMap<Tp, Assigned> = missing
            .iter()
            .map(|tp| (tp.clone(), Assigned::default()))
            .collect();
        let mut unknown = TopicPartitionList::new();
        for tp in &missing {
            unknown.add_partition(&tp.0, tp.1);
        }
        self.ctx()
            .look_up_ends(&self.consumer, &unknown, &mut known);
        let mut assignment = lock(&self.ctx().assignment);
        for (tp, found) in known {
            if let Some(p) = assignment.partitions.get_mut(&tp) {
                p.end = found.end;
                if p.next.is_none() {
                    p.next = found.next;
                }
            }
        }
    }

    fn owns(&self, tp: &Tp) -> bool {
        lock(&self.ctx().assignment).partitions.contains_key(tp)
    }

    fn generation(&self) -> u64 {
        lock(&self.ctx().assignment).generation
    }

    /// Collects up to the poll limits and builds the batch.
    fn poll_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        let started = Instant::now();
        let mut generation = self.generation();
        let mut ipc: Vec<IpcMessage> = self.carried.take().into_iter().collect();
        let mut ipc_malformed: Vec<(Meta, String, Vec<u8>)> = Vec::new();
        let is_ipc = self.decode.format == KafkaFormat::ArrowIpc;
        let mut held: Vec<BorrowedMessage<'_>> = Vec::new();
        let mut errors = Vec::new();
        while held.len() + ipc.len() + ipc_malformed.len() < self.limits.max_messages
            && started.elapsed() < self.limits.budget
        {
            let message = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(error)) => {
                    errors.push(error);
                    continue;
                }
                Some(Ok(message)) => message,
            };
            let now = lock(&self.ctx().assignment).generation;
            if now != generation {
                // A revoke ran inside that poll: forget what we hold for partitions we lost.
                generation = now;
                let owned: Vec<Tp> = lock(&self.ctx().assignment)
                    .partitions
                    .keys()
                    .cloned()
                    .collect();
                let keep = |tp: &Tp| owned.contains(tp);
                held.retain(|m| keep(&(m.topic().to_string(), m.partition())));
                ipc.retain(|m| keep(&m.meta.tp));
                ipc_malformed.retain(|(m, _, _)| keep(&m.tp));
            }
            let meta = meta_of(&message);
            if !self.owns(&meta.tp) {
                continue;
            }
            if is_ipc {
                match decode::decode_ipc(message.payload()) {
                    Ok(batches) => {
                        let this = IpcMessage { meta, batches };
                        if let Some(missing) = self.missing_column(&this) {
                            let raw = message.payload().unwrap_or_default().to_vec();
                            ipc_malformed.push((this.meta, missing, raw));
                        } else if ipc
                            .last()
                            .is_some_and(|last| schema_of(last) != schema_of(&this))
                        {
                            self.carried = Some(this);
                            break;
                        } else {
                            ipc.push(this);
                        }
                    }
                    Err(detail) => {
                        let raw = message.payload().unwrap_or_default().to_vec();
                        ipc_malformed.push((meta, detail, raw));
                    }
                }
            } else {
                held.push(message);
            }
        }
        // Text formats: payloads stay borrowed from the held messages until decoded; only the
        // payloads of malformed messages are copied (for the dead-letter topic).
        if !is_ipc {
            let metas: Vec<Meta> = held.iter().map(meta_of).collect();
            let borrowed: Vec<Option<&[u8]>> = held.iter().map(|m| m.payload()).collect();
            let (decoded, malformed) = match self.decode.format {
                KafkaFormat::Csv => decode::decode_csv(&self.decode.text_schema, &borrowed),
                _ => decode::decode_json(&self.decode.text_schema, &borrowed),
            };
            let malformed: Vec<Rejection> = malformed
                .into_iter()
                .map(|m: Malformed| {
                    let raw = match &m.record {
                        Some(_) => Vec::new(),
                        None => borrowed[m.message].unwrap_or_default().to_vec(),
                    };
                    (m.message, m.detail, raw, m.record)
                })
                .collect();
            drop(borrowed);
            drop(held);
            self.log_errors(&errors);
            if metas.is_empty() {
                return Ok(None);
            }
            return self.finish(&metas, decoded, malformed).map(Some);
        }
        drop(held);
        self.log_errors(&errors);
        // Arrow IPC: good messages then the malformed ones.
        if ipc.is_empty() && ipc_malformed.is_empty() {
            return Ok(None);
        }
        let mut metas: Vec<Meta> = Vec::with_capacity(ipc.len() + ipc_malformed.len());
        let mut batches = Vec::new();
        let mut rows = Vec::new();
        for (i, message) in ipc.into_iter().enumerate() {
            for batch in &message.batches {
                rows.extend(std::iter::repeat_n(i, batch.num_rows()));
            }
            batches.extend(message.batches);
            metas.push(message.meta);
        }
        let decoded = match batches.first() {
            Some(first) => {
                let schema = first.schema();
                let batch =
                    arrow_select::concat::concat_batches(&schema, &batches).map_err(|source| {
                        SourceError::Arrow {
                            path: self.id.clone(),
                            source,
                        }
                    })?;
                Some(Decoded { batch, rows })
            }
            None => None,
        };
        let malformed = ipc_malformed
            .into_iter()
            .map(|(meta, detail, raw)| {
                metas.push(meta);
                (metas.len() - 1, detail, raw, None)
            })
            .collect();
        self.finish(&metas, decoded, malformed).map(Some)
    }

    /// The first required column an Arrow IPC message lacks, as a rejection detail.
    fn missing_column(&self, message: &IpcMessage) -> Option<String> {
        let schema = message.batches.first()?.schema();
        let missing = self
            .decode
            .required
            .iter()
            .find(|c| schema.column_with_name(c).is_none())?;
        Some(format!(
            "no column {missing:?}; found {:?}",
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
        ))
    }

    /// Canonicalises the decoded rows, turns rejections into [`Rejected`] rows and dead
    /// letters, counts, and advances the delivered offsets.
    fn finish(
        &mut self,
        metas: &[Meta],
        decoded: Option<Decoded>,
        malformed: Vec<Rejection>,
    ) -> Result<SourceBatch, SourceError> {
        let mut rejected: Vec<(usize, Rejected)> = Vec::new();
        let mut lanes = Lanes::default();
        let batch = match decoded {
            Some(decoded) => {
                let rows = decoded.rows;
                let mut input = decoded.batch;
                if self.decode.event_time == KafkaEventTime::KafkaTimestamp {
                    input = decode::with_kafka_time(
                        &input,
                        &self.decode.time_column,
                        rows.iter().map(|&m| metas[m].timestamp_ms),
                    )
                    .map_err(|source| SourceError::Arrow {
                        path: self.id.clone(),
                        source,
                    })?;
                }
                match self.canon.convert(&self.id, 0, &input) {
                    Ok(out) => {
                        let message_lanes: Vec<String> =
                            metas.iter().map(|meta| tp_key(&meta.tp)).collect();
                        lanes = decode::kept_lanes(&message_lanes, &rows, &out.rejected);
                        for r in out.rejected {
                            let m = r.row.and_then(|i| rows.get(i as usize).copied());
                            if let Some(m) = m {
                                rejected.push((m, r));
                            }
                        }
                        out.batch
                    }
                    Err(error) => {
                        // The columns cannot be converted at all (e.g. a time column of an
                        // unsupported type): every message of the batch is rejected.
                        let detail = error.to_string();
                        let mut seen = rows.clone();
                        seen.dedup();
                        for m in seen {
                            rejected.push((m, self.rejected(RejectReason::Malformed, &detail)));
                        }
                        RecordBatch::new_empty(self.canon.schema())
                    }
                }
            }
            None => RecordBatch::new_empty(self.canon.schema()),
        };
        let mut letters: Vec<(usize, Vec<u8>)> = Vec::new();
        for (m, detail, raw, record) in malformed {
            let mut r = self.rejected(RejectReason::Malformed, &detail);
            let payload = match record {
                Some(text) => {
                    r.record = text.clone();
                    text.into_bytes()
                }
                None => {
                    r.record = String::from_utf8_lossy(&raw).into_owned();
                    raw
                }
            };
            letters.push((rejected.len(), payload));
            rejected.push((m, r));
        }
        // Label every rejection with its message.
        let metrics = Arc::clone(&self.ctx().metrics);
        let source = self.ctx().source.clone();
        let mut out = Vec::with_capacity(rejected.len());
        let mut letters = letters.into_iter().peekable();
        for (i, (m, mut r)) in rejected.into_iter().enumerate() {
            let meta = &metas[m];
            r.partition = tp_key(&meta.tp);
            r.row = Some(meta.offset as u64);
            r.detail = format!("{}@{}: {}", tp_key(&meta.tp), meta.offset, r.detail);
            metrics
                .decode_errors
                .with_label_values(&[&source, r.reason.as_str()])
                .inc();
            let payload = match letters.peek() {
                Some((j, _)) if *j == i => letters.next().map(|(_, p)| p),
                _ => None,
            };
            if let Some(dlq) = &self.dead_letter {
                let bytes = payload.unwrap_or_else(|| r.record.clone().into_bytes());
                dlq.send(&DeadLetter {
                    payload: &bytes,
                    reason: r.reason.as_str(),
                    detail: &r.detail,
                    topic: &meta.tp.0,
                    partition: meta.tp.1,
                    offset: meta.offset,
                });
            }
            out.push(r);
        }
        out.sort_by(|a, b| (&a.partition, a.row).cmp(&(&b.partition, b.row)));
        let bytes = self.advance(metas);
        Ok(SourceBatch {
            batch,
            rejected: out,
            bytes,
            position: Some(self.position()),
            lanes: Some(lanes),
        })
    }

    fn rejected(&self, reason: RejectReason, detail: &str) -> Rejected {
        Rejected {
            source: self.ctx().source.clone(),
            partition: self.id.clone(),
            row: None,
            reason,
            detail: detail.to_string(),
            record: String::new(),
        }
    }

    /// Records the delivered offsets (member and process) and counts messages and bytes.
    fn advance(&self, metas: &[Meta]) -> u64 {
        let ctx = self.ctx();
        let mut next: BTreeMap<&Tp, (i64, u64, u64)> = BTreeMap::new();
        let assignment = lock(&ctx.assignment);
        for meta in metas {
            let expected = next
                .get(&meta.tp)
                .map(|e| e.0)
                .or_else(|| assignment.partitions.get(&meta.tp).and_then(|p| p.next));
            if expected.is_some_and(|e| e != meta.offset) {
                // Compacted topics and transaction markers leave gaps; anything else would be
                // a lost or repeated message, worth seeing in a debug log.
                tracing::debug!(member = %self.id, partition = %tp_key(&meta.tp), expected, offset = meta.offset, "Offset gap.");
            }
            let entry = next.entry(&meta.tp).or_insert((meta.offset + 1, 0, 0));
            entry.0 = entry.0.max(meta.offset + 1);
            entry.1 += 1;
            entry.2 += meta.bytes as u64;
        }
        drop(assignment);
        let mut total = 0;
        let mut assignment = lock(&ctx.assignment);
        let mut delivered = lock(&ctx.group.delivered);
        for (tp, (offset, messages, bytes)) in next {
            total += bytes;
            let partition = tp.1.to_string();
            ctx.metrics
                .messages
                .with_label_values(&[&ctx.source, &tp.0, &partition])
                .inc_by(messages);
            ctx.metrics
                .bytes
                .with_label_values(&[&ctx.source, &tp.0, &partition])
                .inc_by(bytes);
            if let Some(p) = assignment.partitions.get_mut(tp) {
                p.next = Some(p.next.map_or(offset, |n| n.max(offset)));
                p.delivered = true;
            }
            let entry = delivered.entry(tp.clone()).or_insert(offset);
            *entry = (*entry).max(offset);
        }
        total
    }

    /// The member's position: next offset per owned partition it delivered rows from.
    fn position(&self) -> Position {
        let assignment = lock(&self.ctx().assignment);
        let offsets = Offsets {
            offsets: assignment
                .partitions
                .iter()
                .filter(|(_, p)| p.delivered)
                .filter_map(|(tp, p)| Some((tp_key(tp), p.next?)))
                .collect(),
        };
        Position(serde_json::to_value(offsets).unwrap_or_default())
    }
}

/// A malformed message (or row): its index in the poll, the detail, the raw payload (when the
/// whole message is rejected) and the offending record's text (when only a part is).
type Rejection = (usize, String, Vec<u8>, Option<String>);

fn meta_of(message: &BorrowedMessage<'_>) -> Meta {
    Meta {
        tp: (message.topic().to_string(), message.partition()),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        bytes: message.payload_len(),
    }
}

fn schema_of(message: &IpcMessage) -> Option<arrow_schema::SchemaRef> {
    message.batches.first().map(RecordBatch::schema)
}

impl PartitionReader for Member {
    fn poll(&mut self) -> Result<Poll, SourceError> {
        if let Some(dlq) = &self.dead_letter {
            dlq.poll();
        }
        if let Some(batch) = self.poll_batch()? {
            return Ok(Poll::Batch(batch));
        }
        if self.limits.stop_at_end {
            self.retry_ends();
            if self.at_end() {
                tracing::info!(source = %self.ctx().source, member = %self.id, "Every assigned Kafka partition read to its end; finished.");
                return Ok(Poll::Finished);
            }
        }
        Ok(Poll::Idle)
    }

    /// Commits exactly the offsets of `position` for the partitions this member still owns,
    /// never moving a committed offset backwards. Asynchronous: the worker thread must not
    /// wait for a broker round trip, and offsets are cumulative, so a commit that fails (it is
    /// counted and logged) is superseded by the next one; the last ones are awaited, bounded,
    /// when the member closes.
    fn commit(&mut self, position: &Position) -> Result<(), SourceError> {
        let offsets = Offsets::from_position(position).map_err(|message| SourceError::Other {
            context: self.id.clone(),
            message,
        })?;
        let ctx = self.ctx();
        let assignment = lock(&ctx.assignment);
        let committed = lock(&ctx.group.committed);
        let mut tpl = TopicPartitionList::new();
        for (key, offset) in &offsets.offsets {
            let Some(tp) = parse_tp(key) else { continue };
            let owned = assignment.partitions.contains_key(&tp);
            let newer = committed.get(&tp).is_none_or(|c| *c < *offset);
            if owned && newer {
                if let Err(error) = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset)) {
                    tracing::warn!(member = %self.id, %error, "Offset not committed.");
                }
            }
        }
        drop(committed);
        drop(assignment);
        if tpl.count() == 0 {
            return Ok(());
        }
        match self.consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => *lock(&ctx.commits_requested) += 1,
            Err(error) => {
                ctx.metrics
                    .commits
                    .with_label_values(&[&ctx.source, "error"])
                    .inc();
                tracing::warn!(member = %self.id, %error, "Offset commit not sent; the next commit supersedes it.");
            }
        }
        Ok(())
    }
}

impl Drop for Member {
    /// Waits (bounded) for the outstanding commits and dead letters before the consumer leaves
    /// the group. Messages polled meanwhile are not delivered, so nothing is committed for them.
    fn drop(&mut self) {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while *lock(&self.ctx().commits_done) < *lock(&self.ctx().commits_requested)
            && Instant::now() < deadline
        {
            let _ = self.consumer.poll(Duration::from_millis(50));
        }
        if let Some(dlq) = &self.dead_letter {
            dlq.flush(CLOSE_TIMEOUT);
        }
    }
}
