//! GICv3 interrupt controller: distributor, the boot CPU's redistributor, CPU interface.
//!
//! Theory of operation: with affinity routing (GICD_CTLR.ARE_NS) the distributor only
//! handles SPIs (INTID 32..1019); SGIs and PPIs (0..31) belong to each CPU's
//! redistributor, whose second 64 KiB frame (SGI_base) holds their enable and priority
//! registers. The CPU interface is reached through ICC_* system registers (ICC_SRE_EL1.SRE).
//!
//! Every interrupt is placed in Group 1 (non-secure, delivered as IRQ at EL1), given one
//! default priority, and SPIs are routed to the boot CPU through GICD_IROUTER. Monolith
//! runs its drivers on the boot CPU only, so one redistributor is woken.
//!
//! [`handle_irq`] acknowledges with ICC_IAR1_EL1, calls the handler registered for the
//! INTID and signals end-of-interrupt with ICC_EOIR1_EL1 (EOImode 0: priority drop and
//! deactivation together). It loops until no interrupt is pending, so one exception
//! serves a burst; a read of 1023 before any real interrupt counts as spurious.
//!
//! GICD_CTLR bit names differ between security views; we write bit 4 (ARE_NS, or ARE when
//! the GIC has one security state, as on QEMU `virt` without `secure=on`) and bits 0/1
//! (EnableGrp1NS/EnableGrp1A, or EnableGrp0/EnableGrp1), as Linux's gic-v3 driver does.

// Register fields keep the datasheet names (UARTDR, GICD_CTLR, ...).
#![allow(non_snake_case)]

use core::arch::asm;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::MPIDR_EL1;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

use crate::cpu::IrqSafeLock;

register_bitfields! {u32,
    GICD_CTLR [
        EnableGrp1NS OFFSET(0) NUMBITS(1) [],
        EnableGrp1A OFFSET(1) NUMBITS(1) [],
        ARE_NS OFFSET(4) NUMBITS(1) [],
        RWP OFFSET(31) NUMBITS(1) []
    ],
    GICD_TYPER [
        ITLinesNumber OFFSET(0) NUMBITS(5) []
    ],
    GICR_WAKER [
        ProcessorSleep OFFSET(1) NUMBITS(1) [],
        ChildrenAsleep OFFSET(2) NUMBITS(1) []
    ],
    GICR_CTLR [
        RWP OFFSET(3) NUMBITS(1) []
    ]
}

register_bitfields! {u64,
    GICR_TYPER [
        VLPIS OFFSET(1) NUMBITS(1) [],
        Last OFFSET(4) NUMBITS(1) [],
        Affinity OFFSET(32) NUMBITS(32) []
    ]
}

register_structs! {
    pub GicdRegisters {
        (0x0000 => GICD_CTLR: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => GICD_TYPER: ReadOnly<u32, GICD_TYPER::Register>),
        (0x0008 => GICD_IIDR: ReadOnly<u32>),
        (0x000c => _reserved0),
        (0x0080 => GICD_IGROUPR: [ReadWrite<u32>; 32]),
        (0x0100 => GICD_ISENABLER: [ReadWrite<u32>; 32]),
        (0x0180 => GICD_ICENABLER: [ReadWrite<u32>; 32]),
        (0x0200 => GICD_ISPENDR: [ReadWrite<u32>; 32]),
        (0x0280 => GICD_ICPENDR: [ReadWrite<u32>; 32]),
        (0x0300 => GICD_ISACTIVER: [ReadWrite<u32>; 32]),
        (0x0380 => GICD_ICACTIVER: [ReadWrite<u32>; 32]),
        // Byte-accessible by specification: one priority byte per INTID.
        (0x0400 => GICD_IPRIORITYR: [ReadWrite<u8>; 1024]),
        (0x0800 => _reserved1),
        (0x0c00 => GICD_ICFGR: [ReadWrite<u32>; 64]),
        (0x0d00 => GICD_IGRPMODR: [ReadWrite<u32>; 32]),
        (0x0d80 => _reserved2),
        // Indexed by INTID; entries 0..31 are reserved (SGIs/PPIs are not routed).
        (0x6000 => GICD_IROUTER: [ReadWrite<u64>; 1020]),
        (0x7fe0 => @END),
    }
}

