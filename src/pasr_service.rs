//! The PASR service (bare metal glue): the board's DRAM controller model, the allocator's
//! per-bank state, and the shell's `pasr` and `suspend [SECONDS]`.
//!
//! # Theory of operation
//!
//! [`init`] runs after the memory service. On a board whose tree describes its DRAM
//! (`monolith,pasr-dram`, which `kmem` already attached to the zone) it finds the
//! controller model, checks it describes the same dies and banks, and registers the mask
//! writer kmem calls whenever an allocation touches a masked bank, so the controller's
//! mode registers never mask memory that is handed out.
//!
//! `suspend` is the whole sleep sequence, in the only order that loses nothing:
//! 1. the allocator's pass before sleep (`kmem::pasr::prepare_for_sleep`): with steering,
//!    nearly empty banks are emptied by migrating movable pages and dropping clean page
//!    cache into banks that stay refreshed, CMA areas included, within [`VACATE_BUDGET`]
//!    pages; then (both policies) every bank that is entirely free, with its pair, is
//!    masked;
//! 2. the masks are written to MR16/MR17, and self-refresh is entered with the guest's
//!    clock (the model overwrites every masked bank in guest RAM right then);
//! 3. the core waits for the timer (WFI; nothing runs but the tick) until SECONDS after
//!    the entry, the model's overwriting of the masked banks included;
//! 4. self-refresh is left, and the counters' difference is the report.
//!
//! Nothing allocates between 1 and 2: the shell is the only thread, and interrupt handlers
//! never allocate.

use alloc::string::{String, ToString};

use crate::cpu::IrqSafeLock;
use crate::driver::pasr_ctrl::{self, PasrCtrlError};
use crate::driver::timer;
use crate::kmem::{self, KmemError};
use crate::pasr::controller::Counters;
use crate::pasr::geometry::Geometry;
use crate::pasr::report::{self, SuspendSummary};
use crate::pasr::sections::PasrMasks;

/// Pages the vacating pass may migrate or drop before one sleep (64 MiB): its time
/// budget, since a page moved costs about the same each time.
pub const VACATE_BUDGET: usize = 16 * 1024;
/// Temperature the report assumes when there is no controller to ask.
const DEFAULT_TEMPERATURE_C: i32 = 45;

/// Why the service could not do what was asked.
#[derive(Debug)]
pub enum PasrServiceError {
    Kmem(KmemError),
    Controller(PasrCtrlError),
    /// `suspend` of zero seconds or more than an hour.
    BadDuration(u64),
}

impl core::fmt::Display for PasrServiceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PasrServiceError::Kmem(e) => write!(f, "pasr: {e}"),
            PasrServiceError::Controller(e) => write!(f, "pasr: {e}"),
            PasrServiceError::BadDuration(s) => {
                write!(f, "suspend: {s} s is not 1 to 3600 seconds")
            }
        }
    }
}

impl core::error::Error for PasrServiceError {}

/// The last suspend's figures, for `/sys/kernel/debug/pasr/last_suspend`.
static LAST_SUSPEND: IrqSafeLock<Option<SuspendSummary>> = IrqSafeLock::new(None);
/// The board's DRAM, copied from kmem at [`init`]: the mask writer runs under the memory
/// lock and must not take it again.
static GEOMETRY: IrqSafeLock<Option<Geometry>> = IrqSafeLock::new(None);

fn geometry() -> Result<Geometry, PasrServiceError> {
    GEOMETRY
        .lock(|g| g.clone())
        .ok_or(PasrServiceError::Kmem(KmemError::NoPasr))
}

/// Guest time in ns: what the controller integrates energy over (it repeats exactly under
/// `-icount`, host time would not).
fn now_ns() -> u64 {
    timer::uptime().as_nanos().min(u128::from(u64::MAX)) as u64
}

