//! A seedable pseudo-random sequence (splitmix64) for workloads and test campaigns that
//! must replay exactly from a seed: one generator, so the host campaign, the in-guest
//! campaign and the benchmarks draw the same way.
#![forbid(unsafe_code)]

/// The additive constant of splitmix64 (2^64 / golden ratio).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's finaliser: a cheap, well-spread 64-bit hash.
pub const fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// splitmix64: small, seedable, good enough to drive a workload; not for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub const fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix64(self.0)
    }

    /// Uniform-ish in `0..n` (modulo bias is negligible for the small `n` used here);
    /// 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_splitmix64_and_replays_from_its_seed() {
        // Reference values of splitmix64 from seed 0 (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let (mut a, mut b) = (SplitMix64::new(42), SplitMix64::new(42));
        assert!((0..100).all(|_| a.below(1000) == b.below(1000)));
        assert_eq!(SplitMix64::new(7).below(0), 0);
        assert!((0..1000).all(|_| a.below(3) < 3));
        assert!((0..100).all(|_| a.chance(100) && !a.chance(0)));
    }
}
