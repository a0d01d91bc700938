//! Per-frame metadata (`struct page`) and the owner encoding (the reverse map).
//!
//! # Theory of operation
//!
//! One [`Page`] exists per frame of a zone's span, in an array the zone borrows. It is plain
//! data, 24 bytes, and every bit pattern is a valid `Page` (all zeroes is a hole), so the
//! firmware may hand over raw RAM that it merely zeroed. A frame is exactly one of:
//!
//! - `Hole`: no RAM here; never handed out.
//! - `Reserved`: RAM the buddy does not manage (firmware, DTB, carveouts).
//! - `Buddy`: head of a free block of `order`, linked on `free_list[migratetype]`.
//! - `Head`: head of an allocated block of `order`; carries the allocation's migrate type and
//!   the [`Owner`].
//! - `Pcp`: a free order-0 frame kept on the pcp lists in front of the buddy
//!   (`page_alloc/pcp.rs`): off the free lists, linked like them, never merged; its
//!   migrate type is the list it is on.
//! - `Held`: a free frame of a CMA pageblock its area still holds back from the buddy
//!   (`page_alloc/held.rs`): off every list, never merged; counted as free CMA memory.
//! - `Tail`: any other frame of a free or allocated block. Heads turn into tails when blocks
//!   merge and back into heads when they split, so the state is always exact at O(1) cost
//!   per merge/split step.
//!
//! List links are zone-relative frame indices (`u32`, `NIL` for none) rather than pointers,
//! which keeps the struct small and the code safe.
#![forbid(unsafe_code)]

use super::MigrateType;

/// "No frame" in a free-list link.
pub(crate) const NIL: u32 = u32::MAX;

/// What a frame currently is. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageState {
    Hole = 0,
    Reserved = 1,
    Tail = 2,
    Buddy = 3,
    Head = 4,
    Pcp = 5,
    Held = 6,
}

impl PageState {
    #[inline]
    const fn from_u8(v: u8) -> PageState {
        match v {
            1 => PageState::Reserved,
            2 => PageState::Tail,
            3 => PageState::Buddy,
            4 => PageState::Head,
            5 => PageState::Pcp,
            6 => PageState::Held,
            // Anything unknown is treated as "no RAM": the safest reading of garbage.
            _ => PageState::Hole,
        }
    }
}

/// Who holds an allocated block, and therefore whether mm may move or drop it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OwnerKind {
    /// Freshly allocated, owner not recorded yet. Treated as unmovable.
    None = 0,
    /// Kernel/firmware data structures: never moved.
    Kernel = 1,
    /// Long-term pinned user memory (device DMA into it): never moved, never in Cma blocks.
    Pinned = 2,
    /// Anonymous memory: movable by copying and re-pointing its mappings.
    Anon = 3,
    /// Page cache: clean blocks can be dropped (reclaimed), dirty ones migrated.
    PageCache = 4,
    /// Buffer exported through dma-buf: pinned while it exists.
    DmaBuf = 5,
    /// Taken by `alloc_contig_range` (CMA allocations): pinned by definition.
    Contig = 6,
}

impl OwnerKind {
    const fn from_u8(v: u8) -> OwnerKind {
        match v {
            0 => OwnerKind::None,
            2 => OwnerKind::Pinned,
            3 => OwnerKind::Anon,
            4 => OwnerKind::PageCache,
            5 => OwnerKind::DmaBuf,
            6 => OwnerKind::Contig,
            // Unknown kinds are read as Kernel: never move what we do not understand.
            _ => OwnerKind::Kernel,
        }
    }

    /// Can a [`crate::mm::Migrator`] copy this block elsewhere?
    #[inline]
    pub const fn is_movable(self) -> bool {
        matches!(self, OwnerKind::Anon | OwnerKind::PageCache)
    }

    /// Can a clean block of this kind simply be dropped?
    #[inline]
    pub const fn is_reclaimable(self) -> bool {
        matches!(self, OwnerKind::PageCache)
    }
}

/// Owner of an allocated block: kind in the top 8 bits, a 56-bit owner-private id below
/// (an object number, an address-space id, a buffer handle...). Stored in the head [`Page`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Owner(u64);

impl Owner {
    /// Largest id that fits.
    pub const ID_MAX: u64 = (1 << 56) - 1;
    /// No owner recorded.
    pub const NONE: Owner = Owner(0);
    /// What `alloc_contig_range` records on the frames it hands out: kind `Contig`, and
    /// an id of the call (see `Zone::new_contig_owner`), so that frames the call took
    /// itself can be told from those of other contiguous allocations.
    #[inline]
    pub const fn contig(call: u64) -> Owner {
        Owner::new(OwnerKind::Contig, call)
    }

    /// Build an owner; ids above [`Owner::ID_MAX`] are truncated to 56 bits, so keep ids
    /// small (indices, not pointers).
    #[inline]
    pub const fn new(kind: OwnerKind, id: u64) -> Owner {
        Owner(((kind as u64) << 56) | (id & Self::ID_MAX))
    }

    #[inline]
    pub const fn kind(self) -> OwnerKind {
        OwnerKind::from_u8((self.0 >> 56) as u8)
    }

    /// `self.kind().is_movable()` without decoding the kind.
    #[inline]
    pub const fn is_movable(self) -> bool {
        self.is(OwnerKind::Anon) || self.is(OwnerKind::PageCache)
    }

    /// `self.kind() == kind`, without decoding: one compare for hot loops.
    #[inline]
    pub const fn is(self, kind: OwnerKind) -> bool {
        (self.0 >> 56) as u8 == kind as u8
    }

    #[inline]
    pub const fn id(self) -> u64 {
        self.0 & Self::ID_MAX
    }

