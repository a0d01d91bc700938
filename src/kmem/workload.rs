//! The memory service's operations for a workload that runs many of them under one hold of
//! the memory lock ([`super::with_state`]): the in-guest benchmarks, whose timed intervals
//! must not see an interrupt or a lock hand-over between operations.
//!
//! # Theory of operation
//!
//! A workload gets `&mut KmemState` and only these methods: CMA allocation and release by
//! [`AreaId`], buddy allocations with an owner, `alloc_contig_range`, growing and shrinking
//! the anonymous workload, page-cache reads, writes, write-back and dropping, the zone for
//! reading (counters, pageblock types, owners) and the CMA balance setting. Each is the
//! same code the kmem API runs (direct reclaim included), so what a workload measures is
//! what a caller of [`super::cma_alloc`] gets, minus the lock.
#![forbid(unsafe_code)]

use alloc::string::String;

use super::anon_pins::{IoPin, IoPins};
use super::pagecache::CacheStatus;
use super::{area_index, cma_alloc_locked, plan, KmemError, KmemState};
use crate::mm::{self, AllocError, CmaBalance, Gfp, MigrateType, MmError, Owner, Pfn, Zone};

/// A CMA area of the running system, by position (valid for the rest of the run: areas
/// are only added at boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AreaId(usize);

impl KmemState {
    /// The area named `name`, or with `None` the default CMA area (else the first one).
    pub fn area(&self, name: Option<&str>) -> Result<AreaId, KmemError> {
        match name {
            Some(name) => area_index(self, name).map(AreaId),
            None => {
                let default = plan()
                    .and_then(|p| p.default_cma_area())
                    .map(|a| a.name.clone());
                default
                    .and_then(|d| self.areas.iter().position(|a| a.name() == d))
                    .or(if self.areas.is_empty() { None } else { Some(0) })
                    .map(AreaId)
                    .ok_or_else(|| KmemError::NoSuchArea(String::from("(default)")))
            }
        }
    }

    pub fn area_name(&self, area: AreaId) -> &str {
        self.areas[area.0].name()
    }

    /// Pages in the area.
    pub fn area_pages(&self, area: AreaId) -> usize {
        self.areas[area.0].count()
    }

    /// [`super::cma_alloc`] under the held lock.
    #[inline]
    pub fn cma_alloc(
        &mut self,
        area: AreaId,
        count: usize,
        align_order: u32,
    ) -> Result<Pfn, KmemError> {
        cma_alloc_locked(self, area.0, count, align_order)
    }

    /// `cma_release`; `false` if the area did not hand these pages out.
    pub fn cma_release(&mut self, area: AreaId, pfn: Pfn, count: usize) -> bool {
        mm::cma_release(&mut self.areas[area.0], &mut self.zone, pfn, count)
    }

