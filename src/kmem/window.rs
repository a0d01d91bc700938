//! The only memory accesses of the movable clients: page-sized reads and writes through
//! their movable-window mappings, and the page copy migration uses (hardware layer).
//!
//! # Theory of operation
//!
//! Client data is reached only through `crate::memory::mmu::map_movable` mappings, so a
//! page that migrates keeps its virtual address and only its frame changes. Migration copies
//! frame to frame through the identity map (every RAM frame outside `no-map` carveouts is
//! mapped there, normal cacheable, the same attributes as the window, so the two aliases are
//! coherent). The copy loop moves 64 bytes per instruction with four-register SIMD loads and
//! stores: the copy is the irreducible cost of a migration, so it should be as few
//! instructions as the architecture allows.

use crate::mm::{Pfn, PAGE_SHIFT, PAGE_SIZE};

/// 64-bit words per page.
pub const WORDS_PER_PAGE: usize = PAGE_SIZE / 8;

/// Copy `len` bytes (a non-zero multiple of 128) from `src` to `dst`.
///
/// The main loop moves 512 bytes in 16 instructions plus 2 of loop control: each
/// four-register `LD1`/`ST1` moves 64 bytes and advances its pointer itself, twice what a
/// `LDP`/`STP` of q registers moves, and no separate pointer updates are needed. A
/// remainder below 512 bytes goes 128 bytes at a time.
///
/// # Safety
/// Both ranges must be mapped normal memory, `len` bytes long, not overlapping, `dst`
/// writable and not referenced by anyone else for the duration.
pub unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    debug_assert!(len != 0 && len.is_multiple_of(128));
    // Safety: guaranteed by the caller; the asm only touches [src, src+len) and
    // [dst, dst+len) and clobbers the declared vector registers and the flags. `len` is a
    // multiple of 128, so the remainder loop ends exactly at zero.
    unsafe {
        core::arch::asm!(
            "subs {n}, {n}, #512",
            "b.lo 3f",
            "2:",
            "ld1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{s}], #64",
            "ld1 {{v4.2d, v5.2d, v6.2d, v7.2d}}, [{s}], #64",
            "ld1 {{v16.2d, v17.2d, v18.2d, v19.2d}}, [{s}], #64",
            "ld1 {{v20.2d, v21.2d, v22.2d, v23.2d}}, [{s}], #64",
            "st1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{d}], #64",
            "st1 {{v4.2d, v5.2d, v6.2d, v7.2d}}, [{d}], #64",
            "st1 {{v16.2d, v17.2d, v18.2d, v19.2d}}, [{d}], #64",
            "st1 {{v20.2d, v21.2d, v22.2d, v23.2d}}, [{d}], #64",
            "ld1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{s}], #64",
            "ld1 {{v4.2d, v5.2d, v6.2d, v7.2d}}, [{s}], #64",
            "ld1 {{v16.2d, v17.2d, v18.2d, v19.2d}}, [{s}], #64",
            "ld1 {{v20.2d, v21.2d, v22.2d, v23.2d}}, [{s}], #64",
            "st1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{d}], #64",
            "st1 {{v4.2d, v5.2d, v6.2d, v7.2d}}, [{d}], #64",
            "st1 {{v16.2d, v17.2d, v18.2d, v19.2d}}, [{d}], #64",
            "st1 {{v20.2d, v21.2d, v22.2d, v23.2d}}, [{d}], #64",
            "subs {n}, {n}, #512",
            "b.hs 2b",
            "3:",
            "adds {n}, {n}, #512",
            "b.eq 5f",
            "4:",
            "ld1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{s}], #64",
            "ld1 {{v4.2d, v5.2d, v6.2d, v7.2d}}, [{s}], #64",
            "st1 {{v0.2d, v1.2d, v2.2d, v3.2d}}, [{d}], #64",
            "st1 {{v4.2d, v5.2d, v6.2d, v7.2d}}, [{d}], #64",
            "subs {n}, {n}, #128",
            "b.ne 4b",
            "5:",
            s = inout(reg) src => _,
            d = inout(reg) dst => _,
            n = inout(reg) len => _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            options(nostack)
        );
    }
}

/// Copy the `count` frames from `src` to the `count` frames from `dst`, through the
/// identity map, in one copy.
///
/// # Safety
/// Both runs must be identity-mapped RAM and must not overlap; the `dst` frames must be
/// frames the caller just allocated (nobody else reads or writes them) and the `src` frames
/// frames the caller owns.
pub unsafe fn copy_frames(dst: Pfn, src: Pfn, count: usize) {
    if count == 0 {
        return;
    }
    // Safety: forwarded from the caller's guarantee; `count * PAGE_SIZE` is a non-zero
    // multiple of 128.
    unsafe {
        copy_bytes(
            (dst << PAGE_SHIFT) as *mut u8,
            (src << PAGE_SHIFT) as *const u8,
            count * PAGE_SIZE,
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
