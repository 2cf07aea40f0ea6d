//! The aggregate diff: count, mean and sum of squared deviations (and min/max) per variable,
//! carried as a differential-dataflow difference so state is one value per key.
//!
//! Moments: each [`VarStats`] keeps its own *shift*, one input value of its group, and the mean
//! of the deviations from it and their M2 (sum of squared deviations from the mean). The
//! deviations are of the size of the group's spread, not of its values, so a group near
//! 1e9 ± 1e-3 keeps its spread to full precision, and a single value (deviation 0) has mean
//! exactly that value; a constant series has deviations, M2 and stddev exactly 0.
//!
//! Merging is Chan et al.'s pairwise update of (n, mean, M2), done in the deviations of one
//! operand's shift: the other's mean deviation is moved onto it by adding the difference of the
//! two shifts, which is exact when they are within a factor two of each other (Sterbenz), i.e.
//! whenever precision matters (shifts far apart mean a spread as large as the values). The
//! operands are put in a canonical order first, so `a.merge(b)` and `b.merge(a)` are equal bit
//! for bit; merging is associative only up to rounding. Min/max make the type a semigroup
//! only: the inputs are insert-only, which is what the design allows for them.

use std::cmp::Ordering;

use differential_dataflow::difference::{IsZero, Monoid, Semigroup};
use serde::{Deserialize, Serialize};

/// Moments of one variable over a set of observations (nulls excluded).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VarStats {
    /// Non-null values seen.
    pub count: u64,
    /// One of the values (0 when `count` is 0): the origin of the deviations below.
    shift: f64,
    /// Mean of the deviations `x - shift` (the mean is `shift + shifted_mean`).
    shifted_mean: f64,
    /// Sum of squared deviations from the mean.
    m2: f64,
    /// Smallest value (+inf when `count` is 0).
    pub min: f64,
    /// Largest value (-inf when `count` is 0).
    pub max: f64,
}

impl Default for VarStats {
    fn default() -> Self {
        VarStats::EMPTY
    }
}

impl VarStats {
    /// No values.
    pub const EMPTY: VarStats = VarStats {
        count: 0,
        shift: 0.0,
        shifted_mean: 0.0,
        m2: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    /// The statistics of a single value.
    pub fn of(value: f64) -> VarStats {
        VarStats {
            count: 1,
            shift: value,
            shifted_mean: 0.0,
            m2: 0.0,
            min: value,
            max: value,
        }
    }

    /// From a plain mean and M2 (e.g. moments stored without a shift); the mean becomes the
    /// shift. `count` 0 gives [`VarStats::EMPTY`].
    pub fn from_moments(count: u64, mean: f64, m2: f64, min: f64, max: f64) -> VarStats {
        if count == 0 {
            return VarStats::EMPTY;
        }
        VarStats {
            count,
            shift: mean,
            shifted_mean: 0.0,
            m2: m2.max(0.0),
            min,
            max,
        }
    }

    /// From sums of deviations from `shift`: `sum = Σ(x-shift)`, `sum_sq = Σ(x-shift)²`.
    /// `shift` should be one of the values (pre-aggregation takes the group's first), so the
    /// deviations, and the cancellation in `sum_sq - sum²/n`, stay of the size of the spread.
    pub fn from_shifted_sums(
        count: u64,
        shift: f64,
        sum: f64,
        sum_sq: f64,
        min: f64,
        max: f64,
    ) -> VarStats {
        if count == 0 {
            return VarStats::EMPTY;
        }
        let shifted_mean = sum / count as f64;
        VarStats {
            count,
            shift,
            shifted_mean,
            m2: (sum_sq - sum * shifted_mean).max(0.0),
            min,
            max,
        }
    }

    /// Adds the observations summarised by `other`. Commutative bit for bit.
    pub fn merge(&mut self, other: &VarStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (a, b) = match self.total_cmp(other) {
            Ordering::Greater => (*other, *self),
            _ => (*self, *other),
        };
        let (na, nb) = (a.count as f64, b.count as f64);
        let n = na + nb;
        // b's mean deviation, moved onto a's shift (the shift difference is exact when the
        // shifts are close, by Sterbenz).
        let b_mean = b.shifted_mean + (b.shift - a.shift);
        let delta = b_mean - a.shifted_mean;
        *self = VarStats {
            count: a.count + b.count,
            shift: a.shift,
            shifted_mean: a.shifted_mean + delta * (nb / n),
            m2: a.m2 + b.m2 + delta * delta * (na * nb / n),
            min: a.min.min(b.min),
            max: a.max.max(b.max),
        };
    }

    /// A total order on every field (floats by `total_cmp`): the canonical operand order of
    /// [`VarStats::merge`] and the order of differences.
    fn total_cmp(&self, other: &VarStats) -> Ordering {
        self.shift
            .total_cmp(&other.shift)
            .then(self.count.cmp(&other.count))
            .then(self.shifted_mean.total_cmp(&other.shifted_mean))
            .then(self.m2.total_cmp(&other.m2))
            .then(self.min.total_cmp(&other.min))
            .then(self.max.total_cmp(&other.max))
    }

    /// Mean, or `None` without values.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.shift + self.shifted_mean)
    }

