//! Event-time watermarks per lane: the independently ordered streams inside one partition (a
//! Kafka topic-partition of a consumer-group member, a vessel device; a file or Parquet row
//! group is one lane). A row is judged late only against the rows before it *in its own lane*,
//! so a member that reads its topic-partitions unevenly, or a ship whose instruments report at
//! different rates, loses nothing to lateness.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow_buffer::BooleanBuffer;
use oceanflow_connectors::Lanes;
use oceanflow_operators::late::{LateSplit, Watermark};

/// The lane id of a partition that is a single lane.
pub(crate) const WHOLE_PARTITION: &str = "";

/// One lane: its watermark and when it last delivered a row.
#[derive(Debug, Clone)]
struct Lane {
    watermark: Watermark,
    last_data: Instant,
}

/// The watermarks of every lane of one partition.
#[derive(Debug, Clone)]
pub(crate) struct LaneWatermarks {
    lateness_us: i64,
    /// The retention horizon: rows older than this are too late in every lane.
    floor: i64,
    lanes: BTreeMap<String, Lane>,
    /// When the partition was opened: until a lane delivers, it holds the frontier for at
    /// most the idle timeout from here.
    opened: Instant,
}

/// How one batch fared, with the watermark each too-late row was judged against.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchSplit {
    /// Per row: keep or reject, plus the count of late rows still accepted.
    pub split: LateSplit,
    /// Per too-late row (parallel to `split.too_late`), its lane's watermark after the batch:
    /// the row is older than it.
    pub too_late_marks: Vec<i64>,
}

impl LaneWatermarks {
    /// A partition opened at `now` that has seen nothing, allowing `lateness_us` of lateness.
    pub fn new(lateness_us: i64, now: Instant) -> LaneWatermarks {
        LaneWatermarks {
            lateness_us,
            floor: i64::MIN,
            lanes: BTreeMap::new(),
            opened: now,
        }
    }

    /// A partition resumed from a checkpoint: the newest event time each lane had seen.
    pub fn resumed(
        lateness_us: i64,
        max_seen: impl IntoIterator<Item = (String, i64)>,
        now: Instant,
    ) -> LaneWatermarks {
        let mut lanes = LaneWatermarks::new(lateness_us, now);
        for (id, max) in max_seen {
            lanes.lanes.insert(
                id,
                Lane {
                    watermark: Watermark::resumed(lateness_us, Some(max)),
                    last_data: now,
                },
            );
        }
        lanes
    }

    /// Rejects rows older than `floor_us` in every lane from now on (it only rises).
    pub fn raise_floor(&mut self, floor_us: i64) {
        self.floor = self.floor.max(floor_us);
        for lane in self.lanes.values_mut() {
            lane.watermark.raise_floor(self.floor);
        }
    }

    fn lane(&mut self, id: &str, now: Instant) -> &mut Lane {
        if !self.lanes.contains_key(id) {
            let mut watermark = Watermark::from_micros(self.lateness_us);
            watermark.raise_floor(self.floor);
            self.lanes.insert(
                id.to_string(),
                Lane {
                    watermark,
                    last_data: now,
                },
            );
        }
        let lane = self.lanes.get_mut(id).expect("inserted above");
        lane.last_data = now;
        lane
    }