    /// The raw 64-bit encoding, for storing elsewhere.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    #[inline]
    pub const fn from_raw(raw: u64) -> Owner {
        Owner(raw)
    }
}

/// Per-frame metadata. Fields are private: only the zone changes them, so its lists and
/// counters cannot be corrupted from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Page {
    owner: u64,
    next: u32,
    prev: u32,
    state: u8,
    order: u8,
    /// Buddy: the free list it is on. Head: the migrate type it was allocated as (Cma for
    /// `alloc_contig_range` frames).
    migratetype: u8,
}

impl Page {
    /// A hole; also what all-zero memory reads as.
    pub const HOLE: Page = Page {
        owner: 0,
        next: 0,
        prev: 0,
        state: 0,
        order: 0,
        migratetype: 0,
    };

    #[inline]
    pub fn state(&self) -> PageState {
        PageState::from_u8(self.state)
    }

    /// `state() == Buddy`, in one compare (for walks over many frames).
    #[inline]
    pub fn is_buddy(&self) -> bool {
        self.state == PageState::Buddy as u8
    }

    /// `state() == Held`, in one compare (for walks over many frames).
    #[inline]
    pub fn is_held(&self) -> bool {
        self.state == PageState::Held as u8
    }

    /// The head of an allocated order-0 block, in one compare of the two bytes.
    #[inline]
    pub fn is_order0_head(&self) -> bool {
        // The two adjacent bytes compared as one halfword.
        u16::from_le_bytes([self.state, self.order]) == PageState::Head as u16
    }

    /// Order of a `Buddy` or `Head` frame (0 for others).
    #[inline]
    pub fn order(&self) -> usize {
        self.order as usize
    }

    /// For `Buddy`, the free list it is on; for `Head`, the type it was allocated as.
    #[inline]
    pub fn migratetype(&self) -> MigrateType {
        MigrateType::from_u8(self.migratetype).unwrap_or(MigrateType::Unmovable)
    }

    /// Owner of a `Head` frame.
    #[inline]
    pub fn owner(&self) -> Owner {
        Owner(self.owner)
    }

    #[inline]
    pub(crate) fn set(&mut self, state: PageState, order: usize, mt: MigrateType) {
        self.state = state as u8;
        self.order = order as u8;
        self.migratetype = mt as u8;
    }

    /// Make this a pcp frame on the list of the pcp type whose byte is `list` (the
    /// pageblock's type byte, already checked to be a pcp type).
    #[inline]
    pub(crate) fn set_pcp(&mut self, list: u8) {
        self.state = PageState::Pcp as u8;
        self.order = 0;
        self.migratetype = list;
    }

    #[inline]
    pub(crate) fn set_migratetype(&mut self, mt: MigrateType) {
        self.migratetype = mt as u8;
    }

    /// The migrate-type byte as stored, for saving and restoring it unchanged.
    #[inline]
    pub(crate) fn migratetype_raw(&self) -> u8 {
        self.migratetype
    }

    #[inline]
    pub(crate) fn set_migratetype_raw(&mut self, raw: u8) {
        self.migratetype = raw;
    }

    #[inline]
    pub(crate) fn set_state(&mut self, state: PageState) {
        self.state = state as u8;
        self.order = 0;
    }

    #[inline]
    pub(crate) fn set_owner(&mut self, owner: Owner) {
        self.owner = owner.0;
    }

    #[inline]
    pub(crate) fn next(&self) -> u32 {
        self.next
    }

    #[inline]
    pub(crate) fn prev(&self) -> u32 {
        self.prev
    }

    #[inline]
    pub(crate) fn set_links(&mut self, prev: u32, next: u32) {
        self.prev = prev;
        self.next = next;
    }

    #[inline]
    pub(crate) fn set_next(&mut self, next: u32) {
        self.next = next;
    }

    #[inline]
    pub(crate) fn set_prev(&mut self, prev: u32) {
        self.prev = prev;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_small_and_zero_is_a_hole() {
        assert!(
            core::mem::size_of::<Page>() <= 24,
            "Page grew to {}",
            core::mem::size_of::<Page>()
        );
        assert_eq!(Page::default().state(), PageState::Hole);
        assert_eq!(Page::HOLE, Page::default());
    }

    #[test]
    fn owner_round_trips_kind_and_id() {
        for kind in [
            OwnerKind::None,
            OwnerKind::Kernel,
            OwnerKind::Pinned,
            OwnerKind::Anon,
            OwnerKind::PageCache,
            OwnerKind::DmaBuf,
            OwnerKind::Contig,
        ] {
            let o = Owner::new(kind, 0x12_3456_789a);
            assert_eq!(o.kind(), kind);
            assert_eq!(o.id(), 0x12_3456_789a);
            assert_eq!(Owner::from_raw(o.raw()), o);
        }
        assert_eq!(Owner::new(OwnerKind::Anon, u64::MAX).id(), Owner::ID_MAX);
        assert_eq!(
            Owner::new(OwnerKind::Anon, u64::MAX).kind(),
            OwnerKind::Anon
        );
        assert_eq!(Owner::from_raw(0xff << 56).kind(), OwnerKind::Kernel);
    }

    #[test]
    fn only_anon_and_page_cache_move() {
        assert!(OwnerKind::Anon.is_movable());
        assert!(OwnerKind::PageCache.is_movable());
        assert!(OwnerKind::PageCache.is_reclaimable());
        assert!(!OwnerKind::Anon.is_reclaimable());
        for k in [
            OwnerKind::None,
            OwnerKind::Kernel,
            OwnerKind::Pinned,
            OwnerKind::DmaBuf,
            OwnerKind::Contig,
        ] {
            assert!(!k.is_movable());
        }
    }
}
