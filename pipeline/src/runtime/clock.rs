//! The update clock: dataflow time is an epoch of the wall clock, shared by every worker of the
//! process. Epoch 0 belongs to the restored state; reading starts at epoch 1.

use std::time::{Duration, Instant};

use super::Epoch;

/// Turns elapsed wall-clock time into epochs of `update_interval`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpdateClock {
    start: Instant,
    interval: Duration,
}

impl UpdateClock {
    /// A clock whose epoch 1 begins now.
    pub fn start(interval: Duration) -> UpdateClock {
        UpdateClock {
            start: Instant::now(),
            interval,
        }
    }

    /// The length of one epoch.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The epoch at `now`: 1 during the first interval, then one more per interval.
    pub fn epoch_at(&self, now: Instant) -> Epoch {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let ticks = elapsed / self.interval.as_nanos().max(1);
        u64::try_from(ticks)
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
            .min(u64::MAX - 1)
    }

    /// The current epoch.
    pub fn now(&self) -> Epoch {
        self.epoch_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_start_at_one_and_count_intervals() {
        let clock = UpdateClock::start(Duration::from_millis(250));
        let t0 = clock.start;
        assert_eq!(clock.epoch_at(t0), 1);
        assert_eq!(clock.epoch_at(t0 + Duration::from_millis(249)), 1);
        assert_eq!(clock.epoch_at(t0 + Duration::from_millis(250)), 2);
        assert_eq!(clock.epoch_at(t0 + Duration::from_secs(10)), 41);
        // An `Instant` from before the start (another thread's) is still epoch 1.
        if let Some(before) = t0.checked_sub(Duration::from_millis(1)) {
            assert_eq!(clock.epoch_at(before), 1);
        }
    }

    #[test]
    fn a_zero_interval_does_not_divide_by_zero_and_never_reaches_the_final_cut() {
        let clock = UpdateClock::start(Duration::ZERO);
        let later = clock.start + Duration::from_secs(1_000_000);
        assert!(clock.epoch_at(later) < u64::MAX);
    }
}
