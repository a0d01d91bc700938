//! The MMU: an identity map for the kernel and a window of movable mappings.
//!
//! # Theory of operation
//!
//! Right after the device tree is read, the boot code builds stage-1 tables for TTBR0_EL1
//! (4 KiB granule, 48-bit VA) that map every RAM bank and device window at its own physical
//! address ([`layout`] decides what, [`translation_table`] how) and turns the MMU and the
//! caches on. From then on normal RAM is cacheable and unaligned accesses to it work;
//! devices are Device-nGnRE.
//!
//! Above everything physical sits the **movable window** ([`movable_window`]): a virtual
//! range the identity map never touches, mapped one 4 KiB page at a time on demand. Clients
//! whose pages may move (the movable and CMA pageblocks of [`crate::mm`]) reach their data
//! only through these mappings, so migrating a page is break-before-make around a copy:
//! invalidate the entry, drop its TLB entries, copy, write the new entry. One page at a
//! time that is `remap_movable`; migration does a batch under one lock and one TLB
//! synchronisation with `with_movable_page_mover`. Table pages for the window come from
//! the kernel heap as needed.
//!
//! The architecture half (register programming, TLB maintenance, the global tables) is in
//! `_arch/aarch64/memory/mmu.rs` and exists only on the bare-metal target; the table format
//! and the layout policy build on the host too and are tested there.

#[path = "../_arch/aarch64/memory/mmu/translation_table.rs"]
pub mod translation_table;

pub mod layout;

#[cfg(target_os = "none")]
#[path = "../_arch/aarch64/memory/mmu.rs"]
mod arch_mmu;

#[cfg(target_os = "none")]
pub use arch_mmu::{
    init, init_excluding, is_enabled, kernel_image_layout, map_movable, memory_kind, remap_movable,
    translate, unmap_movable, with_movable_page_mover, MmuError, MovablePageMover,
};

pub use crate::util::PAGE_SIZE;
pub use translation_table::{MapError, MemoryKind};

/// First virtual address of the movable window: 64 TiB, above any physical address a
/// 44-bit-PA core such as the Cortex-A72 can produce, so it never meets the identity map.
pub const MOVABLE_WINDOW_START: usize = 0x4000_0000_0000;
/// Size of the movable window (1 TiB).
pub const MOVABLE_WINDOW_SIZE: usize = 1 << 40;

/// The virtual range [`map_movable`] and friends accept.
pub fn movable_window() -> core::ops::Range<usize> {
    MOVABLE_WINDOW_START..MOVABLE_WINDOW_START + MOVABLE_WINDOW_SIZE
}

/// Reject `va` unless it is a page-aligned address inside the movable window.
pub fn check_movable_va(va: usize) -> Result<(), MapError> {
    if !movable_window().contains(&va) {
        return Err(MapError::NotInWindow);
    }
    if !(va as u64).is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Misaligned);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds() {
        let window = movable_window();
        assert!(window.start >= 4 << 30);
        assert!(window.end as u64 <= 1 << translation_table::VA_BITS);
        assert_eq!(check_movable_va(window.start), Ok(()));
        assert_eq!(check_movable_va(window.end - PAGE_SIZE as usize), Ok(()));
        assert_eq!(check_movable_va(window.end), Err(MapError::NotInWindow));
        assert_eq!(
            check_movable_va(window.start - PAGE_SIZE as usize),
            Err(MapError::NotInWindow)
        );
        assert_eq!(
            check_movable_va(window.start + 8),
            Err(MapError::Misaligned)
        );
    }
}
