//! Per-partition event-time watermark and the lateness split.
//!
//! Rows are judged in arrival order: a row is *too late* when its event time is more than the
//! allowed lateness behind the newest event time seen before it in the same partition
//! (earlier rows of the same batch and all previous batches). A row is never too late because
//! of itself or of rows after it, so the result depends only on the partition's row order,
//! not on how rows are cut into batches.

use std::time::Duration;

use arrow_buffer::BooleanBuffer;

/// The event-time watermark of one partition (one source partition feeds one `Watermark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    lateness_us: i64,
    max_seen: Option<i64>,
    /// Rows older than this are too late whatever the partition has seen: the retention
    /// horizon, behind which buckets have been compacted away.
    floor: i64,
}

/// How the rows of one batch fare against the watermark.
#[derive(Debug, Clone, PartialEq)]
pub struct LateSplit {
    /// `true` for rows to aggregate, `false` for too-late rows; one entry per row.
    pub keep: BooleanBuffer,
    /// Indices of the too-late rows, ascending.
    pub too_late: Vec<usize>,
    /// Kept rows older than an earlier row of the partition, but within the lateness.
    pub late_accepted: usize,
}

impl LateSplit {
    /// Whether every row is kept (then the batch needs no filtering).
    pub fn keeps_all(&self) -> bool {
        self.too_late.is_empty()
    }
}

impl Watermark {
    /// A partition that has seen nothing yet, allowing `lateness` (saturating at `i64::MAX`
    /// microseconds).
    pub fn new(lateness: Duration) -> Watermark {
        Watermark::from_micros(i64::try_from(lateness.as_micros()).unwrap_or(i64::MAX))
    }

    /// As [`Watermark::new`], with the lateness in microseconds (negative counts as zero).
    pub fn from_micros(lateness_us: i64) -> Watermark {
        Watermark {
            lateness_us: lateness_us.max(0),
            max_seen: None,
            floor: i64::MIN,
        }
    }

    /// A partition resumed from a checkpoint, which had seen up to `max_seen`.
    pub fn resumed(lateness_us: i64, max_seen: Option<i64>) -> Watermark {
        Watermark {
            max_seen,
            ..Watermark::from_micros(lateness_us)
        }
    }

    /// Rejects rows older than `floor_us` from now on (it only ever rises).
    pub fn raise_floor(&mut self, floor_us: i64) {
        self.floor = self.floor.max(floor_us);
    }

    /// Judges `times` (event times in µs, in row order) and advances the watermark past them.
    /// Too-late rows do not advance it (their time is below the maximum anyway).
    pub fn split(&mut self, times: &[i64]) -> LateSplit {
        let mut keep = Vec::with_capacity(times.len());
        let mut too_late = Vec::new();
        let mut late_accepted = 0;
        for (row, &t) in times.iter().enumerate() {
            let kept = match self.max_seen {
                _ if t < self.floor => false,
                None => true,
                Some(max) if t >= max => true,
                Some(max) => {
                    let in_time = t >= max.saturating_sub(self.lateness_us);
                    late_accepted += usize::from(in_time);
                    in_time
                }
            };
            if kept {
                self.max_seen = Some(self.max_seen.map_or(t, |max| max.max(t)));
            } else {
                too_late.push(row);
            }
            keep.push(kept);
        }
        LateSplit {
            keep: BooleanBuffer::from(keep),
            too_late,
            late_accepted,
        }
    }

    /// The newest event time seen minus the lateness: rows older than this are rejected, so
    /// aggregates of earlier times are final. `None` before the first row.
    pub fn watermark(&self) -> Option<i64> {
        self.max_seen
            .map(|max| max.saturating_sub(self.lateness_us))
    }

    /// The newest event time seen, `None` before the first row.
    pub fn max_seen(&self) -> Option<i64> {
        self.max_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(split: &LateSplit) -> Vec<bool> {
        split.keep.iter().collect()
    }

    #[test]
    fn rows_are_judged_against_earlier_rows_only() {
        let mut w = Watermark::from_micros(10);
        // 5 comes first, so the later 100 does not make it late; -10 after 100 is too late.
        let s = w.split(&[5, 100, 95, 89, 90, 100, 200]);
        assert_eq!(kept(&s), [true, true, true, false, true, true, true]);
        assert_eq!(s.too_late, vec![3]);
        assert_eq!(s.late_accepted, 2);
        assert_eq!(w.watermark(), Some(190));
        assert_eq!(w.max_seen(), Some(200));
    }

    #[test]
    fn previous_batches_count() {
        let mut w = Watermark::new(Duration::from_micros(10));
        assert_eq!(w.watermark(), None);
        assert!(w.split(&[]).keeps_all());
        assert!(w.split(&[100]).keeps_all());
        let s = w.split(&[89, 90, 100]);
        assert_eq!(s.too_late, vec![0]);
        assert_eq!(s.late_accepted, 1);
        assert!(!s.keeps_all());
    }

    #[test]
    fn batching_does_not_change_the_outcome() {
        let times = [50, 3, 70, 55, 59, 61, 70, 10, 80, 69];
        let mut whole = Watermark::from_micros(10);
        let all = kept(&whole.split(&times));
        let mut pieces = Watermark::from_micros(10);
        let mut parts = Vec::new();
        for chunk in times.chunks(3) {
            parts.extend(kept(&pieces.split(chunk)));
        }
        assert_eq!(all, parts);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let mut w = Watermark::from_micros(i64::MAX);
        let s = w.split(&[i64::MIN, i64::MAX, i64::MIN]);
        assert_eq!(s.too_late, vec![2]);
        assert_eq!(w.watermark(), Some(0));
        let mut w = Watermark::from_micros(-5);
        assert_eq!(w.split(&[i64::MIN, 0, -1]).too_late, vec![2]);
        assert_eq!(w.watermark(), Some(0));
    }

    #[test]
    fn the_floor_rejects_older_rows_and_a_resumed_partition_remembers() {
        let mut w = Watermark::resumed(10, Some(100));
        assert_eq!(w.watermark(), Some(90));
        assert_eq!(w.split(&[95, 80]).too_late, vec![1]);
        w.raise_floor(120);
        w.raise_floor(0);
        let s = w.split(&[119, 120, 200]);
        assert_eq!(s.too_late, vec![0]);
        assert_eq!(w.max_seen(), Some(200));
    }
}
