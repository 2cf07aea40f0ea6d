//! [`AggregateView`]: the current value of every aggregate, kept from the changelogs of
//! [`aggregates`](crate::dataflow::aggregates) and
//! [`distinct_values`](crate::dataflow::distinct_values). Plain data, no I/O: the pipeline
//! keeps one per worker (each worker owns a disjoint set of keys) for the HTTP export.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use oceanflow_config::{BucketWidth, CalendarPart};

use crate::agg::Stats;
use crate::calendar::bucket_end;
use crate::keys::GroupKey;

/// One change of an aggregate: `((key, value), time, diff)`.
pub type AggregateChange<T = i64> = ((GroupKey, Stats), T, isize);

/// One change of the distinct values: `((region, field, value), time, diff)`.
pub type DistinctChange<T = i64> = (crate::keys::DistinctKey, T, isize);

/// The current aggregates, by family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggregateView {
    stations: BTreeMap<String, Stats>,
    /// `(width, station, start)`: the series of one (width, station) are contiguous.
    buckets: BTreeMap<(BucketWidth, Option<String>, i64), Stats>,
    calendar: BTreeMap<(CalendarPart, u32), Stats>,
    regions: BTreeMap<u32, Stats>,
    /// The distinct values present per `(region, field)`.
    distinct: BTreeMap<(u32, u32), BTreeSet<String>>,
}

impl AggregateView {
    /// An empty view.
    pub fn new() -> AggregateView {
        AggregateView::default()
    }

    /// Applies a changelog: positive diffs insert or replace the key's value, negative diffs
    /// remove it only if it is still the stored value (so `-old, +new` of one time may come in
    /// either order). Changes are applied in time order (stable within a time), so one call
    /// may hold several times; later calls must not hold earlier times than earlier calls.
    pub fn apply_changes<T: Ord>(&mut self, changes: &[AggregateChange<T>]) {
        for ((key, value), _, diff) in in_time_order(changes) {
            match key {
                GroupKey::Station(name) => apply(&mut self.stations, name.clone(), value, *diff),
                GroupKey::Bucket {
                    width,
                    start_us,
                    station,
                } => apply(
                    &mut self.buckets,
                    (*width, station.clone(), *start_us),
                    value,
                    *diff,
                ),
                GroupKey::Calendar { part, value: v } => {
                    apply(&mut self.calendar, (*part, *v), value, *diff)
                }
                GroupKey::Region(r) => apply(&mut self.regions, *r, value, *diff),
            }
        }
    }

    /// Applies a changelog of distinct values ([`distinct_values`](crate::dataflow::distinct_values)):
    /// `+1` adds a value, `-1` removes it.
    pub fn apply_distinct<T>(&mut self, changes: &[DistinctChange<T>]) {
        for ((region, field, value), _, diff) in changes {
            let values = self.distinct.entry((*region, *field)).or_default();
            match diff.cmp(&0) {
                Ordering::Greater => {
                    values.insert(value.clone());
                }
                Ordering::Less => {
                    values.remove(value);
                }
                Ordering::Equal => {}
            }
            if values.is_empty() {
                self.distinct.remove(&(*region, *field));
            }
        }
    }

    /// The buckets of `width` (all stations) that end at or before `older_than_us` — whose
    /// every instant is older than the horizon — with their values. Feeding
    /// [`Stats::retraction`] of each into the dataflow removes them from its state, and its
    /// changelog then removes them from this view.
    pub fn expired_buckets(
        &self,
        width: BucketWidth,
        older_than_us: i64,
    ) -> Vec<(GroupKey, Stats)> {
        self.buckets
            .range((width, None, i64::MIN)..)
            .take_while(|((w, _, _), _)| *w == width)
            .filter(|((_, _, start), _)| {
                bucket_end(width, *start).is_some_and(|end| end <= older_than_us)
            })
            .map(|((width, station, start_us), stats)| {
                let key = GroupKey::Bucket {
                    width: *width,
                    start_us: *start_us,
                    station: station.clone(),
                };
                (key, stats.clone())
            })
            .collect()
    }

    /// Every aggregate as `(key, value)`: what a checkpoint stores.
    pub fn groups(&self) -> impl Iterator<Item = (GroupKey, &Stats)> {
        let stations = self
            .stations
            .iter()
            .map(|(name, s)| (GroupKey::Station(name.clone()), s));
        let buckets = self.buckets.iter().map(|((width, station, start), s)| {
            let key = GroupKey::Bucket {
                width: *width,
                start_us: *start,
                station: station.clone(),
            };
            (key, s)
        });
        let calendar = self.calendar.iter().map(|((part, value), s)| {
            (
                GroupKey::Calendar {
                    part: *part,
                    value: *value,
                },
                s,
            )
        });
        let regions = self.regions.iter().map(|(r, s)| (GroupKey::Region(*r), s));
        stations.chain(buckets).chain(calendar).chain(regions)
    }

