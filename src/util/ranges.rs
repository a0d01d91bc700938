//! Range algebra over physical addresses: overlap, merge, subtract, align.
//!
//! Ranges are half-open `start..end`; an empty range (`start >= end`) covers nothing, is
//! dropped by [`merge`] and [`subtract_all`], and overlaps nothing. Nothing here wraps:
//! rounding up near `u64::MAX` saturates or returns `None`, as each function says.

use alloc::vec::Vec;
use core::ops::Range;

/// Do `a` and `b` share at least one address?
pub fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end && a.start < a.end && b.start < b.end
}

/// Does `outer` contain all of `inner`? (An empty `inner` is contained anywhere inside.)
pub fn contains(outer: &Range<u64>, inner: &Range<u64>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Sorted copy with empty ranges dropped and overlapping *or touching* ranges joined.
pub fn merge(ranges: impl IntoIterator<Item = Range<u64>>) -> Vec<Range<u64>> {
    merge_where(ranges, |last, next| next.start <= last.end)
}

/// Sorted copy with empty ranges dropped and only *overlapping* ranges joined: two RAM
/// banks that touch stay two banks (NUMA nodes, dies), which per-bank policy needs.
pub fn merge_overlapping(ranges: impl IntoIterator<Item = Range<u64>>) -> Vec<Range<u64>> {
    merge_where(ranges, |last, next| next.start < last.end)
}

fn merge_where(
    ranges: impl IntoIterator<Item = Range<u64>>,
    joins: impl Fn(&Range<u64>, &Range<u64>) -> bool,
) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.into_iter().filter(|r| r.start < r.end).collect();
    sorted.sort_unstable_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for range in sorted {
        match out.last_mut() {
            Some(last) if joins(last, &range) => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

/// `range` minus `hole`: zero, one or two pieces, in address order.
pub fn subtract(range: &Range<u64>, hole: &Range<u64>) -> Vec<Range<u64>> {
    if !overlaps(range, hole) {
        return if range.start < range.end {
            alloc::vec![range.clone()]
        } else {
            Vec::new()
        };
    }
    let mut pieces = Vec::with_capacity(2);
    if range.start < hole.start {
        pieces.push(range.start..hole.start);
    }
    if hole.end < range.end {
        pieces.push(hole.end..range.end);
    }
    pieces
}

/// Every range of `ranges` minus every range of `holes`. Neither needs to be sorted; the
/// pieces keep the order of `ranges` (sorted in, sorted out).
pub fn subtract_all(ranges: &[Range<u64>], holes: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut pieces: Vec<Range<u64>> = ranges.iter().filter(|r| r.start < r.end).cloned().collect();
    for hole in holes.iter().filter(|h| h.start < h.end) {
        let mut next = Vec::with_capacity(pieces.len() + 1);
        for piece in &pieces {
            next.extend(subtract(piece, hole));
        }
        pieces = next;
    }
    pieces
}

/// `value` rounded up to a multiple of `align` (a power of two); `None` if that overflows.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// `value` rounded up to a multiple of `align` (a power of two), saturating at the highest
/// multiple below `u64::MAX`.
pub fn align_up_saturating(value: u64, align: u64) -> u64 {
    align_up(value, align).unwrap_or(align_down(u64::MAX, align))
}

/// `value` rounded down to a multiple of `align` (a power of two).
pub fn align_down(value: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    value & !(align - 1)
}

/// Is `value` a multiple of `align` (a power of two)?
pub fn is_aligned(value: u64, align: u64) -> bool {
    debug_assert!(align.is_power_of_two());
    value & (align - 1) == 0
}

/// `range` shrunk inward to whole multiples of `align` (possibly to nothing).
pub fn shrink_to_alignment(range: &Range<u64>, align: u64) -> Range<u64> {
    let start = align_up_saturating(range.start, align);
    let end = align_down(range.end, align);
    start..end.max(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn overlap_is_strict_about_touching() {
        assert!(overlaps(&(0..10), &(9..20)));
        assert!(!overlaps(&(0..10), &(10..20)));
        assert!(
            !overlaps(&(5..5), &(0..10)),
            "an empty range overlaps nothing"
        );
    }

    #[test]
    fn merge_joins_touching_but_merge_overlapping_does_not() {
        let input = vec![20..30, 0..10, 10..15, 5..8, 40..40];
        assert_eq!(merge(input.clone()), vec![0..15, 20..30]);
        assert_eq!(merge_overlapping(input), vec![0..10, 10..15, 20..30]);
    }

    #[test]
    fn subtract_splits_and_drops() {
        assert_eq!(subtract(&(0..10), &(3..5)), vec![0..3, 5..10]);
        assert_eq!(subtract(&(0..10), &(0..10)), Vec::<Range<u64>>::new());
        assert_eq!(subtract(&(0..10), &(20..30)), vec![0..10]);
        assert_eq!(
            subtract_all(&[0..10, 20..30], &[5..25, 28..29]),
            vec![0..5, 25..28, 29..30]
        );
    }

    #[test]
    fn alignment_never_wraps() {
        assert_eq!(align_up(4097, 4096), Some(8192));
        assert_eq!(align_up(u64::MAX, 4096), None);
        assert_eq!(align_up_saturating(u64::MAX, 4096), 0xffff_ffff_ffff_f000);
        assert_eq!(align_down(8191, 4096), 4096);
        assert!(is_aligned(8192, 4096) && !is_aligned(8193, 4096));
        assert_eq!(shrink_to_alignment(&(1..4095), 4096), 4096..4096);
        assert_eq!(shrink_to_alignment(&(1..9000), 4096), 4096..8192);
    }
}
