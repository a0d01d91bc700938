//! Kernel memory service: the one zone over all RAM, the CMA areas from the device tree,
//! and the movable-memory clients (anonymous workload, page cache) whose pages migrate.
//!
//! # Theory of operation
//!
//! Boot runs in two steps. [`prepare`] (before the MMU is on) reads `/reserved-memory`, the
//! `cma=` argument and `/memreserve/` into a [`ReservedMemoryPlan`], so the MMU code can
//! leave `no-map` carveouts out of the identity map. [`init`] (after the drivers, so it can
//! print) builds the zone: the memmap is carved from RAM ([`memmap`] decides where), usable
//! RAM is handed to the buddy, everything else stays reserved, and each planned CMA area is
//! declared and activated. Then one line per area and every plan message are printed.
//!
//! All memory state lives in [`KmemState`] under one [`IrqSafeLock`] (IRQ handlers never
//! allocate, so masking them makes the lock safe on this core; the spin makes it safe
//! across cores). The state's fields are disjoint borrows: `mm::cma_alloc(&mut areas[i],
//! &mut zone, migrator, ..)` lends the zone to mm, and [`Clients::migrator`] lends the
//! movable clients, together with the page tables, as its [`Migrator`] ([`Moving`]), which
//! unmaps, copies and re-maps pages but never calls into the zone.
//!
//! Direct reclaim: before a CMA allocation, if free memory outside CMA could not hold the
//! pages that may need to move out of the area, clean page-cache pages are dropped first
//! (those outside CMA first), as Linux's `alloc_migration_target` would enter reclaim. If
//! the mm still runs out of migration targets, more is reclaimed and the call retried.
//!
//! Short-term pins ([`anon_pins`]): a CMA allocation that failed while pages under I/O sit
//! in its area waits for them with a bounded back-off ([`IoBackoff`], woken at the next
//! known I/O completion) and retries, under the lock: the I/O it waits for completes by
//! the clock, so nothing else needs to run meanwhile. Past the budget it fails as before,
//! the area and the pages restored.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::cpu::{cache, IrqSafeLock};
use crate::driver::timer;
use crate::dt::platform::Platform;
use crate::dt::reserved::{plan_reserved_memory, ReservedMemoryPlan};
use crate::memory::mmu;
use crate::mm::{
    self, vmstat, ChunkId, ChunkInfo, CmaArea, CmaError, CmaState, GfpFlags, MigrateError,
    MigrateType, Migrator, Move, Owner, OwnerKind, Page, PcpLimits, Pfn, Reclaim, Watermarks, Zone,
    PAGE_SHIFT, PAGE_SIZE,
};
use crate::util::ranges;

pub mod anon;
pub mod anon_pins;
mod error;
pub mod memmap;
pub mod pagecache;
pub mod pagecache_policy;
pub mod pasr;
pub mod pattern;
mod window;
mod workload;

pub use error::{KmemError, PlaceError};
pub use window::copy_bytes;
pub use workload::AreaId;

use anon::AnonClient;
use anon_pins::IoBackoff;
use pagecache::PageCache;

/// The movable clients: lent to mm as one [`Migrator`] through [`Clients::migrator`].
pub(crate) struct Clients {
    pub(crate) anon: AnonClient,
    pub(crate) cache: PageCache,
}

impl Clients {
    pub(crate) fn new(anon: AnonClient, cache: PageCache) -> Clients {
        Clients { anon, cache }
    }

    /// Run `f` with the clients as a [`Migrator`]; the page tables are held (and IRQs
    /// masked) for the whole call, so the migrator can unmap a page as soon as mm queues
    /// it. `f` must not map or unmap movable pages any other way (that would wait for the
    /// tables forever).
    pub(crate) fn migrator<R>(
        &mut self,
        f: impl FnOnce(&mut Moving<'_, '_>) -> R,
    ) -> Result<R, KmemError> {
        mmu::with_movable_page_mover(|mover| {
            f(&mut Moving {
                clients: self,
                mover,
            })
        })
        .map_err(KmemError::PageTables)
    }

    /// The window address of a move's page if its owner agrees the page is at `src`;
    /// `None` if this move must be refused.
    #[inline(always)]
    fn window_address(&self, m: &Move) -> Option<usize> {
        if m.order != 0 {
            return None;
        }
        if m.owner.is(OwnerKind::Anon) {
            return self.anon.window_address(m.src, m.owner.id());
        }
        if m.owner.is(OwnerKind::PageCache) {
            return self.cache.window_address(m.src, m.owner.id());
        }
        None
    }
}

