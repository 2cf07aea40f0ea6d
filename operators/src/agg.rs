//! The aggregate diff: count, mean and sum of squared deviations (and min/max) per variable,
//! carried as a differential-dataflow difference so state is one value per key.
//!
//! Merging uses Chan et al.'s pairwise update of (n, mean, M2) rather than raw sums of
//! squares: it gives the same mean and variance, but does not lose precision when values sit
//! far from zero (pressures, epoch-like depths). Min/max make the type a semigroup only: the
//! inputs are insert-only, which is what the design allows for them.

use std::cmp::Ordering;

use differential_dataflow::difference::{IsZero, Monoid, Semigroup};
use serde::{Deserialize, Serialize};

/// Moments of one variable over a set of observations (nulls excluded).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VarStats {
    /// Non-null values seen.
    pub count: u64,
    /// Mean of the values (0 when `count` is 0).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
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
        mean: 0.0,
        m2: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    /// The statistics of a single value.
    pub fn of(value: f64) -> VarStats {
        VarStats {
            count: 1,
            mean: value,
            m2: 0.0,
            min: value,
            max: value,
        }
    }

    /// From the moments of `count` values: their mean, sum of squared deviations from it
    /// (`m2`), minimum and maximum (e.g. statistics stored by an older checkpoint format).
    pub fn from_moments(count: u64, mean: f64, m2: f64, min: f64, max: f64) -> VarStats {
        VarStats {
            count,
            mean,
            m2,
            min,
            max,
        }
    }

    /// From a shifted sum and sum of squares: `sum = Σ(x-shift)`, `sum_sq = Σ(x-shift)²`.
    /// The shift keeps the single-pass batch accumulation precise (shift ≈ a typical value).
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
        let n = count as f64;
        let mean_shifted = sum / n;
        VarStats {
            count,
            mean: shift + mean_shifted,
            m2: (sum_sq - sum * mean_shifted).max(0.0),
            min,
            max,
        }
    }

    /// Adds the observations summarised by `other`.
    pub fn merge(&mut self, other: &VarStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Mean, or `None` without values.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
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
                let o = a
                    .count
                    .cmp(&b.count)
                    .then(a.mean.total_cmp(&b.mean))
                    .then(a.m2.total_cmp(&b.m2))
                    .then(a.min.total_cmp(&b.min))
                    .then(a.max.total_cmp(&b.max));
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

    #[test]
    fn merge_is_associative_and_commutative_up_to_rounding() {
        let (a, b, c) = (of(&[1.0, 2.0]), of(&[1e6, 1e6 + 1.0, 7.0]), of(&[-3.5]));
        let mut left = a;
        left.merge(&b);
        left.merge(&c);
        let mut bc = b;
        bc.merge(&c);
        let mut right = a;
        right.merge(&bc);
        let mut swapped = c;
        swapped.merge(&a);
        swapped.merge(&b);
        for other in [right, swapped] {
            assert_eq!(left.count, other.count);
            assert!(close(left.mean, other.mean));
            assert!(close(left.m2, other.m2));
            assert_eq!((left.min, left.max), (other.min, other.max));
        }
    }

    #[test]
    fn shifted_sums_are_precise_far_from_zero() {
        let xs = [101_325.0, 101_325.5, 101_324.5, 101_326.0];
        let shift = xs[0];
        let sum: f64 = xs.iter().map(|x| x - shift).sum();
        let sum_sq: f64 = xs.iter().map(|x| (x - shift).powi(2)).sum();
        let s = VarStats::from_shifted_sums(4, shift, sum, sum_sq, 101_324.5, 101_326.0);
        let reference = of(&xs);
        assert!(close(s.mean, reference.mean));
        assert!(close(s.m2, reference.m2));
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