register_structs! {
    /// RD_base frame of one redistributor.
    pub GicrRdRegisters {
        (0x0000 => GICR_CTLR: ReadWrite<u32, GICR_CTLR::Register>),
        (0x0004 => GICR_IIDR: ReadOnly<u32>),
        (0x0008 => GICR_TYPER: ReadOnly<u64, GICR_TYPER::Register>),
        (0x0010 => _reserved0),
        (0x0014 => GICR_WAKER: ReadWrite<u32, GICR_WAKER::Register>),
        (0x0018 => @END),
    }
}

register_structs! {
    /// SGI_base frame (RD_base + 64 KiB): SGI and PPI configuration.
    pub GicrSgiRegisters {
        (0x0000 => _reserved0),
        (0x0080 => GICR_IGROUPR0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => GICR_ISENABLER0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => GICR_ICENABLER0: ReadWrite<u32>),
        (0x0184 => _reserved3),
        (0x0200 => GICR_ISPENDR0: ReadWrite<u32>),
        (0x0204 => _reserved4),
        (0x0280 => GICR_ICPENDR0: ReadWrite<u32>),
        (0x0284 => _reserved5),
        (0x0400 => GICR_IPRIORITYR: [ReadWrite<u8>; 32]),
        (0x0420 => _reserved6),
        (0x0c00 => GICR_ICFGR0: ReadWrite<u32>),
        (0x0c04 => GICR_ICFGR1: ReadWrite<u32>),
        (0x0c08 => _reserved7),
        (0x0d00 => GICR_IGRPMODR0: ReadWrite<u32>),
        (0x0d04 => @END),
    }
}

/// First INTID of the shared peripheral interrupts.
pub const SPI_BASE: u32 = 32;
/// INTIDs 1020..1023 are special; 1023 means "nothing pending".
pub const SPURIOUS_INTID: u32 = 1023;
const MAX_INTID: usize = 1020;
/// Middle of the range: leaves room above for anything that must preempt later.
const DEFAULT_PRIORITY: u8 = 0xa0;
const RD_FRAME: usize = 0x1_0000;
const POLL_LIMIT: u32 = 1_000_000;

/// Why the GIC could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicError {
    /// No redistributor in the region has the boot CPU's affinity.
    NoRedistributor { mpidr_affinity: u32 },
    /// GICR_WAKER.ChildrenAsleep stayed set.
    RedistributorAsleep,
    /// A register-write-pending bit never cleared.
    RwpTimeout,
}

impl core::fmt::Display for GicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GicError::NoRedistributor { mpidr_affinity } => {
                write!(
                    f,
                    "no GICv3 redistributor for CPU affinity {mpidr_affinity:#x}"
                )
            }
            GicError::RedistributorAsleep => write!(f, "GICv3 redistributor did not wake up"),
            GicError::RwpTimeout => write!(f, "GICv3 register write never completed (RWP)"),
        }
    }
}

struct Gic {
    gicd: &'static GicdRegisters,
    sgi: &'static GicrSgiRegisters,
    rd: &'static GicrRdRegisters,
    /// One past the last SPI the distributor implements.
    max_intid: u32,
}

// Safety: the register blocks are MMIO owned by this driver alone; every access goes
// through the IrqSafeLock below, so moving the references between contexts is sound.
unsafe impl Send for Gic {}

static GIC: IrqSafeLock<Option<Gic>> = IrqSafeLock::new(None);
/// One optional handler per INTID.
type HandlerTable = [Option<fn()>; MAX_INTID];

static HANDLERS: IrqSafeLock<HandlerTable> = IrqSafeLock::new([None; MAX_INTID]);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);
static UNHANDLED: AtomicU64 = AtomicU64::new(0);
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// The last INTID that had no handler (for diagnostics); 0 = none yet.
static LAST_UNHANDLED: AtomicUsize = AtomicUsize::new(0);

