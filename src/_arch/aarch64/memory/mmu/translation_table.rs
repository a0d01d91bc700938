//! VMSAv8-64 stage-1 translation tables: 4 KiB granule, 48-bit virtual addresses.
//!
//! # Theory of operation
//!
//! A 48-bit address space with a 4 KiB granule is walked in four levels (L0..L3); each table
//! is one 4 KiB page of 512 eight-byte descriptors and each level resolves nine address bits.
//! An L1 entry may be a 1 GiB block, an L2 entry a 2 MiB block, an L3 entry a 4 KiB page;
//! anything else is a pointer to the next table. [`TranslationTables::map_range`] always
//! picks the largest block whose virtual and physical addresses are both aligned to it and
//! which fits in what is left of the range, so RAM costs a handful of descriptors while the
//! pages around the kernel image still get their own permissions.
//!
//! The tables are plain boxed pages from the kernel heap. A table descriptor holds the
//! table's address; because the kernel runs on an identity map of its heap, that address is
//! also the physical address the hardware walker needs. The software side never follows a
//! descriptor through a raw pointer: every table we own is kept in a list sorted by address,
//! and a walk looks the next table up there. That keeps this module free of `unsafe`, and
//! lets the host test suite build and walk the very same tables the firmware installs.
//!
//! Every descriptor is an `AtomicU64`: the walker reads the tables concurrently with us, and
//! a descriptor must change in one single-copy-atomic 64-bit store, never torn. What must
//! happen between stores (barriers, TLB invalidation) is hardware business, so the mutating
//! calls take a [`WalkerSync`] which the hardware layer implements with DSB/TLBI/ISB and the
//! host tests implement by recording what was asked.
#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// The 4 KiB granule is the kernel's page: one definition, in [`crate::util::size`].
pub use crate::util::{PAGE_SHIFT, PAGE_SIZE};
pub const ENTRIES_PER_TABLE: usize = 512;
/// Virtual address bits translated through TTBR0 (T0SZ = 64 - VA_BITS).
pub const VA_BITS: u32 = 48;
/// Output addresses sit in descriptor bits [47:12].
const OUTPUT_ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Bytes mapped by one entry of a level-`level` table (L0 = 512 GiB .. L3 = 4 KiB).
pub const fn level_span(level: usize) -> u64 {
    1 << (PAGE_SHIFT as usize + 9 * (3 - level))
}

fn index_at(va: u64, level: usize) -> usize {
    ((va >> (PAGE_SHIFT as usize + 9 * (3 - level))) & 0x1ff) as usize
}

/// Memory types, in the order of the MAIR_EL1 attribute slots the hardware layer programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Normal, inner/outer write-back write-allocate (MAIR slot 0).
    Normal,
    /// Device-nGnRE (MAIR slot 1).
    Device,
    /// Normal, inner/outer non-cacheable (MAIR slot 2), for buffers shared with devices that
    /// do not snoop caches.
    NormalNonCacheable,
}

impl MemoryKind {
    pub const fn mair_index(self) -> u64 {
        match self {
            MemoryKind::Normal => 0,
            MemoryKind::Device => 1,
            MemoryKind::NormalNonCacheable => 2,
        }
    }

    fn from_mair_index(index: u64) -> Option<MemoryKind> {
        match index {
            0 => Some(MemoryKind::Normal),
            1 => Some(MemoryKind::Device),
            2 => Some(MemoryKind::NormalNonCacheable),
            _ => None,
        }
    }
}

/// MAIR_EL1 value matching [`MemoryKind::mair_index`].
pub const MAIR_EL1_VALUE: u64 = 0xff /* Normal WB-WA RW-alloc */
    | (0x04 << 8) /* Device-nGnRE */
    | (0x44 << 16) /* Normal non-cacheable */;

/// How a range is mapped. Only EL1 ever touches these mappings; EL0 gets no access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    pub kind: MemoryKind,
    pub writable: bool,
    pub executable: bool,
}

impl Attributes {
    pub const RAM: Attributes = Attributes {
        kind: MemoryKind::Normal,
        writable: true,
        executable: false,
    };
    pub const KERNEL_TEXT: Attributes = Attributes {
        kind: MemoryKind::Normal,
        writable: false,
        executable: true,
    };
    pub const KERNEL_RODATA: Attributes = Attributes {
        kind: MemoryKind::Normal,
        writable: false,
        executable: false,
    };
    pub const DEVICE: Attributes = Attributes {
        kind: MemoryKind::Device,
        writable: true,
        executable: false,
    };
}

mod bits {
    pub const VALID: u64 = 1 << 0;
    /// In L0..L2: table (set) or block (clear). In L3 it must be set for a page.
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    pub const ATTR_INDEX_SHIFT: u64 = 2;
    pub const ATTR_INDEX_MASK: u64 = 0b111 << ATTR_INDEX_SHIFT;
    /// AP[2]: read-only at every EL.
    pub const READ_ONLY: u64 = 1 << 7;
    pub const INNER_SHAREABLE: u64 = 0b11 << 8;
    /// Set up front: we do not use access-flag faults for page aging.
    pub const ACCESS_FLAG: u64 = 1 << 10;
    pub const PRIVILEGED_EXECUTE_NEVER: u64 = 1 << 53;
    pub const UNPRIVILEGED_EXECUTE_NEVER: u64 = 1 << 54;
}

/// Why a mapping request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// An address or length is not a multiple of the 4 KiB page size.
    Misaligned,
    /// The virtual address does not fit in the 48-bit space, or the physical one in the
    /// descriptor's output-address field.
    AddressOutOfRange,
    /// Part of the range already has a valid mapping (mapping never silently overwrites).
    AlreadyMapped,
    /// There is no page mapping at that address.
    NotMapped,
    /// The address is outside the movable window.
    NotInWindow,
    /// The physical page is not RAM described by the platform.
    NotRam,
    /// The kernel heap could not provide a table page.
    OutOfMemory,
    /// The MMU is not on yet, so there are no tables to change.
    MmuOff,
    /// The page is mapped, but to another frame than the caller expected.
    WrongFrame,
    /// A page mover was asked to make an entry it has not broken, or before the TLB
    /// entries of its broken pages were invalidated.
    NotBroken,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match self {
            MapError::Misaligned => "address or length not page aligned",
            MapError::AddressOutOfRange => "address beyond the 48-bit translation range",
            MapError::AlreadyMapped => "range already mapped",
            MapError::NotMapped => "no page mapped there",
            MapError::NotInWindow => "address outside the movable window",
            MapError::NotRam => "physical page is not RAM",
            MapError::OutOfMemory => "kernel heap exhausted while allocating a page table",
            MapError::MmuOff => "the MMU is not enabled yet",
            MapError::WrongFrame => "page is mapped to another frame than expected",
            MapError::NotBroken => "entry not broken (or its TLB entries not invalidated yet)",
        };
        f.write_str(text)
    }
}

