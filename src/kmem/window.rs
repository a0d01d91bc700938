//! The only memory accesses of the movable clients: page-sized reads and writes through
//! their movable-window mappings, and the page copy migration uses (hardware layer).
//!
//! # Theory of operation
//!
//! Client data is reached only through `crate::memory::mmu::map_movable` mappings, so a
//! page that migrates keeps its virtual address and only its frame changes. Migration copies
//! frame to frame through the identity map (every RAM frame outside `no-map` carveouts is
//! mapped there, normal cacheable, the same attributes as the window, so the two aliases are
//! coherent). The copy loop moves 128 bytes per iteration with SIMD pair loads and stores:
//! the copy is the irreducible cost of a migration, so it should be as few instructions as
//! the architecture allows.

use crate::mm::{Pfn, PAGE_SHIFT, PAGE_SIZE};

/// 64-bit words per page.
pub const WORDS_PER_PAGE: usize = PAGE_SIZE / 8;

/// Copy `len` bytes (a non-zero multiple of 128) from `src` to `dst`.
///
/// # Safety
/// Both ranges must be mapped normal memory, `len` bytes long, not overlapping, `dst`
/// writable and not referenced by anyone else for the duration.
pub unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    debug_assert!(len != 0 && len % 128 == 0);
    // Safety: guaranteed by the caller; the asm only touches [src, src+len) and
    // [dst, dst+len) and clobbers the declared vector registers.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp q0, q1, [{s}]",
            "ldp q2, q3, [{s}, #32]",
            "ldp q4, q5, [{s}, #64]",
            "ldp q6, q7, [{s}, #96]",
            "add {s}, {s}, #128",
            "stp q0, q1, [{d}]",
            "stp q2, q3, [{d}, #32]",
            "stp q4, q5, [{d}, #64]",
            "stp q6, q7, [{d}, #96]",
            "add {d}, {d}, #128",
            "subs {n}, {n}, #128",
            "b.ne 2b",
            s = inout(reg) src => _,
            d = inout(reg) dst => _,
            n = inout(reg) len => _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            options(nostack)
        );
    }
}

/// Copy frame `src` to frame `dst` through the identity map.
///
/// # Safety
/// Both frames must be identity-mapped RAM; `dst` must be a frame the caller just
/// allocated (nobody else reads or writes it) and `src` a frame the caller owns.
pub unsafe fn copy_frame(dst: Pfn, src: Pfn) {
    // Safety: forwarded from the caller's guarantee.
    unsafe {
        copy_bytes(
            (dst << PAGE_SHIFT) as *mut u8,
            (src << PAGE_SHIFT) as *const u8,
            PAGE_SIZE,
        )
    }
}

/// Write `word(i)` to every word of the window page at `va`.
///
/// # Safety
/// `va` must be a movable-window page mapped to a frame the caller owns exclusively.
pub unsafe fn fill_page(va: usize, word: impl Fn(usize) -> u64) {
    let page = va as *mut u64;
    for i in 0..WORDS_PER_PAGE {
        // Safety: i < WORDS_PER_PAGE keeps the write inside the mapped page the caller owns.
        unsafe { page.add(i).write(word(i)) };
    }
}

/// Index of the first word of the window page at `va` that differs from `word(i)`.
///
/// # Safety
/// `va` must be a movable-window page mapped to a frame the caller owns.
pub unsafe fn first_mismatch(va: usize, word: impl Fn(usize) -> u64) -> Option<usize> {
    let page = va as *const u64;
    // Safety: i < WORDS_PER_PAGE keeps the read inside the mapped page.
    (0..WORDS_PER_PAGE).find(|&i| unsafe { page.add(i).read() } != word(i))
}
