//! The anonymous-memory workload: movable pages reached only through their own mappings in
//! the movable window, each filled with a checksummed pattern.
//!
//! # Theory of operation
//!
//! The client owns virtual slots `ANON_WINDOW + slot * 4 KiB`. Growing allocates an order-0
//! `Gfp::MOVABLE` frame (which may come from a CMA pageblock: that is the point), records
//! `Owner::new(Anon, slot)` on it, maps it at the slot's address and writes the pattern for
//! `(slot, generation)` through the mapping. The client's reverse map is `slots[slot] = pfn`;
//! the owner id is the forward map back. Migration copies the frame through the identity
//! map, re-points the slot's mapping (break-before-make) and updates `slots`; the mm then
//! frees the source. Slots freed by shrinking are reused, which is why the pattern also
//! depends on a generation bumped at every [`start`].

use super::pattern::PagePattern;
use super::window;
use super::{with_state, KmemError, PlaceError};
use crate::memory::mmu;
use crate::mm::{Gfp, MigrateType, Owner, OwnerKind, Pfn, Zone, PAGE_SHIFT, PAGE_SIZE};

use alloc::vec::Vec;

/// First window address of the anonymous client (256 GiB into the window, clear of the
/// boot tests' use of the window start).
pub const ANON_WINDOW: usize = mmu::MOVABLE_WINDOW_START + (256 << 30);
/// Largest number of slots (256 GiB of window).
const MAX_SLOTS: usize = 1 << 26;
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnonStatus {
    pub running: bool,
    pub pages: usize,
    /// Of which currently in CMA pageblocks.
    pub pages_in_cma: usize,
    pub migrations: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub pages_checked: usize,
    pub bad_pages: usize,
}

/// The client's state, inside the global memory state.
pub(crate) struct AnonClient {
    slots: Vec<u32>,
    free_slots: Vec<u32>,
    pages: usize,
    generation: u64,
    running: bool,
    pub(crate) migrations: u64,
}

impl AnonClient {
    pub(crate) const fn new() -> AnonClient {
        AnonClient {
            slots: Vec::new(),
            free_slots: Vec::new(),
            pages: 0,
            generation: 0,
            running: false,
            migrations: 0,
        }
    }

    fn va(slot: usize) -> usize {
        ANON_WINDOW + slot * PAGE_SIZE
    }

    fn pattern(&self, slot: usize) -> PagePattern {
        PagePattern::new(((self.generation) << 40) ^ slot as u64 ^ 0xa11c_0000_0000_0000)
    }

    pub(crate) fn pages(&self) -> usize {
        self.pages
    }

    pub(crate) fn start(&mut self) {
        if !self.running {
            self.running = true;
            self.generation += 1;
        }
    }

    /// A free slot index, reusing holes first; `None` if the slot table cannot grow.
    fn take_slot(&mut self) -> Option<usize> {
        while let Some(slot) = self.free_slots.pop() {
            let slot = slot as usize;
            if slot < self.slots.len() && self.slots[slot] == EMPTY {
                return Some(slot);
            }
        }
        if self.slots.len() >= MAX_SLOTS || self.slots.try_reserve(1).is_err() {
            return None;
        }
        self.slots.push(EMPTY);
        Some(self.slots.len() - 1)
    }

    /// Add up to `count` pages; stops quietly at the watermark (or when the page tables or
    /// the slot table cannot grow). Returns how many were added.
    pub(crate) fn grow(&mut self, zone: &mut Zone<'_>, count: usize) -> Result<usize, KmemError> {
        if !self.running {
            return Err(KmemError::AnonNotStarted);
        }
        let mut added = 0;
        while added < count {
            let Ok(pfn) = zone.alloc_pages(0, Gfp::MOVABLE) else {
                break;
            };
            let Some(slot) = self.take_slot() else {
                let _ = zone.free_pages(pfn, 0);
                break;
            };
            let placed = zone
                .set_owner(pfn, Owner::new(OwnerKind::Anon, slot as u64))
                .map_err(PlaceError::Owner)
                .and_then(|()| {
                    mmu::map_movable(Self::va(slot), (pfn << PAGE_SHIFT) as u64)
                        .map_err(PlaceError::Map)
                });
            if let Err(why) = placed {
                let _ = zone.free_pages(pfn, 0);
                self.free_slots.push(slot as u32);
                if added == 0 {
                    return Err(KmemError::AnonGrow(why));
                }
                break;
            }
            self.slots[slot] = pfn as u32;
            let pattern = self.pattern(slot);
            // Safety: the slot's window page was just mapped to `pfn`, which this client
            // owns alone; nobody else holds the address.
            unsafe { window::fill_page(Self::va(slot), |i| pattern.word(i)) };
            self.pages += 1;
            added += 1;
        }
        Ok(added)
    }

    fn release_slot(&mut self, zone: &mut Zone<'_>, slot: usize) {
        let pfn = self.slots[slot] as Pfn;
        let _ = mmu::unmap_movable(Self::va(slot));
        let _ = zone.free_pages(pfn, 0);
        self.slots[slot] = EMPTY;
        self.pages -= 1;
    }