/// Affinity of this CPU in GICR_TYPER.Affinity / GICD_IROUTER layout (Aff3.Aff2.Aff1.Aff0).
fn this_cpu_affinity() -> u32 {
    let mpidr = MPIDR_EL1.get();
    (((mpidr >> 32) & 0xff) << 24) as u32 | (mpidr & 0x00ff_ffff) as u32
}

fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..POLL_LIMIT {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Bring up distributor, redistributor and CPU interface.
///
/// # Safety
/// `distributor` and `redistributor` must be the identity-mapped GICv3 register regions
/// from the device tree; `redistributor_len` bounds the redistributor scan. Call once, on
/// the boot CPU, with IRQs masked.
pub unsafe fn init(
    distributor: usize,
    redistributor: usize,
    redistributor_len: usize,
) -> Result<(), GicError> {
    // Safety: the caller guarantees a distributor register block at this address.
    let gicd: &'static GicdRegisters = unsafe { &*(distributor as *const GicdRegisters) };
    let affinity = this_cpu_affinity();

    // Find our redistributor: frames are 128 KiB (256 KiB with virtual LPIs), the last
    // one has GICR_TYPER.Last set.
    let mut offset = 0;
    let mut found = None;
    while offset + 2 * RD_FRAME <= redistributor_len {
        let base = redistributor + offset;
        // Safety: `base` lies inside the redistributor region the caller vouched for.
        let rd: &'static GicrRdRegisters = unsafe { &*(base as *const GicrRdRegisters) };
        let typer = rd.GICR_TYPER.extract();
        if typer.read(GICR_TYPER::Affinity) as u32 == affinity {
            found = Some(base);
            break;
        }
        if typer.is_set(GICR_TYPER::Last) {
            break;
        }
        offset += if typer.is_set(GICR_TYPER::VLPIS) {
            4 * RD_FRAME
        } else {
            2 * RD_FRAME
        };
    }
    let rd_base = found.ok_or(GicError::NoRedistributor {
        mpidr_affinity: affinity,
    })?;
    // Safety: `rd_base` is the start of our redistributor, whose SGI_base frame follows
    // at +64 KiB, inside the same region.
    let (rd, sgi): (&'static GicrRdRegisters, &'static GicrSgiRegisters) = unsafe {
        (
            &*(rd_base as *const GicrRdRegisters),
            &*((rd_base + RD_FRAME) as *const GicrSgiRegisters),
        )
    };

    // Distributor: off while we reconfigure, then affinity routing.
    gicd.GICD_CTLR.set(0);
    if !wait_until(|| !gicd.GICD_CTLR.is_set(GICD_CTLR::RWP)) {
        return Err(GicError::RwpTimeout);
    }
    let lines = (gicd.GICD_TYPER.read(GICD_TYPER::ITLinesNumber) + 1) * 32;
    let max_intid = lines.min(MAX_INTID as u32);
    for word in 1..(max_intid / 32) as usize {
        gicd.GICD_ICENABLER[word].set(u32::MAX);
        gicd.GICD_ICPENDR[word].set(u32::MAX);
        gicd.GICD_ICACTIVER[word].set(u32::MAX);
        gicd.GICD_IGROUPR[word].set(u32::MAX);
        gicd.GICD_IGRPMODR[word].set(0);
    }
    for intid in SPI_BASE as usize..max_intid as usize {
        gicd.GICD_IPRIORITYR[intid].set(DEFAULT_PRIORITY);
        gicd.GICD_IROUTER[intid]
            .set(u64::from(affinity & 0x00ff_ffff) | (u64::from(affinity >> 24) << 32));
    }
    // Level-sensitive SPIs (0b00 per field) unless a driver asks otherwise.
    for word in 2..(max_intid / 16) as usize {
        gicd.GICD_ICFGR[word].set(0);
    }
    gicd.GICD_CTLR.write(GICD_CTLR::ARE_NS::SET);
    if !wait_until(|| !gicd.GICD_CTLR.is_set(GICD_CTLR::RWP)) {
        return Err(GicError::RwpTimeout);
    }
    gicd.GICD_CTLR
        .write(GICD_CTLR::ARE_NS::SET + GICD_CTLR::EnableGrp1NS::SET + GICD_CTLR::EnableGrp1A::SET);

    // Redistributor: wake it, then SGIs/PPIs to Group 1, disabled until someone registers.
    rd.GICR_WAKER.modify(GICR_WAKER::ProcessorSleep::CLEAR);
    if !wait_until(|| !rd.GICR_WAKER.is_set(GICR_WAKER::ChildrenAsleep)) {
        return Err(GicError::RedistributorAsleep);
    }
    sgi.GICR_ICENABLER0.set(u32::MAX);
    sgi.GICR_ICPENDR0.set(u32::MAX);
    sgi.GICR_IGROUPR0.set(u32::MAX);
    sgi.GICR_IGRPMODR0.set(0);
    for intid in 0..32 {
        sgi.GICR_IPRIORITYR[intid].set(DEFAULT_PRIORITY);
    }
    if !wait_until(|| !rd.GICR_CTLR.is_set(GICR_CTLR::RWP)) {
        return Err(GicError::RwpTimeout);
    }

    // CPU interface: system-register access, accept every priority, Group 1 on. Raw MSRs:
    // aarch64-cpu 11 has no ICC_SRE_EL1, ICC_PMR_EL1, ICC_BPR1_EL1 or ICC_IGRPEN1_EL1, and
    // its ICC_CTLR_EL1 is read-only.
    // Safety: ICC_* are the GICv3 CPU interface registers of this CPU; the values follow
    // the architecture (SRE=1 with DFB/DIB; PMR 0xff = lowest priority mask; BPR 0 = no
    // priority grouping; EOImode 0; IGRPEN1 = 1).
    unsafe {
        asm!("msr ICC_SRE_EL1, {}", "isb", in(reg) 0b111u64, options(nostack));
        asm!("msr ICC_PMR_EL1, {}", in(reg) 0xffu64, options(nostack));
        asm!("msr ICC_BPR1_EL1, {}", in(reg) 0u64, options(nostack));
        asm!("msr ICC_CTLR_EL1, {}", in(reg) 0u64, options(nostack));
        asm!("msr ICC_IGRPEN1_EL1, {}", "isb", in(reg) 1u64, options(nostack));
    }

    GIC.lock(|gic| {
        *gic = Some(Gic {
            gicd,
            sgi,
            rd,
            max_intid,
        })
    });
    Ok(())
}

/// Whether [`init`] succeeded.
pub fn is_ready() -> bool {
    GIC.lock(|gic| gic.is_some())
}

/// Edge- or level-triggered (GICD_ICFGR / GICR_ICFGR1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Level,
    Edge,
}

