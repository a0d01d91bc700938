//! Architecture half of [`crate::memory::mmu`]: building the kernel tables, programming
//! MAIR/TCR/TTBR0/SCTLR, TLB maintenance, and the global table set behind the movable
//! window API. See the parent module for the design.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, MAIR_EL1, PAR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::LocalRegisterCopy;

use super::layout::{identity_map_plan_excluding, ImageLayout, LayoutError, Region};
use super::translation_table::{
    Attributes, MapError, MemoryKind, PageMover, TranslationTables, WalkerSync, MAIR_EL1_VALUE,
    VA_BITS,
};
use super::{check_movable_va, movable_window};
use crate::cpu::IrqSafeLock;
use crate::dt::platform::Platform;
use crate::util::{PAGE_SHIFT, PAGE_SIZE};

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
    if ID_AA64MMFR0_EL1.matches_all(ID_AA64MMFR0_EL1::TGran4::NotSupported) {
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

    let mair = MAIR_EL1::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
        + MAIR_EL1::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
        + MAIR_EL1::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck
        + MAIR_EL1::Attr2_Normal_Outer::NonCacheable
        + MAIR_EL1::Attr2_Normal_Inner::NonCacheable;
    // The table format (host-built, no register crate) knows the slots as one number.
    debug_assert_eq!(mair.value, MAIR_EL1_VALUE);
    // IPS: the core's physical address size, capped at the 48 bits a descriptor holds
    // (PARange and IPS share one encoding).
    let ips = ID_AA64MMFR0_EL1
        .read(ID_AA64MMFR0_EL1::PARange)
        .min(ID_AA64MMFR0_EL1::PARange::Bits_48.value);
    let tsz = u64::from(64 - VA_BITS);
    // Turning translation on below is sound because the tables identity-map the running
    // code (text executable), its stack, data and heap with the attributes the compiled
    // code expects, and the UART it prints through, so execution continues at the next
    // instruction with the same addresses. Stale TLB entries and instruction-cache lines
    // are invalidated before enabling.
    MAIR_EL1.write(mair);
    TCR_EL1.write(
        TCR_EL1::T0SZ.val(tsz)
            // Walks inner and outer write-back write-allocate, inner shareable.
            + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::SH0::Inner
            + TCR_EL1::TG0::KiB_4
            // TTBR1 is unused: no walks through it.
            + TCR_EL1::T1SZ.val(tsz)
            + TCR_EL1::EPD1::DisableTTBR1Walks
            + TCR_EL1::IPS.val(ips),
    );
    TTBR0_EL1.set_baddr(tables.root_address());
    barrier::isb(barrier::SY);
    // TLBI and IC have no wrappers in aarch64-cpu.
    // Safety: drops every EL1&0 TLB entry and instruction-cache line of this core (stale
    // from before the MMU was on); the walker refills from the new tables.
    unsafe {
        core::arch::asm!(
            "tlbi vmalle1",
            "ic iallu",
            options(nostack, preserves_flags)
        )
    };
    barrier::dsb(barrier::NSH);
    barrier::isb(barrier::SY);
    SCTLR_EL1.modify(
        SCTLR_EL1::M::Enable
            + SCTLR_EL1::C::Cacheable
            + SCTLR_EL1::I::Cacheable
            + SCTLR_EL1::WXN::Enable
            // Unaligned normal-memory accesses allowed.
            + SCTLR_EL1::A::Disable,
    );
    barrier::isb(barrier::SY);
    KERNEL_TABLES.lock(|slot| *slot = Some(tables));
    MMU_ENABLED.store(true, Ordering::Release);
    Ok(())
}