/// Ordering and TLB duties the hardware walker imposes on table updates.
pub trait WalkerSync {
    /// Make every table store so far visible to the walker before anything that follows
    /// (a freshly zeroed table before the descriptor that links it, a new entry before use).
    fn publish(&self);
    /// A valid leaf for `va` was just replaced by an invalid descriptor: make that visible
    /// and drop any TLB entry for `va`, on every core, before the caller goes on.
    fn invalidate_va(&self, va: u64);
    /// [`WalkerSync::invalidate_va`] for many pages at once, all already invalid in the
    /// tables. Implementations can share the barriers (or flush everything for big sets);
    /// the default handles one page at a time.
    /// `count` is the number of addresses `vas` yields.
    fn invalidate_vas<I: Iterator<Item = u64>>(&self, vas: I, count: usize) {
        let _ = count;
        for va in vas {
            self.invalidate_va(va);
        }
    }
}

/// For tables the walker cannot see yet (built with the MMU off) and for host tests.
pub struct NotLive;

impl WalkerSync for NotLive {
    fn publish(&self) {}
    fn invalidate_va(&self, _va: u64) {}
}

/// One 4 KiB translation table.
#[repr(C, align(4096))]
pub struct PageTable {
    entries: [AtomicU64; ENTRIES_PER_TABLE],
}

impl PageTable {
    fn empty() -> PageTable {
        PageTable {
            entries: [const { AtomicU64::new(0) }; ENTRIES_PER_TABLE],
        }
    }
}

/// A leaf mapping found by a software walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// Physical address `va` translates to.
    pub pa: u64,
    /// Level of the leaf: 1 (1 GiB block), 2 (2 MiB block) or 3 (4 KiB page).
    pub level: usize,
    pub attributes: Attributes,
}

/// A set of stage-1 tables rooted at one L0 table.
pub struct TranslationTables {
    /// Every table we own, the root included, in creation order: tables are never freed, so
    /// an index into this list names a table for good. A table is a one-element boxed slice
    /// because that is how a page-aligned allocation can fail without panicking.
    tables: Vec<Box<[PageTable]>>,
    /// `(address, index into tables)` sorted by address: how a walk follows a descriptor.
    by_address: Vec<(u64, u32)>,
    root: u64,
    /// Direct index of the L3 tables of one virtual range (the movable window), so the
    /// page-sized remaps of migration find their entry in O(1) instead of walking.
    window: Option<WindowIndex>,
}

/// L3 tables of `[start, start + len)` by 2 MiB slot: `gib[(va - start) >> 30]` holds, per
/// 2 MiB of that GiB, one plus the index of the L3 table in `tables` (0: not known yet).
/// It is a cache of facts the tables never take back (an L3 table, once linked, stays
/// linked), filled when a page mapping is made; an address it does not know is walked.
struct WindowIndex {
    start: u64,
    len: u64,
    gib: Vec<Option<Box<[u32]>>>,
}

impl WindowIndex {
    fn position(&self, va: u64) -> Option<(usize, usize)> {
        let offset = va.checked_sub(self.start).filter(|&o| o < self.len)?;
        Some(((offset >> 30) as usize, ((offset >> 21) & 0x1ff) as usize))
    }

    fn l3_table(&self, va: u64) -> Option<usize> {
        let (gib, slot) = self.position(va)?;
        let entry = self.gib.get(gib)?.as_ref()?[slot];
        entry.checked_sub(1).map(|i| i as usize)
    }

    /// Remember the L3 table of `va`; silently skipped if the heap cannot hold the index.
    fn record(&mut self, va: u64, table_index: usize) {
        let Some((gib, slot)) = self.position(va) else {
            return;
        };
        let Some(entry) = self.gib.get_mut(gib) else {
            return;
        };
        if entry.is_none() {
            let mut slots = Vec::new();
            if slots.try_reserve_exact(ENTRIES_PER_TABLE).is_err() {
                return;
            }
            slots.resize(ENTRIES_PER_TABLE, 0u32);
            *entry = Some(slots.into_boxed_slice());
        }
        if let Some(slots) = entry.as_mut() {
            slots[slot] = table_index as u32 + 1;
        }
    }
}

fn table_address(table: &[PageTable]) -> u64 {
    table.as_ptr() as usize as u64
}

impl TranslationTables {
    pub fn new() -> Result<TranslationTables, MapError> {
        let root_table = Self::allocate_table()?;
        let root = table_address(&root_table);
        let mut tables = Vec::new();
        tables.try_reserve(64).map_err(|_| MapError::OutOfMemory)?;
        let mut by_address = Vec::new();
        by_address
            .try_reserve(64)
            .map_err(|_| MapError::OutOfMemory)?;
        tables.push(root_table);
        by_address.push((root, 0));
        Ok(TranslationTables {
            tables,
            by_address,
            root,
            window: None,
        })
    }

    /// Keep a direct index of the L3 tables of `[start, start + len)` (2 MiB aligned), so
    /// [`PageMover`] and the page lookups reach a page entry there in O(1).
    pub fn index_window(&mut self, start: u64, len: u64) -> Result<(), MapError> {
        if !start.is_multiple_of(level_span(2)) || !len.is_multiple_of(level_span(2)) {
            return Err(MapError::Misaligned);
        }
        let gibs = len.div_ceil(level_span(1)) as usize;
        let mut gib = Vec::new();
        gib.try_reserve_exact(gibs)
            .map_err(|_| MapError::OutOfMemory)?;
        gib.resize_with(gibs, || None);
        self.window = Some(WindowIndex { start, len, gib });
        Ok(())
    }

    /// Physical address of the L0 table, for TTBR0_EL1.
    pub fn root_address(&self) -> u64 {
        self.root
    }

    /// Addresses of all table pages, ascending (for cache maintenance before the walker
    /// reads them).
    pub fn table_addresses(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_address.iter().map(|&(address, _)| address)
    }

    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    fn allocate_table() -> Result<Box<[PageTable]>, MapError> {
        let mut one = Vec::new();
        one.try_reserve_exact(1)
            .map_err(|_| MapError::OutOfMemory)?;
        one.push(PageTable::empty());
        Ok(one.into_boxed_slice())
    }

    fn table_index(&self, address: u64) -> Option<usize> {
        let at = self
            .by_address
            .binary_search_by_key(&address, |&(a, _)| a)
            .ok()?;
        Some(self.by_address[at].1 as usize)
    }

