//! Replay of OpenRVDAS log files: every device's file is read line by line and the lines of
//! all devices are merged by reception time, as the logger received them, so the position
//! join sees fixes and sensor records in their real order. As fast as possible or at N × real
//! time.
//!
//! Position (JSON): `{"offsets": {"<device>": <byte offset after the last line delivered>},
//! "fix": [<reception µs>, <lat>, <lon>]}` — the newest fix rides along so a resumed replay
//! positions its first records like the uninterrupted one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oceanflow_connectors::{PartitionReader, Poll, Position, SourceError};
use serde::{Deserialize, Serialize};

use crate::clock::{parse_reception_time, TimestampParser};
use crate::engine::Engine;

/// Read buffer per file: large reads keep the per-line cost at the parse.
const READ_BUFFER: usize = 256 * 1024;

/// The resumable position of a replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ReplayPosition {
    offsets: BTreeMap<String, u64>,
    #[serde(default)]
    fix: Option<(i64, f64, f64)>,
}

/// One device's log file.
struct LogFile {
    path: PathBuf,
    reader: BufReader<File>,
    /// Byte offset after the line in `line` (or after the last consumed one when exhausted).
    offset: u64,
    /// The next line, read ahead for the merge; empty when exhausted.
    line: Vec<u8>,
    /// Its reception time and where its payload starts; a line without a readable time takes
    /// the previous line's time as merge key, so it is dead-lettered in place instead of
    /// stalling or reordering the merge.
    reception: Option<(i64, usize)>,
    timestamps: TimestampParser,
    last_reception_us: i64,
    exhausted: bool,
}

impl LogFile {
    fn open(path: PathBuf, offset: u64) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = File::open(&path).map_err(io)?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).map_err(io)?;
        }
        let mut log = LogFile {
            reader: BufReader::with_capacity(READ_BUFFER, file),
            path,
            offset,
            line: Vec::with_capacity(256),
            reception: None,
            timestamps: TimestampParser::default(),
            last_reception_us: i64::MIN,
            exhausted: false,
        };
        log.advance()?;
        Ok(log)
    }

    /// Reads the next non-empty line into `line`.
    fn advance(&mut self) -> Result<(), SourceError> {
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|source| SourceError::Io {
                    path: self.path.display().to_string(),
                    source,
                })?;
            if n == 0 {
                self.exhausted = true;
                return Ok(());
            }
            if self.line.trim_ascii().is_empty() {
                self.offset += n as u64;
                continue;
            }
            self.reception = self.line.iter().position(|b| *b == b' ').and_then(|space| {
                let t = self.timestamps.parse(&self.line[..space])?;
                Some((t, space + 1))
            });
            if let Some((t, _)) = self.reception {
                self.last_reception_us = t;
            }
            return Ok(());
        }
    }

    /// The merge key of the pending line.
    fn key(&self) -> i64 {
        self.reception.map_or(self.last_reception_us, |(t, _)| t)
    }
}

/// Splits an OpenRVDAS log line into reception time and payload.
pub fn split_timestamp(line: &[u8]) -> Option<(i64, &[u8])> {
    let space = line.iter().position(|b| *b == b' ')?;
    let t = parse_reception_time(&line[..space])?;
    Some((t, &line[space + 1..]))
}

/// Reads a vessel's log files merged by reception time.
pub struct ReplayReader {
    engine: Engine,
    files: Vec<LogFile>,
    speed: Option<f64>,
    /// Wall clock and reception time of the first line, for pacing.
    pace: Option<(Instant, i64)>,
    batch_rows: usize,
}

impl ReplayReader {
    /// Opens `paths` (one per device, in device order), resuming after `position`.
    pub fn open(
        mut engine: Engine,
        paths: Vec<PathBuf>,
        speed: Option<f64>,
        batch_rows: usize,
        position: Option<Position>,
    ) -> Result<Self, SourceError> {
        let resume: ReplayPosition = match position {
            None => ReplayPosition::default(),
            Some(Position(value)) => {
                serde_json::from_value(value).map_err(|e| SourceError::Other {
                    context: "vessel replay checkpoint".into(),
                    message: format!(
                        "expected {{\"offsets\": {{device: bytes}}, \"fix\": …}}: {e}"
                    ),
                })?
            }
        };
        if let Some((t, lat, lon)) = resume.fix {
            engine.seed_fix(t, lat, lon);
        }
        let mut files = Vec::with_capacity(paths.len());
        for (index, path) in paths.into_iter().enumerate() {
            let offset = resume
                .offsets
                .get(engine.device_id(index))
                .copied()
                .unwrap_or(0);
            files.push(LogFile::open(path, offset)?);
        }
        Ok(ReplayReader {
            engine,
            files,
            speed,
            pace: None,
            batch_rows,
        })
    }

    fn position(&self) -> Position {
        let offsets = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (self.engine.device_id(i).to_string(), f.offset))
            .collect();
        let pos = ReplayPosition {
            offsets,
            fix: self.engine.latest_fix(),
        };
        Position(serde_json::to_value(pos).unwrap_or_default())
    }

    /// Whether a line received at `reception_us` may be delivered now (pacing).
    fn due(&mut self, reception_us: i64) -> bool {
        let Some(speed) = self.speed else {
            return true;
        };
        let (start, first) = *self.pace.get_or_insert((Instant::now(), reception_us));
        let behind_us = (reception_us - first).max(0) as f64 / speed;
        start.elapsed() >= Duration::from_micros(behind_us as u64)
    }
}

impl PartitionReader for ReplayReader {
    fn poll(&mut self) -> Result<Poll, SourceError> {
        let mut bytes = 0u64;
        let mut lines = 0usize;
        // Bounded by lines too: sentences that emit no row (a pure position device) must not
        // turn one poll into a read of the whole file.
        while lines < self.batch_rows
            && self.engine.rows() + self.engine.rejections() < self.batch_rows
        {
            // The device whose pending line was received first (ties: device order).
            let mut next: Option<(usize, i64)> = None;
            for (i, f) in self.files.iter().enumerate() {
                if !f.exhausted && next.is_none_or(|(_, k)| f.key() < k) {
                    next = Some((i, f.key()));
                }
            }
            let Some((device, key)) = next else {
                break;
            };
            if !self.due(key) {
                break;
            }
            let file = &mut self.files[device];
            let raw = file.line.trim_ascii_end();
            match file.reception {
                Some((t, at)) => {
                    self.engine
                        .line(device, t, raw.get(at..).unwrap_or_default(), raw)
                }
                None => self.engine.bad_reception_time(device, raw),
            }
            bytes += file.line.len() as u64;
            file.offset += file.line.len() as u64;
            lines += 1;
            file.advance()?;
        }
        if lines > 0 {
            let position = self.position();
            return Ok(Poll::Batch(self.engine.finish(bytes, Some(position))?));
        }
        if self.files.iter().all(|f| f.exhausted) {
            Ok(Poll::Finished)
        } else {
            Ok(Poll::Idle)
        }
    }
}