    /// Sum of squared deviations from the mean (0 without values).
    pub fn m2(&self) -> f64 {
        self.m2
    }

    /// Sample standard deviation (n − 1, as pandas), `None` below two values.
    pub fn stddev(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2 / (self.count - 1) as f64).sqrt())
    }

    /// Minimum, or `None` without values.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Maximum, or `None` without values.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }
}

/// The diff of every aggregate: the number of observations and per-variable moments, in the
/// order of the configured variables.
///
/// Min/max have no inverse, so a key cannot be taken back observation by observation. What
/// retention needs is coarser: take back a key's *whole* accumulated value. `retracted` does
/// that — a key whose accumulation has `retracted == count` is zero, so differential drops it
/// from its arrangements and the changelog retracts it from the views.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Observations (rows), whatever their variables hold.
    pub count: u64,
    /// One entry per configured variable.
    pub vars: Vec<VarStats>,
    /// Observations taken back by [`Stats::retraction`]; non-zero only while a key expires.
    #[serde(default)]
    pub retracted: u64,
}

impl Stats {
    /// An empty aggregate over `variables` variables.
    pub fn empty(variables: usize) -> Stats {
        Stats {
            count: 0,
            vars: vec![VarStats::EMPTY; variables],
            retracted: 0,
        }
    }

    /// The difference that takes back the whole accumulated value `total` of a key: added to
    /// the key's accumulation it makes it zero (used to expire buckets past retention).
    pub fn retraction(total: &Stats) -> Stats {
        Stats {
            count: 0,
            vars: Vec::new(),
            retracted: total.count.saturating_sub(total.retracted),
        }
    }

    /// Adds the observations summarised by `other`.
    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.retracted += other.retracted;
        if self.vars.len() < other.vars.len() {
            self.vars.resize(other.vars.len(), VarStats::EMPTY);
        }
        for (a, b) in self.vars.iter_mut().zip(&other.vars) {
            a.merge(b);
        }
    }
}

impl IsZero for Stats {
    fn is_zero(&self) -> bool {
        self.count == self.retracted
    }
}

impl Semigroup for Stats {
    fn plus_equals(&mut self, rhs: &Self) {
        self.merge(rhs);
    }
}

impl Monoid for Stats {
    fn zero() -> Self {
        Stats::default()
    }
}

// Differential needs a total order on differences (to sort updates); floats are ordered by
// `total_cmp`, so equal bit patterns compare equal and NaN cannot break sorting.
impl Eq for Stats {}

