//! Where in an area's bitmap a request goes: first fit (Linux's `cma_alloc`) or best fit
//! (the smallest free run that holds it, as the first CMA patches' `cma-best-fit`
//! allocator chose).
//!
//! # Theory of operation
//!
//! Both policies yield candidate start bits in the order `cma_alloc` tries them; a candidate
//! whose range turns out busy (an unmovable page) is given back and the next one tried.
//! First fit walks the bitmap upwards and stops at the first aligned zero run, so it costs
//! nothing it does not use, but it carves small requests out of the first large hole and
//! leaves the area's free space in ever smaller pieces. Best fit lists the maximal free runs
//! once, orders the ones the request fits in by length (then address), and tries the
//! aligned positions of the smallest first: small requests fill small holes, and the large
//! holes stay whole for the large requests that need them. The bitmap is the same before
//! every candidate (a failed candidate's bits are cleared again), so the list stays valid
//! for the whole call.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use super::bitmap::{find_next, find_next_zero_area};

/// An area's placement policy. The default is the one that measured better on the replayed
/// fragmentation trace (`benches/cma_fit.rs`, printed by `cargo xtask bench`; README
/// "Figures"): first fit, by a little, because best fit's aligned placement inside small
/// holes leaves slivers no aligned request can use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CmaFit {
    /// The lowest aligned free run (Linux).
    #[default]
    FirstFit,
    /// The smallest free run that holds the request, lowest first among equals.
    BestFit,
}

impl CmaFit {
    /// Every policy, for reports and tests.
    pub const ALL: [CmaFit; 2] = [CmaFit::FirstFit, CmaFit::BestFit];

    /// The name used by the device-tree property and the boot argument.
    pub fn name(self) -> &'static str {
        match self {
            CmaFit::FirstFit => "first-fit",
            CmaFit::BestFit => "best-fit",
        }
    }

    /// Parse a property or boot-argument value (`first-fit`, `best-fit`).
    pub fn parse(value: &str) -> Option<CmaFit> {
        CmaFit::ALL.into_iter().find(|fit| fit.name() == value)
    }
}

impl fmt::Display for CmaFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request in bitmap units: `nr` bits whose index plus `align_offset` is a multiple of
/// `align_mask + 1`.
#[derive(Clone, Copy, Debug)]
pub(super) struct BitRequest {
    pub(super) nr: usize,
    pub(super) align_mask: usize,
    pub(super) align_offset: usize,
}

impl BitRequest {
    /// The first index at or after `bit` that satisfies the alignment.
    pub(super) fn align_up(&self, bit: usize) -> Option<usize> {
        let shifted = bit
            .checked_add(self.align_offset)?
            .checked_add(self.align_mask)?;
        (shifted & !self.align_mask).checked_sub(self.align_offset)
    }
}

/// Candidate start bits of one request, in the order its policy tries them.
pub(super) enum Candidates {
    First {
        from: usize,
    },
    Best {
        /// The free runs the request fits in, smallest first.
        runs: Vec<Range<usize>>,
        run: usize,
        /// The next position to try inside `runs[run]`.
        at: Option<usize>,
    },
}

impl Candidates {
    pub(super) fn new(fit: CmaFit, map: &[u64], size: usize, req: &BitRequest) -> Candidates {
        match fit {
            CmaFit::FirstFit => Candidates::First { from: 0 },
            CmaFit::BestFit => {
                let mut runs = fitting_free_runs(map, size, req);
                runs.sort_unstable_by_key(|r| (r.len(), r.start));
                let at = runs.first().and_then(|r| req.align_up(r.start));
                Candidates::Best { runs, run: 0, at }
            }
        }
    }

    /// The first candidate alone, without building the iterator for first fit.
    #[inline]
    pub(super) fn first(fit: CmaFit, map: &[u64], size: usize, req: &BitRequest) -> Option<usize> {
        match fit {
            CmaFit::FirstFit => {
                find_next_zero_area(map, size, 0, req.nr, req.align_mask, req.align_offset)
            }
            CmaFit::BestFit => Candidates::new(fit, map, size, req).next(map, size, req),
        }
    }