fn check_ram_page(pa: u64) -> Result<(), MapError> {
    let platform = crate::dtb::platform().ok_or(MapError::MmuOff)?;
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

/// Break-before-make for many movable-window pages under one lock and one TLB
/// synchronisation (see [`PageMover`] for the steps). `f` gets a [`MovablePageMover`]; when
/// it returns, the new entries are published. Pages `f` leaves broken are reported as an
/// error in the log (they would fault on access). `Err(MmuOff)` if there are no live
/// tables (then `f` did not run).
pub fn with_movable_page_mover<R>(
    f: impl FnOnce(&mut MovablePageMover<'_>) -> R,
) -> Result<R, MapError> {
    let platform = crate::dtb::platform().ok_or(MapError::MmuOff)?;
    with_live_tables(|tables| {
        let mut mover = MovablePageMover {
            inner: tables.page_mover(&LiveTables),
            platform,
            bank: 0..0,
        };
        let result = f(&mut mover);
        let left_broken = mover.inner.finish();
        if left_broken != 0 {
            log::error!(
                "mmu: {left_broken} movable-window pages left unmapped or with stale TLB entries by a page move"
            );
        }
        Ok(result)
    })
}

/// A [`PageMover`] restricted to the movable window and to RAM frames: what migration
/// uses to re-point many window pages at once.
pub struct MovablePageMover<'t> {
    inner: PageMover<'t, LiveTables>,
    platform: &'static Platform,
    /// The RAM bank of the last frame checked: targets of one batch share a bank.
    bank: core::ops::Range<u64>,
}

impl MovablePageMover<'_> {
    /// Drop the TLB entries of the pages broken since the last call (`vas` yields them;
    /// from 512 pages on the whole TLB is flushed instead of iterating).
    pub fn invalidate_broken<I: Iterator<Item = usize>>(&mut self, vas: I) {
        let count = self.inner.broken();
        self.inner.invalidate_broken(vas.map(|va| va as u64), count);
    }

    /// Map the broken page of every item at its new frame, which must be a RAM page, after
    /// [`Self::invalidate_broken`] (see [`PageMover::make_pages`]): `page(item)` gives the
    /// window address and the new frame, or why the item is skipped. A page whose make
    /// failed stays broken: restore it. Returns how many were made.
    #[inline]
    pub fn make_pages<T>(
        &mut self,
        items: &mut [T],
        mut page: impl FnMut(&mut T) -> Result<(usize, u64), MapError>,
        done: impl FnMut(&mut T, Result<(), MapError>),
    ) -> usize {
        // The bank is copied out so the loop keeps it in registers; a frame outside it
        // takes the full check.
        let mut bank = self.bank.clone();
        let platform = self.platform;
        let made = self.inner.make_pages(
            items,
            |item| {
                let (va, pa) = page(item)?;
                if !(bank.start <= pa && pa < bank.end) {
                    check_ram_page_in(platform, pa)?;
                    if let Some(b) = platform.memory.iter().find(|b| b.contains(&pa)) {
                        bank = b.start..b.end & !(PAGE_SIZE - 1);
                    }
                }
                Ok((va as u64, pa))
            },
            done,
        );
        self.bank = bank;
        made
    }

    /// Map the broken page `va` at its old frame again.
    pub fn restore_page(&mut self, va: usize) -> Result<(), MapError> {
        self.inner.restore_page(va as u64)
    }

    /// Break the window page `va`, which must map `old_pa`: refused, changing nothing,
    /// otherwise. (Where the page goes is checked when it is made again.)
    #[inline(always)]
    pub fn break_page(&mut self, va: usize, old_pa: u64) -> Result<(), MapError> {
        if !movable_window().contains(&va) {
            return Err(MapError::NotInWindow);
        }
        self.inner.break_page(va as u64, old_pa)
    }

    /// Drop the window page `va`, which must map `old_pa`, for good (refused, changing
    /// nothing, otherwise); its TLB entries go in [`Self::invalidate_dropped`], with those
    /// of every page dropped since the last call.
    #[inline(always)]
    pub fn drop_page(&mut self, va: usize, old_pa: u64) -> Result<(), MapError> {
        if !movable_window().contains(&va) {
            return Err(MapError::NotInWindow);
        }
        self.inner.drop_page(va as u64, old_pa)
    }

    /// Drop the TLB entries of the pages dropped since the last call (`vas` yields them;
    /// from 512 pages on the whole TLB is flushed instead of iterating).
    pub fn invalidate_dropped<I: Iterator<Item = usize>>(&mut self, vas: I) {
        self.inner.invalidate_dropped(vas.map(|va| va as u64));
    }

    /// [`unmap_movable`] while the mover holds the tables: the window page `va` goes for
    /// good (with its own TLB invalidation). Returns the PA it mapped.
    pub fn unmap_page(&mut self, va: usize) -> Result<u64, MapError> {
        if !movable_window().contains(&va) {
            return Err(MapError::NotInWindow);
        }
        self.inner.unmap_page(va as u64)
    }
}

/// Unmap the window page `va`; returns the PA it pointed to.
pub fn unmap_movable(va: usize) -> Result<u64, MapError> {
    check_movable_va(va)?;
    with_live_tables(|tables| tables.unmap_page(va as u64, &LiveTables))
}

/// Ask the hardware to translate `va` for an EL1 read (AT S1E1R): PAR_EL1, or `None` if
/// the read would fault.
fn hardware_translate(va: usize) -> Option<LocalRegisterCopy<u64, PAR_EL1::Register>> {
    let interrupts = crate::cpu::mask_interrupts();
    // AT has no wrapper in aarch64-cpu.
    // Safety: AT only writes PAR_EL1, which nothing else relies on while IRQs are masked;
    // an untranslatable address sets PAR_EL1.F instead of faulting.
    unsafe {
        core::arch::asm!("at s1e1r, {va}", "isb", va = in(reg) va, options(nostack, preserves_flags));
    }
    let par = PAR_EL1.extract();
    crate::cpu::restore_interrupts(interrupts);
    par.matches_all(PAR_EL1::F::TranslationSuccessfull)
        .then_some(par)
}

/// The physical address `va` translates to right now, asking the hardware, or `None` if
/// a read of `va` would fault. Before the MMU is on, every address is itself.
pub fn translate(va: usize) -> Option<u64> {
    if !is_enabled() {
        return Some(va as u64);
    }
    let par = hardware_translate(va)?;
    Some((par.read(PAR_EL1::PA) << PAGE_SHIFT) | (va as u64 & (PAGE_SIZE - 1)))
}

/// The memory type the hardware uses for `va` (PAR_EL1.ATTR matched against our MAIR
/// slots), or `None` if `va` is unmapped or the MMU is off.
pub fn memory_kind(va: usize) -> Option<MemoryKind> {
    if !is_enabled() {
        return None;
    }
    // PAR_EL1.ATTR is bits [63:56]; aarch64-cpu 11 defines no field for it.
    let attribute = hardware_translate(va)?.get() >> 56;
    [
        MemoryKind::Normal,
        MemoryKind::Device,
        MemoryKind::NormalNonCacheable,
    ]
    .into_iter()
    .find(|kind| (MAIR_EL1_VALUE >> (8 * kind.mair_index())) & 0xff == attribute)
}