    /// Free up to `count` pages, newest slots first. Returns how many were freed.
    pub(crate) fn shrink(&mut self, zone: &mut Zone<'_>, count: usize) -> usize {
        let mut freed = 0;
        while freed < count {
            let Some(&last) = self.slots.last() else {
                break;
            };
            let slot = self.slots.len() - 1;
            if last != EMPTY {
                self.release_slot(zone, slot);
                freed += 1;
            }
            self.slots.pop();
        }
        freed
    }

    /// Free up to `count` pages whose frame satisfies `pick`, newest first.
    pub(crate) fn shrink_where(
        &mut self,
        zone: &mut Zone<'_>,
        count: usize,
        pick: impl Fn(&Zone<'_>, Pfn) -> bool,
    ) -> usize {
        let mut freed = 0;
        for slot in (0..self.slots.len()).rev() {
            if freed == count {
                break;
            }
            let pfn = self.slots[slot];
            if pfn != EMPTY && pick(zone, pfn as Pfn) {
                self.release_slot(zone, slot);
                self.free_slots.push(slot as u32);
                freed += 1;
            }
        }
        while self.slots.last() == Some(&EMPTY) {
            self.slots.pop();
        }
        freed
    }

    /// Pin a page in place for long-term DMA (`pin_user_pages(FOLL_LONGTERM)`): the `n`-th
    /// mapped slot from `start` (wrapping) whose frame satisfies `pick` is unmapped and
    /// forgotten, and its frame returned still allocated; the caller records the new owner
    /// and frees it when the pin ends.
    pub(crate) fn pin_in_place(
        &mut self,
        zone: &Zone<'_>,
        start: usize,
        pick: impl Fn(&Zone<'_>, Pfn) -> bool,
    ) -> Option<Pfn> {
        let n = self.slots.len();
        let slot = (0..n)
            .map(|k| (start + k) % n)
            .find(|&slot| self.slots[slot] != EMPTY && pick(zone, self.slots[slot] as Pfn))?;
        let pfn = self.slots[slot] as Pfn;
        let _ = mmu::unmap_movable(Self::va(slot));
        self.slots[slot] = EMPTY;
        self.free_slots.push(slot as u32);
        self.pages -= 1;
        Some(pfn)
    }

    /// Read every page through its mapping and check pattern, checksum, and that the
    /// hardware translation agrees with the reverse map.
    pub(crate) fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        for (slot, &pfn) in self.slots.iter().enumerate() {
            if pfn == EMPTY {
                continue;
            }
            report.pages_checked += 1;
            let va = Self::va(slot);
            if mmu::translate(va) != Some((pfn as u64) << PAGE_SHIFT) {
                report.bad_pages += 1;
                continue;
            }
            let pattern = self.pattern(slot);
            // Safety: the slot is mapped (just translated) to a frame this client owns.
            if unsafe { window::first_mismatch(va, |i| pattern.word(i)) }.is_some() {
                report.bad_pages += 1;
            }
        }
        report
    }

    pub(crate) fn status(&self, zone: &Zone<'_>) -> AnonStatus {
        let pages_in_cma = self
            .slots
            .iter()
            .filter(|&&pfn| {
                pfn != EMPTY && zone.pageblock_migratetype(pfn as Pfn) == Some(MigrateType::Cma)
            })
            .count();
        AnonStatus {
            running: self.running,
            pages: self.pages,
            pages_in_cma,
            migrations: self.migrations,
        }
    }

    /// The window address of `slot` if the reverse map agrees that `src` holds it: the
    /// page migration re-points (and then updates [`AnonClient::slot_frames_mut`]).
    #[inline(always)]
    pub(crate) fn window_address(&self, src: Pfn, slot: u64) -> Option<usize> {
        let slot = slot as usize;
        (self.slots.get(slot) == Some(&(src as u32))).then(|| Self::va(slot))
    }

    /// The reverse map itself (frame of each slot, `EMPTY` for none), for the migration
    /// loop: it updates many slots and keeps the slice in registers.
    pub(crate) fn slot_frames_mut(&mut self) -> &mut [u32] {
        &mut self.slots
    }
}

/// Start the workload (bumps the pattern generation of pages added from now on).
pub fn start() -> Result<(), KmemError> {
    with_state(|s| s.clients.anon.start())
}

/// Add up to `pages` pages; returns how many were added (stops at the watermark).
pub fn grow(pages: usize) -> Result<usize, KmemError> {
    with_state(|s| s.clients.anon.grow(&mut s.zone, pages))?
}

/// Free up to `pages` pages; returns how many were freed.
pub fn shrink(pages: usize) -> Result<usize, KmemError> {
    with_state(|s| s.clients.anon.shrink(&mut s.zone, pages))
}

pub fn verify() -> Result<VerifyReport, KmemError> {
    with_state(|s| s.clients.anon.verify())
}

pub fn status() -> AnonStatus {
    with_state(|s| s.clients.anon.status(&s.zone)).unwrap_or_default()
}
