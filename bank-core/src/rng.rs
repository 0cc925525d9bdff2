//! One small seeded generator for everything that must repeat for a seed: the command generator's mix (the same
//! heartbeat gives the same command on every instance), the chaos schedules and the load a chaos run drives.
//! The algorithm is `rand_xoshiro`'s SplitMix64, which is specified and never changes between versions (unlike
//! `rand`'s `SmallRng`); the draws below are plain arithmetic on its output, for the same reason. Not for secrets:
//! tokens come from [`crate::token`].

use rand_xoshiro::SplitMix64;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};

pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::seed_from_u64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// In `0..n` (0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.abs_diff(lo).saturating_add(1);
        lo.wrapping_add_unsigned(self.below(span))
    }

    /// One of `items`; `None` (and no draw) for none.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let n = u64::try_from(items.len()).ok().filter(|n| *n > 0)?;
        items.get(usize::try_from(self.below(n)).ok()?)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64().to_le_bytes()[0]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_splitmix64_and_repeats_for_a_seed() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(
            (0..10).map(|_| a.next_u64()).collect::<Vec<_>>(),
            (0..10).map(|_| b.next_u64()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn draws_stay_in_bounds_and_empty_ones_do_not_panic() {
        let mut r = Rng::new(3);
        assert_eq!(r.below(0), 0);
        assert_eq!(r.pick::<u8>(&[]), None);
        assert_eq!(r.pick(&[7]), Some(&7));
        assert_eq!(r.bytes(33).len(), 33);
        for _ in 0..1000 {
            assert!((-5..=5).contains(&r.range(-5, 5)));
            assert!(r.below(3) < 3);
        }
        assert_eq!(r.range(i64::MIN, i64::MIN), i64::MIN);
        let _ = r.range(i64::MIN, i64::MAX);
    }
}
