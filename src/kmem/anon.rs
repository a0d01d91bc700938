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
//!
//! Pins ([`super::anon_pins`]): a long-term pin ([`pin_longterm`]) goes through
//! [`mm::pin_longterm`], whose migration out of CMA is this client's own (the slot's
//! mapping and reverse map follow the page), and then takes the page out of the workload:
//! the pin holds the frame until [`super::free_pinned`]. A short-term pin ([`pin_io`]) keeps
//! the page in the workload and mapped, but the migrator refuses to move it (`Again`) and
//! shrinking skips it until [`unpin_io`] or the I/O's completion time.

use super::anon_pins::{IoPin, IoPins};
use super::pattern::PagePattern;
use super::window;
use super::{make_room, with_state, KmemError, KmemState, PlaceError, PINNED_BY_KMEM};
use crate::driver::timer;
use crate::memory::mmu;
use crate::mm::{self, Gfp, MigrateType, Owner, OwnerKind, Pfn, Zone, PAGE_SHIFT, PAGE_SIZE};

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
    /// Short-term (I/O) pins held now, and how many of them sit in CMA pageblocks.
    pub io_pins: usize,
    pub io_pins_in_cma: usize,
    /// Short-term pins released by their I/O's completion time, and the back-off waits
    /// CMA allocations made for short-term pins, since boot.
    pub io_pins_completed: u64,
    pub io_waits: u64,
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
    /// Short-term pins: the migrator asks them before moving a page.
    pub(crate) io_pins: IoPins,
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
            io_pins: IoPins::new(),
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

    /// Free up to `count` pages, newest slots first, pages under I/O excepted. Returns how
    /// many were freed.
    pub(crate) fn shrink(&mut self, zone: &mut Zone<'_>, count: usize) -> usize {
        let mut freed = 0;
        while freed < count {
            let Some(&last) = self.slots.last() else {
                break;
            };
            let slot = self.slots.len() - 1;
            if self.io_pins.is_pinned(slot) {
                // The slot table cannot shrink past a page under I/O: free the rest where
                // they are instead.
                return freed + self.shrink_where(zone, count - freed, |_, _| true);
            }
            if last != EMPTY {
                self.release_slot(zone, slot);
                freed += 1;
            }
            self.slots.pop();
        }
        freed
    }

    /// Free up to `count` pages whose frame satisfies `pick`, newest first, pages under I/O
    /// excepted.
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
            if pfn != EMPTY && !self.io_pins.is_pinned(slot) && pick(zone, pfn as Pfn) {
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

    /// The `n`-th mapped slot from `start` (wrapping) whose frame satisfies `pick`, pages
    /// under I/O excepted: the page a pin takes.
    fn pick_slot(
        &self,
        zone: &Zone<'_>,
        start: usize,
        pick: impl Fn(&Zone<'_>, Pfn) -> bool,
    ) -> Option<usize> {
        let n = self.slots.len();
        (0..n).map(|k| (start + k) % n).find(|&slot| {
            self.slots[slot] != EMPTY
                && !self.io_pins.is_pinned(slot)
                && pick(zone, self.slots[slot] as Pfn)
        })
    }

    /// Take `slot`'s page out of the workload, its frame still allocated (a long-term pin
    /// holds it now): unmapped, forgotten, the slot free for reuse. Returns the frame.
    fn forget_slot(&mut self, slot: usize) -> Pfn {
        let pfn = self.slots[slot] as Pfn;
        let _ = mmu::unmap_movable(Self::va(slot));
        self.slots[slot] = EMPTY;
        self.free_slots.push(slot as u32);
        self.pages -= 1;
        pfn
    }

    /// Start I/O on a page (a short-term pin): the `n`-th mapped slot from `start` whose
    /// frame satisfies `pick`; done at counter value `completes_at`, or at [`Self::unpin_io`].
    pub(crate) fn pin_io(
        &mut self,
        zone: &Zone<'_>,
        start: usize,
        pick: impl Fn(&Zone<'_>, Pfn) -> bool,
        completes_at: Option<u64>,
    ) -> Result<IoPin, KmemError> {
        let slot = self
            .pick_slot(zone, start, pick)
            .ok_or(KmemError::AnonNothingToPin)?;
        let pfn = self.slots[slot] as Pfn;
        self.io_pins
            .pin(slot, pfn, completes_at)
            .map_err(KmemError::IoPin)?;
        Ok(IoPin {
            slot,
            pfn,
            completes_at,
        })
    }

    /// The I/O on `slot` is done: its page moves (and can be freed) again.
    pub(crate) fn unpin_io(&mut self, slot: usize) -> Result<(), KmemError> {
        self.io_pins
            .unpin(slot)
            .map(|_| ())
            .map_err(KmemError::IoPin)
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
        let in_cma = |p: &&IoPin| zone.pageblock_migratetype(p.pfn) == Some(MigrateType::Cma);
        AnonStatus {
            running: self.running,
            pages: self.pages,
            pages_in_cma,
            migrations: self.migrations,
            io_pins: self.io_pins.len(),
            io_pins_in_cma: self.io_pins.iter().filter(in_cma).count(),
            io_pins_completed: self.io_pins.completed,
            io_waits: self.io_pins.waits,
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

/// A long-term pin (`pin_user_pages(FOLL_LONGTERM)`) of an anonymous page under the held
/// lock: the `n`-th mapped page from slot `start` whose frame satisfies `pick` (pages under
/// I/O excepted) is moved out of CMA first if it is in it ([`mm::pin_longterm`], with this
/// client migrating it; free memory outside CMA is made by direct reclaim of clean cache
/// first, as for `cma_alloc`), `pin` becomes its owner, and the page leaves the workload.
/// Returns its frame, never in a Cma pageblock.
pub(crate) fn pin_longterm_locked(
    s: &mut KmemState,
    start: usize,
    pick: impl Fn(&Zone<'_>, Pfn) -> bool,
    pin: Owner,
) -> Result<Pfn, KmemError> {
    let slot = s
        .clients
        .anon
        .pick_slot(&s.zone, start, pick)
        .ok_or(KmemError::AnonNothingToPin)?;
    let pfn = s.clients.anon.slots[slot] as Pfn;
    if s.zone.pageblock_migratetype(pfn) == Some(MigrateType::Cma) {
        make_room(s, 1);
    }
    let zone = &mut s.zone;
    let pinned = s
        .clients
        .migrator(|m| mm::pin_longterm(zone, m, pfn, pin))?
        .map_err(KmemError::AnonPin)?;
    // The migrator re-pointed the slot to `pinned` if the page moved; either way the slot
    // holds the pinned frame, which leaves the workload now.
    let frame = s.clients.anon.forget_slot(slot);
    if frame != pinned {
        return Err(KmemError::InvariantBroken(alloc::format!(
            "long-term pin: slot {slot} maps {frame:#x}, the pin holds {pinned:#x}"
        )));
    }
    Ok(pinned)
}

/// Counter ticks in `d` (the clock short-term pins complete by).
fn ticks(d: core::time::Duration) -> u64 {
    let t = d.as_nanos() * u128::from(timer::frequency()) / 1_000_000_000;
    t.min(u128::from(u64::MAX)) as u64
}

/// Long-term pin an anonymous page whose frame satisfies `pick` (see
/// [`pin_longterm_locked`]); returns its frame, outside CMA. Release it with
/// [`super::free_pinned`]`(pfn, 0)`.
pub fn pin_longterm(pick: impl Fn(&Zone<'_>, Pfn) -> bool) -> Result<Pfn, KmemError> {
    with_state(|s| pin_longterm_locked(s, 0, pick, Owner::new(OwnerKind::Pinned, PINNED_BY_KMEM)))?
}

/// Start I/O (a short-term pin) on an anonymous page whose frame satisfies `pick`: it stays
/// where it is, and migration refuses it until [`unpin_io`] or, with `completes_in`, until
/// that much time has passed.
pub fn pin_io(
    pick: impl Fn(&Zone<'_>, Pfn) -> bool,
    completes_in: Option<core::time::Duration>,
) -> Result<IoPin, KmemError> {
    let completes_at = completes_in.map(|d| timer::counter().saturating_add(ticks(d)));
    with_state(|s| s.clients.anon.pin_io(&s.zone, 0, pick, completes_at))?
}

/// The I/O on `slot` is done: release its short-term pin. An error if it holds none (also
/// when its completion time already released it).
pub fn unpin_io(slot: usize) -> Result<(), KmemError> {
    with_state(|s| s.clients.anon.unpin_io(slot))?
}
