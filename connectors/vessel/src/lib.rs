//! oceanflow source: vessel sensor feeds — NMEA 0183 and instrument lines over UDP, TCP,
//! serial ports and replayed OpenRVDAS logs, with clock sanity and an as-of position join.
//!
//! Design:
//! - **One partition per vessel source.** The position join needs the fixes of the position
//!   device and the records of the other devices in one place, in reception order; splitting
//!   per device would need a shared, cross-worker join state. Underway feeds are small (tens
//!   of lines a second), and a replay reads at millions of lines a second on one worker.
//! - **Station = device id.** A vessel is a moving station per instrument: `tsg1`, `s330`…;
//!   the source name (e.g. the vessel) labels metrics and dead letters.
//! - **Event time** is the reception time (the logger's clock) unless a device says
//!   `time = "sentence"`; sentence times that disagree with the reception time by more than
//!   `max_clock_offset` are flagged ([`clock::ClockFault`]) and replaced by it.
//! - **Positions** come from the position device's fixes, joined as of reception time
//!   ([`join`]); records without a fresh fix keep null coordinates and are counted.
//!
//! Modules: [`nmea`] (pure parser), [`instrument`], [`clock`], [`join`], [`metrics`],
//! [`engine`] (lines → canonical batches), [`transport`] (replay, UDP, TCP, serial).

#![deny(missing_docs)]

pub mod clock;
pub mod engine;
pub mod instrument;
pub mod join;
pub mod metrics;
pub mod nmea;
pub mod transport;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use oceanflow_config::source::vessel::TransportConfig;
use oceanflow_config::VesselSourceConfig;
use oceanflow_connectors::{Partition, PartitionReader, Position, SourceContext, SourceError};

use crate::engine::Engine;
use crate::transport::live::{Feed, LiveReader, CHANNEL_CHUNKS};
use crate::transport::replay::ReplayReader;
use crate::transport::serial::SerialSettings;

/// The partitions of a `kind = "vessel"` source: one, holding every device (see the crate
/// docs). Registers the vessel metric families in `ctx.registry`.
pub fn partitions(
    cfg: &VesselSourceConfig,
    ctx: &SourceContext,
) -> Result<Vec<Partition>, SourceError> {
    let context = || format!("source {}", cfg.name);
    metrics::families()
        .register(&ctx.registry)
        .map_err(|e| SourceError::Other {
            context: context(),
            message: format!("registering the vessel metrics: {e}"),
        })?;
    if cfg.devices.is_empty() {
        return Err(SourceError::NoInput {
            source_name: cfg.name.clone(),
            message: "no devices configured".into(),
        });
    }
    let id = format!("vessel:{}", cfg.name);
    let cfg = cfg.clone();
    let ctx = ctx.clone();
    let partition_id = id.clone();
    Ok(vec![Partition {
        id,
        open: Box::new(move |position| open(&cfg, &ctx, &partition_id, position)),
    }])
}

/// Opens the reader of a vessel source: a replay if its devices are replayed, else the live
/// transports.
pub fn open(
    cfg: &VesselSourceConfig,
    ctx: &SourceContext,
    partition: &str,
    position: Option<Position>,
) -> Result<Box<dyn PartitionReader>, SourceError> {
    let replay_dir = replay_dir(cfg, &ctx.base_dir);
    let replayed: Option<Vec<PathBuf>> = cfg
        .devices
        .iter()
        .map(|d| match &d.transport {
            TransportConfig::Replay { path } => Some(replay_dir.join(path)),
            _ => None,
        })
        .collect();
    if let Some(paths) = replayed {
        tracing::info!(source = %cfg.name, files = paths.len(), speed = ?cfg.replay_speed, "replaying vessel logs");
        let engine = Engine::new(cfg, partition, &ctx.variables, &ctx.categorical)?;
        let reader = ReplayReader::open(engine, paths, cfg.replay_speed, cfg.batch_rows, position)?;
        return Ok(Box::new(reader));
    }
    let (tx, rx) = mpsc::sync_channel(CHANNEL_CHUNKS);
    let stop = Arc::new(AtomicBool::new(false));
    // Transports first: once the device series exist (engine), the sockets are bound.
    let started = start_transports(cfg, &tx, &stop)
        .and_then(|()| Engine::new(cfg, partition, &ctx.variables, &ctx.categorical));
    let engine = match started {
        Ok(engine) => engine,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    };
    let timestamped = cfg.devices.iter().map(|d| d.timestamped).collect();
    Ok(Box::new(LiveReader::new(
        engine,
        rx,
        stop,
        timestamped,
        cfg.batch_rows,
    )))
}

/// Binds or opens every device's transport and starts its thread.
fn start_transports(
    cfg: &VesselSourceConfig,
    tx: &mpsc::SyncSender<transport::live::Chunk>,
    stop: &Arc<AtomicBool>,
) -> Result<(), SourceError> {
    for (device, d) in cfg.devices.iter().enumerate() {
        let feed = Feed {
            device,
            tx: tx.clone(),
            stop: Arc::clone(stop),
        };
        match &d.transport {
            TransportConfig::Udp { bind } => {
                transport::net::udp(bind, &d.id, feed)?;
            }
            TransportConfig::TcpServer { bind } => {
                transport::net::tcp_server(bind, &d.id, feed)?;
            }
            TransportConfig::TcpClient { connect } => transport::net::tcp_client(connect, &d.id, feed)?,
            TransportConfig::Serial {
                path,
                baud,
                data_bits,
                parity,
                stop_bits,
            } => {
                let settings = SerialSettings {
                    path: path.clone(),
                    baud: *baud,
                    data_bits: *data_bits,
                    parity: *parity,
                    stop_bits: *stop_bits,
                };
                transport::serial::serial(settings, &d.id, feed)?;
            }
            TransportConfig::Replay { .. } => {
                return Err(SourceError::Other {
                    context: format!("source {}", cfg.name),
                    message: format!(
                        "device {} is replayed while others are live; a source is all replay or all live",
                        d.id
                    ),
                })
            }
        }
    }
    Ok(())
}

/// The directory replay paths are relative to.
fn replay_dir(cfg: &VesselSourceConfig, base_dir: &Path) -> PathBuf {
    match &cfg.replay_dir {
        Some(dir) => base_dir.join(dir),
        None => base_dir.to_path_buf(),
    }
}