    /// Every distinct value present, as `(region, field, value)`.
    pub fn distinct_values(&self) -> impl Iterator<Item = (u32, u32, &str)> {
        self.distinct.iter().flat_map(|((region, field), values)| {
            values.iter().map(move |v| (*region, *field, v.as_str()))
        })
    }

    /// Merges `other`, e.g. the view of another worker; `other`'s value wins for an aggregate
    /// held by both (workers own disjoint keys, so that does not happen in the pipeline).
    pub fn extend_from(&mut self, other: &AggregateView) {
        self.stations.extend(other.stations.clone());
        self.buckets.extend(other.buckets.clone());
        self.calendar.extend(other.calendar.clone());
        self.regions.extend(other.regions.clone());
        // Distinct values are spread over workers by value, so a (region, field) can be on
        // several: union the sets.
        for (key, values) in &other.distinct {
            self.distinct
                .entry(*key)
                .or_default()
                .extend(values.iter().cloned());
        }
    }

    /// The value of one key.
    pub fn get(&self, key: &GroupKey) -> Option<&Stats> {
        match key {
            GroupKey::Station(name) => self.stations.get(name),
            GroupKey::Bucket {
                width,
                start_us,
                station,
            } => self.buckets.get(&(*width, station.clone(), *start_us)),
            GroupKey::Calendar { part, value } => self.calendar.get(&(*part, *value)),
            GroupKey::Region(r) => self.regions.get(r),
        }
    }

    /// Per-station aggregates, by station name.
    pub fn stations(&self) -> impl Iterator<Item = (&str, &Stats)> {
        self.stations.iter().map(|(name, s)| (name.as_str(), s))
    }

    /// Bucket aggregates as `(width, station, start_us, stats)`, ordered by width, then
    /// station (`None`, the all-stations series, first), then start.
    pub fn buckets(&self) -> impl Iterator<Item = (BucketWidth, Option<&str>, i64, &Stats)> {
        self.buckets
            .iter()
            .map(|((w, station, start), s)| (*w, station.as_deref(), *start, s))
    }

    /// Calendar aggregates as `(part, value, stats)`, ordered by part then value.
    pub fn calendar(&self) -> impl Iterator<Item = (CalendarPart, u32, &Stats)> {
        self.calendar.iter().map(|((p, v), s)| (*p, *v, s))
    }

    /// Regional aggregates by region id.
    pub fn regions(&self) -> impl Iterator<Item = (u32, &Stats)> {
        self.regions.iter().map(|(r, s)| (*r, s))
    }

    /// Distinct counts as `((region, field), count)`.
    pub fn distinct_counts(&self) -> impl Iterator<Item = ((u32, u32), usize)> + '_ {
        self.distinct.iter().map(|(k, values)| (*k, values.len()))
    }

    /// Keys held per family: station, temporal (buckets and calendar parts), regional,
    /// distinct counts.
    pub fn key_counts(&self) -> [usize; 4] {
        [
            self.stations.len(),
            self.buckets.len() + self.calendar.len(),
            self.regions.len(),
            self.distinct.len(),
        ]
    }

    /// Keys held, over every family.
    pub fn len(&self) -> usize {
        self.stations.len()
            + self.buckets.len()
            + self.calendar.len()
            + self.regions.len()
            + self.distinct.len()
    }

    /// Whether the view holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `changes` sorted by time, stably (a stable sort keeps the order within a time).
fn in_time_order<D, T: Ord, R>(changes: &[(D, T, R)]) -> Vec<&(D, T, R)> {
    let mut ordered: Vec<_> = changes.iter().collect();
    ordered.sort_by(|a, b| a.1.cmp(&b.1));
    ordered
}

