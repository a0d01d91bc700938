//! The order-0 page cache in front of the buddy (Linux's per-cpu pagesets, `struct
//! per_cpu_pages`): one list per pcp migrate type of free order-0 frames that an
//! allocation takes and a free gives back without touching the free lists.
//!
//! # Theory of operation
//!
//! Most order-0 traffic is a page freed and soon allocated again. The buddy pays for it
//! twice: the free merges the page with its buddy and up, the next allocation splits it
//! all back. The pcp keeps such frames aside instead, in state [`PageState::Pcp`] (off
//! every free list, not counted free: as in Linux, `NR_FREE_PAGES`, buddyinfo and the
//! watermarks see them as in use), linked through the same `next`/`prev` fields the free
//! lists use.
//!
//! - **Allocation** (`pcp_alloc`): an order-0 request of a pcp type (Unmovable, Movable,
//!   Reclaimable) that passes the watermark pops the list's head. An empty list is
//!   refilled with up to `batch` frames from the type's own buddy lists (no stealing, no
//!   CMA: those stay the buddy's decisions, made one request at a time); when that finds
//!   nothing, or a Movable request should take CMA first ([`super::CmaBalance`]), or the
//!   request may dip into the reserve, the buddy serves it as before.
//! - **Free** (`pcp_free`): an order-0 frame whose pageblock is of a pcp type is pushed on
//!   that type's list (the pageblock's type, as Linux's `free_unref_page`); past `high`
//!   frames in all, the `batch` coldest of that list go back to the buddy. Frames of Cma
//!   and Isolate pageblocks always go straight to the buddy.
//!
//! **Invariant: no pcp frame lies in a Cma or an Isolate pageblock.** Frees never put one
//! there, refills take only from pcp types' lists, and a pageblock retyped to Cma or
//! Isolate has its pcp frames given back to the buddy first (`pcp_drain_range`, called by
//! `retype_pageblock`; `reserve_range` does the same). So CMA allocations never wait for
//! a drain (Linux drains every CPU's lists on each `alloc_contig_range`), isolation never
//! hands out a frame it is emptying, and `take_range_if_free` simply sees a pcp frame as
//! not free. A request the buddy cannot serve while the pcp holds frames drains it and
//! tries once more (`drain_all_pages` in Linux's slow path), so the pcp never makes an
//! allocation fail that would have succeeded without it.
//!
//! A zone starts without a pcp ([`Zone::enable_pcp`] turns it on: the firmware does at
//! boot); host tests of the buddy itself see every order-0 operation reach the lists.
#![forbid(unsafe_code)]

use core::ops::Range;

use super::{Gfp, GfpFlags, Zone};
use crate::mm::migratetype::MIGRATE_PCPTYPES;
use crate::mm::page::NIL;
use crate::mm::{MigrateType, Owner, PageState, Pfn};

/// Size limits of the pcp, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcpLimits {
    /// Frames refilled, and given back, at a time.
    pub batch: usize,
    /// Frames the lists may hold in all before a free gives `batch` back.
    pub high: usize,
}

impl PcpLimits {
    /// Linux's sizing for a zone of `managed` pages: `zone_batchsize` (a quarter of
    /// 1/1024 of the zone, at most 256 KiB worth, rounded to 2^n - 1) and a `high` of
    /// 1/128 of the zone (Linux's tuned `high_max` may reach 1/8), at least 4 batches and
    /// at most 16 MiB worth.
    pub fn for_zone(managed: usize) -> PcpLimits {
        let quarter = (managed >> 10).min(256) / 4;
        let batch = if quarter == 0 {
            1
        } else {
            let b = quarter + quarter / 2;
            (1usize << (usize::BITS - 1 - b.leading_zeros())) - 1
        }
        .max(1);
        let high = (managed / 128).clamp(4 * batch, 4096);
        PcpLimits { batch, high }
    }
}

/// Counts for reports (`/proc/zoneinfo`'s `pagesets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PcpCounters {
    pub enabled: bool,
    /// Frames on the lists, in all and per pcp type.
    pub count: usize,
    pub by_type: [usize; MIGRATE_PCPTYPES],
    pub high: usize,
    pub batch: usize,
}

/// The lists: head (hottest) and tail (coldest) frame index per pcp type.
#[derive(Clone, Debug)]
pub(super) struct Pcp {
    head: [u32; MIGRATE_PCPTYPES],
    tail: [u32; MIGRATE_PCPTYPES],
    /// Frames on all lists (per list only on demand: `pcp_counters`).
    total: usize,
    limits: PcpLimits,
}

impl Pcp {
    pub(super) const fn new(limits: PcpLimits) -> Pcp {
        Pcp {
            head: [NIL; MIGRATE_PCPTYPES],
            tail: [NIL; MIGRATE_PCPTYPES],
            total: 0,
            limits,
        }
    }
}

