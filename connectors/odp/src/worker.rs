//! The background thread of one ODP partition and the reader the pipeline polls.
//!
//! HTTP is blocking and slow next to a timely step, so it runs on its own thread: the thread
//! requests pages, decodes each record batch as it arrives, converts it and hands it over a
//! channel of capacity 1. The reader's `poll` only does `try_recv` (never blocks), and the full
//! channel is the backpressure that keeps memory at about one batch per source. Dropping the
//! reader disconnects the channels, which stops the thread at its next send or wait.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use oceanflow_config::OdpSourceConfig;
use oceanflow_connectors::{PartitionReader, Poll, SourceBatch, SourceError};
use serde_json::{Map, Value as Json};

use crate::client::{select_body, OdpClient, OdpError};
use crate::ipc::Item;
use crate::metrics::OdpMetrics;
use crate::progress::{Phase, Progress};
use crate::retry::RetryPolicy;
use crate::transform::Converter;

/// The variable the follow filter binds the previous largest value to.
pub const SINCE_VAR: &str = "oceanflow_since";

/// What the thread hands to the reader.
enum Msg {
    Batch(SourceBatch),
    Finished,
    Failed(SourceError),
}

/// The reader polled by the pipeline.
pub struct OdpReader {
    rx: Receiver<Msg>,
    // Never sent on: dropping it wakes the thread from a backoff or follow wait.
    _stop: SyncSender<()>,
    finished: bool,
    context: String,
}

impl PartitionReader for OdpReader {
    fn poll(&mut self) -> Result<Poll, SourceError> {
        if self.finished {
            return Ok(Poll::Finished);
        }
        match self.rx.try_recv() {
            Ok(Msg::Batch(batch)) => Ok(Poll::Batch(batch)),
            Ok(Msg::Finished) => {
                self.finished = true;
                Ok(Poll::Finished)
            }
            Ok(Msg::Failed(e)) => {
                self.finished = true;
                Err(e)
            }
            Err(TryRecvError::Empty) => Ok(Poll::Idle),
            Err(TryRecvError::Disconnected) => {
                self.finished = true;
                Err(SourceError::Other {
                    context: self.context.clone(),
                    message: "the ODP reader thread ended without finishing".into(),
                })
            }
        }
    }
}

/// Everything the thread needs.
pub struct Job {
    /// The source's config.
    pub cfg: Arc<OdpSourceConfig>,
    /// The partition id (rejection records).
    pub partition: String,
    /// HTTP client.
    pub client: OdpClient,
    /// Row conversion.
    pub converter: Converter,
    /// Metrics.
    pub metrics: Arc<OdpMetrics>,
    /// Where to start.
    pub progress: Progress,
}

/// Starts the thread of `job` and returns the reader of its batches.
pub fn spawn(job: Job) -> Result<OdpReader, SourceError> {
    let context = format!("source {} (ODP dataset {})", job.cfg.name, job.cfg.dataset);
    let (tx, rx) = mpsc::sync_channel(1);
    let (stop_tx, stop_rx) = mpsc::sync_channel(0);
    let worker = Worker {
        job,
        tx,
        stop: stop_rx,
    };
    std::thread::Builder::new()
        .name(format!("odp-{}", worker.job.cfg.name))
        .spawn(move || worker.run())
        .map_err(|e| SourceError::Other {
            context: context.clone(),
            message: format!("cannot start the reader thread: {e}"),
        })?;
    Ok(OdpReader {
        rx,
        _stop: stop_tx,
        finished: false,
        context,
    })
}

struct Worker {
    job: Job,
    tx: SyncSender<Msg>,
    stop: Receiver<()>,
}

impl Worker {
    fn context(&self) -> String {
        format!(
            "source {} (ODP dataset {})",
            self.job.cfg.name, self.job.cfg.dataset
        )
    }

    fn run(mut self) {
        let msg = match self.read_all() {
            Ok(()) => Msg::Finished,
            Err(OdpError::Stopped) => return,
            Err(e) => {
                tracing::error!(source = %self.job.cfg.name, "ODP source failed: {e}");
                Msg::Failed(SourceError::Other {
                    context: self.context(),
                    message: e.to_string(),
                })
            }
        };
        // The reader may be gone already; nothing to report to then.
        let _ = self.tx.send(msg);
    }

