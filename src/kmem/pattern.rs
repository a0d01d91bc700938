//! Deterministic page contents with a checksum word, so every page can be verified after
//! any number of migrations without keeping a copy.
//!
//! # Theory of operation
//!
//! A page's content is a function of one 64-bit seed (the client mixes in what identifies
//! the page: slot and generation, or block and version). Words `0..511` are the seed's hash
//! xor a per-word constant stride, which makes every word of every page distinct; word 511
//! is the wrapping sum of the others, so a torn or misplaced copy fails twice.
#![forbid(unsafe_code)]

use super::window::WORDS_PER_PAGE;

pub use crate::util::rng::mix64;

const STRIDE: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Clone, Copy, Debug)]
pub struct PagePattern {
    base: u64,
    checksum: u64,
}

impl PagePattern {
    pub fn new(seed: u64) -> PagePattern {
        let base = mix64(seed);
        let checksum = (0..WORDS_PER_PAGE - 1)
            .map(|i| Self::data_word(base, i))
            .fold(0u64, u64::wrapping_add);
        PagePattern { base, checksum }
    }

    #[inline]
    fn data_word(base: u64, i: usize) -> u64 {
        base ^ (i as u64 + 1).wrapping_mul(STRIDE)
    }

    /// Word `i` of the page.
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        if i == WORDS_PER_PAGE - 1 {
            self.checksum
        } else {
            Self::data_word(self.base, i)
        }
    }
}