fn frame_address(pfn: Pfn) -> u64 {
    (pfn << PAGE_SHIFT) as u64
}

/// Copy every move's frame to its target, runs of neighbouring sources going to
/// neighbouring targets in one copy (targets come from split blocks and sources from one
/// range, so a batch is mostly one run).
fn copy_runs(moves: &[Move]) {
    let copy = |src: Pfn, dst: Pfn, run: usize| {
        // Safety: every frame of both runs is RAM in the identity map (the zone only
        // manages mapped RAM), and the runs are disjoint (targets lie outside the range
        // being emptied). The targets were allocated by mm for these moves and nobody else
        // holds them; the sources belong to their owners, whose only other mappings (the
        // window pages) are broken, and nobody accesses them while the memory lock is held.
        unsafe { window::copy_frames(dst, src, run) }
    };
    let mut moves = moves.iter();
    let Some(first) = moves.next() else {
        return;
    };
    let (mut src, mut dst, mut run) = (first.src, first.dst, 1);
    for m in moves {
        if m.src == src + run && m.dst == dst + run {
            run += 1;
            continue;
        }
        copy(src, dst, run);
        (src, dst, run) = (m.src, m.dst, 1);
    }
    copy(src, dst, run);
}

/// The movable clients with the page tables in hand: the [`Migrator`] mm drives.
///
/// Linux's order (unmap, copy, remap), a batch at a time: [`Migrator::prepare`] breaks a
/// page's window mapping as mm queues it (after checking the owner agrees the page is at
/// `src`, and the mapping too); [`Migrator::migrate_batch`] drops the TLB entries of the
/// whole batch in one go, then copies each frame, maps its page at the copy and updates
/// the reverse map.
pub(crate) struct Moving<'c, 'm> {
    clients: &'c mut Clients,
    mover: &'c mut mmu::MovablePageMover<'m>,
}

impl Migrator for Moving<'_, '_> {
    /// One page on its own: a batch of one.
    fn migrate(
        &mut self,
        src: Pfn,
        dst: Pfn,
        order: usize,
        owner: Owner,
    ) -> Result<(), MigrateError> {
        let mut moves = [Move::new(src, dst, order, owner)];
        self.prepare(&mut moves[0])?;
        self.migrate_batch(&mut moves);
        moves[0].result
    }

    fn reclaim(&mut self, pfn: Pfn, order: usize, owner: Owner) -> bool {
        let mover = &mut *self.mover;
        order == 0
            && owner.is(OwnerKind::PageCache)
            && self.clients.cache.reclaim(pfn, owner.id(), |va| {
                let _ = mover.unmap_page(va);
            })
    }

    /// A clean page is unmapped as it is dropped; the TLB entries of the whole batch go in
    /// one synchronisation in `finish_reclaim` (mm hands out no frame before).
    #[inline(always)]
    fn prepare_reclaim(&mut self, r: &mut Reclaim) -> bool {
        if !r.owner.is(OwnerKind::PageCache) {
            return false;
        }
        let mover = &mut *self.mover;
        let dropped = self
            .clients
            .cache
            .reclaim_unmapped(r.pfn, r.owner.id(), |va, pa| {
                mover.drop_page(va, pa).is_ok()
            });
        r.token = dropped.unwrap_or(0);
        dropped.is_some()
    }

    fn finish_reclaim(&mut self, pages: &[Reclaim]) {
        self.mover.invalidate_dropped(pages.iter().map(|r| r.token));
    }

    #[inline(always)]
    fn prepare(&mut self, m: &mut Move) -> Result<(), MigrateError> {
        // A page under I/O (a short-term pin) moves once the I/O is done: try again then.
        // (One length test per page while no pin is held: this is the migration hot path.)
        if !self.clients.anon.io_pins.is_empty() {
            self.clients.anon.io_pins.check(m.owner)?;
        }
        let va = self.clients.window_address(m).ok_or(MigrateError::Busy)?;
        self.mover
            .break_page(va, frame_address(m.src))
            .map_err(|_| MigrateError::Busy)?;
        m.token = va;
        Ok(())
    }