    /// The next candidate; `map` must be the bitmap `new` saw.
    pub(super) fn next(&mut self, map: &[u64], size: usize, req: &BitRequest) -> Option<usize> {
        match self {
            Candidates::First { from } => {
                let bit = find_next_zero_area(
                    map,
                    size,
                    *from,
                    req.nr,
                    req.align_mask,
                    req.align_offset,
                )?;
                *from = bit + req.align_mask + 1;
                Some(bit)
            }
            Candidates::Best { runs, run, at } => loop {
                let range = runs.get(*run)?;
                if let Some(bit) =
                    at.filter(|&bit| bit.checked_add(req.nr).is_some_and(|end| end <= range.end))
                {
                    *at = bit.checked_add(req.align_mask + 1);
                    return Some(bit);
                }
                *run += 1;
                *at = runs.get(*run).and_then(|r| req.align_up(r.start));
            },
        }
    }
}

/// The maximal zero runs of `map[..size]` that hold an aligned run of `req.nr` bits.
fn fitting_free_runs(map: &[u64], size: usize, req: &BitRequest) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut bit = 0;
    while bit < size {
        let start = find_next(map, size, bit, false);
        if start >= size {
            break;
        }
        let end = find_next(map, size, start, true);
        let fits = req
            .align_up(start)
            .and_then(|first| first.checked_add(req.nr))
            .is_some_and(|last| last <= end);
        if fits {
            runs.push(start..end);
        }
        bit = end;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::super::bitmap::bitmap_set;
    use super::*;
    use alloc::vec;

    fn all(fit: CmaFit, map: &[u64], size: usize, req: BitRequest) -> Vec<usize> {
        let mut c = Candidates::new(fit, map, size, &req);
        core::iter::from_fn(|| c.next(map, size, &req)).collect()
    }

    fn req(nr: usize, align_mask: usize, align_offset: usize) -> BitRequest {
        BitRequest {
            nr,
            align_mask,
            align_offset,
        }
    }

    /// Free runs [0,10) [12,15) [20,24) [30,128).
    fn holes() -> Vec<u64> {
        let mut map = vec![0u64; 2];
        bitmap_set(&mut map, 10, 2, true);
        bitmap_set(&mut map, 15, 5, true);
        bitmap_set(&mut map, 24, 6, true);
        map
    }

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for fit in CmaFit::ALL {
            assert_eq!(CmaFit::parse(fit.name()), Some(fit));
        }
        assert_eq!(CmaFit::parse("best"), None);
        assert_eq!(CmaFit::parse(""), None);
    }

    #[test]
    fn best_fit_tries_the_smallest_hole_first_then_larger_ones() {
        let map = holes();
        let best = all(CmaFit::BestFit, &map, 128, req(3, 0, 0));
        // [12,15) holds exactly 3, then [20,24) (2 positions), then [0,10), then [30,128).
        assert_eq!(&best[..4], &[12, 20, 21, 0]);
        assert_eq!(best.len(), 1 + 2 + 8 + 96);
        let first = all(CmaFit::FirstFit, &map, 128, req(3, 0, 0));
        assert_eq!(&first[..3], &[0, 1, 2]);
        // Both policies offer exactly the same set of positions.
        let (mut a, mut b) = (best.clone(), first.clone());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }

    #[test]
    fn best_fit_honours_alignment_and_skips_holes_too_small_once_aligned() {
        let map = holes();
        // Aligned to 4: [12,15) holds 12, [20,24) holds 20, [0,10) holds 0 and 4.
        assert_eq!(
            all(CmaFit::BestFit, &map, 128, req(3, 3, 0))[..4],
            [12, 20, 0, 4]
        );
        // With an offset of 1, index + 1 must be a multiple of 4: 15 and 23 come too late
        // in the two small holes for 3 bits, so [0,10) (3 and 7) comes first.
        let got = all(CmaFit::BestFit, &map, 128, req(3, 3, 1));
        assert_eq!(got[..3], [3, 7, 31]);
        assert!(got.iter().all(|b| (b + 1) % 4 == 0), "{got:?}");
        // Nothing fits a request larger than every hole.
        assert!(all(CmaFit::BestFit, &map, 128, req(99, 0, 0)).is_empty());
        assert!(all(CmaFit::FirstFit, &map, 128, req(99, 0, 0)).is_empty());
    }
}
