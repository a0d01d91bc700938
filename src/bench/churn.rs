//! The churn benchmark: large allocations held and released under background movable
//! churn with interleaved kernel data and long-term pins ([`super::CHURN_WORKLOAD`]), once per
//! allocation method, counting how many succeed; [`ChurnMode::CmaPinsInCma`] also pins
//! pages inside CMA, long and short term.

use alloc::string::String;
use alloc::vec::Vec;

use super::report::{ChurnMode, ChurnResult};
use super::{not_cma, now, BenchError};
use crate::driver::timer;
use crate::kmem::{self, AreaId, KmemState};
use crate::mm::{self, Gfp, GfpFlags, MigrateType, Owner, OwnerKind, Pfn, Zone, MAX_ORDER};
use crate::util::rng::SplitMix64 as Rng;

/// Try `alloc_contig_range` on aligned candidate ranges of Movable pageblocks.
fn contig_movable(s: &mut KmemState, pages: usize, start_hint: usize) -> Option<Pfn> {
    let (zs, ze) = (s.zone().start_pfn(), s.zone().end_pfn());
    let span = (ze - zs) / pages;
    for k in 0..span {
        let base = zs.next_multiple_of(pages) + ((start_hint + k) % span) * pages;
        if base + pages > ze {
            continue;
        }
        let all_movable = (base..base + pages)
            .step_by(mm::PAGEBLOCK_NR_PAGES)
            .all(|p| s.zone().pageblock_migratetype(p) == Some(MigrateType::Movable));
        if !all_movable {
            continue;
        }
        if s.alloc_contig_range(base, base + pages, MigrateType::Movable) {
            return Some(base);
        }
    }
    None
}

/// A long-lived unmovable allocation of the churn workload.
struct Pin {
    pfn: Pfn,
    order: usize,
    expires: usize,
}

/// A short-term (I/O) pin of the churn workload on an anonymous page in CMA: released at
/// round `expires` at the latest (its I/O may complete before, by the clock).
struct IoPinned {
    slot: usize,
    expires: usize,
}

fn in_cma(zone: &Zone<'_>, pfn: Pfn) -> bool {
    zone.pageblock_migratetype(pfn) == Some(MigrateType::Cma)
}

/// [`ChurnMode::CmaPinsInCma`]'s pins for one round, from their own random sequence (the
/// rest of the workload draws the same numbers as in every other mode): long-term pins of
/// pages in CMA (moved out first) join `pins`, short-term ones `io`.
fn pin_inside_cma(
    s: &mut KmemState,
    rng: &mut Rng,
    round: usize,
    pins: &mut Vec<Pin>,
    io: &mut Vec<IoPinned>,
    result: &mut ChurnResult,
) -> Result<(), BenchError> {
    // 2 ms of I/O at most, in counter ticks.
    let io_ticks = timer::frequency() / 500;
    for _ in 0..rng.below(4) {
        let start = rng.below(s.anon_pages().max(1) * 2);
        let expires = round + 8 + rng.below(256);
        pins.try_reserve(1).map_err(|_| BenchError::HeapExhausted)?;
        if let Ok(pfn) = s.anon_pin_longterm(start, in_cma, Owner::new(OwnerKind::Pinned, 0)) {
            pins.push(Pin {
                pfn,
                order: 0,
                expires,
            });
            result.pins_taken += 1;
            result.cma_longterm_pins += 1;
        }
    }
    for _ in 0..rng.below(4) {
        let start = rng.below(s.anon_pages().max(1) * 2);
        let expires = round + 1 + rng.below(4);
        let completes_at = (rng.below(4) != 0).then(|| now() + rng.next_u64() % io_ticks.max(1));
        io.try_reserve(1).map_err(|_| BenchError::HeapExhausted)?;
        if let Ok(pin) = s.anon_pin_io(start, in_cma, completes_at) {
            io.push(IoPinned {
                slot: pin.slot,
                expires,
            });
            result.cma_io_pins += 1;
        }
    }
    Ok(())
}

