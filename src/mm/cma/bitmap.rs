//! The area's allocation bitmap: one bit per `1 << order_per_bit` pages, set while handed
//! out. Word-at-a-time set, test and search, as Linux's `lib/bitmap.c` helpers.
#![forbid(unsafe_code)]

#[inline]
pub(super) fn bitmap_test(map: &[u64], bit: usize) -> bool {
    map[bit / 64] & (1 << (bit % 64)) != 0
}

/// Set (or clear) bits `[start, start + len)`, a word at a time.
#[inline]
pub(super) fn bitmap_set(map: &mut [u64], start: usize, len: usize, value: bool) {
    // One bit, the common small request: one word, no loop.
    if len == 1 {
        let mask = 1 << (start % 64);
        if value {
            map[start / 64] |= mask;
        } else {
            map[start / 64] &= !mask;
        }
        return;
    }
    let end = start + len;
    let mut bit = start;
    while bit < end {
        let word = bit / 64;
        let lo = bit % 64;
        let n = (64 - lo).min(end - bit);
        let mask = (u64::MAX >> (64 - n)) << lo;
        if value {
            map[word] |= mask;
        } else {
            map[word] &= !mask;
        }
        bit += n;
    }
}

/// First bit `>= start` and `< size` equal to `value`, skipping whole words.
pub(super) fn find_next(map: &[u64], size: usize, start: usize, value: bool) -> usize {
    let mut bit = start;
    while bit < size {
        let word = if value { map[bit / 64] } else { !map[bit / 64] };
        let masked = word & (u64::MAX << (bit % 64));
        if masked != 0 {
            return (bit - bit % 64 + masked.trailing_zeros() as usize).min(size);
        }
        bit = bit - bit % 64 + 64;
    }
    size
}

/// `bitmap_find_next_zero_area_off`: first run of `nr` zero bits at or after `start` whose
/// index plus `align_offset` is a multiple of `align_mask + 1`.
pub(super) fn find_next_zero_area(
    map: &[u64],
    size: usize,
    mut start: usize,
    nr: usize,
    align_mask: usize,
    align_offset: usize,
) -> Option<usize> {
    loop {
        let zero = find_next(map, size, start, false);
        let index = ((zero + align_offset + align_mask) & !align_mask).checked_sub(align_offset)?;
        let end = index.checked_add(nr)?;
        if end > size {
            return None;
        }
        let busy = find_next(map, end, index, true);
        if busy < end {
            start = busy + 1;
        } else {
            return Some(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn bitmap_set_changes_exactly_the_range_across_words() {
        for (start, len) in [
            (0, 1),
            (3, 61),
            (0, 64),
            (63, 2),
            (5, 200),
            (64, 64),
            (70, 0),
        ] {
            for value in [true, false] {
                let mut map = vec![if value { 0 } else { u64::MAX }; 5];
                bitmap_set(&mut map, start, len, value);
                for bit in 0..320 {
                    let inside = (start..start + len).contains(&bit);
                    assert_eq!(
                        bitmap_test(&map, bit),
                        inside == value,
                        "{start}+{len} bit {bit}"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_area_search_honours_alignment_and_busy_bits() {
        let mut map = vec![0u64; 2];
        bitmap_set(&mut map, 0, 3, true);
        assert_eq!(find_next_zero_area(&map, 128, 0, 4, 0, 0), Some(3));
        assert_eq!(find_next_zero_area(&map, 128, 0, 4, 3, 0), Some(4));
        // With an offset of 1, index + 1 must be a multiple of 4.
        assert_eq!(find_next_zero_area(&map, 128, 0, 4, 3, 1), Some(3));
        bitmap_set(&mut map, 60, 10, true);
        assert_eq!(find_next_zero_area(&map, 128, 50, 20, 0, 0), Some(70));
        assert_eq!(find_next_zero_area(&map, 128, 0, 59, 0, 0), None);
        assert_eq!(find_next_zero_area(&map, 128, 0, 58, 0, 0), Some(70));
        assert_eq!(find_next_zero_area(&map, 80, 61, 20, 0, 0), None);
        assert_eq!(find_next_zero_area(&map, 80, 0, 20, 0, 0), Some(3));
    }
}
