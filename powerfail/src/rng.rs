//! A small seeded random number generator (SplitMix64) for torn writes: the same seed and the
//! same operations tear the same bytes. Touched only under the volume's lock.

/// SplitMix64 (Steele, Lea, Flood 2014): 64 bits of state, passes BigCrush, and needs no crate.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0); the modulo bias is negligible for file sizes.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0) has no value to return");
        self.next_u64() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let mut first = SplitMix64::new(7);
        let mut second = SplitMix64::new(7);
        for _ in 0..100 {
            assert_eq!(first.below(1000), second.below(1000));
        }
    }

    #[test]
    fn below_stays_below_its_bound() {
        let mut rng = SplitMix64::new(1);
        assert!((0..10_000).all(|_| rng.below(3) < 3));
    }
}
