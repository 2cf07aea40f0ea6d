//! Checkpoints: the aggregate state and every partition's read position, taken at one
//! consistent cut of the dataflow, in a versioned, checksummed file.
//!
//! A checkpoint file is `checkpoint-<sequence>.ofck`:
//!
//! ```text
//! "OFCK" | format version (u32 LE) | body length (u64 LE) | CRC-32 of body (u32 LE) | body
//! ```
//!
//! The body is [`Checkpoint`] in `bincode`. Files are written to a temporary name
//! (`checkpoint-<sequence>.tmp`), synced, renamed into place and the directory synced, so a
//! crash leaves either the old set or the new file whole. A write that fails (a full disk)
//! removes its temporary file; temporary files a crash left behind are removed when the
//! directory is opened. A torn or corrupt file (short, bad magic, bad checksum) is skipped on
//! load with a warning and the previous checkpoint is used; when *every* checkpoint file is
//! damaged, loading fails with [`CheckpointError::AllDamaged`] rather than silently starting
//! from nothing ([`CheckpointStore::set_aside_if_all_damaged`] is the explicit way to begin
//! afresh).
//!
//! Versioning: [`FORMAT_VERSION`] changes when the body's layout changes incompatibly. A
//! reader loads every version from [`OLDEST_READABLE_VERSION`] up to its own and refuses newer
//! ones (written by a newer oceanflow) with a clear message. Additive changes keep the version:
//! new fields carry `#[serde(default)]`-style defaults in the decoder of the version that
//! introduced them. Older layouts are decoded by the frozen copies in [`legacy`].
//!
//! - Version 1: `VarStats { count, mean, m2, min, max }`.
//! - Version 2: `VarStats` as `oceanflow_operators` defines it (it carries a per-group shift).

mod frame;
mod legacy;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use frame::{frame, read_frame};
use oceanflow_config::ValidConfig;
use oceanflow_operators::{DistinctKey, GroupKey, Stats};
use serde::{Deserialize, Serialize};

/// The body layout this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest body layout this build still reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

const EXTENSION: &str = "ofck";
const PREFIX: &str = "checkpoint-";
const TMP_EXTENSION: &str = "tmp";
/// What a damaged checkpoint is renamed to when the run begins afresh without it.
const DAMAGED_EXTENSION: &str = "damaged";

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Increases by one per checkpoint written into a directory.
    pub sequence: u64,
    /// Wall-clock time it was taken, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// What the aggregate keys mean (variables, fields, regions); a checkpoint only restores
    /// into a configuration with the same layout.
    pub layout: Layout,
    /// Every aggregate's accumulated value.
    pub groups: Vec<(GroupKey, Stats)>,
    /// Every distinct `(region, field, value)` present.
    pub distinct: Vec<DistinctKey>,
    /// Where every partition read so far stands.
    pub partitions: Vec<PartitionState>,
}

/// The part of the configuration the stored keys depend on: the order of variables (the
/// `Stats` vectors), categorical fields and regions (ids in keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Configured variables, in order.
    pub variables: Vec<String>,
    /// Fields with distinct counts, in order.
    pub distinct_fields: Vec<String>,
    /// Region names, in order.
    pub regions: Vec<String>,
}

impl Layout {
    /// The layout of a configuration.
    pub fn of(config: &ValidConfig) -> Layout {
        Layout {
            variables: config.config().variables.clone(),
            distinct_fields: config.distinct_fields().to_vec(),
            regions: config.regions().iter().map(|r| r.name.clone()).collect(),
        }
    }
}

/// One partition's state at the cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Source name.
    pub source: String,
    /// Partition id.
    pub id: String,
    /// The connector's position (JSON text), `None` when it cannot resume.
    pub position: Option<String>,
    /// Newest event time accepted from each of its lanes (µs), for the lateness rule after a
    /// restore; the lane id is empty for a partition that is one lane.
    pub lanes: Vec<(String, i64)>,
    /// Read to the end: not opened again.
    pub finished: bool,
}

