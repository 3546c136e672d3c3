//! Weighted random placement of new users on shards: a shard with twice the weight gets twice
//! the new users, on average. Pure code; reproducible with a seed (ChaCha8's stream is stable
//! across releases, so `--seed` means the same placement tomorrow).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct WeightedChooser<T> {
    items: Vec<T>,
    /// Running totals of the weights; the last is the sum.
    cumulative: Vec<f64>,
    rng: ChaCha8Rng,
}

impl<T: Copy> WeightedChooser<T> {
    /// Items with positive finite weights; None when there are none.
    pub fn new(weighted: &[(T, f64)], seed: Option<u64>) -> Option<WeightedChooser<T>> {
        let mut total = 0.0;
        let mut items = Vec::new();
        let mut cumulative = Vec::new();
        for (item, w) in weighted {
            if w.is_finite() && *w > 0.0 {
                total += w;
                items.push(*item);
                cumulative.push(total);
            }
        }
        if items.is_empty() {
            return None;
        }
        let rng = match seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::from_os_rng(),
        };
        Some(WeightedChooser {
            items,
            cumulative,
            rng,
        })
    }

    pub fn choose(&mut self) -> T {
        let total = *self.cumulative.last().expect("non-empty by construction");
        let x = self.rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|c| *c <= x);
        self.items[i.min(self.items.len() - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_over_100k_draws_matches_weights_1_2_3() {
        let mut c = WeightedChooser::new(&[(0usize, 1.0), (1, 2.0), (2, 3.0)], Some(42)).unwrap();
        let n = 100_000;
        let mut counts = [0u64; 3];
        for _ in 0..n {
            counts[c.choose()] += 1;
        }
        let expected = [n as f64 / 6.0, 2.0 * n as f64 / 6.0, 3.0 * n as f64 / 6.0];
        let chi2: f64 = counts
            .iter()
            .zip(expected)
            .map(|(o, e)| (*o as f64 - e).powi(2) / e)
            .sum();
        // Two degrees of freedom: the 99.9th percentile is 13.8.
        assert!(chi2 < 13.8, "chi-square {chi2} for {counts:?}");
    }

    #[test]
    fn same_seed_same_choices() {
        let w = [(1u32, 1.0), (2, 5.0), (3, 0.5)];
        let a: Vec<u32> = {
            let mut c = WeightedChooser::new(&w, Some(7)).unwrap();
            (0..50).map(|_| c.choose()).collect()
        };
        let mut c = WeightedChooser::new(&w, Some(7)).unwrap();
        let b: Vec<u32> = (0..50).map(|_| c.choose()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn ignores_unusable_weights() {
        assert!(WeightedChooser::<u8>::new(&[], None).is_none());
        assert!(WeightedChooser::new(&[(1u8, 0.0), (2, f64::NAN)], None).is_none());
        let mut c = WeightedChooser::new(&[(1u8, 0.0), (2, 1.0)], Some(1)).unwrap();
        assert!((0..100).all(|_| c.choose() == 2));
    }
}