    fn table(&self, address: u64) -> Option<&PageTable> {
        self.tables[self.table_index(address)?].first()
    }

    fn entry(&self, table: u64, index: usize) -> Option<&AtomicU64> {
        self.table(table).map(|t| &t.entries[index])
    }

    /// The table the level-`level` descriptor for `va` points to, creating it if absent.
    fn next_table_or_create(
        &mut self,
        table: u64,
        level: usize,
        va: u64,
        sync: &impl WalkerSync,
    ) -> Result<u64, MapError> {
        let descriptor = self
            .entry(table, index_at(va, level))
            .ok_or(MapError::NotMapped)?
            .load(Ordering::Relaxed);
        if descriptor & bits::VALID != 0 {
            // A block already covers this range; splitting it would silently change live
            // mappings, which is not what a map call asks for.
            if descriptor & bits::TABLE_OR_PAGE == 0 {
                return Err(MapError::AlreadyMapped);
            }
            return Ok(descriptor & OUTPUT_ADDRESS_MASK);
        }
        self.tables
            .try_reserve(1)
            .map_err(|_| MapError::OutOfMemory)?;
        self.by_address
            .try_reserve(1)
            .map_err(|_| MapError::OutOfMemory)?;
        let new_table = Self::allocate_table()?;
        let new_address = table_address(&new_table);
        let at = self
            .by_address
            .binary_search_by_key(&new_address, |&(a, _)| a)
            .unwrap_or_else(|at| at);
        self.by_address
            .insert(at, (new_address, self.tables.len() as u32));
        self.tables.push(new_table);
        // The zeroed table must be visible before the walker can follow a link to it.
        sync.publish();
        if let Some(slot) = self.entry(table, index_at(va, level)) {
            slot.store(
                new_address | bits::TABLE_OR_PAGE | bits::VALID,
                Ordering::Relaxed,
            );
        }
        sync.publish();
        Ok(new_address)
    }

    fn leaf_descriptor(pa: u64, attributes: Attributes, level: usize) -> u64 {
        let mut descriptor = (pa & OUTPUT_ADDRESS_MASK)
            | bits::VALID
            | (attributes.kind.mair_index() << bits::ATTR_INDEX_SHIFT)
            | bits::INNER_SHAREABLE
            | bits::ACCESS_FLAG
            | bits::UNPRIVILEGED_EXECUTE_NEVER;
        if level == 3 {
            descriptor |= bits::TABLE_OR_PAGE;
        }
        if !attributes.writable {
            descriptor |= bits::READ_ONLY;
        }
        if !attributes.executable {
            descriptor |= bits::PRIVILEGED_EXECUTE_NEVER;
        }
        descriptor
    }

    fn check_addresses(va: u64, pa: u64, len: u64) -> Result<(), MapError> {
        if !va.is_multiple_of(PAGE_SIZE)
            || !pa.is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
        {
            return Err(MapError::Misaligned);
        }
        let va_end = va.checked_add(len).ok_or(MapError::AddressOutOfRange)?;
        let pa_end = pa.checked_add(len).ok_or(MapError::AddressOutOfRange)?;
        if va_end > 1 << VA_BITS || pa_end > OUTPUT_ADDRESS_MASK + PAGE_SIZE {
            return Err(MapError::AddressOutOfRange);
        }
        Ok(())
    }

    /// Map `[va, va + len)` to `[pa, pa + len)` with the largest blocks alignment allows.
    /// Nothing in the range may be mapped already. On error, the part mapped before the
    /// error stays mapped.
    pub fn map_range(
        &mut self,
        va: u64,
        pa: u64,
        len: u64,
        attributes: Attributes,
        sync: &impl WalkerSync,
    ) -> Result<(), MapError> {
        Self::check_addresses(va, pa, len)?;
        let mut done = 0;
        while done < len {
            let (v, p, left) = (va + done, pa + done, len - done);
            // Blocks exist at L1 and L2 only; L3 holds pages.
            let level = (1..=3)
                .find(|&level| {
                    let span = level_span(level);
                    v.is_multiple_of(span) && p.is_multiple_of(span) && left >= span
                })
                .unwrap_or(3);
            self.map_leaf(v, p, level, attributes, sync)?;
            done += level_span(level);
        }
        Ok(())
    }

    fn map_leaf(
        &mut self,
        va: u64,
        pa: u64,
        leaf_level: usize,
        attributes: Attributes,
        sync: &impl WalkerSync,
    ) -> Result<(), MapError> {
        let mut table = self.root;
        for level in 0..leaf_level {
            table = self.next_table_or_create(table, level, va, sync)?;
        }
        let slot = self
            .entry(table, index_at(va, leaf_level))
            .ok_or(MapError::NotMapped)?;
        if slot.load(Ordering::Relaxed) & bits::VALID != 0 {
            return Err(MapError::AlreadyMapped);
        }
        slot.store(
            Self::leaf_descriptor(pa, attributes, leaf_level),
            Ordering::Relaxed,
        );
        sync.publish();
        if leaf_level == 3 {
            self.remember_l3(va, table);
        }
        Ok(())
    }

    fn remember_l3(&mut self, va: u64, table: u64) {
        let in_window = self
            .window
            .as_ref()
            .is_some_and(|w| w.position(va).is_some() && w.l3_table(va).is_none());
        if !in_window {
            return;
        }
        if let Some(index) = self.table_index(table) {
            if let Some(window) = self.window.as_mut() {
                window.record(va, index);
            }
        }
    }

    /// Map one 4 KiB page.
    pub fn map_page(
        &mut self,
        va: u64,
        pa: u64,
        attributes: Attributes,
        sync: &impl WalkerSync,
    ) -> Result<(), MapError> {
        Self::check_addresses(va, pa, PAGE_SIZE)?;
        self.map_leaf(va, pa, 3, attributes, sync)
    }

