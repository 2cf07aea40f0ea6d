//! The differential part: partial aggregates (as differences) in, accumulated aggregates out,
//! both as changelogs.
//!
//! Partials arrive as updates `(key, time, Stats)`; differential accumulates the differences
//! of a key (its state is one `Stats` per key, not one entry per record) and, when a time
//! completes, reports the key's new accumulated value with `+1` and its previous value with
//! `-1`. Keys are exchanged by hash, so with several workers each key lives on one worker.

use differential_dataflow::difference::Semigroup;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use timely::progress::Timestamp;

use crate::agg::Stats;
use crate::keys::{DistinctKey, GroupKey};

/// The accumulated [`Stats`] of every key, as a changelog: for each time at which a key's
/// value changes, `((key, new), t, +1)` and (unless the key is new) `((key, old), t, -1)`.
///
/// Operators: `Arrange: Aggregates`, `Aggregates`.
///
/// # Examples
///
/// ```
/// use differential_dataflow::input::Input;
/// use oceanflow_operators::dataflow::aggregates;
/// use oceanflow_operators::{GroupKey, Stats, VarStats};
/// use timely::dataflow::operators::capture::{Capture, Extract};
///
/// let one = |x: f64| Stats { count: 1, vars: vec![VarStats::of(x)], retracted: 0 };
/// let captured = timely::example(move |scope| {
///     let key = GroupKey::Region(0);
///     let (_input, partials) = scope.new_collection_from_raw(vec![
///         (key.clone(), 0u64, one(1.0)),
///         (key.clone(), 1u64, one(3.0)),
///     ]);
///     aggregates(partials).inner.capture()
/// });
/// let mut changes: Vec<_> = captured.extract().into_iter().flat_map(|(_, c)| c).collect();
/// changes.sort_by_key(|(_, t, d)| (*t, *d));
/// // Time 0: count 1, mean 1. Time 1: the old value retracted, count 2, mean 2.
/// assert_eq!(changes.len(), 3);
/// assert_eq!((changes[0].0 .1.count, changes[0].2), (1, 1));
/// assert_eq!((changes[1].0 .1.count, changes[1].1, changes[1].2), (1, 1, -1));
/// assert_eq!((changes[2].0 .1.count, changes[2].0 .1.vars[0].mean()), (2, Some(2.0)));
/// ```
pub fn aggregates<'scope, T>(
    partials: VecCollection<'scope, T, GroupKey, Stats>,
) -> VecCollection<'scope, T, (GroupKey, Stats), isize>
where
    T: Timestamp + Lattice + Ord,
{
    changelog(partials, "Aggregates")
}

/// The distinct `(region, field, value)` triples, as a changelog: `+1` when a triple is first
/// present, never `-1` for insert-only input. The input carries `+1` per batch in which a value
/// was present; repeats across batches (and workers) count once. The views keep the triples
/// (so a checkpoint can hold them) and count them per `(region, field)`.
///
/// Operators: `DistinctValues`.
///
/// # Examples
///
/// ```
/// use differential_dataflow::input::Input;
/// use oceanflow_operators::dataflow::distinct_values;
/// use timely::dataflow::operators::capture::{Capture, Extract};
///
/// let captured = timely::example(|scope| {
///     let (_input, values) = scope.new_collection_from_raw(vec![
///         ((0u32, 0u32, "cod".to_string()), 0u64, 1isize),
///         ((0, 0, "cod".to_string()), 0, 1),
///         ((0, 0, "haddock".to_string()), 0, 1),
///     ]);
///     distinct_values(values).inner.capture()
/// });
/// let mut present: Vec<_> = captured.extract().into_iter().flat_map(|(_, c)| c).collect();
/// present.sort();
/// assert_eq!(present, vec![
///     ((0, 0, "cod".to_string()), 0, 1),
///     ((0, 0, "haddock".to_string()), 0, 1),
/// ]);
/// ```
pub fn distinct_values<'scope, T>(
    values: VecCollection<'scope, T, DistinctKey, isize>,
) -> VecCollection<'scope, T, DistinctKey, isize>
where
    T: Timestamp + Lattice + Ord,
{
    values.threshold_named("DistinctValues", |_, count| isize::from(*count > 0))
}

/// The accumulated difference of every key as a changelog of `(key, accumulated)` records:
/// `count`, with the operators named after `name`.
fn changelog<'scope, T, K, R>(
    collection: VecCollection<'scope, T, K, R>,
    name: &str,
) -> VecCollection<'scope, T, (K, R), isize>
where
    T: Timestamp + Lattice + Ord,
    K: ExchangeData + Hashable,
    R: ExchangeData + Semigroup,
{
    collection
        .arrange_by_self_named(&format!("Arrange: {name}"))
        .reduce_abelian::<_, ValBuilder<K, R, T, isize>, ValSpine<K, R, T, isize>, _, _>(
            name,
            |_key, input, output| {
                if let Some((_, total)) = input.first() {
                    output.push((total.clone(), 1));
                }
            },
            |vec, key, updates| {
                vec.clear();
                vec.extend(
                    updates
                        .drain(..)
                        .map(|(value, t, r)| ((key.clone(), value), t, r)),
                );
            },
        )
        .as_collection(|key, value| (key.clone(), value.clone()))
}