/// Insert or replace on a positive diff; remove-if-still-equal on a negative one.
fn apply<K: Ord, V: Ord + Clone>(map: &mut BTreeMap<K, V>, key: K, value: &V, diff: isize) {
    match diff.cmp(&0) {
        Ordering::Greater => {
            map.insert(key, value.clone());
        }
        Ordering::Less => {
            if map
                .get(&key)
                .is_some_and(|v| v.cmp(value) == Ordering::Equal)
            {
                map.remove(&key);
            }
        }
        Ordering::Equal => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::VarStats;
    use crate::calendar::DAY_US;

    fn stats(count: u64) -> Stats {
        Stats {
            count,
            vars: vec![VarStats::of(count as f64)],
            retracted: 0,
        }
    }

    fn bucket(width: BucketWidth, start_us: i64, station: Option<&str>) -> GroupKey {
        GroupKey::Bucket {
            width,
            start_us,
            station: station.map(str::to_string),
        }
    }

    #[test]
    fn replacement_in_either_order() {
        let key = GroupKey::Station("a".into());
        let mut view = AggregateView::new();
        view.apply_changes(&[((key.clone(), stats(1)), 0, 1)]);
        // +new before -old.
        view.apply_changes(&[
            ((key.clone(), stats(2)), 1, 1),
            ((key.clone(), stats(1)), 1, -1),
        ]);
        assert_eq!(view.get(&key), Some(&stats(2)));
        // -old before +new.
        view.apply_changes(&[
            ((key.clone(), stats(2)), 2, -1),
            ((key.clone(), stats(3)), 2, 1),
        ]);
        assert_eq!(view.get(&key), Some(&stats(3)));
        // A retraction of a value no longer stored does nothing; of the stored one removes.
        view.apply_changes(&[((key.clone(), stats(2)), 3, -1)]);
        assert_eq!(view.stations().count(), 1);
        view.apply_changes(&[((key.clone(), stats(3)), 3, -1)]);
        assert!(view.is_empty());
    }

    #[test]
    fn changes_of_several_times_in_one_call_apply_in_time_order() {
        let key = GroupKey::Region(4);
        let mut view = AggregateView::new();
        view.apply_changes(&[
            ((key.clone(), stats(1)), 5, -1),
            ((key.clone(), stats(2)), 5, 1),
            ((key.clone(), stats(1)), 4, 1),
        ]);
        assert_eq!(view.regions().collect::<Vec<_>>(), vec![(4, &stats(2))]);
    }

    #[test]
    fn distinct_counts_follow_their_changelog() {
        let mut view = AggregateView::new();
        let value = |v: &str| (0, 1, v.to_string());
        view.apply_distinct(&[(value("cod"), 0, 1), (value("ling"), 0, 1)]);
        view.apply_distinct(&[(value("hake"), 1, 1), (value("ling"), 1, -1)]);
        assert_eq!(
            view.distinct_counts().collect::<Vec<_>>(),
            vec![((0, 1), 2)]
        );
        assert_eq!(
            view.distinct_values().collect::<Vec<_>>(),
            vec![(0, 1, "cod"), (0, 1, "hake")]
        );
        assert_eq!(view.len(), 1);
    }

    #[test]
    fn expiry_drops_buckets_ending_before_the_horizon() {
        let mut view = AggregateView::new();
        let day = BucketWidth::Day;
        view.apply_changes(&[
            ((bucket(day, 0, None), stats(1)), 0, 1),
            ((bucket(day, 0, Some("s")), stats(1)), 0, 1),
            ((bucket(day, DAY_US, None), stats(1)), 0, 1),
            ((bucket(BucketWidth::Hour, 0, None), stats(1)), 0, 1),
            (
                (
                    GroupKey::Calendar {
                        part: CalendarPart::HourOfDay,
                        value: 0,
                    },
                    stats(1),
                ),
                0,
                1,
            ),
        ]);
        assert!(view.expired_buckets(day, DAY_US - 1).is_empty());
        let expired = view.expired_buckets(day, DAY_US);
        let keys: Vec<_> = expired.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![bucket(day, 0, None), bucket(day, 0, Some("s"))]);
        // The dataflow answers the retractions with `-old` and no new value.
        let removals: Vec<_> = expired.into_iter().map(|kv| (kv, 1, -1)).collect();
        view.apply_changes(&removals);
        let left: Vec<_> = view.buckets().map(|(w, s, t, _)| (w, s, t)).collect();
        assert_eq!(
            left,
            vec![(BucketWidth::Hour, None, 0), (day, None, DAY_US)]
        );
        assert_eq!(view.calendar().count(), 1);
        let stored: Vec<_> = view.groups().map(|(k, s)| (k, s.clone())).collect();
        let mut copy = AggregateView::new();
        copy.apply_changes(&stored.into_iter().map(|kv| (kv, 0, 1)).collect::<Vec<_>>());
        assert_eq!(copy, view);
    }

    #[test]
    fn views_of_workers_merge() {
        let mut a = AggregateView::new();
        a.apply_changes(&[((GroupKey::Region(0), stats(1)), 0, 1)]);
        let mut b = AggregateView::new();
        b.apply_changes(&[((GroupKey::Region(1), stats(2)), 0, 1)]);
        a.extend_from(&b);
        assert_eq!(a.regions().count(), 2);
        assert_eq!(a.get(&GroupKey::Region(1)), Some(&stats(2)));
    }
}
