//! In-guest benchmarks of the contiguous-memory stack, as library code so both the
//! benchmark image and the shell's `bench` command can run them.
//!
//! # Theory of operation
//!
//! Time is the generic counter (CNTVCT_EL0). Under `-icount shift=0,sleep=off` it advances
//! with retired instructions, so results are deterministic and comparable across runs.
//! Every CMA latency is reported as a ratio to a memcpy of the same number of bytes in the
//! same run, with the same copy routine migration uses: the physical limit of an allocation
//! that must move N bytes is one copy of N bytes.
//!
//! - [`cma_latency`]: `cma_alloc` of each size, several trials, with the area idle and with
//!   it full of anonymous pages (the CMA balance is set to prefer CMA while filling, so the
//!   area fills before the rest of memory; after each trial the freed range is refilled and
//!   the same number of anonymous pages outside CMA are dropped, so every trial meets a full
//!   area and the same amount of free memory elsewhere).
//! - [`churn_success`]: many large allocations held and released while memory stays mostly
//!   full of anonymous and cache pages and kernel-data pages and long-term DMA pins are
//!   allocated in between with random lifetimes ([`CHURN_WORKLOAD`]). That is what separates
//!   CMA from a plain buddy on real systems: the unmovable pages end up scattered through
//!   Movable pageblocks (fallback stealing, pins taken from whatever Movable block is at
//!   hand), so neither a free high-order block nor a migratable range survives there, while
//!   CMA pageblocks never serve such requests and can always be emptied. The same workload
//!   runs once per method: plain buddy (high-order `alloc_pages`), `alloc_contig_range`
//!   over Movable pageblocks (migration without CMA), and `cma_alloc`.
//!
//! Everything runs under the memory lock (IRQs masked), which also keeps timer interrupts
//! out of the measured intervals.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::pattern::mix64;
use super::{cma_alloc_locked, with_state, KmemError, KmemState};
use crate::mm::{
    self, CmaBalance, Gfp, GfpFlags, MigrateType, Owner, OwnerKind, Pfn, MAX_ORDER, PAGE_SHIFT,
    PAGE_SIZE,
};

fn now() -> u64 {
    crate::driver::timer::counter()
}

/// min / median / max of a set of counter deltas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

impl Stats {
    pub fn of(samples: &mut [u64]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        samples.sort_unstable();
        Stats {
            min: samples[0],
            median: samples[samples.len() / 2],
            max: samples[samples.len() - 1],
        }
    }
}

/// One size of the latency table, in counter ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyRow {
    pub pages: usize,
    pub memcpy: Stats,
    pub idle: Stats,
    pub full: Stats,
    /// Pages migrated per allocation in the full case (median trial).
    pub migrated_per_alloc: u64,
    pub failures: usize,
}

fn ratio(x: u64, base: u64) -> String {
    if base == 0 {
        String::from("-")
    } else {
        format!("{:.2}", x as f64 / base as f64)
    }
}

/// The latency table as printable text.
pub fn format_latency(area: &str, rows: &[LatencyRow], trials: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cma_alloc latency, area '{area}', {trials} trials per size; ticks of CNTVCT (min/median/max); ratio = cma_alloc median / memcpy median"
    );
    let _ = writeln!(
        out,
        "{:>6} {:>22} {:>22} {:>7} {:>22} {:>7} {:>9} {:>5}",
        "pages", "memcpy", "idle", "ratio", "full of anon", "ratio", "migr/alloc", "fail"
    );
    for r in rows {
        let s = |st: &Stats| format!("{}/{}/{}", st.min, st.median, st.max);
        let _ = writeln!(
            out,
            "{:>6} {:>22} {:>22} {:>7} {:>22} {:>7} {:>9} {:>5}",
            r.pages,
            s(&r.memcpy),
            s(&r.idle),
            ratio(r.idle.median, r.memcpy.median),
            s(&r.full),
            ratio(r.full.median, r.memcpy.median),
            r.migrated_per_alloc,
            r.failures
        );
    }
    out
}

