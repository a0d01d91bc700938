//! First-fit page allocator over one fixed pfn range: the carveout heaps and the atomic
//! pool both carve their buffers out of a block nobody else touches.
//!
//! Allocations are kept sorted by start; a request takes the first gap that holds it at
//! the requested alignment. Freeing must name exactly what was handed out.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::ops::Range;

use crate::mm::Pfn;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FirstFit {
    span: Range<Pfn>,
    /// Handed-out runs, sorted by start, disjoint.
    used: Vec<Range<Pfn>>,
}

impl FirstFit {
    pub(crate) fn new(span: Range<Pfn>) -> FirstFit {
        FirstFit {
            span,
            used: Vec::new(),
        }
    }

    pub(crate) fn span(&self) -> Range<Pfn> {
        self.span.clone()
    }

    pub(crate) fn used_pages(&self) -> usize {
        self.used.iter().map(|r| r.len()).sum()
    }

    /// `pages` pages starting at a multiple of `align` pages (a power of two).
    pub(crate) fn alloc(&mut self, pages: usize, align: usize) -> Option<Pfn> {
        if pages == 0 || !align.is_power_of_two() {
            return None;
        }
        let mut cursor = self.span.start;
        let mut at = 0;
        loop {
            let start = cursor.checked_add(align - 1)? & !(align - 1);
            let end = start.checked_add(pages)?;
            let gap_end = self.used.get(at).map_or(self.span.end, |r| r.start);
            if end <= gap_end {
                self.used.insert(at, start..end);
                return Some(start);
            }
            let next = self.used.get(at)?;
            cursor = next.end;
            at += 1;
        }
    }

    /// Give back exactly a run [`FirstFit::alloc`] returned.
    pub(crate) fn free(&mut self, pfn: Pfn, pages: usize) -> bool {
        match self
            .used
            .iter()
            .position(|r| r.start == pfn && r.len() == pages)
        {
            Some(i) => {
                self.used.remove(i);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_fills_gaps_in_order_and_refuses_bad_frees() {
        let mut ff = FirstFit::new(100..116);
        assert_eq!(ff.alloc(4, 1), Some(100));
        assert_eq!(ff.alloc(4, 1), Some(104));
        assert_eq!(ff.alloc(4, 8), Some(112), "aligned to 8 pages: 108 is not");
        assert_eq!(ff.alloc(8, 1), None, "only a 4-page gap left");
        assert!(ff.free(100, 4));
        assert!(!ff.free(100, 4), "double free refused");
        assert!(!ff.free(104, 2), "partial free refused");
        assert_eq!(ff.alloc(2, 1), Some(100), "first gap first");
        assert_eq!(
            ff.alloc(4, 1),
            Some(108),
            "the 2-page gap at 102 is too small"
        );
        assert_eq!(ff.used_pages(), 14);
        assert_eq!(ff.alloc(0, 1), None);
    }
}
