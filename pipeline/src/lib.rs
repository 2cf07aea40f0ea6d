//! The oceanflow service: wires connectors to operators, runs the timely workers, and serves
//! the exports.
//!
//! Layout:
//! - [`runtime`]: the timely worker loop (partitions → lateness → pre-aggregation → dataflow).
//! - [`export`]: JSON tables ([`export::output::Snapshot`]), Prometheus exposition, HTTP.
//! - [`metrics`]: the pipeline's own health metrics and every metric name.
//! - [`inputs`]: `run --input PATH`: the default aggregates over tutorial-shaped files.
//! - [`sources`]: the dispatch from a configured source to its connector.
//! - [`checkpoint`]: the checkpoint files; [`output_file`]: the atomic `--output` file.
//!
//! [`run`] is the entry point; the `oceanflow` binary is a thin CLI over it.

pub mod checkpoint;
pub mod export;
pub mod inputs;
pub mod metrics;
pub mod output_file;
pub mod runtime;
pub mod sources;
pub mod sync;
#[cfg(test)]
mod test_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use oceanflow_config::{Config, OnDamaged, ValidConfig};
use oceanflow_connectors::dead_letter::DeadLetterWriter;
use oceanflow_connectors::{RejectReason, SourceError};
use prometheus::Registry;
use tokio::sync::watch;

use checkpoint::{CheckpointStore, DamagedList, FinalCheckpoint};
use export::http::{serve, AppState};
use export::output::Snapshot;
use metrics::PipelineMetrics;
use runtime::{ChangeSink, RunShape, Shared};

/// How to run (the per-run settings of the command line).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop when every source is exhausted and the aggregates are final.
    pub once: bool,
    /// Serve `/metrics` and the API on this address (overrides `export.listen`); `None` with
    /// `serve` uses the config's address.
    pub listen: Option<SocketAddr>,
    /// Whether to start the HTTP listener at all.
    pub serve: bool,
    /// Directory that relative paths in source configs are resolved against: the config
    /// file's directory; `None` means the working directory.
    pub base_dir: Option<PathBuf>,
}

/// The outcome of a run that ended.
#[derive(Debug)]
pub struct RunReport {
    /// The final aggregates (of the rows read so far, when `interrupted`).
    pub snapshot: Snapshot,
    /// Partitions or sources that failed (the rest were aggregated).
    pub failures: Vec<String>,
    /// The address the HTTP listener was bound to, if any.
    pub listened_on: Option<SocketAddr>,
    /// A shutdown (SIGINT, SIGTERM or the caller's `stop`) ended reading before every source
    /// was exhausted. A bounded run that was interrupted is not a result.
    pub interrupted: bool,
    /// How far reading got.
    pub progress: Progress,
    /// What became of the final checkpoint; `None` with checkpoints off.
    pub final_checkpoint: Option<FinalCheckpoint>,
}

/// How far a run's reading got, over every source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Rows accepted into the aggregates.
    pub rows_aggregated: u64,
    /// Rows rejected (counted by reason in the metrics).
    pub rows_rejected: u64,
    /// Partitions read to their end.
    pub partitions_finished: u64,
}

impl Progress {
    fn of(metrics: &PipelineMetrics, sources: &[String]) -> Progress {
        let mut progress = Progress::default();
        for source in sources {
            let source = source.as_str();
            progress.rows_aggregated += metrics.source_rows.with_label_values(&[source]).get();
            progress.partitions_finished += metrics
                .source_partitions_finished
                .with_label_values(&[source])
                .get();
            for reason in RejectReason::ALL {
                progress.rows_rejected += metrics
                    .source_rejected
                    .with_label_values(&[source, reason.as_str()])
                    .get();
            }
        }
        progress
    }
}