    /// The L3 slot holding the page mapping of `va`, if `va` is mapped by a 4 KiB page:
    /// straight from the window index when it knows `va`'s L3 table, else by a walk.
    fn page_slot(&self, va: u64) -> Result<&AtomicU64, MapError> {
        if !va.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        if va >= 1 << VA_BITS {
            return Err(MapError::AddressOutOfRange);
        }
        if let Some(index) = self.window.as_ref().and_then(|w| w.l3_table(va)) {
            let slot = &self.tables[index][0].entries[index_at(va, 3)];
            if slot.load(Ordering::Relaxed) & bits::VALID == 0 {
                return Err(MapError::NotMapped);
            }
            return Ok(slot);
        }
        let mut table = self.root;
        for level in 0..3 {
            let descriptor = self
                .entry(table, index_at(va, level))
                .ok_or(MapError::NotMapped)?
                .load(Ordering::Relaxed);
            if descriptor & (bits::VALID | bits::TABLE_OR_PAGE) != bits::VALID | bits::TABLE_OR_PAGE
            {
                return Err(MapError::NotMapped);
            }
            table = descriptor & OUTPUT_ADDRESS_MASK;
        }
        let slot = self
            .entry(table, index_at(va, 3))
            .ok_or(MapError::NotMapped)?;
        if slot.load(Ordering::Relaxed) & bits::VALID == 0 {
            return Err(MapError::NotMapped);
        }
        Ok(slot)
    }

    /// Point the page mapping of `va` at `new_pa`, keeping its attributes, with
    /// break-before-make: the old entry is invalidated and its TLB entries dropped before the
    /// new one is written, so no core can ever hold both translations. Returns the old PA.
    pub fn remap_page(
        &mut self,
        va: u64,
        new_pa: u64,
        sync: &impl WalkerSync,
    ) -> Result<u64, MapError> {
        Self::check_addresses(va, new_pa, PAGE_SIZE)?;
        let slot = self.page_slot(va)?;
        let old = slot.load(Ordering::Relaxed);
        slot.store(0, Ordering::Relaxed);
        sync.invalidate_va(va);
        slot.store(
            (old & !OUTPUT_ADDRESS_MASK) | (new_pa & OUTPUT_ADDRESS_MASK),
            Ordering::Relaxed,
        );
        sync.publish();
        Ok(old & OUTPUT_ADDRESS_MASK)
    }

    /// A [`PageMover`] over these tables: break-before-make for many pages, one TLB
    /// synchronisation for all of them.
    pub fn page_mover<'t, S: WalkerSync>(&'t self, sync: &'t S) -> PageMover<'t, S> {
        PageMover {
            sync,
            cursor: L3Cursor {
                tables: self,
                key: u64::MAX,
                l3: None,
            },
            broken: 0,
            synced: true,
            dropped: 0,
        }
    }

    /// Index (into `tables`) of the L3 table that holds `va`'s entry, if it exists.
    fn l3_table_index(&self, va: u64) -> Option<usize> {
        if let Some(index) = self.window.as_ref().and_then(|w| w.l3_table(va)) {
            return Some(index);
        }
        self.table_index(self.l3_table_by_walk(va)?)
    }

    /// Address of the L3 table covering `va`, by a full walk from the root through table
    /// descriptors (None where a level holds a block or nothing).
    fn l3_table_by_walk(&self, va: u64) -> Option<u64> {
        let mut table = self.root;
        for level in 0..3 {
            let descriptor = self
                .entry(table, index_at(va, level))?
                .load(Ordering::Relaxed);
            if descriptor & (bits::VALID | bits::TABLE_OR_PAGE) != bits::VALID | bits::TABLE_OR_PAGE
            {
                return None;
            }
            table = descriptor & OUTPUT_ADDRESS_MASK;
        }
        Some(table)
    }

    /// The L3 entry for `va` by a full walk from the root (the window index ignored), for
    /// tests that check the index against the tables.
    #[cfg(test)]
    fn leaf_entry_by_walk(&self, va: u64) -> Option<&AtomicU64> {
        self.entry(self.l3_table_by_walk(va)?, index_at(va, 3))
    }

    /// Remove the page mapping of `va`; returns the PA it pointed to. Table pages that
    /// become empty are kept for the next mapping in the same 2 MiB.
    pub fn unmap_page(&mut self, va: u64, sync: &impl WalkerSync) -> Result<u64, MapError> {
        let slot = self.page_slot(va)?;
        let old = slot.load(Ordering::Relaxed);
        slot.store(0, Ordering::Relaxed);
        sync.invalidate_va(va);
        Ok(old & OUTPUT_ADDRESS_MASK)
    }

    /// Software walk: what `va` translates to in these tables.
    pub fn walk(&self, va: u64) -> Option<Leaf> {
        if va >= 1 << VA_BITS {
            return None;
        }
        let mut table = self.root;
        for level in 0..=3 {
            let descriptor = self
                .entry(table, index_at(va, level))?
                .load(Ordering::Relaxed);
            if descriptor & bits::VALID == 0 {
                return None;
            }
            let is_table_or_page = descriptor & bits::TABLE_OR_PAGE != 0;
            if level < 3 && is_table_or_page {
                table = descriptor & OUTPUT_ADDRESS_MASK;
                continue;
            }
            // An L0 block or an L3 entry with bit 1 clear is reserved: treat as a fault.
            if level == 0 || (level == 3 && !is_table_or_page) {
                return None;
            }
            let span = level_span(level);
            let kind = MemoryKind::from_mair_index(
                (descriptor & bits::ATTR_INDEX_MASK) >> bits::ATTR_INDEX_SHIFT,
            )?;
            let attributes = Attributes {
                kind,
                writable: descriptor & bits::READ_ONLY == 0,
                executable: descriptor & bits::PRIVILEGED_EXECUTE_NEVER == 0,
            };
            let block_base = descriptor & OUTPUT_ADDRESS_MASK & !(span - 1);
            return Some(Leaf {
                pa: block_base + (va & (span - 1)),
                level,
                attributes,
            });
        }
        None
    }
}

/// Break-before-make for many page mappings, driven page by page by the caller, with one
/// TLB synchronisation for all of them (how migration re-points a batch of window pages).
///
/// 1. [`PageMover::break_page`] each page: its descriptor loses only its valid bit, so the
///    attributes stay in the (ignored) rest of the invalid entry for the make step.
/// 2. [`PageMover::invalidate_broken`] once: the invalid entries become visible to the
///    walkers and every TLB entry of the broken pages is dropped.
/// 3. Copy the data, then [`PageMover::make_page`] each page at its new frame (or
///    [`PageMover::restore_page`] it at its old one).
/// 4. [`PageMover::finish`]: publishes the new entries; returns how many pages are still
///    broken (a caller bug: those pages fault on access).
///
/// Consecutive pages in one 2 MiB share their L3 table lookup.
pub struct PageMover<'t, S: WalkerSync> {
    sync: &'t S,
    cursor: L3Cursor<'t>,
    broken: usize,
    /// Every break so far has had its TLB entries invalidated.
    synced: bool,
    /// Pages dropped ([`PageMover::drop_page`]) whose TLB entries are not invalidated yet.
    dropped: usize,
}