fn area_or_default(s: &KmemState, area: Option<&str>) -> Result<usize, KmemError> {
    match area {
        Some(name) => super::area_index(s, name),
        None => {
            let default = super::plan()
                .and_then(|p| p.default_cma_area())
                .map(|a| a.name.clone());
            default
                .and_then(|d| s.areas.iter().position(|a| a.name() == d))
                .or(if s.areas.is_empty() { None } else { Some(0) })
                .ok_or_else(|| KmemError::NoSuchArea(String::from("(default)")))
        }
    }
}

/// Fill every free CMA page with anonymous pages; returns pages added.
fn fill_cma_with_anon(s: &mut KmemState) -> Result<usize, KmemError> {
    let mut added = 0;
    loop {
        let free_cma = s.zone.counters().free_cma_pages;
        if free_cma == 0 {
            return Ok(added);
        }
        let n = s.clients.anon.grow(&mut s.zone, free_cma)?;
        if n == 0 {
            return Ok(added);
        }
        added += n;
    }
}

fn not_cma(zone: &mm::Zone<'_>, pfn: Pfn) -> bool {
    zone.pageblock_migratetype(pfn) != Some(MigrateType::Cma)
}

/// `cma_alloc` latency per size, idle and full of anonymous pages, against a memcpy of the
/// same size. Sizes larger than half the area (the memcpy needs two buffers) are skipped.
pub fn cma_latency(
    area: Option<&str>,
    sizes: &[usize],
    trials: usize,
) -> Result<(String, Vec<LatencyRow>), KmemError> {
    with_state(|s| {
        let a = area_or_default(s, area)?;
        let name = String::from(s.areas[a].name());
        let area_pages = s.areas[a].count();
        let sizes: Vec<usize> = sizes
            .iter()
            .copied()
            .filter(|&n| n > 0 && 2 * n <= area_pages)
            .collect();
        let trials = trials.max(1);
        let mut rows: Vec<LatencyRow> = sizes
            .iter()
            .map(|&pages| LatencyRow {
                pages,
                ..LatencyRow::default()
            })
            .collect();
        let max = sizes.iter().copied().max().unwrap_or(0);
        if max == 0 {
            return Ok((name, rows));
        }

        // memcpy baseline: two contiguous buffers from the idle area.
        let src = cma_alloc_locked(s, a, max, 0)?;
        let dst = match cma_alloc_locked(s, a, max, 0) {
            Ok(p) => p,
            Err(e) => {
                mm::cma_release(&mut s.areas[a], &mut s.zone, src, max);
                return Err(e);
            }
        };
        let mut samples = Vec::with_capacity(trials);
        for row in rows.iter_mut() {
            samples.clear();
            for _ in 0..trials {
                let t0 = now();
                // Safety: both buffers are CMA allocations this function holds, identity-
                // mapped RAM of `max` pages each, disjoint, nobody else touches them.
                unsafe {
                    super::copy_bytes(
                        (dst << PAGE_SHIFT) as *mut u8,
                        (src << PAGE_SHIFT) as *const u8,
                        row.pages * PAGE_SIZE,
                    )
                };
                samples.push(now() - t0);
            }
            row.memcpy = Stats::of(&mut samples);
        }
        mm::cma_release(&mut s.areas[a], &mut s.zone, src, max);
        mm::cma_release(&mut s.areas[a], &mut s.zone, dst, max);

        // Idle area.
        for row in rows.iter_mut() {
            samples.clear();
            for _ in 0..trials {
                let t0 = now();
                let got = cma_alloc_locked(s, a, row.pages, 0);
                let dt = now() - t0;
                match got {
                    Ok(pfn) => {
                        samples.push(dt);
                        mm::cma_release(&mut s.areas[a], &mut s.zone, pfn, row.pages);
                    }
                    Err(_) => row.failures += 1,
                }
            }
            row.idle = Stats::of(&mut samples);
        }

        // Full of anonymous pages.
        let balance = s.zone.cma_balance();
        s.zone
            .set_cma_balance(CmaBalance::new(0, 1).unwrap_or(CmaBalance::LINUX));
        s.clients.anon.start();
        let baseline_pages = s.clients.anon.pages();
        let result = (|| -> Result<(), KmemError> {
            fill_cma_with_anon(s)?;
            let mut migrated = Vec::with_capacity(trials);
            for row in rows.iter_mut() {
                samples.clear();
                migrated.clear();
                for _ in 0..trials {
                    let before = s.clients.anon.migrations + s.clients.cache.migrations;
                    let t0 = now();
                    let got = cma_alloc_locked(s, a, row.pages, 0);
                    let dt = now() - t0;
                    match got {
                        Ok(pfn) => {
                            samples.push(dt);
                            migrated.push(
                                s.clients.anon.migrations + s.clients.cache.migrations - before,
                            );
                            mm::cma_release(&mut s.areas[a], &mut s.zone, pfn, row.pages);
                        }
                        Err(_) => row.failures += 1,
                    }
                    // Refill the hole and drop as many pages outside CMA, so the next trial
                    // meets a full area and the same free memory.
                    let added = fill_cma_with_anon(s)?;
                    s.clients.anon.shrink_where(&mut s.zone, added, not_cma);
                }
                row.full = Stats::of(&mut samples);
                row.migrated_per_alloc = Stats::of(&mut migrated).median;
            }
            Ok(())
        })();
        s.zone.set_cma_balance(balance);
        let extra = s.clients.anon.pages().saturating_sub(baseline_pages);
        s.clients.anon.shrink(&mut s.zone, extra);
        result.map(|()| (name, rows))
    })?
}