impl Zone<'_> {
    /// Turn the pcp on with `limits` (again: new limits, frames kept).
    pub fn enable_pcp(&mut self, limits: PcpLimits) {
        let limits = PcpLimits {
            batch: limits.batch.max(1),
            high: limits.high.max(limits.batch.max(1)),
        };
        match self.pcp.as_mut() {
            Some(pcp) => pcp.limits = limits,
            None => self.pcp = Some(Pcp::new(limits)),
        }
    }

    /// Give every pcp frame back to the buddy and turn the pcp off.
    pub fn disable_pcp(&mut self) {
        self.drain_pcp();
        self.pcp = None;
    }

    pub fn pcp_counters(&self) -> PcpCounters {
        match &self.pcp {
            None => PcpCounters::default(),
            Some(pcp) => PcpCounters {
                enabled: true,
                count: pcp.total,
                by_type: core::array::from_fn(|i| self.pcp_list(i).count()),
                high: pcp.limits.high,
                batch: pcp.limits.batch,
            },
        }
    }

    /// Frames on the pcp lists.
    #[inline]
    pub fn pcp_pages(&self) -> usize {
        self.pcp.as_ref().map_or(0, |p| p.total)
    }

    /// `drain_all_pages`: give every pcp frame back to the buddy. Returns how many.
    pub fn drain_pcp(&mut self) -> usize {
        let mut drained = 0;
        for i in 0..MIGRATE_PCPTYPES {
            while let Some(pfn) = self.pcp_pop_cold(i) {
                self.pcp_release(pfn);
                drained += 1;
            }
        }
        drained
    }

    /// Give back to the buddy the pcp frames inside `range`: a walk of the lists or of the
    /// range's frames, whichever is shorter (nothing when the pcp is empty). Returns how
    /// many.
    pub(in crate::mm) fn pcp_drain_range(&mut self, range: Range<Pfn>) -> usize {
        let on_pcp = self.pcp_pages();
        if on_pcp == 0 {
            return 0;
        }
        let (lo, hi) = (range.start.max(self.start_pfn), range.end.min(self.end_pfn));
        let mut drained = 0;
        if on_pcp < hi.saturating_sub(lo) {
            for i in 0..MIGRATE_PCPTYPES {
                let mut cur = self.pcp.as_ref().map_or(NIL, |p| p.head[i]);
                while cur != NIL {
                    let next = self.pages[cur as usize].next();
                    let pfn = self.start_pfn + cur as usize;
                    if (lo..hi).contains(&pfn) {
                        self.pcp_unlink(pfn);
                        self.pcp_release(pfn);
                        drained += 1;
                    }
                    cur = next;
                }
            }
            return drained;
        }
        for pfn in lo..hi {
            if self.pg(pfn).state() == PageState::Pcp {
                self.pcp_unlink(pfn);
                self.pcp_release(pfn);
                drained += 1;
            }
        }
        drained
    }

    /// An order-0 frame from the pcp for `gfp`, refilling the list from the buddy when it
    /// is empty; `None` leaves the request to the buddy: not a pcp type, allowed into the
    /// reserve, short of the watermark, a Movable request that should take CMA first, or
    /// nothing to refill with (see the module docs).
    #[inline]
    pub(super) fn pcp_alloc(&mut self, gfp: Gfp) -> Option<Pfn> {
        let mt = gfp.migratetype;
        let i = mt.index();
        if i >= MIGRATE_PCPTYPES || gfp.flags.contains(GfpFlags::MEMALLOC) {
            return None;
        }
        let outside_cma = self.nr_free_outside_cma();
        let free_cma = self.free_cma_pages();
        let free = outside_cma + free_cma;
        let alloc_cma = mt == MigrateType::Movable && !gfp.flags.contains(GfpFlags::NO_CMA);
        let usable = if alloc_cma { free } else { outside_cma };
        // The buddy's watermark rule: one page must leave `min` free.
        // `cma_preferred`'s rule, from the counts at hand (computing them again costs a
        // dozen instructions a call).
        if usable <= self.watermarks.min
            || (alloc_cma
                && self
                    .cma_balance
                    .prefers_cma(free_cma, free + self.pcp_pages()))
        {
            return None;
        }
        if self.pcp.as_ref()?.head[i] == NIL {
            self.pcp_refill(mt);
        }
        self.pcp_take_head(mt)
    }

    /// Pop list `mt`'s head (the hottest frame) and hand it out as an order-0 allocation.
    #[inline(always)]
    fn pcp_take_head(&mut self, mt: MigrateType) -> Option<Pfn> {
        let i = mt.index();
        let pcp = self.pcp.as_mut()?;
        let idx = pcp.head[i];
        if idx == NIL {
            return None;
        }
        let next = self.pages[idx as usize].next();
        pcp.head[i] = next;
        if next == NIL {
            pcp.tail[i] = NIL;
        } else {
            self.pages[next as usize].set_prev(NIL);
        }
        pcp.total -= 1;
        let page = &mut self.pages[idx as usize];
        page.set(PageState::Head, 0, mt);
        page.set_owner(Owner::NONE);
        Some(self.start_pfn + idx as usize)
    }

    /// `rmqueue_bulk`: up to `batch` order-0 frames from `mt`'s own free lists onto its
    /// (empty) pcp list, leaving the min watermark's worth free.
    #[inline(never)]
    fn pcp_refill(&mut self, mt: MigrateType) {
        let want = self.pcp.as_ref().map_or(0, |p| p.limits.batch);
        let usable = self.nr_free_outside_cma();
        let spare = usable.saturating_sub(self.watermarks.min);
        for _ in 0..want.min(spare) {
            let Some(pfn) = self.rmqueue_smallest(0, mt) else {
                break;
            };
            self.pcp_append(pfn, mt);
        }
    }

    /// Put a frame being freed (an allocated order-0 head) on the pcp if its pageblock's
    /// type allows; `false` when it must go to the buddy instead (no pcp, or a Cma or
    /// Isolate pageblock).
    #[inline]
    pub(super) fn pcp_free(&mut self, pfn: Pfn) -> bool {
        if self.pcp.is_none() {
            return false;
        }
        // The pageblock's type byte: the pcp types are the first three.
        let raw = self.pageblock_types[self.block_index(pfn)];
        let i = raw as usize;
        let Some(pcp) = self.pcp.as_mut() else {
            return false;
        };
        if i >= MIGRATE_PCPTYPES {
            return false;
        }
        let idx = (pfn - self.start_pfn) as u32;
        let head = pcp.head[i];
        pcp.head[i] = idx;
        if head == NIL {
            pcp.tail[i] = idx;
        } else {
            self.pages[head as usize].set_prev(idx);
        }
        pcp.total += 1;
        let over = pcp.total > pcp.limits.high;
        let page = &mut self.pages[idx as usize];
        page.set_pcp(raw);
        page.set_links(NIL, head);
        if over {
            self.pcp_trim(i);
        }
        true
    }

    /// Past `high`: the `batch` coldest frames of list `i` back to the buddy.
    #[inline(never)]
    fn pcp_trim(&mut self, i: usize) {
        let batch = self.pcp.as_ref().map_or(0, |p| p.limits.batch);
        for _ in 0..batch {
            let Some(cold) = self.pcp_pop_cold(i) else {
                break;
            };
            self.pcp_release(cold);
        }
    }

    /// Link `pfn` (off every list) at the cold end of `mt`'s list. (A free links at the
    /// hot end, in `pcp_free`.)
    fn pcp_append(&mut self, pfn: Pfn, mt: MigrateType) {
        let i = mt.index();
        let idx = (pfn - self.start_pfn) as u32;
        let Some(pcp) = self.pcp.as_mut() else {
            return;
        };
        let tail = pcp.tail[i];
        pcp.tail[i] = idx;
        if tail == NIL {
            pcp.head[i] = idx;
        } else {
            self.pages[tail as usize].set_next(idx);
        }
        pcp.total += 1;
        let page = &mut self.pages[idx as usize];
        page.set(PageState::Pcp, 0, mt);
        page.set_links(tail, NIL);
    }

    /// Unlink and return list `i`'s tail (the coldest frame).
    fn pcp_pop_cold(&mut self, i: usize) -> Option<Pfn> {
        let idx = self.pcp.as_ref()?.tail[i];
        if idx == NIL {
            return None;
        }
        let pfn = self.start_pfn + idx as usize;
        self.pcp_unlink(pfn);
        Some(pfn)
    }

    /// Take a pcp frame off its list (its state is left for the caller to overwrite).
    fn pcp_unlink(&mut self, pfn: Pfn) {
        let idx = pfn - self.start_pfn;
        let page = &self.pages[idx];
        let (prev, next, i) = (page.prev(), page.next(), page.migratetype().index());
        let Some(pcp) = self.pcp.as_mut() else {
            return;
        };
        if i >= MIGRATE_PCPTYPES {
            return;
        }
        if prev == NIL {
            pcp.head[i] = next;
        } else {
            self.pages[prev as usize].set_next(next);
        }
        if next == NIL {
            pcp.tail[i] = prev;
        } else {
            self.pages[next as usize].set_prev(prev);
        }
        pcp.total -= 1;
    }

    /// Hand an unlinked pcp frame to the buddy, on its pageblock's list.
    fn pcp_release(&mut self, pfn: Pfn) {
        let page = self.pg_mut(pfn);
        page.set(PageState::Head, 0, MigrateType::Movable);
        page.set_owner(Owner::NONE);
        self.free_block(pfn, 0);
    }

    /// The frames on list `i`, head first (for the invariant check).
    pub(super) fn pcp_list(&self, i: usize) -> impl Iterator<Item = (Pfn, u32)> + '_ {
        let mut cur = self.pcp.as_ref().map_or(NIL, |p| p.head[i]);
        core::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let here = cur;
            cur = self.pages.get(cur as usize).map_or(NIL, |p| p.next());
            Some((self.start_pfn + here as usize, here))
        })
    }

    /// The recorded ends of list `i` and the total (for the invariant check).
    pub(super) fn pcp_list_record(&self, i: usize) -> Option<(u32, u32, usize)> {
        self.pcp.as_ref().map(|p| (p.head[i], p.tail[i], p.total))
    }
}