    /// Every move arrives prepared (its page broken, its address in `token`).
    #[inline(never)]
    fn migrate_batch(&mut self, moves: &mut [Move]) -> usize {
        self.mover.invalidate_broken(moves.iter().map(|m| m.token));
        copy_runs(moves);
        let (anon, cache) = (&mut self.clients.anon, &mut self.clients.cache);
        let anon_frames = anon.slot_frames_mut();
        let (mut cache_moved, mut failed) = (0, 0);
        self.mover.make_pages(
            moves,
            |m| Ok((m.token, frame_address(m.dst))),
            |m, outcome| match outcome {
                Ok(()) if m.owner.is(OwnerKind::Anon) => {
                    m.result = Ok(());
                    if let Some(frame) = anon_frames.get_mut(m.owner.id() as usize) {
                        *frame = m.dst as u32;
                    }
                }
                Ok(()) => {
                    m.result = Ok(());
                    cache.migrated(m.owner.id(), m.dst);
                    cache_moved += 1;
                }
                Err(_) => {
                    m.result = Err(MigrateError::Busy);
                    failed += 1;
                }
            },
        );
        anon.migrations += (moves.len() - failed - cache_moved) as u64;
        cache.migrations += cache_moved as u64;
        if failed != 0 {
            // The new mapping was refused: the old one comes back, the copy is dropped.
            for m in moves.iter().filter(|m| m.result.is_err()) {
                let _ = self.mover.restore_page(m.token);
            }
        }
        failed
    }

    fn cancel(&mut self, moves: &mut [Move]) {
        for m in moves {
            let _ = self.mover.restore_page(m.token);
        }
    }

    /// A movable device buffer: nothing maps it but the identity map, so a copy is all.
    fn move_chunk(&mut self, src: Pfn, dst: Pfn, count: usize) -> Result<(), MigrateError> {
        // Safety: both runs are RAM of one CMA area, in the identity map (the zone manages
        // mapped RAM only), and disjoint (mm allocated `dst` while `src` was still held).
        // `dst` was allocated for this move and nobody else holds it; `src` is a chunk
        // nobody has pinned, and an owner touches its chunk (CPU or device) only while it
        // holds a pin, under this lock's protocol: nobody reads or writes it now.
        unsafe { window::copy_frames(dst, src, count) };
        // A device that does not snoop must find the copy in memory, not in our cache.
        cache::clean_dcache_range(frame_address(dst) as usize, count << PAGE_SHIFT);
        Ok(())
    }
}

/// Everything the memory lock protects. Its fields are kmem's own; a workload that runs
/// many operations under one hold of the lock uses the methods in [`workload`].
pub struct KmemState {
    zone: Zone<'static>,
    areas: Vec<CmaArea>,
    clients: Clients,
    /// Physical range of the memmap (for reports and tests).
    memmap: Range<u64>,
    /// The board's DRAM banks, when its tree describes them (`monolith,pasr-dram`).
    pasr: Option<pasr::PasrState>,
}

static STATE: IrqSafeLock<Option<KmemState>> = IrqSafeLock::new(None);
static PLAN: AtomicPtr<ReservedMemoryPlan> = AtomicPtr::new(core::ptr::null_mut());

/// Run `f` on the state under the memory lock (IRQs masked): the one way in for a workload
/// that must not be interrupted between its operations (the in-guest benchmarks).
///
/// Every hold ends with PASR's unmask check ([`pasr`]): memory handed out in a masked bank
/// has the bank unmasked before the caller sees it.
pub fn with_state<R>(f: impl FnOnce(&mut KmemState) -> R) -> Result<R, KmemError> {
    STATE.lock(|slot| {
        let state = slot.as_mut().ok_or(KmemError::NotInitialised)?;
        let result = f(state);
        pasr::after_locked(state);
        Ok(result)
    })
}

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Where linker.ld put the whole image (text to stack top, heap included: it is in BSS).
pub fn image_range() -> Range<u64> {
    (&raw const __image_start) as u64..(&raw const __image_end) as u64
}

/// Memory in use before the allocator exists: RAM from the bank base up to the image end
/// (holds the DTB on `virt`, and is below the image anyway), the DTB wherever it is, and
/// the `/memreserve/` entries.
pub fn occupied_ranges(platform: &Platform) -> Vec<Range<u64>> {
    let image = image_range();
    let mut occupied = Vec::new();
    let image_bank = platform
        .memory
        .iter()
        .find(|bank| bank.start <= image.start && image.start < bank.end);
    occupied.push(image_bank.map_or(image.start, |b| b.start)..image.end);
    occupied.push(platform.dtb.clone());
    occupied.extend(platform.mem_reserve.iter().cloned());
    ranges::merge(occupied)
}

