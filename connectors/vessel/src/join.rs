//! The as-of position join: a record takes the newest fix of the position device received at
//! or before it (by reception time), if that fix is at most `max_age` old.
//!
//! Fixes are kept in a bounded history ordered by reception time rather than as "the last fix
//! seen", so the join does not depend on the order in which the transports' threads hand lines
//! over: a fix that arrives a little after a record it precedes still positions it, and a
//! replay and a live feed of the same timestamped lines join identically.

use std::collections::BTreeMap;

/// Fixes kept at most (about 9 hours of 2 fixes a second); older ones are dropped first.
const MAX_FIXES: usize = 65_536;

/// A fix: reception time (µs) → (latitude, longitude).
#[derive(Debug, Clone, Default)]
pub struct PositionJoin {
    max_age_us: i64,
    fixes: BTreeMap<i64, (f64, f64)>,
}

impl PositionJoin {
    /// A join that accepts fixes up to `max_age_us` old.
    pub fn new(max_age_us: i64) -> Self {
        PositionJoin {
            max_age_us,
            fixes: BTreeMap::new(),
        }
    }

    /// Records a fix received at `reception_us`.
    pub fn add(&mut self, reception_us: i64, lat: f64, lon: f64) {
        self.fixes.insert(reception_us, (lat, lon));
        if self.fixes.len() > MAX_FIXES {
            self.fixes.pop_first();
        }
    }

    /// The position at `reception_us`, if a fresh enough fix precedes it.
    pub fn at(&self, reception_us: i64) -> Option<(f64, f64)> {
        let (&fix_us, &position) = self.fixes.range(..=reception_us).next_back()?;
        (reception_us - fix_us <= self.max_age_us).then_some(position)
    }

    /// The newest fix, for checkpoints: a resumed replay positions its first records.
    pub fn latest(&self) -> Option<(i64, f64, f64)> {
        self.fixes
            .last_key_value()
            .map(|(&t, &(lat, lon))| (t, lat, lon))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_newest_fix_not_after_the_record_within_the_age() {
        let mut join = PositionJoin::new(5_000_000);
        join.add(10_000_000, -22.0, -17.9);
        join.add(11_000_000, -22.1, -18.0);
        assert_eq!(join.at(9_999_999), None, "no fix before");
        assert_eq!(join.at(10_500_000), Some((-22.0, -17.9)));
        assert_eq!(join.at(16_000_000), Some((-22.1, -18.0)));
        assert_eq!(join.at(16_000_001), None, "too old");
        // A fix that arrives late still positions the records after it.
        join.add(12_000_000, -22.2, -18.1);
        assert_eq!(join.at(12_500_000), Some((-22.2, -18.1)));
        assert_eq!(join.latest(), Some((12_000_000, -22.2, -18.1)));
    }
}
