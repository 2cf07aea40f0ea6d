//! Checkpoints: the aggregate state and every partition's read position, taken at one
//! consistent cut of the dataflow, in a versioned, checksummed file.
//!
//! A checkpoint file is `checkpoint-<sequence>.ofck`:
//!
//! ```text
//! "OFCK" | format version (u32 LE) | body length (u64 LE) | CRC-32 of body (u32 LE) | body
//! ```
//!
//! The body is [`Checkpoint`] in `bincode`. Files are written to a temporary name, synced,
//! renamed into place and the directory synced, so a crash leaves either the old set or the
//! new file whole; a torn or corrupt file (short, bad magic, bad checksum) is skipped on load
//! with a warning and the previous checkpoint is used.
//!
//! Versioning: [`FORMAT_VERSION`] changes when the body's layout changes incompatibly. A
//! reader loads every version from [`OLDEST_READABLE_VERSION`] up to its own and refuses newer
//! ones (written by a newer oceanflow) with a clear message. Additive changes keep the version:
//! new fields carry `#[serde(default)]`-style defaults in the decoder of the version that
//! introduced them.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use oceanflow_config::ValidConfig;
use oceanflow_operators::{DistinctKey, GroupKey, Stats};
use serde::{Deserialize, Serialize};

/// The body layout this build writes.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest body layout this build still reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

const MAGIC: &[u8; 4] = b"OFCK";
const HEADER_LEN: usize = 4 + 4 + 8 + 4;
const EXTENSION: &str = "ofck";

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
    /// Opens (creating) `dir`, keeping the newest `keep` checkpoints.
    pub fn open(dir: &Path, keep: usize) -> Result<CheckpointStore, CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(CheckpointStore {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `checkpoint` atomically, then deletes all but the newest `keep`.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<Written, CheckpointError> {
        let path = self.path_of(checkpoint.sequence);
        let body = bincode::serialize(checkpoint).map_err(|e| CheckpointError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);

        let tmp = path.with_extension("tmp");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { path, source }
        };
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
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
    /// an error, since skipping it would silently lose its state.
    pub fn load_latest(
        &self,
        layout: &Layout,
    ) -> Result<Option<(Checkpoint, PathBuf)>, CheckpointError> {
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
                }
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }

    /// The sequence number the next checkpoint gets.
    pub fn next_sequence(&self) -> Result<u64, CheckpointError> {
        Ok(self.list()?.last().map_or(1, |(seq, _)| seq + 1))
    }

    fn path_of(&self, sequence: u64) -> PathBuf {
        self.dir
            .join(format!("checkpoint-{sequence:020}.{EXTENSION}"))
    }

    /// Checkpoint files by sequence, oldest first.
    fn list(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| CheckpointError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?;
                let seq = name
                    .strip_prefix("checkpoint-")?
                    .strip_suffix(&format!(".{EXTENSION}"))?
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

/// Reads and verifies one checkpoint file.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(corrupt(format!(
            "not a checkpoint (header missing or {} bytes only)",
            bytes.len()
        )));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(4);
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(CheckpointError::IncompatibleVersion {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let len = u64::from_le_bytes(len);
    let crc = word(16);
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != len {
        return Err(corrupt(format!(
            "truncated: body is {} bytes, header says {len}",
            body.len()
        )));
    }
    if crc32fast::hash(body) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    bincode::deserialize(body).map_err(|e| corrupt(format!("cannot decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oceanflow_operators::VarStats;

    fn sample(sequence: u64) -> Checkpoint {
        Checkpoint {
            sequence,
            created_unix_ms: 1_700_000_000_000,
            layout: Layout {
                variables: vec!["t".into()],
                distinct_fields: vec!["species".into()],
                regions: vec!["north".into()],
            },
            groups: vec![(
                GroupKey::Station("A".into()),
                Stats {
                    count: 2,
                    vars: vec![VarStats::of(1.5)],
                    retracted: 0,
                },
            )],
            distinct: vec![(0, 0, "cod".into())],
            partitions: vec![PartitionState {
                source: "s".into(),
                id: "a.csv".into(),
                position: Some(r#"{"offset":42}"#.into()),
                lanes: vec![(String::new(), 7)],
                finished: false,
            }],
        }
    }

    #[test]
    fn roundtrip_and_keep_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 2).unwrap();
        assert_eq!(store.next_sequence().unwrap(), 1);
        for seq in 1..=3 {
            store.write(&sample(seq)).unwrap();
        }
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(store.next_sequence().unwrap(), 4);
        let (loaded, _) = store.load_latest(&sample(0).layout).unwrap().unwrap();
        assert_eq!(loaded, sample(3));
    }

    #[test]
    fn damaged_newest_falls_back_to_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 5).unwrap();
        store.write(&sample(1)).unwrap();
        let newest = store.write(&sample(2)).unwrap().path;
        let whole = fs::read(&newest).unwrap();
        let layout = sample(0).layout;

        // Truncated.
        fs::write(&newest, &whole[..whole.len() - 3]).unwrap();
        assert_eq!(store.load_latest(&layout).unwrap().unwrap().0.sequence, 1);
        // A flipped byte in the body.
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        fs::write(&newest, &flipped).unwrap();
        assert!(matches!(
            read(&newest),
            Err(CheckpointError::Corrupt { .. })
        ));
        assert_eq!(store.load_latest(&layout).unwrap().unwrap().0.sequence, 1);
        // Empty.
        fs::write(&newest, b"").unwrap();
        assert_eq!(store.load_latest(&layout).unwrap().unwrap().0.sequence, 1);
    }

    #[test]
    fn newer_format_and_other_layout_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 5).unwrap();
        let path = store.write(&sample(1)).unwrap().path;
        let mut bytes = fs::read(&path).unwrap();
        bytes[4..8].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let err = store.load_latest(&sample(0).layout).unwrap_err();
        assert!(
            err.to_string().contains("cannot be read by this oceanflow"),
            "{err}"
        );

        store.write(&sample(2)).unwrap();
        let mut other = sample(0).layout;
        other.variables.push("salinity".into());
        let err = store.load_latest(&other).unwrap_err();
        assert!(
            matches!(err, CheckpointError::LayoutMismatch { .. }),
            "{err}"
        );
    }
}