/// A checkpoint file that cannot be loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// Damaged files listed one per line, for messages.
pub struct DamagedList<'a>(pub &'a [Damaged]);

impl fmt::Display for DamagedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for damaged in self.0 {
            write!(f, "\n  {}: {}", damaged.path.display(), damaged.reason)?;
        }
        Ok(())
    }
}

/// What became of the final checkpoint a run writes when its workers stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalCheckpoint {
    /// Written and synced: a restart resumes exactly where the run stopped.
    Durable,
    /// Not written; a restart resumes from the previous durable checkpoint (or from nothing).
    NotDurable {
        /// Why (the write error, or that it did not finish in time).
        reason: String,
    },
}

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a whole, valid checkpoint.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Written by an oceanflow whose format this build cannot read.
    #[error(
        "{path}: checkpoint format version {found} cannot be read by this oceanflow (it reads \
         versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}); use a matching oceanflow, or \
         move the checkpoint directory away to start from scratch"
    )]
    IncompatibleVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The checkpoint belongs to a configuration with other variables, fields or regions.
    #[error(
        "{path}: the checkpoint was taken with a different layout ({stored:?}) than the current \
         configuration ({current:?}); restore with the same variables, distinct fields and \
         regions, or use another checkpoint directory"
    )]
    LayoutMismatch {
        /// The file.
        path: PathBuf,
        /// Its layout.
        stored: Box<Layout>,
        /// The configuration's.
        current: Box<Layout>,
    },
    /// The directory holds checkpoint files and none of them can be loaded: starting would
    /// silently drop the state they held.
    #[error(
        "{dir}: none of its {} checkpoint file(s) can be loaded, so oceanflow refuses to start \
         from nothing:{}\nTo begin from nothing anyway (the damaged files are kept as \
         *.{DAMAGED_EXTENSION}), run with --fresh or set [pipeline.checkpoint] on_damaged = \
         \"start_fresh\".",
        files.len(),
        DamagedList(files)
    )]
    AllDamaged {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Every checkpoint file, newest first, with why it was refused.
        files: Vec<Damaged>,
    },
}

/// A directory of checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    keep: usize,
}

/// What writing a checkpoint produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

impl CheckpointStore {
    /// Opens (creating) `dir`, keeping the newest `keep` checkpoints, and removes the
    /// temporary files of writes a crash interrupted.
    pub fn open(dir: &Path, keep: usize) -> Result<CheckpointStore, CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let store = CheckpointStore {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
        };
        for (_, tmp) in store.files(TMP_EXTENSION)? {
            tracing::info!(path = %tmp.display(), "Removing the temporary file of an interrupted checkpoint write.");
            remove_leftover(&tmp);
        }
        Ok(store)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `checkpoint` atomically, then deletes all but the newest `keep`. A failed write
    /// leaves no temporary file behind.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<Written, CheckpointError> {
        let path = self.path_of(checkpoint.sequence);
        let body = bincode::serialize(checkpoint).map_err(|e| CheckpointError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        let bytes = frame(FORMAT_VERSION, &body);
        drop(body);

        let tmp = path.with_extension(TMP_EXTENSION);
        if let Err(error) = write_synced(&tmp, &bytes).and_then(|()| {
            fs::rename(&tmp, &path).map_err(|source| CheckpointError::Io {
                path: path.clone(),
                source,
            })
        }) {
            remove_leftover(&tmp);
            return Err(error);
        }
        // The rename is durable once the directory entry is.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.prune();
        Ok(Written {
            path,
            bytes: bytes.len() as u64,
        })
    }