/// Outcome of one churn scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChurnResult {
    pub label: String,
    pub attempts: usize,
    pub successes: usize,
    /// Failures although free + movable memory in the candidate memory sufficed.
    pub avoidable_failures: usize,
    /// Long-lived unmovable allocations made during the run (kernel data + DMA pins).
    pub pins_taken: usize,
    /// Non-CMA pageblocks holding at least one unmovable or pinned frame at the end of the
    /// run, out of all non-CMA pageblocks (how far the pins spread).
    pub polluted_pageblocks: usize,
    pub normal_pageblocks: usize,
    /// CMA pageblocks holding an unmovable or pinned frame at the end (always 0: CMA
    /// pageblocks never serve those requests).
    pub polluted_cma_pageblocks: usize,
}

/// How the churn loop asks for its large blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChurnMode {
    /// `cma_alloc` from the area.
    Cma,
    /// `alloc_pages(order, Movable without CMA)`: the buddy alone, no migration.
    BuddyHighOrder,
    /// `alloc_contig_range` over Movable pageblocks outside CMA: migration without CMA.
    ContigMovable,
}

/// The churn workload, in words, for the report.
pub const CHURN_WORKLOAD: &str = "\
workload per round (same seed, same sequence for every method):
  background: anonymous pages grown back until only 1/8 of memory is free after freeing a
    random 0..2047 of them, 0..511 page-cache reads (1 in 8 a write), occasional writeback;
  interleaved unmovable memory: 1..8 kernel-data allocations (Unmovable, order 0-1) and
    0..15 long-term DMA pins of random existing anonymous pages outside CMA (pinned in
    place, as pin_user_pages(FOLL_LONGTERM) does), each living 8..263 rounds;
  then one large allocation by the method under test, up to `hold` of them held, a random
    one released when the limit is reached.
  Methods run one after the other in one boot, buddy first, so CMA meets the most aged
  memory. Kernel data lands wherever the buddy puts it (fallback stealing from Movable
  pageblocks when Unmovable ones run dry), pins wherever the pinned page was; nothing
  steers them.";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Try `alloc_contig_range` on aligned candidate ranges of Movable pageblocks.
