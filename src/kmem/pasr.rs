//! PASR in the memory service: the allocator's per-bank state for the board's DRAM
//! (`monolith,pasr-dram`), kept with the zone under the memory lock (bare metal only).
//!
//! # Theory of operation
//!
//! [`setup`] runs once in `kmem::init`: the tree's geometry becomes [`Sections`] attached
//! to the zone, in the mode `monolith.pasr=` chooses (`steering`, the default: keep
//! allocations in banks that are refreshed anyway; `2012`: the 2012 framework's rule, mask
//! only what happens to be free; `off`). A board without the binding has no PASR; a bad
//! binding is a warning naming what is wrong, and every bank stays refreshed.
//!
//! The invariant (a unit is masked only while it and its partners are entirely free, and
//! unmasked before any page in it is handed out) is kept at the one door to memory:
//! [`after_locked`] runs at the end of every `kmem::with_state`, i.e. after every
//! allocation, CMA allocation, migration or workload step, before its result reaches the
//! caller. It asks the sections whether a masked unit's span lost a free block (one load
//! and compare when nothing happened) and, if so, hands the new mask values to the writer
//! the PASR service registered ([`set_mask_writer`]), which programs the controller's mode
//! registers then and there. kmem calls no driver itself: the writer is a plain function
//! pointer, so there is no import cycle between memory and the driver.

use alloc::string::String;
use alloc::vec::Vec;

use crate::cpu::IrqSafeLock;
use crate::dt::bootargs::parse_command_line;
use crate::mm::{PasrMode, PcpLimits, Zone, MAX_ORDER, PAGE_SHIFT};
use crate::pasr::geometry::Geometry;
use crate::pasr::sections::{PasrMasks, Sections, UnitReport};
use crate::pasr::vacate::{self, VacateReport};

use super::{with_state, KmemError, KmemState};

/// The boot argument that picks the policy.
pub const BOOT_PARAM: &str = "monolith.pasr";

/// The board's DRAM as the allocator sees it.
pub struct PasrState {
    pub geometry: Geometry,
    pub sections: Sections,
    pub mode: PasrMode,
}

/// Who programs the controller when a masked unit must be unmasked.
static MASK_WRITER: IrqSafeLock<Option<fn(&PasrMasks)>> = IrqSafeLock::new(None);

/// Register the function that writes mask values to the controller (the PASR service).
pub fn set_mask_writer(writer: fn(&PasrMasks)) {
    MASK_WRITER.lock(|slot| *slot = Some(writer));
}

/// The policy `monolith.pasr=` asks for: `Ok(None)` is `off`; a bad value is a message.
pub fn boot_mode(bootargs: Option<&str>) -> Result<Option<PasrMode>, String> {
    let line = parse_command_line(bootargs.unwrap_or(""));
    match line.values(BOOT_PARAM).last() {
        None | Some(Some("steering")) => Ok(Some(PasrMode::Steering)),
        Some(Some("2012")) => Ok(Some(PasrMode::Baseline2012)),
        Some(Some("off")) => Ok(None),
        Some(other) => Err(alloc::format!(
            "{BOOT_PARAM}={}: not one of steering, 2012, off; using steering",
            other.unwrap_or("")
        )),
    }
}

/// The PASR state for `zone`, from the boot tree's geometry (see the module header).
pub fn setup(zone: &mut Zone<'_>, bootargs: Option<&str>) -> Option<PasrState> {
    let tree = crate::dtb::tree()?;
    let block_bytes = 1u64 << (MAX_ORDER + PAGE_SHIFT);
    let geometry = match Geometry::from_tree(tree, block_bytes) {
        Ok(Some(g)) => g,
        Ok(None) => return None,
        Err(e) => {
            log::warn!("pasr: {e}; every bank stays refreshed");
            return None;
        }
    };
    let mode = match boot_mode(bootargs) {
        Ok(Some(mode)) => mode,
        Ok(None) => {
            log::info!("pasr: off ({BOOT_PARAM}=off)");
            return None;
        }
        Err(message) => {
            log::warn!("pasr: {message}");
            PasrMode::Steering
        }
    };
    let mut sections = match Sections::from_geometry(&geometry) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("pasr: {e}; every bank stays refreshed");
            return None;
        }
    };
    if let Err(e) = sections.attach(zone, mode) {
        log::warn!("pasr: {e}; every bank stays refreshed");
        return None;
    }
    log::info!(
        "pasr: {} dies x {} {}s of {} MiB{}, policy {}",
        geometry.dies(),
        geometry.units_per_die(),
        geometry.kind().name(),
        geometry.unit_bytes() >> 20,
        if geometry.interleave().is_some() {
            ", interleaved"
        } else {
            ""
        },
        mode.name()
    );
    Some(PasrState {
        geometry,
        sections,
        mode,
    })
}