/// Count pageblocks outside and inside CMA that hold a non-movable allocated frame.
fn polluted_pageblocks(zone: &mm::Zone<'_>) -> (usize, usize, usize) {
    let (mut normal, mut polluted, mut polluted_cma) = (0, 0, 0);
    let start = mm::pageblock_start_pfn(zone.start_pfn());
    for block in (start..zone.end_pfn()).step_by(mm::PAGEBLOCK_NR_PAGES) {
        let first = block.max(zone.start_pfn());
        let end = (block + mm::PAGEBLOCK_NR_PAGES).min(zone.end_pfn());
        let mut pfn = first;
        let mut dirty = false;
        while pfn < end {
            match zone.allocated_block(pfn) {
                Some((head, order)) => {
                    let movable = zone
                        .owner(head)
                        .is_some_and(|o| o.kind().is_movable() || o.kind() == OwnerKind::Contig);
                    dirty |= !movable;
                    pfn = head + (1 << order);
                }
                None => pfn += 1,
            }
        }
        if zone.pageblock_migratetype(first) == Some(MigrateType::Cma) {
            polluted_cma += usize::from(dirty);
        } else {
            normal += 1;
            polluted += usize::from(dirty);
        }
    }
    (normal, polluted, polluted_cma)
}

/// Many allocations of `pages` under background movable churn with interleaved unmovable
/// allocations; see [`super::CHURN_WORKLOAD`].
pub fn churn_success(
    area: Option<&str>,
    mode: ChurnMode,
    pages: usize,
    rounds: usize,
    hold: usize,
    seed: u64,
) -> Result<ChurnResult, BenchError> {
    kmem::with_state(|s| {
        let a = s.area(area)?;
        let order = pages.trailing_zeros() as usize;
        if mode == ChurnMode::BuddyHighOrder && (!pages.is_power_of_two() || order > MAX_ORDER) {
            return Err(BenchError::NotABuddyOrder {
                pages,
                max: 1 << MAX_ORDER,
            });
        }
        let mut rng = Rng::new(seed);
        s.anon_start();
        let anon_before = s.anon_pages();
        let store = s.cache_status().store_blocks;
        let mut held: Vec<Pfn> = Vec::new();
        let mut pins: Vec<Pin> = Vec::new();
        let mut io: Vec<IoPinned> = Vec::new();
        let mut cma_rng = Rng::new(seed ^ 0xc3a0_0000_0000_0001);
        let io_waits_before = s.anon_io_pins().waits;
        let mut result = ChurnResult {
            mode,
            label: String::from(mode.label()),
            ..ChurnResult::default()
        };
        let managed = s.zone().counters().managed_pages;
        let keep_free = managed / 8;
        let outcome = (|| -> Result<(), BenchError> {
            for round in 0..rounds {
                // Unmovable lifetimes end.
                let mut i = 0;
                while i < pins.len() {
                    if pins[i].expires <= round {
                        let pin = pins.swap_remove(i);
                        let _ = s.free_pages(pin.pfn, pin.order);
                    } else {
                        i += 1;
                    }
                }
                // I/O done (if the clock did not release it already).
                let mut i = 0;
                while i < io.len() {
                    if io[i].expires <= round {
                        let _ = s.anon_unpin_io(io.swap_remove(i).slot);
                    } else {
                        i += 1;
                    }
                }
                // Background movable churn, refilled to the fill level.
                let shrink = rng.below(2048);
                s.anon_shrink_where(shrink, |_, pfn| pfn % 3 == 0);
                for _ in 0..rng.below(512) {
                    let block = rng.below(store);
                    if rng.below(8) == 0 {
                        s.cache_write(block)?;
                    } else {
                        s.cache_read(block)?;
                    }
                }
                if rng.below(4) == 0 {
                    s.cache_writeback();
                }
                let free = s.zone().free_page_count();
                if free > keep_free {
                    s.anon_grow(free - keep_free)?;
                }
                // Kernel data and DMA pins, interleaved with the movable traffic.
                let kernel = 1 + rng.below(8);
                let dma = rng.below(16);
                for k in 0..kernel + dma {
                    let (pin_order, gfp, kind) = if k < kernel {
                        (rng.below(2), Gfp::KERNEL, OwnerKind::Kernel)
                    } else {
                        (0, Gfp::MOVABLE.with(GfpFlags::NO_CMA), OwnerKind::Pinned)
                    };
                    let expires = round + 8 + rng.below(256);
                    if pins.try_reserve(1).is_err() {
                        break;
                    }
                    let got = if kind == OwnerKind::Pinned {
                        // Pinned where the anonymous page already is, outside CMA (the
                        // pins inside CMA are the pins-in-CMA method's own, below).
                        let start = rng.below(s.anon_pages().max(1) * 2);
                        s.anon_pin_longterm(start, not_cma, Owner::new(kind, 0))
                            .ok()
                    } else {
                        s.alloc_pages(pin_order, gfp).ok()
                    };
                    if let Some(pfn) = got {
                        if kind == OwnerKind::Pinned
                            || s.set_owner(pfn, Owner::new(kind, 0)).is_ok()
                        {
                            pins.push(Pin {
                                pfn,
                                order: pin_order,
                                expires,
                            });
                            result.pins_taken += 1;
                        } else {
                            let _ = s.free_pages(pfn, pin_order);
                        }
                    }
                }
                if mode.pins_in_cma() {
                    pin_inside_cma(s, &mut cma_rng, round, &mut pins, &mut io, &mut result)?;
                }
                if held.len() >= hold {
                    let victim = held.swap_remove(rng.below(held.len()));
                    release(s, a, mode, victim, pages, order);
                }
                result.attempts += 1;
                let got = match mode {
                    ChurnMode::Cma | ChurnMode::CmaPinsInCma => s.cma_alloc(a, pages, 0).ok(),
                    ChurnMode::BuddyHighOrder => s
                        .alloc_pages(order, Gfp::MOVABLE.with(GfpFlags::NO_CMA))
                        .ok()
                        .inspect(|&p| {
                            let _ = s.set_owner(p, Owner::new(OwnerKind::Pinned, 1));
                        }),
                    ChurnMode::ContigMovable => contig_movable(s, pages, round * 7),
                };
                match got {
                    Some(pfn) => {
                        result.successes += 1;
                        held.try_reserve(1).map_err(|_| BenchError::HeapExhausted)?;
                        held.push(pfn);
                    }
                    None => {
                        let c = s.zone().counters();
                        let movable = s.anon_pages() + s.cached_pages();
                        if c.free_pages + movable >= pages + c.watermarks.min {
                            result.avoidable_failures += 1;
                        }
                    }
                }
            }
            Ok(())
        })();
        (
            result.normal_pageblocks,
            result.polluted_pageblocks,
            result.polluted_cma_pageblocks,
        ) = polluted_pageblocks(s.zone());
        for pfn in held {
            release(s, a, mode, pfn, pages, order);
        }
        for pin in pins {
            let _ = s.free_pages(pin.pfn, pin.order);
        }
        for pin in io {
            let _ = s.anon_unpin_io(pin.slot);
        }
        result.io_waits = s.anon_io_pins().waits - io_waits_before;
        s.cache_writeback();
        s.cache_drop_clean();
        let extra = s.anon_pages().saturating_sub(anon_before);
        s.anon_shrink(extra);
        outcome.map(|()| result)
    })?
}

fn release(s: &mut KmemState, area: AreaId, mode: ChurnMode, pfn: Pfn, pages: usize, order: usize) {
    match mode {
        ChurnMode::Cma | ChurnMode::CmaPinsInCma => {
            s.cma_release(area, pfn, pages);
        }
        ChurnMode::BuddyHighOrder => {
            let _ = s.free_pages(pfn, order);
        }
        ChurnMode::ContigMovable => {
            let _ = s.free_contig_range(pfn, pages);
        }
    }
}