/// Configure the trigger of a PPI or SPI (SGIs are always edge).
pub fn set_trigger(intid: u32, trigger: Trigger) {
    let edge = trigger == Trigger::Edge;
    GIC.lock(|gic| {
        let Some(gic) = gic else { return };
        let bit = 1u32 << ((intid % 16) * 2 + 1);
        let update = |value: u32| if edge { value | bit } else { value & !bit };
        if (16..32).contains(&intid) {
            gic.sgi.GICR_ICFGR1.set(update(gic.sgi.GICR_ICFGR1.get()));
        } else if intid >= SPI_BASE && intid < gic.max_intid {
            let reg = &gic.gicd.GICD_ICFGR[(intid / 16) as usize];
            reg.set(update(reg.get()));
        }
    });
}

fn set_enabled(intid: u32, enabled: bool) {
    GIC.lock(|gic| {
        let Some(gic) = gic else { return };
        let bit = 1u32 << (intid % 32);
        if intid < SPI_BASE {
            let reg = if enabled {
                &gic.sgi.GICR_ISENABLER0
            } else {
                &gic.sgi.GICR_ICENABLER0
            };
            reg.set(bit);
        } else if intid < gic.max_intid {
            let word = (intid / 32) as usize;
            let reg = if enabled {
                &gic.gicd.GICD_ISENABLER[word]
            } else {
                &gic.gicd.GICD_ICENABLER[word]
            };
            reg.set(bit);
        }
    });
}

