//! Smooth weighted round robin (the interleaving nginx uses): for weights
//! 5,1,1 it yields a a b a c a a rather than a a a a a b c, so a heavy backend
//! never gets a burst.

/// The schedule for one cycle: `sum(weights)` slots, each a backend index.
/// Weights are reduced by their greatest common divisor first.
pub fn smooth_weighted(weights: &[u32]) -> Vec<usize> {
    let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let reduced: Vec<i64> = weights.iter().map(|&w| i64::from(w / g)).collect();
    let total: i64 = reduced.iter().sum();
    let mut current = vec![0i64; reduced.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&reduced) {
            *c += w;
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i)))
        else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_by_weight() {
        assert_eq!(smooth_weighted(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn reduces_by_gcd_and_counts_match_weights() {
        let s = smooth_weighted(&[300, 100]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
    }

    #[test]
    fn zero_weights_are_never_chosen() {
        assert_eq!(smooth_weighted(&[0, 2]), vec![1]);
        assert!(smooth_weighted(&[0, 0]).is_empty());
    }
}
