//! Architecture half of [`crate::memory::mmu`]: building the kernel tables, programming
//! MAIR/TCR/TTBR0/SCTLR, TLB maintenance, and the global table set behind the movable
//! window API. See the parent module for the design.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use super::layout::{identity_map_plan_excluding, ImageLayout, LayoutError, Region};
use super::translation_table::{
    Attributes, MapError, MemoryKind, PageRemap, TranslationTables, WalkerSync, MAIR_EL1_VALUE,
    PAGE_SIZE, VA_BITS,
};
use super::{check_movable_va, movable_window};
use crate::cpu::IrqSafeLock;
use crate::dt::platform::Platform;

/// The live tables. `None` until [`init`] has turned the MMU on.
static KERNEL_TABLES: IrqSafeLock<Option<TranslationTables>> = IrqSafeLock::new(None);
static MMU_ENABLED: AtomicBool = AtomicBool::new(false);

/// Why the MMU could not be turned on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MmuError {
    AlreadyEnabled,
    /// ID_AA64MMFR0_EL1.TGran4 says the core lacks the 4 KiB granule.
    Granule4KUnsupported,
    Layout(LayoutError),
    Map {
        region: Region,
        error: MapError,
    },
    Tables(MapError),
}

impl fmt::Display for MmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmuError::AlreadyEnabled => f.write_str("already enabled"),
            MmuError::Granule4KUnsupported => {
                f.write_str("CPU does not support the 4 KiB translation granule")
            }
            MmuError::Layout(error) => write!(f, "cannot plan the identity map: {error:?}"),
            MmuError::Map { region, error } => {
                write!(
                    f,
                    "mapping {} {:#x}..{:#x}: {error}",
                    region.name, region.range.start, region.range.end
                )
            }
            MmuError::Tables(error) => write!(f, "page tables: {error}"),
        }
    }
}

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __stack_guard: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
}

/// Where linker.ld put the parts of this image.
pub fn kernel_image_layout() -> ImageLayout {
    let address = |symbol: *const u8| symbol as u64;
    ImageLayout {
        text: address(&raw const __text_start)..address(&raw const __text_end),
        rodata: address(&raw const __rodata_start)..address(&raw const __rodata_end),
        data: address(&raw const __data_start)..address(&raw const __stack_guard),
        stack_guard: address(&raw const __stack_guard)..address(&raw const __stack_bottom),
        stack: address(&raw const __stack_bottom)..address(&raw const __stack_top),
    }
}

/// DSB/TLBI/ISB for tables the walker is using.
struct LiveTables;

impl WalkerSync for LiveTables {
    fn publish(&self) {
        // Safety: barriers only. DSB ISHST completes the table stores for the walker; ISB
        // makes later instructions use the new tables.
        unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
    }

    fn invalidate_va(&self, va: u64) {
        // Safety: drops TLB entries for one page of the (global, ASID-less) kernel mappings
        // on all cores of the inner-shareable domain, after the invalid entry is visible.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vae1is, {page}",
                "dsb ish",
                "isb",
                page = in(reg) va >> 12,
                options(nostack, preserves_flags)
            )
        };
    }

    fn invalidate_vas<I: Iterator<Item = u64>>(&self, vas: I, count: usize) {
        // Safety: DSB ISHST makes every invalid entry visible to the walkers before any
        // TLBI; the TLBIs only drop cached translations.
        unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
        if count >= TLBI_RANGE_LIMIT {
            // Safety: drops every EL1&0 TLB entry of the inner-shareable domain; the
            // walkers refill from the tables.
            unsafe { core::arch::asm!("tlbi vmalle1is", options(nostack, preserves_flags)) };
        } else {
            for va in vas {
                // Safety: drops the TLB entries of one (global) kernel page on every core.
                unsafe {
                    core::arch::asm!(
                        "tlbi vae1is, {page}",
                        page = in(reg) va >> 12,
                        options(nostack, preserves_flags)
                    )
                };
            }
        }
        // Safety: barriers only: wait for the invalidations on all cores, then resync.
        unsafe { core::arch::asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    }
}