pub fn enable_irq(intid: u32) {
    set_enabled(intid, true);
}

pub fn disable_irq(intid: u32) {
    set_enabled(intid, false);
}

/// Why a handler was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// Not an SGI, PPI or implemented SPI.
    BadIntid(u32),
    /// Another handler owns this INTID.
    Busy(u32),
}

/// Install `handler` for `intid` and enable the interrupt. Handlers run in IRQ context with
/// IRQs masked; they must clear their device's interrupt condition.
pub fn register_handler(intid: u32, handler: fn()) -> Result<(), RegisterError> {
    let limit = GIC.lock(|gic| gic.as_ref().map_or(MAX_INTID as u32, |g| g.max_intid));
    if intid >= limit {
        return Err(RegisterError::BadIntid(intid));
    }
    HANDLERS.lock(|table| match table[intid as usize] {
        Some(existing) if existing as usize != handler as usize => Err(RegisterError::Busy(intid)),
        _ => {
            table[intid as usize] = Some(handler);
            Ok(())
        }
    })?;
    enable_irq(intid);
    Ok(())
}

/// Remove the handler of `intid` and disable it.
pub fn unregister_handler(intid: u32) {
    disable_irq(intid);
    if (intid as usize) < MAX_INTID {
        HANDLERS.lock(|table| table[intid as usize] = None);
    }
}

// ICC_IAR1_EL1 and ICC_EOIR1_EL1 are not in aarch64-cpu 11: raw MRS/MSR.
fn read_iar1() -> u32 {
    let iar: u64;
    // Safety: reading ICC_IAR1_EL1 acknowledges the highest-priority pending Group 1
    // interrupt; the caller EOIs every INTID it acknowledges. Not `nomem`: memory
    // accesses must not move across the acknowledge.
    unsafe { asm!("mrs {}, ICC_IAR1_EL1", out(reg) iar, options(nostack)) };
    (iar & 0xff_ffff) as u32
}

fn write_eoir1(intid: u32) {
    // Safety: `intid` was returned by ICC_IAR1_EL1 and not yet EOIed (EOImode 0).
    unsafe { asm!("msr ICC_EOIR1_EL1, {}", in(reg) u64::from(intid), options(nostack)) };
}

/// IRQ entry from the exception vectors: acknowledge, dispatch, EOI, until none pending.
pub fn handle_irq() {
    let mut served = 0u32;
    loop {
        let intid = read_iar1();
        if intid >= 1020 {
            if served == 0 {
                SPURIOUS.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let handler = HANDLERS.lock(|table| table.get(intid as usize).copied().flatten());
        match handler {
            Some(handler) => {
                handler();
                HANDLED.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                // Nobody will clear a level-triggered source: silence it instead of
                // taking it again forever.
                disable_irq(intid);
                UNHANDLED.fetch_add(1, Ordering::Relaxed);
                LAST_UNHANDLED.store(intid as usize, Ordering::Relaxed);
            }
        }
        write_eoir1(intid);
        served += 1;
    }
}

/// Interrupt counters since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqStats {
    pub handled: u64,
    pub spurious: u64,
    pub unhandled: u64,
    pub last_unhandled_intid: Option<u32>,
}

pub fn stats() -> IrqStats {
    let last = LAST_UNHANDLED.load(Ordering::Relaxed) as u32;
    IrqStats {
        handled: HANDLED.load(Ordering::Relaxed),
        spurious: SPURIOUS.load(Ordering::Relaxed),
        unhandled: UNHANDLED.load(Ordering::Relaxed),
        last_unhandled_intid: (UNHANDLED.load(Ordering::Relaxed) > 0).then_some(last),
    }
}

/// Distributor identification (GICD_IIDR), for the boot summary.
pub fn iidr() -> Option<u32> {
    GIC.lock(|gic| {
        gic.as_ref()
            .map(|g| (g.gicd.GICD_IIDR.get(), g.rd.GICR_IIDR.get()).0)
    })
}