/// Finds L3 entries, remembering the last 2 MiB's table. Small and `Copy`, so the bulk
/// operations keep it in registers for the length of their loop.
#[derive(Clone, Copy)]
struct L3Cursor<'t> {
    tables: &'t TranslationTables,
    /// `va >> 21` of the last lookup, and that 2 MiB's L3 table.
    key: u64,
    l3: Option<&'t PageTable>,
}

impl<'t> L3Cursor<'t> {
    /// The L3 entry for `va`, whatever it holds.
    #[inline(always)]
    fn entry(&mut self, va: u64) -> Option<&'t AtomicU64> {
        let key = va >> level_span(2).trailing_zeros();
        if key != self.key {
            let tables = self.tables;
            self.l3 = tables
                .l3_table_index(va)
                .and_then(|index| tables.tables.get(index))
                .and_then(|table| table.first());
            self.key = key;
        }
        self.l3.map(|table| &table.entries[index_at(va, 3)])
    }

    /// See [`PageMover::break_page`].
    #[inline(always)]
    fn break_page(&mut self, va: u64, expected_pa: u64) -> Result<(), MapError> {
        if (va | expected_pa) & (PAGE_SIZE - 1) != 0 {
            return Err(MapError::Misaligned);
        }
        if va >= 1 << VA_BITS {
            return Err(MapError::AddressOutOfRange);
        }
        let entry = self.entry(va).ok_or(MapError::NotMapped)?;
        let old = entry.load(Ordering::Relaxed);
        if old & (bits::VALID | bits::TABLE_OR_PAGE) != bits::VALID | bits::TABLE_OR_PAGE {
            return Err(MapError::NotMapped);
        }
        if old & OUTPUT_ADDRESS_MASK != expected_pa {
            return Err(MapError::WrongFrame);
        }
        entry.store(old & !bits::VALID, Ordering::Relaxed);
        Ok(())
    }

    /// See [`PageMover::drop_page`].
    #[inline(always)]
    fn drop_page(&mut self, va: u64, expected_pa: u64) -> Result<(), MapError> {
        if (va | expected_pa) & (PAGE_SIZE - 1) != 0 {
            return Err(MapError::Misaligned);
        }
        if va >= 1 << VA_BITS {
            return Err(MapError::AddressOutOfRange);
        }
        let entry = self.entry(va).ok_or(MapError::NotMapped)?;
        let old = entry.load(Ordering::Relaxed);
        if old & (bits::VALID | bits::TABLE_OR_PAGE) != bits::VALID | bits::TABLE_OR_PAGE {
            return Err(MapError::NotMapped);
        }
        if old & OUTPUT_ADDRESS_MASK != expected_pa {
            return Err(MapError::WrongFrame);
        }
        entry.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// A broken entry for `va`: invalid but still holding a page descriptor's bits.
    #[inline]
    fn broken_entry(&mut self, va: u64) -> Result<(&'t AtomicU64, u64), MapError> {
        if !va.is_multiple_of(PAGE_SIZE) || va >= 1 << VA_BITS {
            return Err(MapError::NotBroken);
        }
        let entry = self.entry(va).ok_or(MapError::NotBroken)?;
        let old = entry.load(Ordering::Relaxed);
        if old & (bits::VALID | bits::TABLE_OR_PAGE) != bits::TABLE_OR_PAGE {
            return Err(MapError::NotBroken);
        }
        Ok((entry, old))
    }

    /// See [`PageMover::make_page`] (the caller checks the invalidation happened).
    #[inline]
    fn make_page(&mut self, va: u64, new_pa: u64) -> Result<(), MapError> {
        if !new_pa.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        if new_pa > OUTPUT_ADDRESS_MASK {
            return Err(MapError::AddressOutOfRange);
        }
        let (entry, old) = self.broken_entry(va)?;
        entry.store(
            (old & !OUTPUT_ADDRESS_MASK) | new_pa | bits::VALID,
            Ordering::Relaxed,
        );
        Ok(())
    }
}

impl<'t, S: WalkerSync> PageMover<'t, S> {
    /// Break the page mapping of `va`, which must map `expected_pa` (else nothing changes:
    /// [`MapError::WrongFrame`], or [`MapError::NotMapped`] if `va` has no valid page).
    #[inline(always)]
    pub fn break_page(&mut self, va: u64, expected_pa: u64) -> Result<(), MapError> {
        self.cursor.break_page(va, expected_pa)?;
        self.broken += 1;
        self.synced = false;
        Ok(())
    }

    /// Pages broken and not yet made or restored.
    pub fn broken(&self) -> usize {
        self.broken
    }

    /// Make the breaks so far visible and drop the TLB entries of every broken page. `vas`
    /// must yield the addresses broken since the last call (implementations may flush the
    /// whole TLB instead of iterating them).
    pub fn invalidate_broken<I: Iterator<Item = u64>>(&mut self, vas: I, count: usize) {
        if !self.synced {
            self.sync.invalidate_vas(vas, count);
            self.synced = true;
        }
    }

    /// Map the broken page `va` again, at `new_pa`, with the attributes it had. Refused
    /// ([`MapError::NotBroken`]) before [`PageMover::invalidate_broken`].
    #[inline]
    pub fn make_page(&mut self, va: u64, new_pa: u64) -> Result<(), MapError> {
        if !self.synced {
            return Err(MapError::NotBroken);
        }
        self.cursor.make_page(va, new_pa)?;
        self.broken -= 1;
        Ok(())
    }

    /// [`PageMover::make_page`] for every item: `page(item)` says which page and its new
    /// frame, or why the item is skipped; `done(item, outcome)` hears the result (an item
    /// whose make failed keeps its page broken: restore it). Returns how many were made.
    #[inline]
    pub fn make_pages<T>(
        &mut self,
        items: &mut [T],
        mut page: impl FnMut(&mut T) -> Result<(u64, u64), MapError>,
        mut done: impl FnMut(&mut T, Result<(), MapError>),
    ) -> usize {
        if !self.synced {
            for item in items {
                done(item, Err(MapError::NotBroken));
            }
            return 0;
        }
        let mut cursor = self.cursor;
        let mut failed = 0;
        let count = items.len();
        for item in items {
            let outcome = page(item).and_then(|(va, pa)| cursor.make_page(va, pa));
            if outcome.is_err() {
                failed += 1;
            }
            done(item, outcome);
        }
        self.cursor = cursor;
        self.broken -= count - failed;
        count - failed
    }

    /// Map the broken page `va` again at the frame it had (the move was abandoned). Needs
    /// no invalidation first: any TLB entry left for `va` translates to that same frame.
    pub fn restore_page(&mut self, va: u64) -> Result<(), MapError> {
        let (entry, old) = self.cursor.broken_entry(va)?;
        entry.store(old | bits::VALID, Ordering::Relaxed);
        self.broken -= 1;
        Ok(())
    }

