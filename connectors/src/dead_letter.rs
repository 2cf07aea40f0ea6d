//! The dead-letter output: rejected rows as NDJSON, one object per line with the fields
//! `source`, `partition`, `row`, `reason`, `detail` and `record`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{Rejected, SourceError};

/// A buffered NDJSON writer of [`Rejected`] rows. Call [`DeadLetterWriter::flush`] before
/// relying on the file's content (dropping the writer flushes too, but ignores errors).
#[derive(Debug)]
pub struct DeadLetterWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl DeadLetterWriter {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, SourceError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| io_error(&path, source))?;
        Ok(DeadLetterWriter {
            path,
            out: BufWriter::new(file),
        })
    }

    /// Appends one line per rejected row.
    pub fn write(&mut self, rejected: &[Rejected]) -> Result<(), SourceError> {
        for row in rejected {
            serde_json::to_writer(&mut self.out, row).map_err(|e| SourceError::Other {
                context: self.path.display().to_string(),
                message: format!("writing a dead letter: {e}"),
            })?;
            self.out
                .write_all(b"\n")
                .map_err(|source| io_error(&self.path, source))?;
        }
        Ok(())
    }

    /// Writes the buffered lines to the file.
    pub fn flush(&mut self) -> Result<(), SourceError> {
        self.out
            .flush()
            .map_err(|source| io_error(&self.path, source))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectReason;

    #[test]
    fn writes_one_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let mut writer = DeadLetterWriter::create(&path).unwrap();
        let row = Rejected {
            source: "s".into(),
            partition: "a.csv".into(),
            row: Some(3),
            reason: RejectReason::NonNumeric,
            detail: "column x: \"abc\" is not a number".into(),
            record: "{\"x\":\"abc\"}".into(),
        };
        writer.write(&[row.clone(), row]).unwrap();
        writer.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            serde_json::json!({
                "source": "s", "partition": "a.csv", "row": 3, "reason": "non_numeric",
                "detail": "column x: \"abc\" is not a number", "record": "{\"x\":\"abc\"}"
            })
        );
    }

    #[test]
    fn create_in_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = DeadLetterWriter::create(dir.path().join("no/such/dir.ndjson")).unwrap_err();
        assert!(matches!(err, SourceError::Io { .. }));
    }
}