/// The end of every hold of the memory lock: unmask what an allocation touched and have
/// the controller programmed before the caller sees the memory.
#[inline]
pub(super) fn after_locked(state: &mut KmemState) {
    let Some(pasr) = state.pasr.as_mut() else {
        return;
    };
    if let Some(masks) = pasr.sections.unmask_touched(&mut state.zone) {
        if let Some(write) = MASK_WRITER.lock(|w| *w) {
            write(&masks);
        }
    }
}

/// What the `pasr` listing shows: the geometry, one report per unit, the masks now.
pub fn report() -> Result<(Geometry, Vec<UnitReport>, PasrMasks), KmemError> {
    with_state(|s| {
        let pasr = s.pasr.as_ref().ok_or(KmemError::NoPasr)?;
        Ok((
            pasr.geometry.clone(),
            pasr.sections.report(&s.zone),
            pasr.sections.masks(),
        ))
    })?
}

/// The pfn ranges of the banks masked now (`None` on a board without PASR), for the
/// memory map's shading. Masks cover whole spans (the pair rule masks every partner of a
/// span together), so a masked unit's span is masked memory.
pub fn masked_pfn_ranges() -> Option<Vec<core::ops::Range<crate::mm::Pfn>>> {
    with_state(|s| {
        let pasr = s.pasr.as_ref()?;
        let to_pfn = |a: u64| (a >> PAGE_SHIFT) as crate::mm::Pfn;
        Some(
            pasr.sections
                .masks()
                .units()
                .map(|u| {
                    let span = pasr.geometry.span_range(pasr.geometry.span_of_unit(u));
                    to_pfn(span.start)..to_pfn(span.end)
                })
                .collect(),
        )
    })
    .ok()
    .flatten()
}

/// The geometry, if the board has PASR.
pub fn geometry() -> Option<Geometry> {
    with_state(|s| s.pasr.as_ref().map(|p| p.geometry.clone()))
        .ok()
        .flatten()
}

/// Run `f` on the sections (for reports that need the unit layout).
pub fn with_sections<R>(f: impl FnOnce(&Sections) -> R) -> Result<R, KmemError> {
    with_state(|s| {
        s.pasr
            .as_ref()
            .map(|p| f(&p.sections))
            .ok_or(KmemError::NoPasr)
    })?
}

/// Before sleep: vacate nearly empty banks within `budget_pages` pages moved or dropped
/// (steering; the 2012 rule vacates nothing), then mask every unit that is free.
pub fn prepare_for_sleep(budget_pages: usize) -> Result<VacateReport, KmemError> {
    with_state(|s| {
        let KmemState {
            zone,
            clients,
            pasr,
            ..
        } = s;
        let pasr = pasr.as_mut().ok_or(KmemError::NoPasr)?;
        clients
            .migrator(|m| vacate::prepare_for_sleep(zone, &mut pasr.sections, m, budget_pages))?
            .map_err(KmemError::Vacate)
    })?
}

/// The allocator's PASR invariants (the zone's counters, and the sections' masks against
/// them).
pub fn check_invariants(state: &KmemState) -> Result<(), KmemError> {
    let Some(pasr) = state.pasr.as_ref() else {
        return Ok(());
    };
    state
        .zone
        .check_pasr_invariants()
        .and_then(|()| pasr.sections.check_invariants(&state.zone))
        .map_err(KmemError::InvariantBroken)
}

/// What the PASR hooks cost on the order-0 path, in guest instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookCost {
    /// The policy the board booted with.
    pub mode: PasrMode,
    /// Order-0 allocations + frees counted in each run.
    pub pairs: u64,
    /// Instructions of the loop with PASR attached, and with it detached (the pcp off:
    /// the hooks are in the buddy, and every pair must reach it).
    pub with_pasr: u64,
    pub without_pasr: u64,
    /// With PASR attached and the pcp on as at boot: the same loop, and the same number of
    /// pairs one at a time (allocate one frame, free it).
    pub pcp_batches: u64,
    pub pcp_single: u64,
}