fn contig_movable(s: &mut KmemState, pages: usize, start_hint: usize) -> Option<Pfn> {
    let (zs, ze) = (s.zone.start_pfn(), s.zone.end_pfn());
    let span = (ze - zs) / pages;
    for k in 0..span {
        let base = zs.next_multiple_of(pages) + ((start_hint + k) % span) * pages;
        if base + pages > ze {
            continue;
        }
        let all_movable = (base..base + pages)
            .step_by(mm::PAGEBLOCK_NR_PAGES)
            .all(|p| s.zone.pageblock_migratetype(p) == Some(MigrateType::Movable));
        if !all_movable {
            continue;
        }
        let zone = &mut s.zone;
        let taken = s.clients.migrator(|m| {
            mm::alloc_contig_range(zone, m, base, base + pages, MigrateType::Movable)
        });
        if matches!(taken, Ok(Ok(()))) {
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
/// allocations; see [`CHURN_WORKLOAD`].
pub fn churn_success(
    area: Option<&str>,
    mode: ChurnMode,
    pages: usize,
    rounds: usize,
    hold: usize,
    seed: u64,
) -> Result<ChurnResult, KmemError> {
    with_state(|s| {
        let a = area_or_default(s, area)?;
        let order = pages.trailing_zeros() as usize;
        if mode == ChurnMode::BuddyHighOrder && (!pages.is_power_of_two() || order > MAX_ORDER) {
            return Err(KmemError::Refused(format!(
                "{pages} pages is not a buddy order (max {})",
                1 << MAX_ORDER
            )));
        }
        let mut rng = Rng(seed);
        s.clients.anon.start();
        let anon_before = s.clients.anon.pages();
        let store = s.clients.cache.status().store_blocks;
        let mut held: Vec<Pfn> = Vec::new();
        let mut pins: Vec<Pin> = Vec::new();
        let mut result = ChurnResult {
            label: String::from(match mode {
                ChurnMode::Cma => "cma_alloc",
                ChurnMode::BuddyHighOrder => "buddy alloc_pages",
                ChurnMode::ContigMovable => "contig over Movable",
            }),
            ..ChurnResult::default()
        };
        let managed = s.zone.counters().managed_pages;
        let keep_free = managed / 8;
        let outcome = (|| -> Result<(), KmemError> {
            for round in 0..rounds {
                // Unmovable lifetimes end.
                let mut i = 0;
                while i < pins.len() {
                    if pins[i].expires <= round {
                        let pin = pins.swap_remove(i);
                        let _ = s.zone.free_pages(pin.pfn, pin.order);
                    } else {
                        i += 1;
                    }
                }
                // Background movable churn, refilled to the fill level.
                let shrink = rng.below(2048);
                s.clients
                    .anon
                    .shrink_where(&mut s.zone, shrink, |_, pfn| pfn % 3 == 0);
                for _ in 0..rng.below(512) {
                    let block = rng.below(store);
                    if rng.below(8) == 0 {
                        s.clients.cache.write(&mut s.zone, block)?;
                    } else {
                        s.clients.cache.read(&mut s.zone, block)?;
                    }
                }
                if rng.below(4) == 0 {
                    s.clients.cache.writeback();
                }
                let free = s.zone.counters().free_pages;
                if free > keep_free {
                    s.clients.anon.grow(&mut s.zone, free - keep_free)?;
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
                        // Pinned where the anonymous page already is (outside CMA: a
                        // long-term pin migrates a CMA page out first; skipping those
                        // pages is the same placement without the copy).
                        let start = rng.below(s.clients.anon.pages().max(1) * 2);
                        s.clients.anon.pin_in_place(&s.zone, start, not_cma)
                    } else {
                        s.zone.alloc_pages(pin_order, gfp).ok()
                    };
                    if let Some(pfn) = got {
                        if s.zone.set_owner(pfn, Owner::new(kind, 0)).is_ok() {
                            pins.push(Pin {
                                pfn,
                                order: pin_order,
                                expires,
                            });
                            result.pins_taken += 1;
                        } else {
                            let _ = s.zone.free_pages(pfn, pin_order);
                        }
                    }
                }
                if held.len() >= hold {
                    let victim = held.swap_remove(rng.below(held.len()));
                    release(s, a, mode, victim, pages, order);
                }
                result.attempts += 1;
                let got = match mode {
                    ChurnMode::Cma => cma_alloc_locked(s, a, pages, 0).ok(),
                    ChurnMode::BuddyHighOrder => s
                        .zone
                        .alloc_pages(order, Gfp::MOVABLE.with(GfpFlags::NO_CMA))
                        .ok()
                        .inspect(|&p| {
                            let _ = s.zone.set_owner(p, Owner::new(OwnerKind::Pinned, 1));
                        }),
                    ChurnMode::ContigMovable => contig_movable(s, pages, round * 7),
                };
                match got {
                    Some(pfn) => {
                        result.successes += 1;
                        held.try_reserve(1)
                            .map_err(|_| KmemError::Refused("kernel heap exhausted".into()))?;
                        held.push(pfn);
                    }
                    None => {
                        let c = s.zone.counters();
                        let movable = s.clients.anon.pages() + s.clients.cache.cached_pages();
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
        ) = polluted_pageblocks(&s.zone);
        for pfn in held {
            release(s, a, mode, pfn, pages, order);
        }
        for pin in pins {
            let _ = s.zone.free_pages(pin.pfn, pin.order);
        }
        s.clients.cache.writeback();
        s.clients.cache.drop_clean(&mut s.zone);
        let extra = s.clients.anon.pages().saturating_sub(anon_before);
        s.clients.anon.shrink(&mut s.zone, extra);
        outcome.map(|()| result)
    })?
}

fn release(s: &mut KmemState, area: usize, mode: ChurnMode, pfn: Pfn, pages: usize, order: usize) {
    match mode {
        ChurnMode::Cma => {
            mm::cma_release(&mut s.areas[area], &mut s.zone, pfn, pages);
        }
        ChurnMode::BuddyHighOrder => {
            let _ = s.zone.free_pages(pfn, order);
        }
        ChurnMode::ContigMovable => {
            let _ = mm::free_contig_range(&mut s.zone, pfn, pages);
        }
    }
}

/// The churn results as printable text.
pub fn format_churn(pages: usize, results: &[ChurnResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "success rate of {pages}-page allocations under movable churn with interleaved unmovable allocations"
    );
    let _ = writeln!(out, "{CHURN_WORKLOAD}");
    let _ = writeln!(
        out,
        "{:<22} {:>8} {:>9} {:>8} {:>10} {:>8} {:>18} {:>10}",
        "method",
        "attempts",
        "succeeded",
        "rate",
        "avoidable",
        "pins",
        "polluted pb (non-CMA)",
        "in CMA"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>9} {:>7.1}% {:>10} {:>8} {:>12}/{:<8} {:>10}",
            r.label,
            r.attempts,
            r.successes,
            100.0 * r.successes as f64 / r.attempts.max(1) as f64,
            r.avoidable_failures,
            r.pins_taken,
            r.polluted_pageblocks,
            r.normal_pageblocks,
            r.polluted_cma_pageblocks
        );
    }
    out
}

/// Start of a profiled region: `cargo xtask profile` counts the instructions
/// executed between a call to this and a call to [`profile_end`], by function.
#[inline(never)]
#[no_mangle]
pub extern "C" fn monolith_profile_begin() {
    core::hint::black_box(1u32);
}

/// End of a profiled region (see [`monolith_profile_begin`]).
#[inline(never)]
#[no_mangle]
pub extern "C" fn monolith_profile_end() {
    // A different body from `monolith_profile_begin`, so the linker cannot fold the two.
    core::hint::black_box(2u64);
}

/// One `cma_alloc` of `pages` from an area full of anonymous pages, between the profile
/// markers, for an instruction profile by function. The allocation is released after.
pub fn profile_full_alloc(area: Option<&str>, pages: usize) -> Result<(), KmemError> {
    with_state(|s| {
        let a = area_or_default(s, area)?;
        let balance = s.zone.cma_balance();
        s.zone
            .set_cma_balance(CmaBalance::new(0, 1).unwrap_or(CmaBalance::LINUX));
        s.clients.anon.start();
        let result = (|| -> Result<(), KmemError> {
            fill_cma_with_anon(s)?;
            monolith_profile_begin();
            let got = cma_alloc_locked(s, a, pages, 0);
            monolith_profile_end();
            let pfn = got?;
            mm::cma_release(&mut s.areas[a], &mut s.zone, pfn, pages);
            Ok(())
        })();
        s.zone.set_cma_balance(balance);
        result
    })?
}