    /// Judges the rows of a batch (`times` in row order, `lanes` their lanes) and advances the
    /// watermarks of the lanes they belong to.
    pub fn split(&mut self, times: &[i64], lanes: Option<&Lanes>, now: Instant) -> BatchSplit {
        let Some(lanes) = lanes.filter(|l| l.of_row.len() == times.len() && !l.ids.is_empty())
        else {
            if lanes.is_some() && !times.is_empty() {
                tracing::warn!(
                    rows = times.len(),
                    "Lane list does not match the batch; judging the batch as one lane."
                );
            }
            return self.split_one(WHOLE_PARTITION, times, now);
        };
        if let [only] = lanes.ids.as_slice() {
            return self.split_one(only, times, now);
        }
        // Rows of each lane in order, judged lane by lane, then put back in row order.
        let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); lanes.ids.len()];
        for (row, &lane) in lanes.of_row.iter().enumerate() {
            if let Some(rows) = rows_of.get_mut(lane as usize) {
                rows.push(row);
            }
        }
        let mut keep = vec![true; times.len()];
        let mut too_late: Vec<(usize, i64)> = Vec::new();
        let mut late_accepted = 0;
        let mut lane_times = Vec::new();
        for (id, rows) in lanes.ids.iter().zip(&rows_of) {
            if rows.is_empty() {
                continue;
            }
            lane_times.clear();
            lane_times.extend(rows.iter().map(|&r| times[r]));
            let lane = self.lane(id, now);
            let split = lane.watermark.split(&lane_times);
            let mark = lane.watermark.watermark().unwrap_or(i64::MIN);
            late_accepted += split.late_accepted;
            for &i in &split.too_late {
                keep[rows[i]] = false;
                too_late.push((rows[i], mark));
            }
        }
        too_late.sort_unstable();
        BatchSplit {
            split: LateSplit {
                keep: BooleanBuffer::from(keep),
                too_late: too_late.iter().map(|(row, _)| *row).collect(),
                late_accepted,
            },
            too_late_marks: too_late.iter().map(|(_, mark)| *mark).collect(),
        }
    }

    /// Judges every row of the batch as a row of lane `id`.
    fn split_one(&mut self, id: &str, times: &[i64], now: Instant) -> BatchSplit {
        let lane = self.lane(id, now);
        let split = lane.watermark.split(times);
        let mark = lane.watermark.watermark().unwrap_or(i64::MIN);
        BatchSplit {
            too_late_marks: vec![mark; split.too_late.len()],
            split,
        }
    }

    /// The lowest watermark of the lanes that delivered within `idle_timeout` before `now`
    /// (`i64::MIN` while none has delivered anything since the partition was opened less than
    /// `idle_timeout` ago, `None` when every lane is idle).
    pub fn low_watermark(&self, now: Instant, idle_timeout: Duration) -> Option<i64> {
        if self.lanes.is_empty() {
            return (now.saturating_duration_since(self.opened) < idle_timeout).then_some(i64::MIN);
        }
        self.lanes
            .values()
            .filter(|l| now.saturating_duration_since(l.last_data) < idle_timeout)
            .map(|l| l.watermark.watermark().unwrap_or(i64::MIN))
            .min()
    }

    /// The lowest watermark over every lane, idle or not (the partition's gauge).
    pub fn lowest(&self) -> Option<i64> {
        self.lanes
            .values()
            .filter_map(|l| l.watermark.watermark())
            .min()
    }

    /// The newest event time accepted in any lane.
    pub fn newest(&self) -> Option<i64> {
        self.lanes
            .values()
            .filter_map(|l| l.watermark.max_seen())
            .max()
    }

    /// The newest event time of each lane that has seen a row (what a checkpoint keeps).
    pub fn max_seen_per_lane(&self) -> Vec<(String, i64)> {
        self.lanes
            .iter()
            .filter_map(|(id, l)| Some((id.clone(), l.watermark.max_seen()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn lanes(ids: &[&str], of_row: &[u32]) -> Lanes {
        Lanes {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            of_row: of_row.to_vec(),
        }
    }

    #[test]
    fn lanes_each_in_order_lose_nothing_however_unevenly_read() {
        let now = Instant::now();
        let mut w = LaneWatermarks::new(HOUR, now);
        // Lane "a" is days ahead of lane "b"; interleaved, each in time order.
        let day = 24 * HOUR;
        let times = [10 * day, 0, 10 * day + 1, 1, 2, 10 * day + 2];
        let l = lanes(&["a", "b"], &[0, 1, 0, 1, 1, 0]);
        let s = w.split(&times, Some(&l), now);
        assert!(s.split.keeps_all(), "{:?}", s.split.too_late);
        assert_eq!(
            w.low_watermark(now, Duration::from_secs(60)),
            Some(2 - HOUR)
        );
        assert_eq!(
            w.max_seen_per_lane(),
            vec![("a".into(), 10 * day + 2), ("b".into(), 2)]
        );
        // The same rows as one lane: the slow lane's rows are too late.
        let mut one = LaneWatermarks::new(HOUR, now);
        let s = one.split(&times, None, now);
        assert_eq!(s.split.too_late, vec![1, 3, 4]);
        // Each is reported against the lane's watermark after the batch.
        assert_eq!(s.too_late_marks, vec![10 * day + 2 - HOUR; 3]);
    }

    #[test]
    fn a_row_is_judged_against_its_own_lane_only() {
        let now = Instant::now();
        let mut w = LaneWatermarks::new(10, now);
        let l = lanes(&["x", "y"], &[0, 0, 1, 0]);
        let s = w.split(&[100, 80, 0, 95], Some(&l), now);
        assert_eq!(s.split.too_late, vec![1]);
        assert_eq!(s.too_late_marks, vec![90]);
        assert_eq!(s.split.late_accepted, 1);
        let kept: Vec<bool> = s.split.keep.iter().collect();
        assert_eq!(kept, [true, false, true, true]);
    }

    #[test]
    fn idle_lanes_stop_holding_the_frontier_and_the_floor_applies_to_new_lanes() {
        let start = Instant::now();
        let mut w = LaneWatermarks::new(0, start);
        assert_eq!(
            w.low_watermark(start, Duration::from_secs(60)),
            Some(i64::MIN)
        );
        assert_eq!(
            w.low_watermark(start + Duration::from_secs(61), Duration::from_secs(60)),
            None
        );
        w.split(&[5], Some(&lanes(&["slow"], &[0])), start);
        let later = start + Duration::from_secs(120);
        w.split(&[500], Some(&lanes(&["busy"], &[0])), later);
        assert_eq!(w.low_watermark(later, Duration::from_secs(300)), Some(5));
        assert_eq!(w.low_watermark(later, Duration::from_secs(60)), Some(500));
        assert_eq!(
            w.low_watermark(later + Duration::from_secs(600), Duration::from_secs(60)),
            None
        );
        w.raise_floor(400);
        let s = w.split(&[300], Some(&lanes(&["new"], &[0])), later);
        assert_eq!(s.split.too_late, vec![0]);
    }

    #[test]
    fn resumed_lanes_remember_their_newest_times() {
        let now = Instant::now();
        let mut w =
            LaneWatermarks::resumed(10, [("p/0".to_string(), 100), ("p/1".to_string(), 5)], now);
        assert_eq!(
            w.max_seen_per_lane(),
            vec![("p/0".into(), 100), ("p/1".into(), 5)]
        );
        let s = w.split(&[80, 6], Some(&lanes(&["p/0", "p/1"], &[0, 1])), now);
        assert_eq!(s.split.too_late, vec![0]);
        assert_eq!(w.lowest(), Some(-4));
    }

    #[test]
    fn a_lane_list_that_does_not_match_the_batch_is_one_lane() {
        let now = Instant::now();
        let mut w = LaneWatermarks::new(0, now);
        let s = w.split(&[3, 2], Some(&lanes(&["a"], &[0])), now);
        assert_eq!(s.split.too_late, vec![1]);
    }
}
