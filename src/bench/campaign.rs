//! The request mix of the never-fail campaigns (`src/mm/campaign_tests.rs` on the host,
//! `tests/cma_campaign.rs` in the guest): one definition, so both campaigns ask for the
//! same kinds of allocations.
#![forbid(unsafe_code)]

use crate::util::rng::SplitMix64;

/// The largest request, in pages (64 MiB).
pub const MAX_REQUEST: usize = 16_384;

/// A request `(pages, alignment order)`: the size log-uniform over 1..=[`MAX_REQUEST`], as
/// drivers ask (many small buffers, some frame-sized, a few huge); the alignment mostly
/// what Linux's DMA layer asks (the size's order, capped at a pageblock), some none, some
/// more than the size (up to order 11).
pub fn request(rng: &mut SplitMix64) -> (usize, usize) {
    let bits = rng.below(15);
    let count = ((1usize << bits) + rng.below(1 << bits)).min(MAX_REQUEST);
    let order = (usize::BITS - (count - 1).leading_zeros()) as usize;
    let align = match rng.below(10) {
        0..=3 => 0,
        4..=7 => order.min(9),
        _ => rng.below(12),
    };
    (count, align)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_span_the_sizes_and_alignments() {
        let mut rng = SplitMix64::new(7);
        let (mut small, mut large, mut unaligned, mut over) = (0, 0, 0, 0);
        for _ in 0..10_000 {
            let (count, align) = request(&mut rng);
            assert!((1..=MAX_REQUEST).contains(&count));
            assert!(align < 12);
            small += usize::from(count <= 16);
            large += usize::from(count > 4096);
            unaligned += usize::from(align == 0);
            over += usize::from(1usize << align > count);
        }
        // Log-uniform over 15 octaves: each end gets a fair share; 40% unaligned.
        assert!(small > 1000 && large > 700, "{small} small, {large} large");
        assert!((3500..4500).contains(&unaligned), "{unaligned} unaligned");
        assert!(over > 0);
    }
}