/// Count the instructions of `rounds` rounds of `batch` order-0 allocations and frees
/// (`crate::pasr::measure::order0_alloc_free_loop`, which splits and merges MAX_ORDER
/// blocks every round, where the hooks are) with PASR attached, then detached, on the
/// same zone under one hold of the memory lock, with the pcp drained and off so that every
/// pair reaches the buddy; PASR is attached again after (every mask dropped, and the
/// controller told so). Then, with the pcp back on, the same loop and the same number of
/// single pairs: what an order-0 allocation and free cost as the firmware runs.
/// `count` reads the PMU's instruction counter.
pub fn order0_hook_cost(
    batch: usize,
    rounds: usize,
    count: fn() -> u32,
) -> Result<HookCost, KmemError> {
    let mut scratch = alloc::vec![0 as crate::mm::Pfn; batch];
    let cost = with_state(|s| {
        let pasr = s.pasr.as_mut().ok_or(KmemError::NoPasr)?;
        let pcp = s.zone.pcp_counters();
        s.zone.disable_pcp();
        let run = |zone: &mut Zone<'_>, scratch: &mut [crate::mm::Pfn], rounds: usize| {
            let t0 = count();
            crate::pasr::measure::order0_alloc_free_loop(zone, scratch, rounds)
                .map_err(|error| KmemError::AllocFailed { order: 0, error })?;
            Ok::<u64, KmemError>(u64::from(count().wrapping_sub(t0)))
        };
        let with_pasr = run(&mut s.zone, &mut scratch, rounds);
        s.zone.disable_pasr();
        let without_pasr = run(&mut s.zone, &mut scratch, rounds);
        let attached = pasr.sections.attach(&mut s.zone, pasr.mode);
        if pcp.enabled {
            s.zone.enable_pcp(PcpLimits {
                batch: pcp.batch,
                high: pcp.high,
            });
        }
        let (with_pasr, without_pasr) = (with_pasr?, without_pasr?);
        if let Err(e) = attached {
            log::warn!("pasr: re-attaching after the measurement: {e}");
            s.pasr = None;
        }
        // One round to fill the pcp as a running system has it, then the counted runs.
        run(&mut s.zone, &mut scratch, 1)?;
        let pcp_batches = run(&mut s.zone, &mut scratch, rounds)?;
        let pcp_single = run(&mut s.zone, &mut scratch[..1], batch * rounds)?;
        Ok(HookCost {
            mode: s.pasr.as_ref().map_or(PasrMode::Steering, |p| p.mode),
            pairs: (batch * rounds) as u64,
            with_pasr,
            without_pasr,
            pcp_batches,
            pcp_single,
        })
    })??;
    // Attaching dropped every mask: the mode registers must not keep any.
    if let Some(write) = MASK_WRITER.lock(|w| *w) {
        if let Some(g) = geometry() {
            write(&PasrMasks::none(g.kind(), g.dies() as u8));
        }
    }
    Ok(cost)
}

/// The same order-0 loop as [`order0_hook_cost`], once, between `begin` and `end` (the
/// profile markers), with PASR as the board booted: for an instruction profile of the
/// order-0 path (`tests/profile_order0.rs`).
pub fn order0_profiled(
    batch: usize,
    rounds: usize,
    begin: fn(),
    end: fn(),
) -> Result<u64, KmemError> {
    let mut scratch = alloc::vec![0 as crate::mm::Pfn; batch];
    with_state(|s| {
        begin();
        let sum = crate::pasr::measure::order0_alloc_free_loop(&mut s.zone, &mut scratch, rounds);
        end();
        sum.map_err(|error| KmemError::AllocFailed { order: 0, error })
    })?
}

/// The workload [`vacate_cost`] shapes before it runs the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VacateWorkload {
    /// Anonymous pages to grow (steering packs them into the lowest spans).
    pub grow_pages: usize,
    /// Outside the image's span, keep one page in this many (by frame number) and free the
    /// rest: spans nearly empty, their tenants scattered one or two per 256 KiB, as churn
    /// leaves them.
    pub keep_one_in: usize,
    /// The pass's page budget (the service's before sleep).
    pub budget_pages: usize,
}

impl VacateWorkload {
    /// The benchmark's workload (`tests/bench_pasr.rs`, and `tests/profile_vacate.rs` on the
    /// same): six 64 MiB banks' worth of anonymous pages, one page in 64 kept outside the
    /// image's bank, within `budget_pages`.
    pub const fn bench(budget_pages: usize) -> VacateWorkload {
        VacateWorkload {
            grow_pages: 6 * 16384,
            keep_one_in: 64,
            budget_pages,
        }
    }
}

/// How [`vacate_cost`] counts: `count` reads the PMU's instruction counter; `begin` and
/// `end` run right before and after the pass (the profile markers, or nothing).
#[derive(Clone, Copy)]
pub struct Meter {
    pub count: fn() -> u32,
    pub begin: fn(),
    pub end: fn(),
}