/// Compute the reserved-memory plan (idempotent). Runs before the MMU is on: the plan's
/// `not_mapped()` ranges must be left out of the identity map.
pub fn prepare(platform: &Platform) -> &'static ReservedMemoryPlan {
    if let Some(plan) = plan() {
        return plan;
    }
    let occupied = occupied_ranges(platform);
    let plan = match crate::dtb::tree() {
        Some(tree) => plan_reserved_memory(
            tree,
            &platform.memory,
            &occupied,
            platform.bootargs.as_deref(),
        ),
        None => ReservedMemoryPlan {
            messages: alloc::vec![String::from("no device tree: nothing reserved")],
            ..ReservedMemoryPlan::default()
        },
    };
    let leaked: &'static mut ReservedMemoryPlan = Box::leak(Box::new(plan));
    PLAN.store(leaked, Ordering::Release);
    leaked
}

/// The reserved-memory plan the zone was built from.
pub fn plan() -> Option<&'static ReservedMemoryPlan> {
    let plan = PLAN.load(Ordering::Acquire);
    // Safety: null or a `Box::leak`ed plan published once (Release/Acquire), never freed or
    // written again.
    unsafe { plan.as_ref() }
}

/// The bytes of the reserved region whose `compatible` is `compatible`, when it is a plain
/// reserved region (mapped, never given to the page allocator): what a boot loader left
/// there (QEMU's generic loader: the video clip). `None` if there is no such region or it
/// is `no-map` or CMA.
pub fn reserved_region_bytes(compatible: &str) -> Option<&'static [u8]> {
    let region = plan()?
        .regions
        .iter()
        .find(|r| r.compatible.iter().any(|c| c == compatible))?;
    if region.kind != crate::dt::reserved::RegionKind::Reserved {
        return None;
    }
    let range = region.primary();
    let len = usize::try_from(range.end.checked_sub(range.start)?).ok()?;
    // Safety: a `Reserved` region of the plan the zone was built from: inside a memory
    // bank (the planner only accepts regions in RAM), identity-mapped as normal memory
    // (only `no-map` ranges are left out of the map), and kept from the page allocator
    // (`kept_from_buddy`), so nothing in the firmware ever writes it. Shared reads for the
    // rest of the run are sound; `u8` accepts any content.
    Some(unsafe { core::slice::from_raw_parts(range.start as usize as *const u8, len) })
}