/// From this many pages on, one TLBI VMALLE1IS replaces per-page TLBIs (Linux's
/// `MAX_DVM_OPS`: beyond a table's worth of pages, broadcasting page by page costs more
/// than refilling).
const TLBI_RANGE_LIMIT: usize = 512;

fn read_id_aa64mmfr0() -> u64 {
    let value: u64;
    // Safety: read-only ID register.
    unsafe {
        core::arch::asm!("mrs {v}, ID_AA64MMFR0_EL1", v = out(reg) value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Whether stage-1 translation is on (SCTLR_EL1.M).
pub fn is_enabled() -> bool {
    MMU_ENABLED.load(Ordering::Acquire)
}

/// Build the identity map for `platform` and this image, and turn on the MMU and caches.
pub fn init(platform: &Platform) -> Result<(), MmuError> {
    init_excluding(platform, &[])
}

/// [`init`], leaving the `no_map` ranges (reserved-memory carveouts) out of the RAM map.
pub fn init_excluding(
    platform: &Platform,
    no_map: &[core::ops::Range<u64>],
) -> Result<(), MmuError> {
    if is_enabled() {
        return Err(MmuError::AlreadyEnabled);
    }
    let mmfr0 = read_id_aa64mmfr0();
    if (mmfr0 >> 28) & 0xf == 0xf {
        return Err(MmuError::Granule4KUnsupported);
    }
    let window = movable_window();
    let plan = identity_map_plan_excluding(
        platform,
        &kernel_image_layout(),
        crate::bsp::EARLY_UART_BASE as u64,
        &(window.start as u64..window.end as u64),
        no_map,
    )
    .map_err(MmuError::Layout)?;

    let mut tables = TranslationTables::new().map_err(MmuError::Tables)?;
    tables
        .index_window(window.start as u64, (window.end - window.start) as u64)
        .map_err(MmuError::Tables)?;
    for region in plan {
        let len = region.range.end - region.range.start;
        // The walker is off: no barriers needed between stores.
        if let Err(error) = tables.map_range(
            region.range.start,
            region.range.start,
            len,
            region.attributes,
            &super::translation_table::NotLive,
        ) {
            return Err(MmuError::Map { region, error });
        }
    }
    for table in tables.table_addresses() {
        // The tables were written with the MMU (and so the caches) off; drop any stale line
        // that could shadow them once the walker reads through the cache.
        crate::cpu::cache::clean_invalidate_dcache_range(table as usize, PAGE_SIZE as usize);
    }

    // IPS: the core's physical address size, capped at the 48 bits a descriptor holds.
    let ips = (mmfr0 & 0xf).min(0b101);
    let tcr: u64 = (64 - VA_BITS as u64) /* T0SZ */
        | (0b01 << 8) /* IRGN0: walks inner write-back write-allocate */
        | (0b01 << 10) /* ORGN0: outer write-back write-allocate */
        | (0b11 << 12) /* SH0: inner shareable */
        | (0b00 << 14) /* TG0: 4 KiB */
        | ((64 - VA_BITS as u64) << 16) /* T1SZ, unused */
        | (1 << 23) /* EPD1: no TTBR1 walks */
        | (ips << 32);
    let sctlr_set: u64 = (1 << 0) /* M */ | (1 << 2) /* C */ | (1 << 12) /* I */ | (1 << 19) /* WXN */;
    let sctlr_clear: u64 = 1 << 1 /* A: unaligned normal-memory accesses allowed */;
    // Safety: the tables identity-map the running code (text executable), its stack,
    // data and heap with the attributes the compiled code expects, and the UART it prints
    // through, so execution continues at the next instruction with the same addresses.
    // Stale TLB entries and instruction-cache lines are invalidated before enabling.
    unsafe {
        core::arch::asm!(
            "msr MAIR_EL1, {mair}",
            "msr TCR_EL1, {tcr}",
            "msr TTBR0_EL1, {root}",
            "isb",
            "tlbi vmalle1",
            "ic iallu",
            "dsb nsh",
            "isb",
            "mrs {sctlr}, SCTLR_EL1",
            "orr {sctlr}, {sctlr}, {set}",
            "bic {sctlr}, {sctlr}, {clear}",
            "msr SCTLR_EL1, {sctlr}",
            "isb",
            mair = in(reg) MAIR_EL1_VALUE,
            tcr = in(reg) tcr,
            root = in(reg) tables.root_address(),
            set = in(reg) sctlr_set,
            clear = in(reg) sctlr_clear,
            sctlr = out(reg) _,
            options(nostack)
        );
    }
    KERNEL_TABLES.lock(|slot| *slot = Some(tables));
    MMU_ENABLED.store(true, Ordering::Release);
    Ok(())
}

fn check_ram_page(pa: u64) -> Result<(), MapError> {
    let platform = crate::runtime::try_platform().ok_or(MapError::MmuOff)?;
    check_ram_page_in(platform, pa)
}

fn check_ram_page_in(platform: &Platform, pa: u64) -> Result<(), MapError> {
    if !pa.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Misaligned);
    }
    let in_ram = platform
        .memory
        .iter()
        .any(|bank| bank.start <= pa && pa.saturating_add(PAGE_SIZE) <= bank.end);
    if in_ram {
        Ok(())
    } else {
        Err(MapError::NotRam)
    }
}

fn with_live_tables<R>(
    f: impl FnOnce(&mut TranslationTables) -> Result<R, MapError>,
) -> Result<R, MapError> {
    KERNEL_TABLES.lock(|slot| match slot.as_mut() {
        Some(tables) => f(tables),
        None => Err(MapError::MmuOff),
    })
}

/// Map the movable-window page at `va` to the RAM page at `pa` (normal, cacheable,
/// read-write, never executable). `va` must be unmapped.
pub fn map_movable(va: usize, pa: u64) -> Result<(), MapError> {
    check_movable_va(va)?;
    check_ram_page(pa)?;
    with_live_tables(|tables| tables.map_page(va as u64, pa, Attributes::RAM, &LiveTables))
}

/// Point the mapped window page `va` at `new_pa` (break-before-make); returns the old PA.
/// The caller copies the data first and must not access `va` concurrently.
pub fn remap_movable(va: usize, new_pa: u64) -> Result<u64, MapError> {
    check_movable_va(va)?;
    check_ram_page(new_pa)?;
    with_live_tables(|tables| tables.remap_page(va as u64, new_pa, &LiveTables))
}

/// [`remap_movable`] for many pages under one lock and one TLB synchronisation:
/// `results[i]` (as long as `remaps`) receives the old PA of `remaps[i]` or why that page
/// was not remapped; one page's failure does not affect the others. Entries whose result
/// is already `Err` on entry are skipped (the caller refused them). The caller copies the
/// data first and must not access any of the addresses concurrently.
pub fn remap_movable_batch(remaps: &[PageRemap], results: &mut [Result<u64, MapError>]) {
    let Some(platform) = crate::runtime::try_platform() else {
        for result in results.iter_mut().filter(|r| r.is_ok()) {
            *result = Err(MapError::MmuOff);
        }
        return;
    };
    if !batch_in_window_and_ram(platform, remaps, results) {
        // Somewhere in the batch is a bad address: find it page by page.
        for (remap, result) in remaps.iter().zip(results.iter_mut()) {
            if result.is_ok() {
                *result = check_movable_va(remap.va as usize)
                    .and_then(|()| check_ram_page_in(platform, remap.new_pa).map(|()| 0));
            }
        }
    }
    if results.iter().all(|r| r.is_err()) {
        return;
    }
    let outcome = with_live_tables(|tables| {
        tables.remap_pages(remaps, results, &LiveTables);
        Ok(())
    });
    if let Err(e) = outcome {
        for result in results.iter_mut().filter(|r| r.is_ok()) {
            *result = Err(e);
        }
    }
}

/// Whether every entry of the batch not yet refused passes [`remap_movable`]'s checks,
/// decided from the bounds of the batch's addresses: the window and a RAM bank are
/// intervals, so if the lowest and highest addresses are inside one, every address
/// between them is. Migration batches (window pages of one client, targets from one
/// zone) pass this at a few instructions per page; `false` means "check page by page".
fn batch_in_window_and_ram(
    platform: &Platform,
    remaps: &[PageRemap],
    results: &[Result<u64, MapError>],
) -> bool {
    let (mut va_lo, mut va_hi, mut pa_lo, mut pa_hi, mut low_bits) = (u64::MAX, 0, u64::MAX, 0, 0);
    for (remap, _) in remaps.iter().zip(results).filter(|(_, r)| r.is_ok()) {
        va_lo = va_lo.min(remap.va);
        va_hi = va_hi.max(remap.va);
        pa_lo = pa_lo.min(remap.new_pa);
        pa_hi = pa_hi.max(remap.new_pa);
        low_bits |= remap.va | remap.new_pa;
    }
    if va_lo > va_hi || low_bits & (PAGE_SIZE - 1) != 0 {
        return va_lo > va_hi;
    }
    let window = movable_window();
    let in_window = window.start as u64 <= va_lo && va_hi < window.end as u64;
    let in_one_bank = platform.memory.iter().any(|bank| {
        bank.start <= pa_lo && pa_hi.checked_add(PAGE_SIZE).is_some_and(|e| e <= bank.end)
    });
    in_window && in_one_bank
}

/// Unmap the window page `va`; returns the PA it pointed to.
pub fn unmap_movable(va: usize) -> Result<u64, MapError> {
    check_movable_va(va)?;
    with_live_tables(|tables| tables.unmap_page(va as u64, &LiveTables))
}

/// Ask the hardware to translate `va` for an EL1 read (AT S1E1R): PAR_EL1, or `None` if
/// the read would fault.
fn hardware_translate(va: usize) -> Option<u64> {
    let interrupts = crate::cpu::mask_interrupts();
    let par: u64;
    // Safety: AT only writes PAR_EL1, which nothing else relies on while IRQs are masked;
    // an untranslatable address sets PAR_EL1.F instead of faulting.
    unsafe {
        core::arch::asm!(
            "at s1e1r, {va}",
            "isb",
            "mrs {par}, PAR_EL1",
            va = in(reg) va,
            par = out(reg) par,
            options(nostack, preserves_flags)
        );
    }
    crate::cpu::restore_interrupts(interrupts);
    (par & 1 == 0).then_some(par)
}

/// The physical address `va` translates to right now, asking the hardware, or `None` if
/// a read of `va` would fault. Before the MMU is on, every address is itself.
pub fn translate(va: usize) -> Option<u64> {
    if !is_enabled() {
        return Some(va as u64);
    }
    let par = hardware_translate(va)?;
    Some((par & 0x0000_ffff_ffff_f000) | (va as u64 & (PAGE_SIZE - 1)))
}

/// The memory type the hardware uses for `va` (PAR_EL1.ATTR matched against our MAIR
/// slots), or `None` if `va` is unmapped or the MMU is off.
pub fn memory_kind(va: usize) -> Option<MemoryKind> {
    if !is_enabled() {
        return None;
    }
    let attribute = hardware_translate(va)? >> 56;
    [
        MemoryKind::Normal,
        MemoryKind::Device,
        MemoryKind::NormalNonCacheable,
    ]
    .into_iter()
    .find(|kind| (MAIR_EL1_VALUE >> (8 * kind.mair_index())) & 0xff == attribute)
}