/// The vacating pass's instructions against a memcpy of the bytes it moved, in one run,
/// under one hold of the memory lock: grow the anonymous workload, thin it out to
/// `keep_one_in` outside the span of the image (which stays refreshed anyway) and free
/// half of what lies in that span (room for the tenants to move to), then count the whole
/// pass before sleep as `suspend` runs it (page tables held, survey to masks), check every
/// page is intact, drop every mask and the workload, and count one memcpy of the bytes
/// the pass moved with the copy routine migration uses, between two CMA buffers. Needs a
/// steering board and an empty anonymous workload (else [`KmemError::AnonInUse`]). The
/// controller is never told of these masks: nothing self-refreshes, and they are dropped
/// before the lock is let go. Counts are 32-bit: a pass of under 2^32 instructions.
pub fn vacate_cost(
    workload: VacateWorkload,
    meter: Meter,
) -> Result<crate::pasr::measure::VacateCost, KmemError> {
    with_state(|s| {
        let pages = s.clients.anon.pages();
        if pages != 0 {
            return Err(KmemError::AnonInUse { pages });
        }
        let spans = s.pasr.as_ref().ok_or(KmemError::NoPasr)?.sections.spans();
        let home = spans.span_of((super::image_range().start >> PAGE_SHIFT) as crate::mm::Pfn);
        s.anon_start();
        let measured = shape_and_vacate(s, workload, meter, home);
        // Whatever happened, leave no mask and no workload behind.
        if let Some(pasr) = s.pasr.as_mut() {
            pasr.sections.unmask_all(&mut s.zone);
        }
        s.anon_shrink(usize::MAX);
        let (mut cost, bytes) = measured?;
        if bytes != 0 {
            cost.memcpy_instructions = memcpy_cost(s, bytes / crate::mm::PAGE_SIZE, meter)?;
        }
        Ok(cost)
    })?
}

/// [`vacate_cost`]'s workload and pass: the cost without the memcpy, and the bytes moved.
fn shape_and_vacate(
    s: &mut KmemState,
    workload: VacateWorkload,
    meter: Meter,
    home: Option<usize>,
) -> Result<(crate::pasr::measure::VacateCost, usize), KmemError> {
    let spans = s.pasr.as_ref().ok_or(KmemError::NoPasr)?.sections.spans();
    s.anon_grow(workload.grow_pages)?;
    let keep = workload.keep_one_in.max(1);
    s.anon_shrink_where(usize::MAX, |_, pfn| {
        spans.span_of(pfn) != home && !pfn.is_multiple_of(keep)
    });
    s.anon_shrink_where(usize::MAX, |_, pfn| {
        spans.span_of(pfn) == home && pfn.is_multiple_of(2)
    });
    let tenants = s.clients.anon.pages();

    let KmemState {
        zone,
        clients,
        pasr,
        ..
    } = s;
    let pasr = pasr.as_mut().ok_or(KmemError::NoPasr)?;
    (meter.begin)();
    let t0 = (meter.count)();
    let report = clients
        .migrator(|m| {
            vacate::prepare_for_sleep(zone, &mut pasr.sections, m, workload.budget_pages)
        })?
        .map_err(KmemError::Vacate);
    let instructions = (meter.count)().wrapping_sub(t0);
    (meter.end)();
    let report = report?;

    let intact = s.clients.anon.verify();
    if intact.bad_pages != 0 {
        return Err(KmemError::InvariantBroken(alloc::format!(
            "vacating: {} of {} anonymous pages changed",
            intact.bad_pages,
            intact.pages_checked
        )));
    }
    let pasr = s.pasr.as_ref().ok_or(KmemError::NoPasr)?;
    let moved = report.budget_used;
    let cost = crate::pasr::measure::VacateCost {
        pages_moved: moved as u64,
        units_vacated: pasr.sections.units_in(report.vacated).count() as u32,
        units_masked: report.masks.count() as u32,
        units: pasr.sections.units().count() as u32,
        pages_kept: tenants.saturating_sub(report.pages_migrated) as u64,
        vacate_instructions: u64::from(instructions),
        memcpy_instructions: 0,
    };
    Ok((cost, moved * crate::mm::PAGE_SIZE))
}

/// Instructions of one copy of `pages` pages between two buffers of the default CMA area,
/// with the routine migration copies with.
fn memcpy_cost(s: &mut KmemState, pages: usize, meter: Meter) -> Result<u64, KmemError> {
    let area = s.area(None)?;
    let src = s.cma_alloc(area, pages, 0)?;
    let dst = match s.cma_alloc(area, pages, 0) {
        Ok(pfn) => pfn,
        Err(e) => {
            s.cma_release(area, src, pages);
            return Err(e);
        }
    };
    let t0 = (meter.count)();
    // Safety: both runs are CMA allocations this function holds, identity-mapped RAM of
    // `pages` frames each, disjoint, and nobody else touches them under the memory lock.
    unsafe { super::window::copy_frames(dst, src, pages) };
    let instructions = (meter.count)().wrapping_sub(t0);
    s.cma_release(area, src, pages);
    s.cma_release(area, dst, pages);
    Ok(u64::from(instructions))
}