/// Linux's `min_free_kbytes = sqrt(lowmem_kbytes * 16)`, clamped to [128 KiB, 256 MiB],
/// as pages.
fn default_min_watermark(managed_pages: usize) -> usize {
    let kbytes = (managed_pages * (PAGE_SIZE / 1024)) as u64 * 16;
    let (mut lo, mut hi) = (0u64, 1u64 << 32);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if mid * mid <= kbytes {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let min_kb = lo.clamp(128, 256 * 1024) as usize;
    min_kb / (PAGE_SIZE / 1024)
}

/// Build the zone from `platform.memory` minus image, DTB, memmap, `/memreserve/` and the
/// reserved-memory plan's kept ranges; declare and activate the plan's CMA areas. Prints
/// the plan's messages. Called once by `runtime_init` after the devices are started.
pub fn init(platform: &'static Platform) -> Result<(), KmemError> {
    if with_state(|_| ()).is_ok() {
        return Err(KmemError::AlreadyInitialised);
    }
    let plan = prepare(platform);
    for message in &plan.messages {
        log::warn!("reserved-memory: {message}");
    }
    let ram = memmap::ram_pages(&platform.memory);
    let (Some(first), Some(last)) = (ram.first(), ram.last()) else {
        return Err(KmemError::NoRam);
    };
    let start_pfn = (first.start >> PAGE_SHIFT) as Pfn;
    let end_pfn = (last.end >> PAGE_SHIFT) as Pfn;
    let size = mm::zone_metadata_size(start_pfn, end_pfn - start_pfn);

    let mut in_use = occupied_ranges(platform);
    in_use.extend(plan.kept_from_buddy());
    in_use.extend(plan.not_mapped());
    let cma_ranges: Vec<Range<u64>> = plan
        .cma_areas
        .iter()
        .map(|a| a.base..a.base + a.size)
        .collect();
    in_use.extend(cma_ranges.iter().cloned());
    let in_use = ranges::merge(in_use);
    let free_before_memmap = ranges::subtract_all(&ram, &in_use);
    let memmap_range = memmap::place_memmap(&free_before_memmap, size.total_bytes() as u64).ok_or(
        KmemError::NoRoomForMemmap {
            bytes: size.total_bytes(),
        },
    )?;
    let usable = ranges::subtract_all(&free_before_memmap, core::slice::from_ref(&memmap_range));

    // Safety: `memmap_range` is RAM (inside a bank, identity-mapped: carveouts are excluded
    // from it) that nothing else uses: not the image, heap or stack, not the DTB, not a
    // reserved region, and it is never handed to the buddy (it is not in `usable`). It is
    // page aligned and large enough for `size.pages` `Page`s followed by the pageblock
    // bytes, and both slices live for the rest of the run. `Page` and `u8` accept any bit
    // pattern, so whatever the RAM held is a valid value; `Zone::new` overwrites it anyway.
    let (pages, pageblock_types): (&'static mut [Page], &'static mut [u8]) = unsafe {
        let base = memmap_range.start as usize;
        (
            core::slice::from_raw_parts_mut(base as *mut Page, size.pages),
            core::slice::from_raw_parts_mut((base + size.page_bytes) as *mut u8, size.pageblocks),
        )
    };
    let mut zone = Zone::new(start_pfn, pages, pageblock_types).map_err(KmemError::ZoneSetup)?;
    // Present-but-unmanaged RAM is reserved (counted as present, never handed out).
    for bank in &ram {
        let range = (bank.start >> PAGE_SHIFT) as Pfn..(bank.end >> PAGE_SHIFT) as Pfn;
        if !range.is_empty() {
            zone.reserve_range(range).map_err(KmemError::ZoneReserve)?;
        }
    }
    for piece in &usable {
        let range = (piece.start >> PAGE_SHIFT) as Pfn..(piece.end >> PAGE_SHIFT) as Pfn;
        if !range.is_empty() {
            zone.free_range(range).map_err(KmemError::ZoneFree)?;
        }
    }
    let mut areas = Vec::new();
    for spec in &plan.cma_areas {
        let (base, count) = (
            (spec.base >> PAGE_SHIFT) as Pfn,
            (spec.size >> PAGE_SHIFT) as usize,
        );
        let activated = mm::cma_init_reserved_mem(base, count, 0, &spec.name)
            .and_then(|mut area| mm::cma_activate_area(&mut area, &mut zone).map(|()| area))
            .map(|mut area| {
                area.set_fit(spec.fit);
                area
            });
        match activated {
            Ok(area) => areas.push(area),
            Err(e) => log::warn!("cma: area '{}' not activated: {e}", spec.name),
        }
    }
    let managed = zone.counters().managed_pages;
    zone.set_watermarks(Watermarks::from_min(default_min_watermark(managed)));
    // Order-0 frees and allocations meet on the pcp lists instead of merging and splitting.
    zone.enable_pcp(PcpLimits::for_zone(managed));

    let mut cache = PageCache::new();
    cache.init_store(pagecache::DEFAULT_STORE_BLOCKS);
    let pasr = pasr::setup(&mut zone, platform.bootargs.as_deref());
    let state = KmemState {
        zone,
        areas,
        clients: Clients::new(AnonClient::new(), cache),
        memmap: memmap_range.clone(),
        pasr,
    };
    let counters = state.zone.counters();
    log::info!(
        "kmem: zone pfn {:#x}..{:#x}, {} MiB managed, {} MiB free, memmap {:#x}..{:#x}, min watermark {} pages, pcp high {} batch {}",
        start_pfn,
        end_pfn,
        counters.managed_pages >> (20 - PAGE_SHIFT),
        counters.free_pages >> (20 - PAGE_SHIFT),
        memmap_range.start,
        memmap_range.end,
        counters.watermarks.min,
        state.zone.pcp_counters().high,
        state.zone.pcp_counters().batch
    );
    for area in &state.areas {
        let spec = plan.cma_areas.iter().find(|s| s.name == area.name());
        let owners = spec.map(|s| s.owners.join(",")).unwrap_or_default();
        log::info!(
            "cma: area '{}' base {:#x} size {} MiB, {}{}{}{}",
            area.name(),
            (area.base_pfn() as u64) << PAGE_SHIFT,
            area.count() >> (20 - PAGE_SHIFT),
            area.fit(),
            if spec.is_some_and(|s| s.is_default) {
                ", default"
            } else {
                ""
            },
            if owners.is_empty() { "" } else { ", owners " },
            owners
        );
    }
    STATE.lock(|slot| *slot = Some(state));
    Ok(())
}

/// Run `f` on the zone under the memory lock (IRQs masked).
pub fn with_zone<R>(f: impl FnOnce(&mut Zone<'static>) -> R) -> Result<R, KmemError> {
    with_state(|s| f(&mut s.zone))
}

/// `/proc/meminfo`, `/proc/buddyinfo`, `/proc/pagetypeinfo`, `/proc/zoneinfo` text in
/// Linux's formats.
pub fn meminfo() -> Result<String, KmemError> {
    with_state(|s| vmstat::meminfo_string(&s.zone))
}
pub fn buddyinfo() -> Result<String, KmemError> {
    with_state(|s| vmstat::buddyinfo_string(&s.zone))
}
pub fn pagetypeinfo() -> Result<String, KmemError> {
    with_state(|s| vmstat::pagetypeinfo_string(&s.zone))
}
pub fn zoneinfo() -> Result<String, KmemError> {
    with_state(|s| vmstat::zoneinfo_string(&s.zone))
}

/// Names of the CMA areas, in declaration order (default area first if any).
pub fn cma_area_names() -> Vec<String> {
    let default = plan()
        .and_then(|p| p.default_cma_area())
        .map(|a| a.name.clone());
    let mut names: Vec<String> =
        with_state(|s| s.areas.iter().map(|a| String::from(a.name())).collect())
            .unwrap_or_default();
    if let Some(default) = default {
        if let Some(at) = names.iter().position(|n| *n == default) {
            let name = names.remove(at);
            names.insert(0, name);
        }
    }
    names
}

/// The area a device allocates from (its own `memory-region` CMA area, else the default),
/// by name; `None` if it has neither.
pub fn cma_area_for_device(device_path: &str) -> Option<String> {
    plan()?
        .cma_area_for_device(device_path)
        .map(|a| a.name.clone())
}

fn area_index(s: &KmemState, name: &str) -> Result<usize, KmemError> {
    s.areas
        .iter()
        .position(|a| a.name() == name)
        .ok_or_else(|| KmemError::NoSuchArea(String::from(name)))
}

/// Base, size, used, maxchunk, stats of one area.
pub fn cma_state(area: &str) -> Result<CmaState, KmemError> {
    with_state(|s| area_index(s, area).map(|i| s.areas[i].state()))?
}

/// The area's bitmap words and its number of valid bits.
pub fn cma_bitmap(area: &str) -> Result<(Vec<u64>, usize), KmemError> {
    with_state(|s| {
        area_index(s, area).map(|i| {
            let a = &s.areas[i];
            (a.bitmap().to_vec(), a.count() >> a.order_per_bit())
        })
    })?
}

/// Make sure migration targets exist outside CMA for `count` pages: drop clean cache
/// (outside CMA first) if free non-CMA memory above the min watermark is short.
fn make_room(s: &mut KmemState, count: usize) -> usize {
    let free_normal = s.zone.free_pages_outside_cma();
    let want = count + s.zone.watermarks().min + 32;
    if free_normal >= want {
        return 0;
    }
    s.clients
        .cache
        .shrink_clean(&mut s.zone, want - free_normal, |zone, pfn| {
            zone.pageblock_migratetype(pfn) != Some(MigrateType::Cma)
        })
}

/// The longest a CMA allocation waits for short-term pins in its area, in all: 10 ms (the
/// order of a slow block-device request), in steps of 1/64 of it doubling up.
fn io_wait_budget() -> u64 {
    timer::frequency() / 100
}

/// Spin until counter value `until` (IRQs are masked: the memory lock is held).
fn wait_until(until: u64) {
    while timer::counter() < until {
        core::hint::spin_loop();
    }
}

/// The pages of area `area`.
fn area_span(s: &KmemState, area: usize) -> Range<Pfn> {
    let a = &s.areas[area];
    a.base_pfn()..a.base_pfn() + a.count()
}

/// After a `cma_alloc` that failed as Busy: if short-term pins sit in the area, wait one
/// back-off step (or until the next known completion) and release what completed;
/// `true`: retry. `false`: no pin in the way, or the back-off is spent.
#[cold]
#[inline(never)]
fn wait_for_io_pins(s: &mut KmemState, area: usize, backoff: &mut Option<IoBackoff>) -> bool {
    let span = area_span(s, area);
    let pins = &mut s.clients.anon.io_pins;
    if !pins.any_in(span.clone()) {
        return false;
    }
    let budget = io_wait_budget();
    let now = timer::counter();
    let wait = backoff
        .get_or_insert_with(|| IoBackoff::new(budget / 64, budget))
        .next_wait(now, pins.next_completion_in(span));
    let Some(wait) = wait else {
        return false;
    };
    pins.waits += 1;
    wait_until(now.saturating_add(wait));
    pins.complete_due(timer::counter());
    true
}

/// `cma_alloc` under the lock, with direct reclaim and the wait for short-term pins.
pub(crate) fn cma_alloc_locked(
    s: &mut KmemState,
    area: usize,
    count: usize,
    align_order: u32,
) -> Result<Pfn, KmemError> {
    // Named only when something goes wrong: the success path allocates nothing here.
    let name = |s: &KmemState| String::from(s.areas[area].name());
    if count == 0 {
        return Err(KmemError::CmaZeroPages { area: name(s) });
    }
    if count > s.areas[area].count() {
        return Err(KmemError::CmaTooLarge {
            area: name(s),
            requested: count,
            available: s.areas[area].count(),
        });
    }
    if align_order as usize > mm::MAX_ORDER + 8 {
        return Err(KmemError::CmaAlignTooLarge {
            area: name(s),
            align_order,
        });
    }
    // A window of held memory (an idle area's, `mm/page_alloc/held.rs`) needs no room, no
    // migrator and no wait: take it before setting any of them up. Without that much held
    // memory the try would mostly fail, so it is not made.
    if s.zone.held_free_pages() >= count {
        if let Some(pfn) =
            mm::cma_alloc_if_free(&mut s.areas[area], &mut s.zone, count, align_order as usize)
        {
            return Ok(pfn);
        }
    }
    // I/O done by the time of the call no longer pins; what completes from here on is
    // seen when the allocation waits.
    if !s.clients.anon.io_pins.is_empty() {
        s.clients.anon.io_pins.complete_due(timer::counter());
    }
    make_room(s, count);
    let mut retries = 0;
    let mut backoff: Option<IoBackoff> = None;
    loop {
        let (areas, zone) = (&mut s.areas, &mut s.zone);
        let result = s
            .clients
            .migrator(|m| mm::cma_alloc(&mut areas[area], zone, m, count, align_order as usize))?;
        match result {
            Ok(pfn) => return Ok(pfn),
            Err(CmaError::NoMemory) if retries < 4 && s.clients.cache.clean_pages() > 0 => {
                retries += 1;
                s.clients
                    .cache
                    .shrink_clean(&mut s.zone, count.max(64), |_, _| true);
            }
            Err(CmaError::Busy)
                if !s.clients.anon.io_pins.is_empty()
                    && wait_for_io_pins(s, area, &mut backoff) => {}
            Err(error) => {
                return Err(KmemError::CmaAllocFailed {
                    area: name(s),
                    count,
                    error,
                })
            }
        }
    }
}

/// `cma_alloc`: `count` pages aligned to `1 << align_order` pages, migrating or reclaiming
/// the movable clients' pages out of the way. Returns the first pfn.
pub fn cma_alloc(area: &str, count: usize, align_order: u32) -> Result<Pfn, KmemError> {
    with_state(|s| {
        let i = area_index(s, area)?;
        cma_alloc_locked(s, i, count, align_order)
    })?
}

/// `cma_release`: give back pages from `cma_alloc`; refuses pages this area did not hand out.
pub fn cma_release(area: &str, pfn: Pfn, count: usize) -> Result<(), KmemError> {
    with_state(|s| {
        let i = area_index(s, area)?;
        if mm::cma_release(&mut s.areas[i], &mut s.zone, pfn, count) {
            Ok(())
        } else {
            Err(KmemError::CmaNotHandedOut {
                area: String::from(area),
                pfn,
                count,
            })
        }
    })?
}

/// `cma_alloc_movable`: like [`cma_alloc`], as a movable chunk the area may move while it
/// is unpinned (`mm::cma::movable`). Pin it with [`cma_pin`] before a device or the CPU
/// touches it.
pub fn cma_alloc_movable(
    area: &str,
    count: usize,
    align_order: u32,
) -> Result<ChunkInfo, KmemError> {
    with_state(|s| {
        let i = area_index(s, area)?;
        // The same checks, reclaim and waits as a plain allocation; then the range becomes
        // a chunk.
        let pfn = cma_alloc_locked(s, i, count, align_order)?;
        let adopted = s.areas[i].adopt_movable(pfn, count, align_order as usize);
        match adopted.and_then(|id| s.areas[i].chunk(id).ok_or(CmaError::NoSuchChunk(id))) {
            Ok(info) => Ok(info),
            Err(error) => {
                // Not a chunk after all: the range goes back rather than leak.
                mm::cma_release(&mut s.areas[i], &mut s.zone, pfn, count);
                Err(KmemError::CmaAllocFailed {
                    area: String::from(area),
                    count,
                    error,
                })
            }
        }
    })?
}

/// Pin a movable chunk: where it is, for as long as the pin is held.
pub fn cma_pin(area: &str, id: ChunkId) -> Result<ChunkInfo, KmemError> {
    with_state(|s| {
        let i = area_index(s, area)?;
        mm::cma_pin(&mut s.areas[i], id).map_err(|error| chunk_error(area, error))
    })?
}

/// Drop a pin of a movable chunk.
pub fn cma_unpin(area: &str, id: ChunkId) -> Result<(), KmemError> {
    with_state(|s| {
        let i = area_index(s, area)?;
        mm::cma_unpin(&mut s.areas[i], id).map_err(|error| chunk_error(area, error))
    })?
}

/// Give back an unpinned movable chunk.
pub fn cma_release_movable(area: &str, id: ChunkId) -> Result<(), KmemError> {
    with_state(|s| {
        let i = area_index(s, area)?;
        mm::cma_release_movable(&mut s.areas[i], &mut s.zone, id)
            .map_err(|error| chunk_error(area, error))
    })?
}

/// Turn an area's defragmentation on or off (`echo 0 > .../defrag` in debugfs).
pub fn cma_set_defrag(area: &str, on: bool) -> Result<(), KmemError> {
    with_state(|s| {
        let i = area_index(s, area)?;
        s.areas[i].set_defrag(on);
        Ok(())
    })?
}

fn chunk_error(area: &str, error: CmaError) -> KmemError {
    KmemError::CmaChunk {
        area: String::from(area),
        error,
    }
}

/// What a pinned allocation is for; both kinds stay out of CMA pageblocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    /// Kernel data that is never moved.
    Kernel,
    /// Long-term pinned memory (a device DMAs into it).
    Pinned,
}

/// The owner id [`alloc_pinned`] records in the zone, so [`free_pinned`] can tell its own
/// allocations from other kernel or pinned blocks (the benchmarks', say) without a table:
/// a table searched on every free made freeing N pages cost N² steps.
const PINNED_BY_KMEM: u64 = 0x6b_6d65_6d70_696e; // "kmempin"

/// Allocate `1 << order` frames that will never move: Unmovable for kernel data, Movable
/// with `NO_CMA` for long-term pins, so neither lands in a CMA pageblock.
pub fn alloc_pinned(order: usize, kind: PinKind) -> Result<Pfn, KmemError> {
    with_state(|s| {
        let (gfp, owner) = match kind {
            PinKind::Kernel => (mm::Gfp::KERNEL, OwnerKind::Kernel),
            PinKind::Pinned => (mm::Gfp::MOVABLE.with(GfpFlags::NO_CMA), OwnerKind::Pinned),
        };
        let pfn = s
            .zone
            .alloc_pages(order, gfp)
            .map_err(|error| KmemError::AllocFailed { order, error })?;
        if let Err(error) = s.zone.set_owner(pfn, Owner::new(owner, PINNED_BY_KMEM)) {
            let _ = s.zone.free_pages(pfn, order);
            return Err(KmemError::OwnerRefused { order, error });
        }
        Ok(pfn)
    })?
}

/// Free an allocation from [`alloc_pinned`]; anything else is refused: the block at `pfn`
/// must be allocated with exactly this order and carry `alloc_pinned`'s owner.
pub fn free_pinned(pfn: Pfn, order: usize) -> Result<(), KmemError> {
    with_state(|s| {
        let ours = s.zone.allocated_block(pfn) == Some((pfn, order))
            && s.zone.owner(pfn).is_some_and(|owner| {
                (owner.is(OwnerKind::Kernel) || owner.is(OwnerKind::Pinned))
                    && owner.id() == PINNED_BY_KMEM
            });
        if !ours {
            return Err(KmemError::NotPinned { pfn, order });
        }
        s.zone.free_pages(pfn, order).map_err(KmemError::FreeFailed)
    })?
}

/// Physical range of the memmap.
pub fn memmap_range() -> Result<Range<u64>, KmemError> {
    with_state(|s| s.memmap.clone())
}

/// The zone's full invariant check (O(span)).
pub fn check_invariants() -> Result<(), KmemError> {
    with_state(|s| {
        s.zone
            .check_invariants()
            .map_err(KmemError::InvariantBroken)?;
        pasr::check_invariants(s)
    })?
}
