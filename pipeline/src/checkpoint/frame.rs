//! The framing of a checkpoint file: magic, format version, body length and CRC-32 of the
//! body, then the body.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::{CheckpointError, FORMAT_VERSION, OLDEST_READABLE_VERSION};

const MAGIC: &[u8; 4] = b"OFCK";
const HEADER_LEN: usize = 4 + 4 + 8 + 4;

/// Header and body of a checkpoint file of `version`.
pub(super) fn frame(version: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// A checkpoint file whose header and checksum are verified: its format version and bytes.
pub(super) struct Frame {
    pub version: u32,
    bytes: Vec<u8>,
}

impl Frame {
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// Reads one checkpoint file and verifies its header and checksum.
pub(super) fn read_frame(path: &Path) -> Result<Frame, CheckpointError> {
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
    Ok(Frame { version, bytes })
}