impl PartialOrd for Stats {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Stats {
    fn cmp(&self, other: &Self) -> Ordering {
        self.count.cmp(&other.count).then_with(|| {
            for (a, b) in self.vars.iter().zip(&other.vars) {
                let o = a.total_cmp(b);
                if o != Ordering::Equal {
                    return o;
                }
            }
            self.vars
                .len()
                .cmp(&other.vars.len())
                .then(self.retracted.cmp(&other.retracted))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[f64]) -> VarStats {
        let mut s = VarStats::EMPTY;
        for v in values {
            s.merge(&VarStats::of(*v));
        }
        s
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn merge_matches_two_pass_statistics() {
        let xs = [3.0, 7.5, -2.25, 10.0, 4.0, 4.0];
        let s = of(&xs);
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        assert_eq!(s.count, 6);
        assert!(close(s.mean().unwrap(), mean));
        assert!(close(s.stddev().unwrap(), var.sqrt()));
        assert_eq!(s.min(), Some(-2.25));
        assert_eq!(s.max(), Some(10.0));
    }

    /// `a` merged with `b`.
    fn merged(a: VarStats, b: &VarStats) -> VarStats {
        let mut out = a;
        out.merge(b);
        out
    }

    #[test]
    fn merge_is_associative_up_to_rounding() {
        let (a, b, c) = (of(&[1.0, 2.0]), of(&[1e6, 1e6 + 1.0, 7.0]), of(&[-3.5]));
        let left = merged(merged(a, &b), &c);
        let right = merged(a, &merged(b, &c));
        let swapped = merged(merged(c, &a), &b);
        for other in [right, swapped] {
            assert_eq!(left.count, other.count);
            assert!(close(left.mean().unwrap(), other.mean().unwrap()));
            assert!(close(left.m2(), other.m2()));
            assert_eq!((left.min, left.max), (other.min, other.max));
        }
    }

    #[test]
    fn merge_is_commutative_bit_for_bit() {
        let parts = [
            of(&[1e9 + 1e-3, 1e9 - 7e-4]),
            of(&[1e9 - 2e-4]),
            of(&[0.1, -0.3, 0.7]),
            of(&[-1e9, 1e9]),
            VarStats::EMPTY,
        ];
        for a in &parts {
            for b in &parts {
                let (ab, ba) = (merged(*a, b), merged(*b, a));
                assert_eq!(ab.total_cmp(&ba), Ordering::Equal, "{a:?} + {b:?}");
            }
        }
    }

    #[test]
    fn a_single_value_has_exactly_its_mean() {
        for x in [0.1, -1e9 - 1e-3, 5_000.000_1, f64::MIN_POSITIVE, 1e300] {
            let s = VarStats::of(x);
            assert_eq!(
                (s.mean(), s.stddev(), s.min(), s.max()),
                (Some(x), None, Some(x), Some(x))
            );
        }
        assert_eq!(VarStats::EMPTY.mean(), None);
    }

    #[test]
    fn a_constant_series_has_stddev_zero_after_merges_in_any_order() {
        for x in [0.1, -1e9 - 1e-3, 5_000.000_1, 1e300] {
            let parts = [of(&[x]), of(&[x, x, x]), of(&[x, x])];
            for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
                let left = order
                    .iter()
                    .fold(VarStats::EMPTY, |s, &i| merged(s, &parts[i]));
                let right = merged(parts[order[0]], &merged(parts[order[1]], &parts[order[2]]));
                for s in [left, right] {
                    assert_eq!((s.count, s.mean(), s.stddev()), (6, Some(x), Some(0.0)));
                }
            }
        }
    }

    #[test]
    fn shifts_are_converted_when_merging() {
        // Steps of 2^-10 (about 1e-3) above 1e9, exact in f64; the means alone (ulp 1.2e-7)
        // would lose the deviations after a few merges.
        let step = 2f64.powi(-10);
        let xs: Vec<f64> = (0..8).map(|i| 1e9 + f64::from(i) * step).collect();
        let (exact_mean, exact_m2) = (1e9 + 3.5 * step, 42.0 * step * step);
        let with_shift = |shift: f64| {
            let sum: f64 = xs.iter().map(|x| x - shift).sum();
            let sum_sq: f64 = xs.iter().map(|x| (x - shift).powi(2)).sum();
            VarStats::from_shifted_sums(8, shift, sum, sum_sq, xs[0], xs[7])
        };
        let (low, high) = (with_shift(xs[0]), with_shift(xs[7]));
        assert_ne!(low.shift, high.shift);
        let pairs = xs
            .chunks(2)
            .map(of)
            .fold(VarStats::EMPTY, |s, p| merged(s, &p));
        for s in [low, high, pairs, merged(of(&xs[..3]), &of(&xs[3..]))] {
            assert_eq!(s.mean(), Some(exact_mean), "{s:?}");
            assert!((s.m2() - exact_m2).abs() <= 1e-12 * exact_m2, "{s:?}");
        }
        let both = merged(low, &high);
        assert_eq!((both.count, both.mean()), (16, Some(exact_mean)));
        assert!((both.m2() - 2.0 * exact_m2).abs() <= 1e-12 * exact_m2);
    }

    #[test]
    fn shifted_sums_are_precise_far_from_zero() {
        let xs = [101_325.0, 101_325.5, 101_324.5, 101_326.0];
        let shift = xs[0];
        let sum: f64 = xs.iter().map(|x| x - shift).sum();
        let sum_sq: f64 = xs.iter().map(|x| (x - shift).powi(2)).sum();
        let s = VarStats::from_shifted_sums(4, shift, sum, sum_sq, 101_324.5, 101_326.0);
        let reference = of(&xs);
        assert!(close(s.mean().unwrap(), reference.mean().unwrap()));
        assert!(close(s.m2(), reference.m2()));
    }

    #[test]
    fn plain_moments_are_taken_as_they_are() {
        let s = VarStats::from_moments(3, 2.5, 8.0, 1.0, 4.0);
        assert_eq!(
            (s.mean(), s.stddev(), s.min(), s.max()),
            (Some(2.5), Some(2.0), Some(1.0), Some(4.0))
        );
        assert_eq!(
            VarStats::from_moments(0, 9.0, 1.0, 9.0, 9.0),
            VarStats::EMPTY
        );
    }

    #[test]
    fn stats_zero_and_empty_identity() {
        let mut s = Stats::zero();
        assert!(s.is_zero());
        let other = Stats {
            count: 2,
            vars: vec![of(&[1.0, 3.0])],
            retracted: 0,
        };
        s.plus_equals(&other);
        assert_eq!(s, other);
        assert!(!s.is_zero());
    }

    #[test]
    fn retraction_makes_the_accumulation_zero_in_any_order() {
        let (a, b) = (
            Stats {
                count: 2,
                vars: vec![of(&[1.0, 3.0])],
                retracted: 0,
            },
            Stats {
                count: 1,
                vars: vec![of(&[9.0])],
                retracted: 0,
            },
        );
        let mut total = a.clone();
        total.plus_equals(&b);
        let undo = Stats::retraction(&total);
        assert!(!undo.is_zero());
        let mut first = undo.clone();
        first.plus_equals(&a);
        assert!(!first.is_zero());
        first.plus_equals(&b);
        assert!(first.is_zero());
        let mut last = total;
        last.plus_equals(&undo);
        assert!(last.is_zero());
    }
}