    /// Remove the page mapping of `va` for good, TLB entries included, on its own (not part
    /// of the batch): for a page dropped rather than moved. Returns the PA it mapped.
    pub fn unmap_page(&mut self, va: u64) -> Result<u64, MapError> {
        if !va.is_multiple_of(PAGE_SIZE) || va >= 1 << VA_BITS {
            return Err(MapError::Misaligned);
        }
        let entry = self.cursor.entry(va).ok_or(MapError::NotMapped)?;
        let old = entry.load(Ordering::Relaxed);
        if old & (bits::VALID | bits::TABLE_OR_PAGE) != bits::VALID | bits::TABLE_OR_PAGE {
            return Err(MapError::NotMapped);
        }
        entry.store(0, Ordering::Relaxed);
        self.sync.invalidate_va(va);
        Ok(old & OUTPUT_ADDRESS_MASK)
    }

    /// Remove the page mapping of `va`, which must map `expected_pa` (else nothing changes:
    /// [`MapError::WrongFrame`], or [`MapError::NotMapped`] if `va` has no valid page), for
    /// good: for a page dropped rather than moved, many at a time. Its TLB entries go with
    /// those of the other pages dropped since, in [`PageMover::invalidate_dropped`].
    #[inline(always)]
    pub fn drop_page(&mut self, va: u64, expected_pa: u64) -> Result<(), MapError> {
        self.cursor.drop_page(va, expected_pa)?;
        self.dropped += 1;
        Ok(())
    }

    /// Make the drops so far visible and drop the TLB entries of every page dropped since
    /// the last call, which `vas` must yield (implementations may flush the whole TLB
    /// instead of iterating them).
    pub fn invalidate_dropped<I: Iterator<Item = u64>>(&mut self, vas: I) {
        if self.dropped != 0 {
            self.sync.invalidate_vas(vas, self.dropped);
            self.dropped = 0;
        }
    }