/// Errors that stop the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The dead-letter output could not be created.
    #[error("dead-letter output: {0}")]
    DeadLetter(#[source] SourceError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Timely could not start or a worker failed.
    #[error("dataflow workers: {0}")]
    Workers(String),
    /// The Kafka changelog producer cannot be set up.
    #[error("export.changelog: {0}")]
    Changelog(#[source] oceanflow_kafka::ChangelogError),
    /// The checkpoint directory cannot be used, or its newest checkpoint cannot be restored.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] checkpoint::CheckpointError),
    /// Metric registration failed (a programming error, reported rather than panicking).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Runs the pipeline until its sources are exhausted (`once`) or a shutdown signal
/// (SIGINT/SIGTERM) arrives; `stop` is an extra way to request the shutdown (tests, embedding).
pub fn run(
    config: ValidConfig,
    options: RunOptions,
    stop: Option<watch::Receiver<bool>>,
) -> Result<RunReport, PipelineError> {
    let config = Arc::new(config);
    let cfg = config.config();
    let registry = Registry::new();
    let source_names: Vec<String> = cfg.sources.iter().map(|s| s.name().to_string()).collect();
    let metrics = PipelineMetrics::register(&registry, &source_names)?;
    let dead_letter = match &cfg.pipeline.dead_letter {
        Some(dl) => Some(DeadLetterWriter::create(&dl.path).map_err(PipelineError::DeadLetter)?),
        None => None,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    // Signals are watched before anything slow (restoring a checkpoint, listing partitions),
    // so a SIGTERM during start-up is a graceful stop too.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("oceanflow-http")
        .enable_all()
        .build()
        .map_err(PipelineError::Runtime)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    runtime.spawn(watch_signals(stop_tx, stop, Arc::clone(&shutdown)));
    let workers = cfg.pipeline.workers;
    let source_context = sources::context(cfg, workers, options.base_dir, registry.clone());
    let base_dir = source_context.base_dir.clone();
    begin_afresh_if_every_checkpoint_is_damaged(cfg)?;
    let changelog = match &cfg.export.changelog {
        Some(settings) => Some(
            export::changelog::Changelog::start(settings, &base_dir, Arc::clone(&config))
                .map_err(PipelineError::Changelog)?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared::new(
        Arc::clone(&config),
        source_context,
        metrics,
        RunShape {
            bounded: options.once,
            dead_letter,
            sink: changelog.map(|c| Arc::new(c) as Arc<dyn ChangeSink>),
        },
        Arc::clone(&shutdown),
    )?);

    let listened_on = if options.serve {
        let addr = options.listen.unwrap_or(cfg.export.listen);
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "Serving metrics and the API beyond loopback, as configured.");
        }
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|source| PipelineError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %bound, "Serving /metrics, /api/v1 and /healthz.");
        let state = Arc::new(AppState {
            shared: Arc::clone(&shared),
            registry,
        });
        let mut rx = stop_rx.clone();
        runtime.spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            if let Err(error) = serve(listener, state, shutdown).await {
                tracing::error!(%error, "HTTP server failed.");
            }
        });
        Some(bound)
    } else {
        None
    };

    tracing::info!(workers, sources = source_names.len(), "Starting dataflow.");
    let worker_shared = Arc::clone(&shared);
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        runtime::run_worker(worker, &worker_shared)
    })
    .map_err(PipelineError::Workers)?;
    for result in guards.join() {
        result.map_err(PipelineError::Workers)?;
    }
    if let Some(sink) = &shared.sink {
        sink.flush(i64::MAX, std::time::Duration::from_secs(10));
    }
    if let Some(writer) = &shared.dead_letter {
        if let Err(error) = sync::lock(writer).flush() {
            tracing::error!(%error, "Dead-letter flush failed.");
        }
    }

    let interrupted = shutdown.load(Ordering::Relaxed);
    if !options.once && !interrupted && listened_on.is_some() {
        tracing::info!("Sources exhausted; aggregates are final. Serving until SIGINT/SIGTERM.");
        let mut rx = stop_rx.clone();
        runtime.block_on(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        });
    }
    let snapshot = Snapshot::collect(&config, &shared.views);
    let failures = sync::lock(&shared.failures).clone();
    let final_checkpoint = shared.checkpointer().map(|c| c.final_outcome());
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(RunReport {
        snapshot,
        failures,
        listened_on,
        interrupted,
        progress: Progress::of(&shared.metrics, &source_names),
        final_checkpoint,
    })
}

/// With `on_damaged = "start_fresh"` (or `--fresh`): when every checkpoint file is damaged,
/// sets them aside and warns, so the run begins from nothing instead of refusing to start.
fn begin_afresh_if_every_checkpoint_is_damaged(cfg: &Config) -> Result<(), PipelineError> {
    let Some(c) = &cfg.pipeline.checkpoint else {
        return Ok(());
    };
    if c.on_damaged != OnDamaged::StartFresh {
        return Ok(());
    }
    let set_aside = CheckpointStore::open(&c.dir, c.keep)?.set_aside_if_all_damaged()?;
    if !set_aside.is_empty() {
        tracing::warn!(
            dir = %c.dir.display(),
            "Every checkpoint is damaged; beginning from nothing, as on_damaged = \"start_fresh\" \
             (or --fresh) says. The files are kept, renamed to *.damaged:{}",
            DamagedList(&set_aside)
        );
    }
    Ok(())
}

/// Turns SIGINT/SIGTERM (or the caller's `stop`) into the shutdown flag and the stop channel.
async fn watch_signals(
    stop_tx: watch::Sender<bool>,
    external: Option<watch::Receiver<bool>>,
    shutdown: Arc<AtomicBool>,
) {
    let external = async move {
        match external {
            Some(mut rx) => {
                let _ = rx.wait_for(|stop| *stop).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate_signal() => tracing::info!("Shutdown signal received; draining."),
        _ = external => tracing::info!("Shutdown requested; draining."),
    }
    shutdown.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
}

#[cfg(unix)]
async fn terminate_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "Cannot watch SIGTERM; only SIGINT stops the service.");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn terminate_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
