//! The `--output` file of a bounded run, written atomically.
//!
//! [`OutputFile::create`] runs before any row is read: it creates the temporary file the
//! output is later written to, next to the target (the same directory, so the final rename
//! cannot cross file systems), which proves the target writable at once. [`OutputFile::commit`]
//! writes the document into it, syncs it, renames it over the target and syncs the directory:
//! readers see the old file or the whole new one, never a part. Dropping an `OutputFile`
//! without committing (an interrupted run) removes the temporary file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::export::output::Snapshot;

/// Why the output cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The target is a directory.
    #[error("{path}: is a directory, not a file")]
    IsDirectory {
        /// The target.
        path: PathBuf,
    },
    /// No file can be created next to the target.
    #[error("{path}: cannot create a file in {dir}: {source}")]
    NotWritable {
        /// The target.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming failed.
    #[error("{path}: {source}")]
    Write {
        /// The target.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A target path with its temporary file, created before the run.
#[derive(Debug)]
pub struct OutputFile {
    target: PathBuf,
    tmp: NamedTempFile,
}

impl OutputFile {
    /// Creates the temporary file next to `target` (`.<name>.<random>.tmp`); fails at once
    /// when the target's directory is not writable or the target is a directory.
    pub fn create(target: &Path) -> Result<OutputFile, OutputError> {
        if target.is_dir() {
            return Err(OutputError::IsDirectory {
                path: target.to_path_buf(),
            });
        }
        let dir = directory_of(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Like `File::create`: readable as the umask allows (open(2) applies it to this
            // mode), not only by the owner as temporary files are.
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = builder
            .tempfile_in(&dir)
            .map_err(|source| OutputError::NotWritable {
                path: target.to_path_buf(),
                dir: dir.clone(),
                source,
            })?;
        Ok(OutputFile {
            target: target.to_path_buf(),
            tmp,
        })
    }

    /// The target path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file's path (removed unless committed).
    pub fn temporary(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes `snapshot` as compact JSON, streamed (a long run with every family on holds
    /// hundreds of thousands of rows), syncs it and renames it over the target.
    pub fn commit(self, snapshot: &Snapshot) -> Result<(), OutputError> {
        let write = |source| OutputError::Write {
            path: self.target.clone(),
            source,
        };
        let mut out = BufWriter::new(self.tmp.as_file());
        serde_json::to_writer(&mut out, snapshot)
            .map_err(std::io::Error::other)
            .map_err(write)?;
        out.write_all(b"\n").map_err(write)?;
        out.flush().map_err(write)?;
        drop(out);
        self.tmp.as_file().sync_all().map_err(write)?;
        let target = self.target.clone();
        self.tmp.persist(&target).map_err(|e| OutputError::Write {
            path: target.clone(),
            source: e.error,
        })?;
        // The rename is durable once the directory entry is.
        File::open(directory_of(&target))
            .and_then(|dir| dir.sync_all())
            .map_err(|source| OutputError::Write {
                path: target,
                source,
            })
    }
}

/// The directory a path's file is in (`.` for a bare file name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::file_names;

    #[test]
    fn the_temporary_file_is_made_next_to_the_target_and_renamed_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.json");
        std::fs::write(&target, b"old").unwrap();
        let output = OutputFile::create(&target).unwrap();
        assert_eq!(output.temporary().parent(), Some(dir.path()));
        assert_eq!(file_names(dir.path()).len(), 2);
        let empty = Snapshot {
            stations: Vec::new(),
            temporal: Vec::new(),
            regions: Vec::new(),
        };
        output.commit(&empty).unwrap();
        assert_eq!(file_names(dir.path()), ["out.json"]);
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
        assert!(doc.is_object(), "{doc}");
    }

    #[test]
    fn dropped_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let output = OutputFile::create(&dir.path().join("out.json")).unwrap();
        drop(output);
        assert!(file_names(dir.path()).is_empty());
    }

    #[test]
    fn an_unwritable_place_fails_at_once_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let under_a_file = file.join("out.json");
        let error = OutputFile::create(&under_a_file).unwrap_err();
        assert!(matches!(error, OutputError::NotWritable { .. }), "{error}");
        assert!(error.to_string().contains(&*under_a_file.to_string_lossy()));
        let error = OutputFile::create(dir.path()).unwrap_err();
        assert!(matches!(error, OutputError::IsDirectory { .. }), "{error}");
    }
}