    /// Waits `delay` unless the reader is dropped meanwhile.
    fn wait(&self, delay: Duration) -> Result<(), OdpError> {
        match self.stop.recv_timeout(delay) {
            Err(RecvTimeoutError::Timeout) => Ok(()),
            _ => Err(OdpError::Stopped),
        }
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.job.cfg.max_attempts.max(1),
            initial: self.job.cfg.initial_backoff,
            max: self.job.cfg.max_backoff,
        }
    }

    /// Runs `call` until it succeeds, fails for good, or the attempts run out.
    fn with_retries<T>(
        &mut self,
        what: &str,
        mut call: impl FnMut(&mut Self) -> Result<T, OdpError>,
    ) -> Result<T, OdpError> {
        let policy = self.policy();
        let mut failed = 0;
        loop {
            match call(self) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => {
                    failed += 1;
                    self.job
                        .metrics
                        .retries
                        .with_label_values(&[&e.retry_label()])
                        .inc();
                    if !policy.may_retry(failed) {
                        return Err(OdpError::Exhausted {
                            what: what.to_string(),
                            attempts: failed,
                            last: Box::new(e),
                        });
                    }
                    let delay = policy.delay(failed, e.retry_after());
                    tracing::warn!(
                        source = %self.job.cfg.name,
                        "{what}: {e}; attempt {} of {} in {delay:?}",
                        failed + 1,
                        policy.max_attempts
                    );
                    self.wait(delay)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stats and the schema probe, then the backfill, then (optionally) follow polls.
    fn read_all(&mut self) -> Result<(), OdpError> {
        let stats = self.with_retries("stats", |w| w.job.client.stats())?;
        tracing::info!(
            source = %self.job.cfg.name,
            dataset = %self.job.cfg.dataset,
            rows = %stats["num_rows"],
            "ODP table"
        );
        let schema = self.with_retries("schema probe", |w| w.job.client.schema())?;
        self.check_schema(&schema)?;
        loop {
            self.read_query()?;
            let Some(follow) = self.job.cfg.follow.clone() else {
                return Ok(());
            };
            let p = &mut self.job.progress;
            if p.last.is_none() && p.rows > 0 {
                // Without a bound every poll would select (and deliver) every row again.
                return Err(OdpError::Mismatch(format!(
                    "cannot follow: column {:?} (from `follow.column`) has no value of a \
                     supported type (timestamp, date, integer, float, text) in the rows read",
                    follow.column
                )));
            }
            p.phase = Phase::Follow;
            p.since = p.last.clone();
            p.cursor.clear();
            p.skip = 0;
            self.send_position()?;
            self.wait(follow.interval)?;
        }
    }

    /// Fails early, with the available columns, when a column the source needs is missing.
    fn check_schema(&self, schema: &arrow_schema::Schema) -> Result<(), OdpError> {
        let cfg = &self.job.cfg;
        let has = |c: &str| schema.index_of(c).is_ok();
        let mut needed: Vec<(&str, &str)> = vec![(cfg.mapping.time.as_str(), "mapping.time")];
        if cfg.default_station.is_none() {
            needed.push((cfg.mapping.station.as_str(), "mapping.station"));
        }
        if let Some(columns) = &cfg.columns {
            needed.extend(columns.iter().map(|c| (c.as_str(), "columns")));
        }
        if let Some(follow) = &cfg.follow {
            needed.push((follow.column.as_str(), "follow.column"));
        }
        if let Some(geometry) = &cfg.geometry {
            needed.push((geometry.as_str(), "geometry"));
        }
        let missing: Vec<String> = needed
            .iter()
            .filter(|(c, _)| !has(c))
            .map(|(c, key)| format!("{c:?} (from `{key}`)"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let found: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
        Err(OdpError::Mismatch(format!(
            "the table has no column {}; its columns are {found:?}",
            missing.join(", ")
        )))
    }

    /// The filter, variables and projection of the current phase.
    fn request(&self) -> Json {
        let cfg = &self.job.cfg;
        let p = &self.job.progress;
        let mut vars: Map<String, Json> = cfg
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), typed_var(v)))
            .collect();
        let mut query = cfg.filter.clone();
        if let (Phase::Follow, Some(follow)) = (p.phase, &cfg.follow) {
            if let Some(since) = &p.since {
                let bound = format!("{} > ${SINCE_VAR}", follow.column);
                query = Some(match query {
                    Some(q) => format!("({q}) AND {bound}"),
                    None => bound,
                });
                vars.insert(
                    SINCE_VAR.into(),
                    serde_json::to_value(since).unwrap_or_default(),
                );
            }
        }
        let mut cols = cfg.columns.clone();
        if let (Some(cols), Some(follow)) = (&mut cols, &cfg.follow) {
            if !cols.contains(&follow.column) {
                cols.push(follow.column.clone());
            }
        }
        let vars = (!vars.is_empty()).then_some(Json::Object(vars));
        select_body(
            query.as_deref(),
            cols.as_deref(),
            vars.as_ref(),
            &p.cursor,
            cfg.timeout.as_secs_f64(),
        )
    }

    /// Every page of the current query, from the current cursor.
    fn read_query(&mut self) -> Result<(), OdpError> {
        loop {
            let started = Instant::now();
            let next = self.with_retries("select page", Self::read_page_once)?;
            self.job
                .metrics
                .page_seconds
                .observe(started.elapsed().as_secs_f64());
            match next {
                Some(cursor) => {
                    self.job.progress.cursor = cursor;
                    self.job.progress.skip = 0;
                    self.send_position()?;
                }
                None => return Ok(()),
            }
        }
    }

    /// Sends a zero-row batch that only moves the position (a new page or phase), so a
    /// checkpoint taken now resumes there.
    fn send_position(&self) -> Result<(), OdpError> {
        let batch = RecordBatch::new_empty(self.job.converter.schema());
        let out = SourceBatch {
            batch,
            rejected: Vec::new(),
            bytes: 0,
            position: Some(self.job.progress.to_position()),
            lanes: None,
        };
        self.tx.send(Msg::Batch(out)).map_err(|_| OdpError::Stopped)
    }

    /// One attempt at the current page: request it, skip the rows a previous attempt (or run)
    /// already delivered, deliver the rest batch by batch. Returns the next page's cursor.
    fn read_page_once(&mut self) -> Result<Option<String>, OdpError> {
        let body = self.request();
        let mut stream = self.job.client.select_page("select", &body)?;
        let mut to_skip = self.job.progress.skip;
        let mut next: Option<String> = None;
        loop {
            match stream.next_item()? {
                Item::Batch {
                    batch,
                    metadata,
                    bytes,
                } => {
                    self.job.metrics.batches.inc();
                    if let Some(error) = metadata.get("error") {
                        return Err(OdpError::Server(error.clone()));
                    }
                    if let Some(cursor) = metadata.get("cursor") {
                        next = Some(cursor.clone());
                    }
                    if let Some(stats) = metadata.get("stats") {
                        tracing::debug!(source = %self.job.cfg.name, "page stats: {stats}");
                    }
                    let rows = batch.num_rows() as u64;
                    let skipped = to_skip.min(rows);
                    to_skip -= skipped;
                    if skipped < rows {
                        let fresh = batch.slice(skipped as usize, (rows - skipped) as usize);
                        self.deliver(&fresh, bytes)?;
                    }
                }
                Item::End { trailer } => {
                    if next.is_none() {
                        next = trailer
                            .as_ref()
                            .and_then(|t| t.get("cursor"))
                            .and_then(Json::as_str)
                            .map(str::to_string);
                    }
                    return Ok(next.filter(|c| !c.is_empty()));
                }
            }
        }
    }

    /// Converts and sends rows not delivered before, advancing the position past them.
    fn deliver(&mut self, batch: &RecordBatch, bytes: u64) -> Result<(), OdpError> {
        let partition = self.job.partition.clone();
        let p = &mut self.job.progress;
        if let Some(follow) = &self.job.cfg.follow {
            p.observe(batch, &follow.column);
        }
        let n = batch.num_rows() as u64;
        let mut out = self
            .job
            .converter
            .convert(&partition, p.rows, batch)
            .map_err(|e| OdpError::Mismatch(e.to_string()))?;
        p.rows += n;
        p.skip += n;
        out.bytes = bytes;
        out.position = Some(p.to_position());
        self.job.metrics.rows.inc_by(n);
        self.tx.send(Msg::Batch(out)).map_err(|_| OdpError::Stopped)
    }
}

/// A config variable in the Python SDK's typed form.
fn typed_var(value: &toml::Value) -> Json {
    let (kind, value) = match value {
        toml::Value::String(s) => ("string", Json::from(s.as_str())),
        toml::Value::Integer(i) => ("integer", Json::from(*i)),
        toml::Value::Float(f) => ("float", Json::from(*f)),
        toml::Value::Boolean(b) => ("boolean", Json::from(*b)),
        toml::Value::Datetime(d) => {
            let kind = match (&d.date, &d.time) {
                (Some(_), Some(_)) => "datetime",
                (Some(_), None) => "date",
                _ => "time",
            };
            (kind, Json::from(d.to_string()))
        }
        // Rejected by the config check; sent as text if it ever gets here.
        other => ("string", Json::from(other.to_string())),
    };
    serde_json::json!({"type": kind, "value": value})
}
