//! Debugging checks: [`Zone::check_invariants`] verifies every structural rule of the zone
//! by walking all of it (frame states, blocks, lists, counters, merging, pageblock types,
//! what may sit in a Cma pageblock). O(span), for tests and debug shells. The PASR state
//! has its own check next to it, `Zone::check_pasr_invariants` in `pasr.rs`.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;

use super::held::NOT_HELD;
use super::{nr_pageblocks, Zone};
use crate::mm::migratetype::{MIGRATE_PCPTYPES, MIGRATE_TYPES};
use crate::mm::page::NIL;
use crate::mm::{
    MigrateType, OwnerKind, PageState, MAX_ORDER, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
};

impl Zone<'_> {
    /// Verify every structural invariant: frame states, block alignment, list links and
    /// membership, counters, full merging, list type == pageblock type, and that Cma
    /// pageblocks hold only movable or contiguous (CMA) allocations. O(span); meant for
    /// tests and debug shells.
    pub fn check_invariants(&self) -> Result<(), String> {
        let nr_blocks = nr_pageblocks(self.start_pfn, self.end_pfn - self.start_pfn);
        if let Some(i) =
            (0..nr_blocks).find(|&i| MigrateType::from_u8(self.pageblock_types[i]).is_none())
        {
            return Err(format!(
                "pageblock {i} has invalid type byte {}",
                self.pageblock_types[i]
            ));
        }
        let mut seen = [[0usize; MIGRATE_TYPES]; NR_PAGE_ORDERS];
        let (mut free, mut allocated, mut present) = (0usize, 0usize, 0usize);
        let mut on_pcp = 0usize;
        let mut held = alloc::vec![0usize; self.held.len()];
        let mut pfn = self.start_pfn;
        while pfn < self.end_pfn {
            let page = self.pg(pfn);
            match page.state() {
                PageState::Hole => {
                    pfn += 1;
                    continue;
                }
                PageState::Reserved => {
                    present += 1;
                    pfn += 1;
                    continue;
                }
                PageState::Tail => {
                    return Err(format!("pfn {pfn:#x}: tail frame outside any block"))
                }
                PageState::Pcp => {
                    if !self.pb_type(pfn).is_pcptype() {
                        return Err(format!(
                            "pfn {pfn:#x}: pcp frame in a {} pageblock",
                            self.pb_type(pfn).name()
                        ));
                    }
                    present += 1;
                    on_pcp += 1;
                    pfn += 1;
                    continue;
                }
                PageState::Held => {
                    if !self.is_held(pfn) || self.pb_type(pfn) != MigrateType::Cma {
                        return Err(format!(
                            "pfn {pfn:#x}: held frame in a {} pageblock that is not held",
                            self.pb_type(pfn).name()
                        ));
                    }
                    held[self.held_index(pfn)] += 1;
                    present += 1;
                    pfn += 1;
                    continue;
                }
                PageState::Buddy | PageState::Head => {}
            }
            if self.is_held(pfn)
                && !(page.state() == PageState::Head
                    && page.order() == 0
                    && page.migratetype() == MigrateType::Cma)
            {
                return Err(format!(
                    "pfn {pfn:#x}: {:?} in a held pageblock (only held frames and CMA allocations belong there)",
                    page.state()
                ));
            }
            let order = page.order();
            if order > MAX_ORDER {
                return Err(format!("pfn {pfn:#x}: order {order} too large"));
            }
            let end = pfn + (1 << order);
            if pfn & ((1 << order) - 1) != 0 || end > self.end_pfn {
                return Err(format!(
                    "pfn {pfn:#x}: order-{order} block misaligned or past the zone"
                ));
            }
            if let Some(t) = (pfn + 1..end).find(|&t| self.pg(t).state() != PageState::Tail) {
                return Err(format!(
                    "pfn {t:#x}: inside the order-{order} block at {pfn:#x} but not a tail"
                ));
            }
            present += 1 << order;
            let mt = page.migratetype();
            if page.state() == PageState::Buddy {
                free += 1 << order;
                seen[order][mt.index()] += 1;
                if let Some(b) = (pfn..end)
                    .step_by(PAGEBLOCK_NR_PAGES)
                    .find(|&b| self.pb_type(b) != mt)
                {
                    return Err(format!(
                        "free order-{order} block at {pfn:#x} is on the {} list but pageblock {b:#x} is {}",
                        mt.name(),
                        self.pb_type(b).name()
                    ));
                }
                if order < MAX_ORDER {
                    let buddy = pfn ^ (1 << order);
                    if self.contains(buddy) {
                        let bp = self.pg(buddy);
                        if bp.state() == PageState::Buddy && bp.order() == order {
                            let bm = bp.migratetype();
                            if order < PAGEBLOCK_ORDER
                                || bm == mt
                                || (bm.is_mergeable() && mt.is_mergeable())
                            {
                                return Err(format!("free buddies {pfn:#x} and {buddy:#x} of order {order} not merged"));
                            }
                        }
                    }
                }
            } else {
                allocated += 1 << order;
                if self.block_touches_cma(pfn, order) {
                    match mt {
                        MigrateType::Cma => {}
                        MigrateType::Movable => {
                            let kind = page.owner().kind();
                            if !(kind == OwnerKind::None || kind.is_movable()) {
                                return Err(format!(
                                    "pfn {pfn:#x}: {kind:?} owner in a CMA pageblock"
                                ));
                            }
                        }
                        other => {
                            return Err(format!(
                                "pfn {pfn:#x}: {} allocation in a CMA pageblock",
                                other.name()
                            ))
                        }
                    }
                }
            }
            pfn = end;
        }
        if present != self.present_pages {
            return Err(format!(
                "present pages {} but counted {present}",
                self.present_pages
            ));
        }
        for (i, (&recorded, &counted)) in self.held.iter().zip(&held).enumerate() {
            let recorded = if recorded == NOT_HELD {
                0
            } else {
                recorded as usize
            };
            if recorded != counted {
                return Err(format!(
                    "held pageblock {i}: count {recorded} but {counted} held frames"
                ));
            }
        }
        let nr_held = self.held.iter().filter(|&&n| n != NOT_HELD).count();
        if nr_held != self.nr_held {
            return Err(format!(
                "{} held pageblocks counted, {nr_held} found",
                self.nr_held
            ));
        }
        let held: usize = held.iter().sum();
        if held != self.held_free {
            return Err(format!(
                "{} held free frames counted, {held} found",
                self.held_free
            ));
        }
        if free + held + allocated + on_pcp != self.managed_pages {
            return Err(format!(
                "managed {} but {free} free + {held} held + {allocated} allocated + {on_pcp} on the pcp",
                self.managed_pages
            ));
        }
        self.check_pcp_lists(on_pcp)?;
        let mut by_type = [0usize; MIGRATE_TYPES];
        for (order, area) in self.free_area.iter().enumerate() {
            let mut total = 0;
            for mt in MigrateType::ALL {
                let mut n = 0usize;
                // One list per order and type, or with PASR steering one per span at
                // MAX_ORDER.
                for head in self.list_heads(order, mt) {
                    let mut prev = NIL;
                    let mut cur = head;
                    while cur != NIL {
                        if n > self.pages.len() {
                            return Err(format!("free list order {order} {} loops", mt.name()));
                        }
                        let p = &self.pages[cur as usize];
                        let at = self.start_pfn + cur as usize;
                        if p.state() != PageState::Buddy
                            || p.order() != order
                            || p.migratetype() != mt
                        {
                            return Err(format!(
                                "pfn {at:#x} on free list order {order} {} is {:?}",
                                mt.name(),
                                p
                            ));
                        }
                        if p.prev() != prev {
                            return Err(format!("pfn {at:#x}: broken prev link"));
                        }
                        prev = cur;
                        cur = p.next();
                        n += 1;
                    }
                }
                if n != area.nr_by_type[mt.index()] || n != seen[order][mt.index()] {
                    return Err(format!(
                        "order {order} {}: list has {n}, counter {}, frames say {}",
                        mt.name(),
                        area.nr_by_type[mt.index()],
                        seen[order][mt.index()]
                    ));
                }
                total += n;
                by_type[mt.index()] += n << order;
            }
            if total != area.nr_free {
                return Err(format!(
                    "order {order}: nr_free {} but lists hold {total}",
                    area.nr_free
                ));
            }
        }
        if by_type != self.free_by_type {
            return Err(format!(
                "free pages per type {:?} but lists hold {by_type:?}",
                self.free_by_type
            ));
        }
        Ok(())
    }

    /// The pcp lists: every entry a pcp frame of the list's type, links and ends
    /// consistent, counts matching the lists and the `frames` pcp frames the walk saw.
    fn check_pcp_lists(&self, frames: usize) -> Result<(), String> {
        let mut total = 0;
        for i in 0..MIGRATE_PCPTYPES {
            let Some((head, tail, recorded_total)) = self.pcp_list_record(i) else {
                return if frames == 0 {
                    Ok(())
                } else {
                    Err(format!("{frames} pcp frames but no pcp"))
                };
            };
            let (mut n, mut prev) = (0usize, NIL);
            for (pfn, idx) in self.pcp_list(i) {
                if n > self.pages.len() {
                    return Err(format!("pcp list {i} loops"));
                }
                let p = self.pg(pfn);
                if p.state() != PageState::Pcp || p.migratetype().index() != i {
                    return Err(format!("pfn {pfn:#x} on pcp list {i} is {p:?}"));
                }
                if p.prev() != prev {
                    return Err(format!("pfn {pfn:#x}: broken pcp prev link"));
                }
                prev = idx;
                n += 1;
            }
            if (n == 0) != (head == NIL) || prev != tail {
                return Err(format!(
                    "pcp list {i}: {n} frames, head {head}, tail {tail}, last {prev}"
                ));
            }
            total += n;
            if i + 1 == MIGRATE_PCPTYPES && total != recorded_total {
                return Err(format!(
                    "pcp holds {total} frames, total says {recorded_total}"
                ));
            }
        }
        if total != frames {
            return Err(format!(
                "pcp lists hold {total} frames, the memmap {frames}"
            ));
        }
        Ok(())
    }
}