/// kmem's mask writer: program the mode registers now (called under the memory lock, after
/// an allocation unmasked a bank).
fn write_masks(masks: &PasrMasks) {
    let Some(geometry) = GEOMETRY.lock(|g| g.clone()) else {
        return;
    };
    if let Err(e) = pasr_ctrl::with(&geometry, |c| c.set_masks(masks.per_die())) {
        // The registers only act at the next self-refresh entry, and `suspend` writes
        // fresh masks right before it: a failure here cannot lose data, but say so.
        log::warn!("pasr: unmasking: {e}");
    }
}

/// Find the controller and hook the allocator to it (see the module header).
pub fn init() {
    let Some(geometry) = kmem::pasr::geometry() else {
        return;
    };
    GEOMETRY.lock(|g| *g = Some(geometry.clone()));
    match pasr_ctrl::probe(&geometry) {
        Ok(()) => kmem::pasr::set_mask_writer(write_masks),
        Err(e) => log::warn!("pasr: {e}; banks are tracked but never masked"),
    }
}

fn counters(geometry: &Geometry) -> Result<Counters, PasrServiceError> {
    pasr_ctrl::with(geometry, |c| Ok(c.counters())).map_err(PasrServiceError::Controller)
}

/// `pasr`: a line per bank, then the modeled self-refresh power now and with nothing
/// masked.
pub fn banks() -> Result<String, PasrServiceError> {
    let (geometry, units, _masks) = kmem::pasr::report().map_err(PasrServiceError::Kmem)?;
    let temperature = counters(&geometry)
        .map(|c| c.temperature_c)
        .unwrap_or(DEFAULT_TEMPERATURE_C);
    Ok(report::banks(&geometry, &units, temperature))
}

/// `/sys/kernel/debug/pasr/power`.
pub fn power() -> Result<String, PasrServiceError> {
    let (geometry, _units, masks) = kmem::pasr::report().map_err(PasrServiceError::Kmem)?;
    let temperature = counters(&geometry)
        .map(|c| c.temperature_c)
        .unwrap_or(DEFAULT_TEMPERATURE_C);
    Ok(report::power(&geometry, &masks, temperature))
}

/// `/sys/kernel/debug/pasr/last_suspend`.
pub fn last_suspend() -> String {
    LAST_SUSPEND.lock(|last| report::stats(last.as_ref()))
}

/// `suspend [SECONDS]`: vacate, mask, self-refresh for `seconds`, wake by the timer.
pub fn suspend(seconds: u64) -> Result<String, PasrServiceError> {
    if !(1..=3600).contains(&seconds) {
        return Err(PasrServiceError::BadDuration(seconds));
    }
    let geometry = geometry()?;
    let before = counters(&geometry)?;
    let plan = kmem::pasr::prepare_for_sleep(VACATE_BUDGET).map_err(PasrServiceError::Kmem)?;
    let entered = now_ns();
    pasr_ctrl::with(&geometry, |c| {
        c.set_masks(plan.masks.per_die())?;
        c.enter(entered)
    })
    .map_err(PasrServiceError::Controller)?;
    // The sleep counts from the entry: the model overwrites the masked banks while it
    // handles ENTER (instant in hardware, host time here), and that belongs inside the
    // asked time, not on top of it.
    let deadline =
        core::time::Duration::from_nanos(entered) + core::time::Duration::from_secs(seconds);
    while timer::uptime() < deadline {
        // The tick wakes the core; nothing else runs.
        aarch64_cpu::asm::wfi();
    }
    let left = now_ns();
    pasr_ctrl::with(&geometry, |c| c.exit(left)).map_err(PasrServiceError::Controller)?;
    let after = counters(&geometry)?;
    let summary = kmem::pasr::with_sections(|sections| {
        SuspendSummary::new(&plan, seconds, left - entered, &before, &after, sections)
    })
    .map_err(PasrServiceError::Kmem)?;
    let text = summary.to_string();
    LAST_SUSPEND.lock(|last| *last = Some(summary));
    Ok(text)
}
