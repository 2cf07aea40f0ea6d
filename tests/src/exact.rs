//! Exactly rounded summation of f64 values (Shewchuk's partials, as Python's `math.fsum`): the
//! oracle's sums carry no accumulated rounding, so a group near 1e9 ± 1e-3 keeps its spread.

/// The sum of `values` rounded once, to nearest. Partials overflowing to ±inf give ±inf.
pub fn exact_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    // Non-overlapping partials, increasing magnitude; their exact sum is the running sum.
    let mut partials: Vec<f64> = Vec::new();
    for mut x in values {
        let mut kept = 0;
        for i in 0..partials.len() {
            let mut y = partials[i];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        partials.truncate(kept);
        partials.push(x);
    }
    round_partials(&partials)
}

/// Adds the partials from the largest down, correcting the final rounding as `math.fsum` does
/// (a half-way case between the top partials is decided by the sign of the next one).
fn round_partials(p: &[f64]) -> f64 {
    let Some(mut n) = p.len().checked_sub(1) else {
        return 0.0;
    };
    let mut hi = p[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = p[n];
        hi = x + y;
        lo = y - (hi - x);
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if y == x - hi {
            hi = x;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exactly_rounded() {
        assert_eq!(exact_sum([]), 0.0);
        assert_eq!(exact_sum([1e100, 1.0, -1e100]), 1.0);
        assert_eq!(exact_sum([0.1; 10]), 1.0);
        // 1e16 + 1 is a tie (to even: 1e16); a tiny third term decides it upwards.
        assert_eq!(exact_sum([1e16, 1.0]), 1e16);
        assert_eq!(exact_sum([1e16, 1.0, 1e-16]), 1.0000000000000002e16);
        // Near 1e9 the naive sum drifts; the exact one equals the sum of the offsets.
        let offsets: Vec<f64> = (0..1000).map(|i| (i % 7) as f64 * 0.125).collect();
        let values: Vec<f64> = offsets.iter().map(|d| 1e9 + d).collect();
        assert_eq!(exact_sum(values), 1e12 + exact_sum(offsets));
    }
}