    /// The zone, to read (counters, pageblock types, owners, allocated blocks).
    pub fn zone(&self) -> &Zone<'static> {
        &self.zone
    }

    pub fn cma_balance(&self) -> CmaBalance {
        self.zone.cma_balance()
    }

    pub fn set_cma_balance(&mut self, balance: CmaBalance) {
        self.zone.set_cma_balance(balance);
    }

    /// A buddy allocation the workload owns (kernel data, a pin, a high-order block).
    pub fn alloc_pages(&mut self, order: usize, gfp: Gfp) -> Result<Pfn, AllocError> {
        self.zone.alloc_pages(order, gfp)
    }

    pub fn set_owner(&mut self, pfn: Pfn, owner: Owner) -> Result<(), MmError> {
        self.zone.set_owner(pfn, owner)
    }

    pub fn free_pages(&mut self, pfn: Pfn, order: usize) -> Result<(), MmError> {
        self.zone.free_pages(pfn, order)
    }

    /// `alloc_contig_range(start, end, migratetype)` with the movable clients migrating;
    /// `true` if the range was taken.
    pub fn alloc_contig_range(&mut self, start: Pfn, end: Pfn, migratetype: MigrateType) -> bool {
        let zone = &mut self.zone;
        let taken = self
            .clients
            .migrator(|m| mm::alloc_contig_range(zone, m, start, end, migratetype));
        matches!(taken, Ok(Ok(())))
    }

    pub fn free_contig_range(&mut self, pfn: Pfn, pages: usize) -> Result<(), MmError> {
        mm::free_contig_range(&mut self.zone, pfn, pages)
    }

    /// Pages moved by migration so far, anonymous and page cache together.
    pub fn migrations(&self) -> u64 {
        self.clients.anon.migrations + self.clients.cache.migrations
    }

    /// `mem start`.
    pub fn anon_start(&mut self) {
        self.clients.anon.start();
    }

    /// Pages in the anonymous workload.
    pub fn anon_pages(&self) -> usize {
        self.clients.anon.pages()
    }

    /// Add up to `count` anonymous pages (stops at the watermark); how many were added.
    pub fn anon_grow(&mut self, count: usize) -> Result<usize, KmemError> {
        self.clients.anon.grow(&mut self.zone, count)
    }

    /// Free up to `count` anonymous pages, newest first; how many were freed.
    pub fn anon_shrink(&mut self, count: usize) -> usize {
        self.clients.anon.shrink(&mut self.zone, count)
    }

    /// Free up to `count` anonymous pages whose frame satisfies `pick`, newest first.
    pub fn anon_shrink_where(
        &mut self,
        count: usize,
        pick: impl Fn(&Zone<'_>, Pfn) -> bool,
    ) -> usize {
        self.clients.anon.shrink_where(&mut self.zone, count, pick)
    }

    /// Long-term pin an anonymous page (`pin_user_pages(FOLL_LONGTERM)`): the first mapped
    /// page from slot `start` on whose frame satisfies `pick` (pages under I/O excepted) is
    /// migrated out of CMA if it is in it, gets `pin` as its owner and leaves the workload;
    /// its frame (never in CMA) is returned still allocated, for the caller to free.
    pub fn anon_pin_longterm(
        &mut self,
        start: usize,
        pick: impl Fn(&Zone<'_>, Pfn) -> bool,
        pin: Owner,
    ) -> Result<Pfn, KmemError> {
        super::anon::pin_longterm_locked(self, start, pick, pin)
    }

    /// Start I/O (a short-term pin) on the first mapped anonymous page from slot `start` on
    /// whose frame satisfies `pick`, done at counter value `completes_at` or at
    /// [`Self::anon_unpin_io`].
    pub fn anon_pin_io(
        &mut self,
        start: usize,
        pick: impl Fn(&Zone<'_>, Pfn) -> bool,
        completes_at: Option<u64>,
    ) -> Result<IoPin, KmemError> {
        self.clients
            .anon
            .pin_io(&self.zone, start, pick, completes_at)
    }

    /// The short-term pins (and their counters).
    pub fn anon_io_pins(&self) -> &IoPins {
        &self.clients.anon.io_pins
    }

    /// The I/O on `slot` is done; an error if it holds no short-term pin (its completion
    /// time may have released it already).
    pub fn anon_unpin_io(&mut self, slot: usize) -> Result<(), KmemError> {
        self.clients.anon.unpin_io(slot)
    }

    /// Read `block` through the page cache; `Ok(false)` at the watermark.
    pub fn cache_read(&mut self, block: usize) -> Result<bool, KmemError> {
        self.clients.cache.read(&mut self.zone, block)
    }

    /// Modify `block` through the page cache (dirty until written back).
    pub fn cache_write(&mut self, block: usize) -> Result<bool, KmemError> {
        self.clients.cache.write(&mut self.zone, block)
    }

    /// Write dirty cache pages back; how many were cleaned.
    pub fn cache_writeback(&mut self) -> usize {
        self.clients.cache.writeback()
    }

    /// Drop every clean cache page; how many were dropped.
    pub fn cache_drop_clean(&mut self) -> usize {
        self.clients.cache.drop_clean(&mut self.zone)
    }

    pub fn cache_status(&self) -> CacheStatus {
        self.clients.cache.status()
    }

    pub fn cached_pages(&self) -> usize {
        self.clients.cache.cached_pages()
    }
}
