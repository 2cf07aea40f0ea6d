//! The reader of live transports. Sockets and serial ports are read on background threads
//! (one per device, plus one per TCP connection) that hand complete lines over through one
//! bounded channel; `poll` only drains it with `try_recv`, so a timely worker never blocks on
//! I/O. The bound is the backpressure: a stalled pipeline stops the readers (TCP and serial
//! then buffer in the kernel and the sender; UDP drops, as UDP does — the receive buffer is
//! enlarged so bursts survive).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;

use oceanflow_connectors::{PartitionReader, Poll, SourceError};

use crate::clock::now_us;
use crate::engine::Engine;
use crate::transport::replay::split_timestamp;

/// Chunks the channel holds; each is one datagram or one read's complete lines.
pub const CHANNEL_CHUNKS: usize = 65_536;

/// Complete lines read from one device at one time.
#[derive(Debug)]
pub struct Chunk {
    /// Index of the device.
    pub device: usize,
    /// When it was read (µs since the epoch).
    pub reception_us: i64,
    /// One or more lines; the last may lack its newline (a datagram).
    pub bytes: Vec<u8>,
}

/// What a transport thread needs: where to send and when to stop.
#[derive(Clone)]
pub struct Feed {
    /// The device index chunks are labelled with.
    pub device: usize,
    /// The channel to the reader.
    pub tx: SyncSender<Chunk>,
    /// Set when the reader is dropped.
    pub stop: Arc<AtomicBool>,
}

impl Feed {
    /// Sends `bytes` as received now; false when the reader is gone (the thread should end).
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        let chunk = Chunk {
            device: self.device,
            reception_us: now_us(),
            bytes,
        };
        !self.stopped() && self.tx.send(chunk).is_ok()
    }

    /// Whether the reader is gone.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Splits a byte stream (TCP, serial) into complete lines; the tail waits for its newline.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

/// A line longer than this without a newline is handed over as is (garbage must not grow the
/// buffer without bound).
const MAX_PENDING: usize = 64 * 1024;

impl LineBuffer {
    /// Adds `data`; returns the complete lines now available, if any.
    pub fn push(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        self.pending.extend_from_slice(data);
        match self.pending.iter().rposition(|b| *b == b'\n') {
            Some(end) => {
                let tail = self.pending.split_off(end + 1);
                Some(std::mem::replace(&mut self.pending, tail))
            }
            None if self.pending.len() > MAX_PENDING => Some(std::mem::take(&mut self.pending)),
            None => None,
        }
    }

    /// What is left when the stream ends (a last line without newline).
    pub fn take_rest(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Drains the channel of live transports into canonical batches.
pub struct LiveReader {
    engine: Engine,
    rx: Receiver<Chunk>,
    stop: Arc<AtomicBool>,
    /// Per device: lines carry their own reception time.
    timestamped: Vec<bool>,
    batch_rows: usize,
}

impl LiveReader {
    /// A reader of the chunks the transport threads send on `rx`.
    pub fn new(
        engine: Engine,
        rx: Receiver<Chunk>,
        stop: Arc<AtomicBool>,
        timestamped: Vec<bool>,
        batch_rows: usize,
    ) -> Self {
        LiveReader {
            engine,
            rx,
            stop,
            timestamped,
            batch_rows,
        }
    }

    fn chunk(&mut self, chunk: &Chunk) {
        for line in chunk.bytes.split(|b| *b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            if self.timestamped[chunk.device] {
                match split_timestamp(line) {
                    Some((t, payload)) => self.engine.line(chunk.device, t, payload, line),
                    None => self.engine.bad_reception_time(chunk.device, line),
                }
            } else {
                self.engine
                    .line(chunk.device, chunk.reception_us, line, line);
            }
        }
    }
}

impl PartitionReader for LiveReader {
    fn poll(&mut self) -> Result<Poll, SourceError> {
        let mut bytes = 0u64;
        let mut chunks = 0usize;
        // Bounded by chunks too, so a feed of sentences that emit no rows cannot keep one
        // poll busy while the senders refill the channel.
        while chunks < self.batch_rows
            && self.engine.rows() + self.engine.rejections() < self.batch_rows
        {
            match self.rx.try_recv() {
                Ok(chunk) => {
                    chunks += 1;
                    bytes += chunk.bytes.len() as u64;
                    self.chunk(&chunk);
                }
                // Disconnected: every transport thread ended (logged there); a live source
                // never finishes, it stays idle.
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if chunks == 0 {
            return Ok(Poll::Idle);
        }
        Ok(Poll::Batch(self.engine.finish(bytes, None)?))
    }
}

impl Drop for LiveReader {
    fn drop(&mut self) {
        // The threads notice within their read timeout and end; not joined, so dropping a
        // reader never waits on I/O.
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_buffer_keeps_the_tail_until_its_newline() {
        let mut b = LineBuffer::default();
        assert_eq!(b.push(b"$HEHDT,1"), None);
        assert_eq!(b.push(b"8.5,T\n$HEH"), Some(b"$HEHDT,18.5,T\n".to_vec()));
        assert_eq!(b.push(b"DT,2,T\r\n"), Some(b"$HEHDT,2,T\r\n".to_vec()));
        assert_eq!(b.push(b"tail"), None);
        assert_eq!(b.take_rest(), Some(b"tail".to_vec()));
        assert_eq!(b.take_rest(), None);
    }
}