    /// The newest checkpoint that reads back whole and fits `layout`. Corrupt files are
    /// skipped with a warning (the previous one is used); a newer format or another layout is
    /// an error, since skipping it would silently lose its state, and so is a directory whose
    /// every checkpoint file is corrupt ([`CheckpointError::AllDamaged`]).
    pub fn load_latest(
        &self,
        layout: &Layout,
    ) -> Result<Option<(Checkpoint, PathBuf)>, CheckpointError> {
        let mut damaged = Vec::new();
        for (_, path) in self.list()?.into_iter().rev() {
            match read(&path) {
                Ok(checkpoint) => {
                    if &checkpoint.layout != layout {
                        return Err(CheckpointError::LayoutMismatch {
                            path,
                            stored: Box::new(checkpoint.layout),
                            current: Box::new(layout.clone()),
                        });
                    }
                    return Ok(Some((checkpoint, path)));
                }
                Err(CheckpointError::Corrupt { path, reason }) => {
                    tracing::warn!(path = %path.display(), %reason, "Checkpoint is damaged; trying the previous one.");
                    damaged.push(Damaged { path, reason });
                }
                Err(error) => return Err(error),
            }
        }
        if damaged.is_empty() {
            Ok(None)
        } else {
            Err(CheckpointError::AllDamaged {
                dir: self.dir.clone(),
                files: damaged,
            })
        }
    }

    /// For a run told to begin from nothing when every checkpoint is damaged: if the
    /// directory holds checkpoint files and none passes its header and checksum check, renames
    /// each to `*.damaged` (kept for inspection, no longer loaded) and returns them; otherwise
    /// changes nothing and returns an empty list. A file of a newer format is not damaged: it
    /// stays, and loading refuses it as usual.
    pub fn set_aside_if_all_damaged(&self) -> Result<Vec<Damaged>, CheckpointError> {
        let mut damaged = Vec::new();
        for (_, path) in self.list()?.into_iter().rev() {
            match read_frame(&path) {
                Ok(_) | Err(CheckpointError::IncompatibleVersion { .. }) => return Ok(Vec::new()),
                Err(CheckpointError::Corrupt { path, reason }) => {
                    damaged.push(Damaged { path, reason })
                }
                Err(error) => return Err(error),
            }
        }
        for file in &damaged {
            let mut aside = file.path.clone().into_os_string();
            aside.push(format!(".{DAMAGED_EXTENSION}"));
            fs::rename(&file.path, &aside).map_err(|source| CheckpointError::Io {
                path: file.path.clone(),
                source,
            })?;
        }
        Ok(damaged)
    }

    /// The sequence number the next checkpoint gets.
    pub fn next_sequence(&self) -> Result<u64, CheckpointError> {
        Ok(self.list()?.last().map_or(1, |(seq, _)| seq + 1))
    }

    fn path_of(&self, sequence: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{sequence:020}.{EXTENSION}"))
    }

    /// Checkpoint files by sequence, oldest first.
    fn list(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        self.files(EXTENSION)
    }

    /// Files `checkpoint-<sequence>.<extension>` by sequence, oldest first.
    fn files(&self, extension: &str) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| CheckpointError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let suffix = format!(".{extension}");
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?;
                let seq = name
                    .strip_prefix(PREFIX)?
                    .strip_suffix(&suffix)?
                    .parse()
                    .ok()?;
                Some((seq, path))
            })
            .collect();
        found.sort();
        Ok(found)
    }

    fn prune(&self) {
        let Ok(all) = self.list() else { return };
        let excess = all.len().saturating_sub(self.keep);
        for (_, path) in all.into_iter().take(excess) {
            if let Err(error) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "Cannot delete an old checkpoint.");
            }
        }
    }
}

/// Creates `path` with `bytes` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Removes a temporary file that must not stay (absent is fine).
fn remove_leftover(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "Cannot remove a temporary checkpoint file.")
        }
    }
}

/// Reads and verifies one checkpoint file, decoding the body of any readable version.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let frame = read_frame(path)?;
    let decoded = match frame.version {
        1 => legacy::decode_v1(frame.body()),
        _ => bincode::deserialize(frame.body()),
    };
    decoded.map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("cannot decode: {e}"),
    })
}
