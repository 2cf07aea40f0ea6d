//! Retention: taking temporal buckets past their horizon out of the dataflow (and so out of the
//! views), so state stays bounded over a long cruise.
//!
//! A service expires buckets as the event-time frontier moves: at most once per hour of event
//! time, never while the previous retractions are in flight (a key must not be taken back
//! twice), and rows older than the strictest horizon are rejected from then on (the floor), so
//! an expired bucket cannot come back with a partial value.
//!
//! A bounded run (`--once`) must give an output that is a function of its rows alone, however
//! they are split and however fast they are read, so it judges nothing by a frontier that
//! depends on timing. Retention there runs against the *newest accepted event time* minus the
//! allowed lateness, which only grows: a bucket expired while reading would also be expired at
//! the end. No row is rejected for age (there is no floor), so a row that lands in an expired
//! bucket recreates it with a partial value — and the final pass, once every row is in, expires
//! every bucket past the final frontier, whatever its state. Memory stays bounded while reading,
//! and the output depends only on the rows.

use std::time::Duration;

use oceanflow_config::{BucketWidth, ValidConfig};
use oceanflow_operators::calendar::HOUR_US;
use oceanflow_operators::view::AggregateView;
use oceanflow_operators::{GroupKey, Stats};

/// Microseconds of a duration, saturating.
pub(crate) fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The retention rules of a run and what has been applied so far.
#[derive(Debug, Clone)]
pub(crate) struct Retention {
    /// `(bucket width, how long its buckets are kept)` in µs of event time.
    rules: Vec<(BucketWidth, i64)>,
    /// The strictest horizon applied so far: rows older than this are too late.
    floor: i64,
    /// Frontier of the last pass.
    expired_at: i64,
}

/// The buckets of one width that a pass expires, with the differences that take them back.
pub(crate) struct Expired {
    /// Their width.
    pub width: BucketWidth,
    /// `(key, retraction)` per expired bucket.
    pub retractions: Vec<(GroupKey, Stats)>,
}

impl Retention {
    /// The rules of `config` (`[aggregates.temporal.retention]`).
    pub fn from_config(config: &ValidConfig) -> Retention {
        Retention::new(
            config
                .config()
                .aggregates
                .temporal
                .retention
                .iter()
                .map(|(width, keep)| (*width, duration_us(*keep))),
        )
    }

    /// Retention with the given `(width, keep µs)` rules.
    pub fn new(rules: impl IntoIterator<Item = (BucketWidth, i64)>) -> Retention {
        Retention {
            rules: rules.into_iter().collect(),
            floor: i64::MIN,
            expired_at: i64::MIN,
        }
    }

    /// Rows older than this are too late (`i64::MIN` before the first pass).
    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// Whether a live pass is due at event-time `frontier`: there are rules, the frontier is
    /// known and finite, and it moved an hour past the previous pass.
    pub fn due(&self, frontier: i64) -> bool {
        !self.rules.is_empty()
            && frontier != i64::MIN
            && frontier != i64::MAX
            && frontier >= self.expired_at.saturating_add(HOUR_US)
    }

    /// Expires the buckets of `view` whose end is at or before `frontier - keep`, and raises
    /// the floor to the strictest horizon.
    pub fn expire(&mut self, view: &AggregateView, frontier: i64) -> Vec<Expired> {
        self.expired_at = frontier;
        let mut out = Vec::new();
        for &(width, keep) in &self.rules {
            let horizon = frontier.saturating_sub(keep);
            self.floor = self.floor.max(horizon);
            let expired = view.expired_buckets(width, horizon);
            if expired.is_empty() {
                continue;
            }
            out.push(Expired {
                width,
                retractions: expired
                    .into_iter()
                    .map(|(key, stats)| {
                        let undo = Stats::retraction(&stats);
                        (key, undo)
                    })
                    .collect(),
            });
        }
        out
    }
}

/// The final event-time frontier of a bounded run: the newest accepted event time minus the
/// allowed lateness (`None` when nothing was accepted).
pub(crate) fn final_frontier(max_event_us: i64, lateness_us: i64) -> Option<i64> {
    (max_event_us != i64::MIN).then(|| max_event_us.saturating_sub(lateness_us))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oceanflow_operators::VarStats;

    const DAY: i64 = 24 * HOUR_US;

    fn view_with_hours(hours: impl IntoIterator<Item = i64>) -> AggregateView {
        let mut view = AggregateView::new();
        let changes: Vec<_> = hours
            .into_iter()
            .map(|h| {
                let key = GroupKey::Bucket {
                    width: BucketWidth::Hour,
                    start_us: h * HOUR_US,
                    station: None,
                };
                let stats = Stats {
                    count: 2,
                    vars: vec![VarStats::of(1.0)],
                    retracted: 0,
                };
                ((key, stats), 1u64, 1isize)
            })
            .collect();
        view.apply_changes(&changes);
        view
    }

    #[test]
    fn buckets_ending_at_or_before_the_horizon_expire_and_raise_the_floor() {
        let view = view_with_hours(0..48);
        let mut retention = Retention::new([(BucketWidth::Hour, DAY)]);
        // Frontier at hour 48: the horizon is hour 24; buckets 0..=23 end at or before it.
        assert!(retention.due(48 * HOUR_US));
        let expired = retention.expire(&view, 48 * HOUR_US);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].retractions.len(), 24);
        let (key, undo) = &expired[0].retractions[23];
        assert!(matches!(key, GroupKey::Bucket { start_us, .. } if *start_us == 23 * HOUR_US));
        assert_eq!((undo.count, undo.retracted), (0, 2));
        assert_eq!(retention.floor(), 24 * HOUR_US);
        // The next pass is due an hour of event time later, not before.
        assert!(!retention.due(48 * HOUR_US + HOUR_US - 1));
        assert!(retention.due(49 * HOUR_US));
    }

    #[test]
    fn no_rules_or_an_unknown_frontier_never_expire() {
        assert!(!Retention::new([]).due(10 * DAY));
        let retention = Retention::new([(BucketWidth::Hour, DAY)]);
        assert!(!retention.due(i64::MIN));
        assert!(!retention.due(i64::MAX));
    }

    #[test]
    fn the_final_frontier_is_the_newest_event_minus_the_lateness() {
        assert_eq!(final_frontier(i64::MIN, HOUR_US), None);
        assert_eq!(final_frontier(10 * HOUR_US, HOUR_US), Some(9 * HOUR_US));
        assert_eq!(final_frontier(i64::MIN + 1, i64::MAX), Some(i64::MIN));
    }
}