    /// Publish the new entries. Returns the number of pages left broken, or dropped without
    /// their TLB entries invalidated (should be 0).
    pub fn finish(self) -> usize {
        self.sync.publish();
        self.broken + self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;
    use std::vec;

    #[derive(Default)]
    struct Recorder {
        invalidated: RefCell<Vec<u64>>,
        publishes: RefCell<usize>,
    }

    impl WalkerSync for Recorder {
        fn publish(&self) {
            *self.publishes.borrow_mut() += 1;
        }
        fn invalidate_va(&self, va: u64) {
            self.invalidated.borrow_mut().push(va);
        }
    }

    const GIB: u64 = 1 << 30;
    const MIB2: u64 = 2 << 20;

    #[test]
    fn aligned_gigabyte_uses_one_block() {
        let mut tables = TranslationTables::new().unwrap();
        tables
            .map_range(0x4000_0000, 0x4000_0000, GIB, Attributes::RAM, &NotLive)
            .unwrap();
        // Root plus one L1 table: no L2/L3 tables are needed for a 1 GiB block.
        assert_eq!(tables.table_count(), 2);
        let leaf = tables.walk(0x4123_4567).unwrap();
        assert_eq!(
            leaf,
            Leaf {
                pa: 0x4123_4567,
                level: 1,
                attributes: Attributes::RAM
            }
        );
        assert_eq!(tables.walk(0x8000_0000), None);
        assert_eq!(tables.walk(0x3fff_ffff), None);
    }

    #[test]
    fn unaligned_range_mixes_pages_and_blocks() {
        let mut tables = TranslationTables::new().unwrap();
        let start = 0x4020_3000;
        let end = 0x4080_0000;
        tables
            .map_range(start, start, end - start, Attributes::RAM, &NotLive)
            .unwrap();
        assert_eq!(tables.walk(start).unwrap().level, 3);
        assert_eq!(tables.walk(0x403f_f000).unwrap().level, 3);
        assert_eq!(tables.walk(0x4040_0000).unwrap().level, 2);
        assert_eq!(tables.walk(0x407f_ffff).unwrap().level, 2);
        assert_eq!(tables.walk(start - 1), None);
        assert_eq!(tables.walk(end), None);
    }

    #[test]
    fn block_needs_both_addresses_aligned() {
        let mut tables = TranslationTables::new().unwrap();
        // VA 2 MiB aligned, PA only 4 KiB aligned: must fall back to pages.
        tables
            .map_range(0x20_0000_0000, 0x4000_1000, MIB2, Attributes::RAM, &NotLive)
            .unwrap();
        let leaf = tables.walk(0x20_0000_0010).unwrap();
        assert_eq!(leaf.level, 3);
        assert_eq!(leaf.pa, 0x4000_1010);
    }

    #[test]
    fn attributes_round_trip() {
        let mut tables = TranslationTables::new().unwrap();
        tables
            .map_range(
                0x4020_0000,
                0x4020_0000,
                PAGE_SIZE,
                Attributes::KERNEL_TEXT,
                &NotLive,
            )
            .unwrap();
        tables
            .map_range(
                0x4020_1000,
                0x4020_1000,
                PAGE_SIZE,
                Attributes::KERNEL_RODATA,
                &NotLive,
            )
            .unwrap();
        tables
            .map_range(
                0x0900_0000,
                0x0900_0000,
                PAGE_SIZE,
                Attributes::DEVICE,
                &NotLive,
            )
            .unwrap();
        assert_eq!(
            tables.walk(0x4020_0004).unwrap().attributes,
            Attributes::KERNEL_TEXT
        );
        assert_eq!(
            tables.walk(0x4020_1004).unwrap().attributes,
            Attributes::KERNEL_RODATA
        );
        assert_eq!(
            tables.walk(0x0900_0018).unwrap().attributes,
            Attributes::DEVICE
        );
    }

    #[test]
    fn descriptor_bits_match_the_architecture() {
        let text = TranslationTables::leaf_descriptor(0x4020_0000, Attributes::KERNEL_TEXT, 3);
        // Page, AttrIndx 0, AP[2] read-only, inner shareable, AF, UXN, PXN clear.
        assert_eq!(
            text,
            0x4020_0000 | 0b11 | (1 << 7) | (0b11 << 8) | (1 << 10) | (1 << 54)
        );
        let device = TranslationTables::leaf_descriptor(0x0800_0000, Attributes::DEVICE, 2);
        assert_eq!(
            device,
            0x0800_0000 | 0b01 | (1 << 2) | (0b11 << 8) | (1 << 10) | (1 << 53) | (1 << 54)
        );
    }

    #[test]
    fn overlapping_map_is_refused() {
        let mut tables = TranslationTables::new().unwrap();
        tables
            .map_range(0x4000_0000, 0x4000_0000, MIB2, Attributes::RAM, &NotLive)
            .unwrap();
        // A page inside an existing 2 MiB block.
        assert_eq!(
            tables.map_range(
                0x4000_1000,
                0x4000_1000,
                PAGE_SIZE,
                Attributes::RAM,
                &NotLive
            ),
            Err(MapError::AlreadyMapped)
        );
        tables
            .map_page(0x5000_0000, 0x5000_0000, Attributes::RAM, &NotLive)
            .unwrap();
        assert_eq!(
            tables.map_page(0x5000_0000, 0x6000_0000, Attributes::RAM, &NotLive),
            Err(MapError::AlreadyMapped)
        );
    }

    #[test]
    fn bad_addresses_are_errors() {
        let mut tables = TranslationTables::new().unwrap();
        assert_eq!(
            tables.map_page(0x1001, 0x2000, Attributes::RAM, &NotLive),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            tables.map_page(0x1000, 0x2001, Attributes::RAM, &NotLive),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            tables.map_range(0, 0, 0x800, Attributes::RAM, &NotLive),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            tables.map_page(1 << 48, 0, Attributes::RAM, &NotLive),
            Err(MapError::AddressOutOfRange)
        );
        assert_eq!(
            tables.map_page(0, 1 << 48, Attributes::RAM, &NotLive),
            Err(MapError::AddressOutOfRange)
        );
        assert_eq!(
            tables.unmap_page(0x1000, &NotLive),
            Err(MapError::NotMapped)
        );
        assert_eq!(
            tables.remap_page(0x1000, 0x2000, &NotLive),
            Err(MapError::NotMapped)
        );
    }

    #[test]
    fn remap_breaks_before_make_and_unmap_invalidates() {
        let mut tables = TranslationTables::new().unwrap();
        let va = 0x4000_0000_0000;
        let recorder = Recorder::default();
        tables
            .map_page(va, 0x4100_0000, Attributes::RAM, &recorder)
            .unwrap();
        assert!(*recorder.publishes.borrow() > 0);
        assert!(recorder.invalidated.borrow().is_empty());

        assert_eq!(
            tables.remap_page(va, 0x4200_0000, &recorder),
            Ok(0x4100_0000)
        );
        assert_eq!(*recorder.invalidated.borrow(), vec![va]);
        let leaf = tables.walk(va + 8).unwrap();
        assert_eq!(
            (leaf.pa, leaf.level, leaf.attributes),
            (0x4200_0008, 3, Attributes::RAM)
        );

        assert_eq!(tables.unmap_page(va, &recorder), Ok(0x4200_0000));
        assert_eq!(*recorder.invalidated.borrow(), vec![va, va]);
        assert_eq!(tables.walk(va), None);
        // The tables stay, so mapping again needs no new table page.
        let before = tables.table_count();
        tables
            .map_page(va + PAGE_SIZE, 0x4300_0000, Attributes::RAM, &NotLive)
            .unwrap();
        assert_eq!(tables.table_count(), before);
    }

    #[test]
    fn window_index_finds_l3_tables_and_the_page_mover_breaks_before_make() {
        let window = 0x4000_0000_0000u64;
        let mut tables = TranslationTables::new().unwrap();
        tables.index_window(window, 1 << 40).unwrap();
        // Pages in three different 2 MiB slots, two of them in different GiBs.
        let vas = [
            window,
            window + PAGE_SIZE,
            window + MIB2 + 5 * PAGE_SIZE,
            window + (3 << 30) + 7 * PAGE_SIZE,
        ];
        let old_pa = |i: usize| 0x4100_0000 + i as u64 * PAGE_SIZE;
        let new_pa = |i: usize| 0x4200_0000 + i as u64 * PAGE_SIZE;
        for (i, &va) in vas.iter().enumerate() {
            let attributes = if i == 3 {
                Attributes::KERNEL_RODATA
            } else {
                Attributes::RAM
            };
            tables
                .map_page(va, old_pa(i), attributes, &NotLive)
                .unwrap();
        }
        let index = tables.window.as_ref().unwrap();
        for &va in &vas {
            let l3 = index.l3_table(va).expect("indexed at map time");
            let by_walk = tables.leaf_entry_by_walk(va).unwrap() as *const AtomicU64;
            assert!(core::ptr::eq(
                &tables.tables[l3][0].entries[index_at(va, 3)],
                by_walk
            ));
        }
        assert_eq!(index.l3_table(window + 9 * MIB2), None);

        let recorder = Recorder::default();
        let mut mover = tables.page_mover(&recorder);
        // Refusals change nothing: unmapped, wrong frame, misaligned.
        let unmapped = window + 2 * MIB2;
        assert_eq!(
            mover.break_page(unmapped, old_pa(0)),
            Err(MapError::NotMapped)
        );
        assert_eq!(
            mover.break_page(vas[2], old_pa(1)),
            Err(MapError::WrongFrame)
        );
        assert_eq!(
            mover.break_page(vas[2] + 8, old_pa(2)),
            Err(MapError::Misaligned)
        );
        for i in [0, 1, 2, 3] {
            mover.break_page(vas[i], old_pa(i)).unwrap();
        }
        assert_eq!(mover.broken(), 4);
        // Broken pages translate to nothing; a second break of one is refused.
        assert_eq!(tables.walk(vas[0]), None);
        assert_eq!(
            mover.break_page(vas[0], old_pa(0)),
            Err(MapError::NotMapped)
        );
        // No make before the invalidation.
        assert_eq!(mover.make_page(vas[0], new_pa(0)), Err(MapError::NotBroken));
        mover.invalidate_broken(vas.iter().copied(), vas.len());
        mover.make_page(vas[0], new_pa(0)).unwrap();
        mover.make_page(vas[1], new_pa(1)).unwrap();
        mover.restore_page(vas[2]).unwrap();
        assert_eq!(mover.make_page(vas[2], new_pa(2)), Err(MapError::NotBroken));
        assert_eq!(
            mover.make_page(unmapped, new_pa(2)),
            Err(MapError::NotBroken)
        );
        mover.make_page(vas[3], new_pa(3)).unwrap();
        // Unmapping for good: a broken or absent page is refused, a mapped one goes.
        assert_eq!(mover.unmap_page(unmapped), Err(MapError::NotMapped));
        assert_eq!(mover.unmap_page(vas[1]), Ok(new_pa(1)));
        assert_eq!(mover.unmap_page(vas[1]), Err(MapError::NotMapped));
        assert_eq!(mover.finish(), 0);
        // Every break was invalidated once, before the one publish; the unmap on its own.
        let mut invalidated = vas.to_vec();
        invalidated.push(vas[1]);
        assert_eq!(*recorder.invalidated.borrow(), invalidated);
        assert_eq!(*recorder.publishes.borrow(), 1);
        assert_eq!(tables.walk(vas[0]).unwrap().pa, new_pa(0));
        assert_eq!(tables.walk(vas[1]), None);
        assert_eq!(tables.walk(vas[2]).unwrap().pa, old_pa(2), "restored");
        assert_eq!(tables.walk(vas[3]).unwrap().pa, new_pa(3));
        // Attributes survive the move.
        assert_eq!(tables.walk(vas[0]).unwrap().attributes, Attributes::RAM);
        assert_eq!(
            tables.walk(vas[3]).unwrap().attributes,
            Attributes::KERNEL_RODATA
        );
        assert_eq!(tables.walk(unmapped), None);
        assert_eq!(
            tables.index_window(window + 4096, 1 << 21),
            Err(MapError::Misaligned)
        );
    }

    #[test]
    fn dropped_pages_go_for_good_with_one_invalidation_for_the_batch() {
        let mut tables = TranslationTables::new().unwrap();
        let base = 0x10_0000_0000u64;
        let vas = [base, base + PAGE_SIZE, base + MIB2];
        for (i, &va) in vas.iter().enumerate() {
            tables
                .map_page(
                    va,
                    0x4100_0000 + i as u64 * PAGE_SIZE,
                    Attributes::RAM,
                    &NotLive,
                )
                .unwrap();
        }
        let recorder = Recorder::default();
        let mut mover = tables.page_mover(&recorder);
        // Refused, changing nothing: the wrong frame, an unmapped page, a misaligned one.
        assert_eq!(
            mover.drop_page(vas[0], 0x4100_1000),
            Err(MapError::WrongFrame)
        );
        assert_eq!(
            mover.drop_page(base + 2 * PAGE_SIZE, 0x4100_2000),
            Err(MapError::NotMapped)
        );
        assert_eq!(
            mover.drop_page(vas[0] + 8, 0x4100_0000),
            Err(MapError::Misaligned)
        );
        mover.drop_page(vas[0], 0x4100_0000).unwrap();
        mover.drop_page(vas[1], 0x4100_1000).unwrap();
        assert!(
            recorder.invalidated.borrow().is_empty(),
            "not before the batch ends"
        );
        mover.invalidate_dropped(vas[..2].iter().copied());
        assert_eq!(*recorder.invalidated.borrow(), vas[..2].to_vec());
        // Nothing dropped since: no second invalidation.
        mover.invalidate_dropped(vas[..2].iter().copied());
        assert_eq!(recorder.invalidated.borrow().len(), 2);
        // A drop never invalidated is reported at the end, like a page left broken.
        mover.drop_page(vas[2], 0x4100_2000).unwrap();
        assert_eq!(mover.finish(), 1);
        for va in vas {
            assert_eq!(tables.walk(va), None, "{va:#x} is gone");
        }
        // The entries are empty, not merely invalid: the pages map again as new ones.
        tables
            .map_page(vas[0], 0x4200_0000, Attributes::RAM, &NotLive)
            .unwrap();
        assert_eq!(tables.walk(vas[0]).unwrap().pa, 0x4200_0000);
    }

    #[test]
    fn page_mover_outside_the_window_index_walks_and_reports_pages_left_broken() {
        // No window index: every L3 table is found by a walk, once per 2 MiB run.
        let mut tables = TranslationTables::new().unwrap();
        let base = 0x10_0000_0000u64;
        let vas = [base, base + MIB2, base + PAGE_SIZE, base + MIB2 + PAGE_SIZE];
        for (i, &va) in vas.iter().enumerate() {
            tables
                .map_page(
                    va,
                    0x4100_0000 + i as u64 * PAGE_SIZE,
                    Attributes::RAM,
                    &NotLive,
                )
                .unwrap();
        }
        let recorder = Recorder::default();
        let mut mover = tables.page_mover(&recorder);
        for (i, &va) in vas.iter().enumerate() {
            mover
                .break_page(va, 0x4100_0000 + i as u64 * PAGE_SIZE)
                .unwrap();
        }
        mover.invalidate_broken(vas.iter().copied(), vas.len());
        // A second invalidation with nothing newly broken does nothing.
        mover.invalidate_broken(vas.iter().copied(), vas.len());
        assert_eq!(
            mover.make_page(vas[0], 0x4200_0001),
            Err(MapError::Misaligned)
        );
        mover.make_page(vas[0], 0x4200_0000).unwrap();
        mover.make_page(vas[1], 0x4200_1000).unwrap();
        mover.restore_page(vas[2]).unwrap();
        assert_eq!(mover.finish(), 1, "vas[3] left broken");
        assert_eq!(recorder.invalidated.borrow().len(), 4);
        assert_eq!(tables.walk(vas[0]).unwrap().pa, 0x4200_0000);
        assert_eq!(tables.walk(vas[1]).unwrap().pa, 0x4200_1000);
        assert_eq!(tables.walk(vas[2]).unwrap().pa, 0x4100_2000);
        assert_eq!(tables.walk(vas[3]), None);
    }

    #[test]
    fn remap_refuses_block_mappings() {
        let mut tables = TranslationTables::new().unwrap();
        tables
            .map_range(0x4000_0000, 0x4000_0000, MIB2, Attributes::RAM, &NotLive)
            .unwrap();
        assert_eq!(
            tables.remap_page(0x4000_0000, 0x5000_0000, &NotLive),
            Err(MapError::NotMapped)
        );
        assert_eq!(tables.walk(0x4000_0000).unwrap().pa, 0x4000_0000);
    }

    #[test]
    fn table_descriptors_hold_the_table_addresses() {
        let mut tables = TranslationTables::new().unwrap();
        tables
            .map_page(0x1234_5000, 0x1234_5000, Attributes::RAM, &NotLive)
            .unwrap();
        // Root + L1 + L2 + L3, all page aligned, and the list is sorted.
        let addresses: Vec<u64> = tables.table_addresses().collect();
        assert_eq!(addresses.len(), 4);
        assert!(addresses.iter().all(|a| a.is_multiple_of(PAGE_SIZE)));
        assert!(addresses.windows(2).all(|w| w[0] < w[1]));
        assert!(addresses.contains(&tables.root_address()));
    }
}
