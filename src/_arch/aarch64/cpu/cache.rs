//! Data-cache maintenance by virtual address, to the point of coherency, for buffers
//! shared with devices that do not snoop the caches.
//!
//! # Theory of operation
//!
//! - Before a device reads memory the CPU wrote: [`clean_dcache_range`] (DC CVAC) pushes
//!   dirty lines out to memory.
//! - After a device wrote memory the CPU will read: [`invalidate_dcache_range`] (DC IVAC)
//!   drops stale lines so the next read fetches from memory. Lines only partly inside the
//!   range are cleaned and invalidated instead (DC CIVAC), so neighbouring data sharing a
//!   line is never lost. It is `unsafe` because stores to the range itself that were not
//!   yet written back are discarded.
//! - [`clean_invalidate_dcache_range`] (DC CIVAC) does both, for buffers handed back and
//!   forth.
//!
//! DC by address has no wrapper in `aarch64-cpu`, so those instructions stay raw `asm!`.
//! The line size is the smallest data-cache line of any level, from CTR_EL0.DminLine.
//! Each helper ends with `DSB SY` so the maintenance is complete, for every observer
//! including devices, before the caller starts the transfer or reads the data.

use aarch64_cpu::asm::barrier;

/// Smallest data-cache line size in bytes.
pub fn dcache_line_size() -> usize {
    let ctr: u64;
    // aarch64-cpu 11 has no CTR_EL0, so the read stays raw; DminLine is bits [19:16],
    // log2 of the line size in 4-byte words.
    // Safety: CTR_EL0 is a read-only ID register, readable at EL1.
    unsafe {
        core::arch::asm!("mrs {c}, CTR_EL0", c = out(reg) ctr, options(nomem, nostack, preserves_flags))
    };
    4 << ((ctr >> 16) & 0xf)
}

fn line_starts(start: usize, len: usize) -> impl Iterator<Item = usize> {
    let line = dcache_line_size();
    let first = start & !(line - 1);
    let end = start.saturating_add(len);
    (first..end).step_by(line)
}

fn dsb_sy() {
    barrier::dsb(barrier::SY);
}

/// Write dirty lines of `[start, start + len)` back to memory. The range must be mapped.
pub fn clean_dcache_range(start: usize, len: usize) {
    for line in line_starts(start, len) {
        // Safety: DC CVAC writes back a line without changing what any load observes.
        unsafe {
            core::arch::asm!("dc cvac, {a}", a = in(reg) line, options(nostack, preserves_flags))
        };
    }
    dsb_sy();
}

/// Write back and drop the lines of `[start, start + len)`. The range must be mapped.
pub fn clean_invalidate_dcache_range(start: usize, len: usize) {
    for line in line_starts(start, len) {
        // Safety: DC CIVAC writes back before dropping, so no store is lost.
        unsafe {
            core::arch::asm!("dc civac, {a}", a = in(reg) line, options(nostack, preserves_flags))
        };
    }
    dsb_sy();
}

/// Drop the cached lines of `[start, start + len)` so the next reads see memory.
///
/// # Safety
/// The range must be mapped and writable, and the caller must own it: CPU stores to it
/// that were not yet written back are discarded, so nothing else may hold live data there
/// (a device has just written it, or its contents do not matter).
pub unsafe fn invalidate_dcache_range(start: usize, len: usize) {
    let line = dcache_line_size();
    let end = start.saturating_add(len);
    if len == 0 {
        return;
    }
    // The lines only partly inside the range hold bytes outside it: CIVAC keeps their
    // stores. They are the first and the last line at most, so the loop between them is
    // one IVAC per line and nothing else.
    let first_full = start.next_multiple_of(line);
    let last_full_end = end & !(line - 1);
    let civac = |address: usize| {
        // Safety: DC CIVAC writes back before dropping, so no store is lost.
        unsafe {
            core::arch::asm!("dc civac, {a}", a = in(reg) address, options(nostack, preserves_flags))
        };
    };
    if first_full > start {
        civac(start & !(line - 1));
    }
    if last_full_end < end && last_full_end >= first_full {
        civac(last_full_end);
    }
    let mut address = first_full;
    while address < last_full_end {
        // Safety: the whole line is inside the range the caller owns (see above).
        unsafe {
            core::arch::asm!("dc ivac, {a}", a = in(reg) address, options(nostack, preserves_flags))
        };
        address += line;
    }
    dsb_sy();
}
