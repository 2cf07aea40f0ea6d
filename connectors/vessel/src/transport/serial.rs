//! Serial ports, opened with `rustix` (termios through a safe API; the workspace forbids
//! `unsafe`). Chosen over the `serialport` crate: we only open a configured path and set speed,
//! data bits, parity and stop bits — a dozen lines of termios — while `serialport` brings port
//! enumeration (libudev by default) and its own `nix` stack; `rustix` is already in the lock
//! file (through `tempfile`) and is pure Rust on Linux.
//!
//! The port is put in raw mode with `VMIN = 0, VTIME = 2`: a read returns after 0.2 s without
//! data, so the thread sees the stop flag. A port that fails (unplugged adapter, closed pty)
//! is reopened every second.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::thread;
use std::time::Duration;

use oceanflow_config::source::vessel::Parity;
use oceanflow_connectors::SourceError;
use rustix::fs::{Mode, OFlags};
use rustix::termios::{self, ControlModes, OptionalActions, SpecialCodeIndex};

use crate::transport::live::{Feed, LineBuffer};

/// Serial line settings.
#[derive(Debug, Clone)]
pub struct SerialSettings {
    /// Device path.
    pub path: String,
    /// Baud rate.
    pub baud: u32,
    /// Data bits (5–8).
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits (1 or 2).
    pub stop_bits: u8,
}

/// Opens the port and configures it.
fn open(s: &SerialSettings) -> Result<File, SourceError> {
    let io = |e: rustix::io::Errno| SourceError::Io {
        path: s.path.clone(),
        source: e.into(),
    };
    let fd = rustix::fs::open(
        s.path.as_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io)?;
    let mut t = termios::tcgetattr(&fd).map_err(io)?;
    t.make_raw();
    t.set_speed(s.baud).map_err(io)?;
    let mut c = t.control_modes;
    c.remove(
        ControlModes::CSIZE | ControlModes::PARENB | ControlModes::PARODD | ControlModes::CSTOPB,
    );
    c.insert(ControlModes::CREAD | ControlModes::CLOCAL);
    c.insert(match s.data_bits {
        5 => ControlModes::CS5,
        6 => ControlModes::CS6,
        7 => ControlModes::CS7,
        _ => ControlModes::CS8,
    });
    match s.parity {
        Parity::None => {}
        Parity::Even => c.insert(ControlModes::PARENB),
        Parity::Odd => c.insert(ControlModes::PARENB | ControlModes::PARODD),
    }
    if s.stop_bits == 2 {
        c.insert(ControlModes::CSTOPB);
    }
    t.control_modes = c;
    t.special_codes[SpecialCodeIndex::VMIN] = 0;
    t.special_codes[SpecialCodeIndex::VTIME] = 2;
    termios::tcsetattr(&fd, OptionalActions::Now, &t).map_err(io)?;
    Ok(File::from(fd))
}

/// Opens the port (failing the partition if it cannot) and starts its reading thread.
pub fn serial(settings: SerialSettings, device_id: &str, feed: Feed) -> Result<(), SourceError> {
    let mut port = Some(open(&settings)?);
    tracing::info!(device = device_id, path = %settings.path, baud = settings.baud, "serial port open");
    let name = format!("vessel-serial-{device_id}");
    let path = settings.path.clone();
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut lines = LineBuffer::default();
            let mut buf = vec![0u8; 16 * 1024];
            while !feed.stopped() {
                let Some(file) = port.as_mut() else {
                    thread::sleep(Duration::from_secs(1));
                    port = open(&settings)
                        .inspect_err(|e| tracing::warn!(error = %e, "serial port reopen failed"))
                        .ok();
                    continue;
                };
                match file.read(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        if let Some(complete) = lines.push(&buf[..n]) {
                            if !feed.send(complete) {
                                return;
                            }
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {}
                    Err(e) => {
                        tracing::warn!(path = %settings.path, error = %e, "serial read failed; reopening");
                        if let Some(rest) = lines.take_rest() {
                            if !feed.send(rest) {
                                return;
                            }
                        }
                        port = None;
                    }
                }
            }
        })
        .map(|_| ())
        .map_err(|source| SourceError::Io { path, source })
}
