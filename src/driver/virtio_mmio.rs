//! The hardware half of our virtio layer ([`crate::virtio`]): register access to a
//! virtio-mmio window, DMA memory from the DMA API ([`crate::dma_service`]), and the
//! interrupt handler that acknowledges InterruptStatus and wakes the waiter.
//!
//! # Theory of operation
//!
//! - [`MmioRegisters`] implements [`Registers`] with the `register_structs!` block of
//!   `virtio_mmio_regs.rs` (whose offsets are checked at compile time against the
//!   transport's), and volatile accesses of the field's width for the configuration space,
//!   bounded by the window the device tree gives.
//! - DMA memory: [`attach`] reads the device's DMA description from its device-tree node
//!   (`dma_service::device(path)`: CMA area, `dma-coherent`, `dma-ranges`), and
//!   [`KmemHal`] takes every ring and every request/response buffer from
//!   `dma_alloc_coherent(&device, bytes, true)` (the device's CMA area, then the default
//!   one, as Linux's `dma_direct_alloc`), falling back to the atomic pool
//!   (`can_wait = false`) when no CMA area can serve it, and gives them back with
//!   `dma_free_coherent`. A region's address as the virtio layer sees it
//!   ([`DmaRegion::paddr`], what goes into descriptors and the queue registers) is the
//!   buffer's DMA address, which carries the `dma-ranges` offset (`phys_to_dma`); the
//!   CPU's own accesses go to the buffer's CPU address (RAM is identity-mapped). Every
//!   live region is recorded with both addresses and the Hal it belongs to, and every
//!   access checks that the region is one of that Hal's and the range inside it, so the
//!   safe [`Hal`] interface cannot be used to reach other memory. Regions are zeroed when
//!   handed out (the [`Hal`] contract; `dma_alloc_coherent` does not zero CMA pages).
//! - Coherency: only `dma-coherent` devices are attached; any other is refused with
//!   [`AttachError::NotCoherent`]. Why not cache maintenance in the Hal: Linux gives a
//!   non-coherent device's `dma_alloc_coherent` memory a non-cacheable alias
//!   (`pgprot_dmacoherent`), so virtio needs no maintenance at all; our DMA service has no
//!   uncached alias yet (RAM is mapped cacheable everywhere), and maintenance by the Hal
//!   per access is not safe with the split ring's layout: the available ring (CPU-written)
//!   and the used ring (device-written) are only 4-byte aligned and share a cache line, so
//!   cleaning the line after a CPU store to the available ring could write stale
//!   used-ring bytes over what the device just wrote there (virtio 1.x 2.7.13: the
//!   device writes the used ring while the driver adds buffers). Once the DMA service
//!   maps coherent buffers non-cacheable for such devices, the check can go, with no
//!   maintenance in the Hal. QEMU's `virt` puts `dma-coherent` on its root, so its
//!   virtio-mmio devices are coherent (and TCG has no caches to keep coherent); a user's
//!   tree without it gets one clear message. What remains are the barriers of section
//!   2.7.13: `DMB ISHST` / `DMB ISHLD` between ring accesses (Linux's
//!   `virt_wmb`/`virt_rmb` for weak barriers), `DSB SY` before a notification so the
//!   device sees the ring when the MMIO write lands.
//! - Interrupts: each device [`attach`]ed gets a slot with an interrupt counter. Its
//!   `interrupts` SPI (edge-triggered on `virt`) goes to one handler, [`virtio_irq`],
//!   which reads every attached device's InterruptStatus, writes the bits back to
//!   InterruptACK, and bumps the counter of each that had one (another counter for
//!   configuration changes). [`KmemHal::wait_for_interrupt`] masks IRQs, compares the
//!   counter with what the waiter saw, and only then executes WFI: an interrupt that
//!   arrives after the check is pending and ends the WFI at once, so no wake-up is lost.
//!   Without a GIC or an `interrupts` property the wait is a short spin, and the request
//!   helper polls the used ring.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use tock_registers::interfaces::{Readable, Writeable};

use super::gicv3;
use super::virtio_mmio_regs::{VirtioMmioRegisters, CONFIG_OFFSET};
use crate::cpu::IrqSafeLock;
use crate::dma_service::{self, CoherentBuf, DeviceDma, DmaError};
use crate::dt::platform::MmioDevice;
use crate::util::size::PAGE_SIZE;
use crate::virtio::transport::{interrupt, reg};
use crate::virtio::{Barrier, DmaRegion, Hal, HalError, Registers};

// The transport's offsets are the register block's.
macro_rules! same_offset {
    ($($field:ident = $offset:path),* $(,)?) => {
        $(const _: () = assert!(core::mem::offset_of!(VirtioMmioRegisters, $field) == $offset);)*
    };
}
same_offset!(
    MagicValue = reg::MAGIC_VALUE,
    Version = reg::VERSION,
    DeviceID = reg::DEVICE_ID,
    VendorID = reg::VENDOR_ID,
    DeviceFeatures = reg::DEVICE_FEATURES,
    DeviceFeaturesSel = reg::DEVICE_FEATURES_SEL,
    DriverFeatures = reg::DRIVER_FEATURES,
    DriverFeaturesSel = reg::DRIVER_FEATURES_SEL,
    QueueSel = reg::QUEUE_SEL,
    QueueNumMax = reg::QUEUE_NUM_MAX,
    QueueNum = reg::QUEUE_NUM,
    QueueReady = reg::QUEUE_READY,
    QueueNotify = reg::QUEUE_NOTIFY,
    InterruptStatus = reg::INTERRUPT_STATUS,
    InterruptACK = reg::INTERRUPT_ACK,
    Status = reg::STATUS,
    QueueDescLow = reg::QUEUE_DESC_LOW,
    QueueDescHigh = reg::QUEUE_DESC_HIGH,
    QueueDriverLow = reg::QUEUE_DRIVER_LOW,
    QueueDriverHigh = reg::QUEUE_DRIVER_HIGH,
    QueueDeviceLow = reg::QUEUE_DEVICE_LOW,
    QueueDeviceHigh = reg::QUEUE_DEVICE_HIGH,
    ConfigGeneration = reg::CONFIG_GENERATION,
);
const _: () = assert!(CONFIG_OFFSET == reg::CONFIG);

/// Devices that can be attached at once (QEMU `virt` has 32 slots).
pub const MAX_DEVICES: usize = 32;

/// One virtio-mmio register window.
#[derive(Debug, Clone, Copy)]
pub struct MmioRegisters {
    base: usize,
    size: usize,
}

impl MmioRegisters {
    /// # Safety
    /// `[base, base + size)` must be a `virtio,mmio` register window from the device tree,
    /// identity-mapped as device memory for as long as the value (and its copies) live.
    /// `None` if the window is smaller than the common registers or misaligned.
    pub unsafe fn new(base: u64, size: u64) -> Option<Self> {
        let base = usize::try_from(base).ok()?;
        let size = usize::try_from(size).ok()?;
        (size >= CONFIG_OFFSET && base.is_multiple_of(4)).then_some(MmioRegisters { base, size })
    }

    pub fn base(&self) -> u64 {
        self.base as u64
    }

    fn regs(&self) -> &VirtioMmioRegisters {
        // Safety: `new`'s contract: a mapped virtio-mmio window of at least 0x100 bytes;
        // the struct is `repr(C)` with the spec's offsets and volatile cells only.
        unsafe { &*(self.base as *const VirtioMmioRegisters) }
    }

    /// Address of a configuration field of `len` bytes, if it is inside the window and
    /// aligned to its size.
    fn config_at(&self, offset: usize, len: usize) -> Option<usize> {
        let at = CONFIG_OFFSET.checked_add(offset)?;
        (at.checked_add(len)? <= self.size && at.is_multiple_of(len)).then_some(self.base + at)
    }
}

impl Registers for MmioRegisters {
    fn read32(&self, offset: usize) -> u32 {
        let r = self.regs();
        match offset {
            reg::MAGIC_VALUE => r.MagicValue.get(),
            reg::VERSION => r.Version.get(),
            reg::DEVICE_ID => r.DeviceID.get(),
            reg::VENDOR_ID => r.VendorID.get(),
            reg::DEVICE_FEATURES => r.DeviceFeatures.get(),
            reg::QUEUE_NUM_MAX => r.QueueNumMax.get(),
            reg::QUEUE_NUM => r.QueueNum.get(),
            reg::QUEUE_READY => r.QueueReady.get(),
            reg::INTERRUPT_STATUS => r.InterruptStatus.get(),
            reg::STATUS => r.Status.get(),
            reg::CONFIG_GENERATION => r.ConfigGeneration.get(),
            // Write-only or reserved: reads as 0, as nothing is there to read.
            _ => 0,
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        let r = self.regs();
        match offset {
            reg::DEVICE_FEATURES_SEL => r.DeviceFeaturesSel.set(value),
            reg::DRIVER_FEATURES => r.DriverFeatures.set(value),
            reg::DRIVER_FEATURES_SEL => r.DriverFeaturesSel.set(value),
            reg::QUEUE_SEL => r.QueueSel.set(value),
            reg::QUEUE_NUM => r.QueueNum.set(value),
            reg::QUEUE_READY => r.QueueReady.set(value),
            reg::QUEUE_NOTIFY => r.QueueNotify.set(value),
            reg::INTERRUPT_ACK => r.InterruptACK.set(value),
            reg::STATUS => r.Status.set(value),
            reg::QUEUE_DESC_LOW => r.QueueDescLow.set(value),
            reg::QUEUE_DESC_HIGH => r.QueueDescHigh.set(value),
            reg::QUEUE_DRIVER_LOW => r.QueueDriverLow.set(value),
            reg::QUEUE_DRIVER_HIGH => r.QueueDriverHigh.set(value),
            reg::QUEUE_DEVICE_LOW => r.QueueDeviceLow.set(value),
            reg::QUEUE_DEVICE_HIGH => r.QueueDeviceHigh.set(value),
            // Read-only or reserved: a write would be a driver bug; drop it.
            _ => log::warn!(
                "virtio-mmio {:#x}: write to register {offset:#x} dropped",
                self.base
            ),
        }
    }

    fn config_read8(&self, offset: usize) -> Option<u8> {
        let at = self.config_at(offset, 1)?;
        // Safety: inside the mapped window (checked above); an 8-bit device read.
        Some(unsafe { core::ptr::read_volatile(at as *const u8) })
    }

    fn config_read16(&self, offset: usize) -> Option<u16> {
        let at = self.config_at(offset, 2)?;
        // Safety: inside the mapped window and 2-byte aligned (checked above).
        Some(u16::from_le(unsafe {
            core::ptr::read_volatile(at as *const u16)
        }))
    }

    fn config_read32(&self, offset: usize) -> Option<u32> {
        let at = self.config_at(offset, 4)?;
        // Safety: inside the mapped window and 4-byte aligned (checked above).
        Some(u32::from_le(unsafe {
            core::ptr::read_volatile(at as *const u32)
        }))
    }

    fn config_write32(&self, offset: usize, value: u32) -> Option<()> {
        let at = self.config_at(offset, 4)?;
        // Safety: inside the mapped window and 4-byte aligned (checked above).
        unsafe { core::ptr::write_volatile(at as *mut u32, value.to_le()) };
        Some(())
    }
}

/// The attached devices, by slot; the slot also indexes the interrupt counters.
static SLOTS: IrqSafeLock<[Option<MmioRegisters>; MAX_DEVICES]> =
    IrqSafeLock::new([None; MAX_DEVICES]);
static USED_IRQS: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];
static CONFIG_IRQS: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];

/// One DMA region handed out and not yet freed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveRegion {
    /// The slot of the [`KmemHal`] that allocated it.
    slot: usize,
    pages: usize,
    /// The DMA API's buffer: its CPU address, its DMA address, where it came from.
    buf: CoherentBuf,
}

impl LiveRegion {
    fn is(&self, slot: usize, region: &DmaRegion) -> bool {
        self.slot == slot && self.buf.dma == region.paddr() && self.pages == region.pages()
    }
}

/// DMA regions handed out by every [`KmemHal`] and not yet freed.
static DMA_REGIONS: IrqSafeLock<Vec<LiveRegion>> = IrqSafeLock::new(Vec::new());

/// The handler for every attached device's SPI: acknowledge and count.
fn virtio_irq() {
    let slots = SLOTS.lock(|s| *s);
    for (i, regs) in slots.iter().enumerate() {
        let Some(regs) = regs else { continue };
        let status = regs.read32(reg::INTERRUPT_STATUS);
        if status == 0 {
            continue;
        }
        regs.write32(reg::INTERRUPT_ACK, status);
        if status & interrupt::USED_BUFFER != 0 {
            USED_IRQS[i].fetch_add(1, Ordering::Release);
        }
        if status & interrupt::CONFIG_CHANGE != 0 {
            CONFIG_IRQS[i].fetch_add(1, Ordering::Release);
            // A configuration change may be DEVICE_NEEDS_RESET (2.1.1): wake the waiter
            // too, so it reads Status now rather than at its timeout.
            USED_IRQS[i].fetch_add(1, Ordering::Release);
        }
    }
}

/// Why a device could not be attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// The window is smaller than the common registers.
    BadWindow { base: u64, size: u64 },
    /// All slots are taken.
    NoSlot,
    /// The GIC refused the handler.
    Irq(gicv3::RegisterError),
    /// The device's DMA description could not be read from its node.
    Dma { path: String, error: DmaError },
    /// The device is not `dma-coherent`, which the Hal requires (see the file header).
    NotCoherent { path: String },
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttachError::BadWindow { base, size } => {
                write!(f, "virtio-mmio window {base:#x}+{size:#x} is too small")
            }
            AttachError::NoSlot => write!(f, "more than {MAX_DEVICES} virtio devices attached"),
            AttachError::Irq(e) => write!(f, "virtio interrupt: {e:?}"),
            AttachError::Dma { path, error } => write!(f, "{path}: DMA description: {error}"),
            AttachError::NotCoherent { path } => write!(
                f,
                "{path} is not dma-coherent: the virtio rings need coherent DMA memory, and \
                 the DMA service has no uncached mapping for a non-coherent device"
            ),
        }
    }
}

/// Register access and a Hal for the device in `device` (a `virtio,mmio` node of the
/// platform), with its interrupt wired up and its DMA described by its device-tree node.
/// Attaching the same window again reuses its slot.
pub fn attach(device: &MmioDevice) -> Result<(KmemHal, MmioRegisters), AttachError> {
    let dma = dma_service::device(&device.path).map_err(|error| AttachError::Dma {
        path: device.path.clone(),
        error,
    })?;
    attach_with(device, dma)
}

/// [`attach`] with a given DMA description instead of the node's (for a driver that adds
/// constraints, and for tests). A description that is not `dma-coherent` is refused
/// before anything is taken.
pub fn attach_with(
    device: &MmioDevice,
    dma: DeviceDma,
) -> Result<(KmemHal, MmioRegisters), AttachError> {
    if !dma.constraints.coherent {
        return Err(AttachError::NotCoherent {
            path: device.path.clone(),
        });
    }
    // Safety: `device` is one of the platform's `virtio,mmio` nodes, whose windows are in
    // `platform.mmio`, identity-mapped as device memory by the boot code for good.
    let regs =
        unsafe { MmioRegisters::new(device.base, device.size) }.ok_or(AttachError::BadWindow {
            base: device.base,
            size: device.size,
        })?;
    let intid = device.intid.filter(|_| gicv3::is_ready());
    let index = SLOTS.lock(|slots| {
        if let Some(i) = slots
            .iter()
            .position(|s| s.is_some_and(|s| s.base == regs.base))
        {
            return Some(i);
        }
        let i = slots.iter().position(Option::is_none)?;
        slots[i] = Some(regs);
        Some(i)
    });
    let index = index.ok_or(AttachError::NoSlot)?;
    if let Some(intid) = intid {
        gicv3::set_trigger(intid, gicv3::Trigger::Edge);
        if let Err(e) = gicv3::register_handler(intid, virtio_irq) {
            SLOTS.lock(|slots| slots[index] = None);
            return Err(AttachError::Irq(e));
        }
    }
    Ok((
        KmemHal {
            slot: index,
            interrupts: intid.is_some(),
            dma,
        },
        regs,
    ))
}

/// Configuration-change interrupts of the device in `slot` so far.
pub fn config_changes(hal: &KmemHal) -> u64 {
    CONFIG_IRQS[hal.slot].load(Ordering::Acquire)
}

/// DMA pages handed out by every [`KmemHal`] and not yet freed.
pub fn dma_pages_outstanding() -> usize {
    DMA_REGIONS.lock(|r| r.iter().map(|l| l.pages).sum())
}

/// One live DMA region, for diagnostics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// The address the device is given (descriptors, queue registers).
    pub dma: u64,
    /// Where the CPU reaches it.
    pub phys: u64,
    pub pages: usize,
}

/// Every DMA region handed out by every [`KmemHal`] and not yet freed.
pub fn dma_regions() -> Vec<RegionInfo> {
    DMA_REGIONS.lock(|r| {
        r.iter()
            .map(|l| RegionInfo {
                dma: l.buf.dma,
                phys: l.buf.phys,
                pages: l.pages,
            })
            .collect()
    })
}

/// The [`Hal`] of one attached device.
#[derive(Debug)]
pub struct KmemHal {
    slot: usize,
    /// Whether the device's interrupt is wired (otherwise waits poll).
    interrupts: bool,
    /// The device as the DMA API sees it (always `dma-coherent`: [`attach_with`]).
    dma: DeviceDma,
}

impl KmemHal {
    /// The device's DMA description, e.g. to translate a buffer's CPU address to the
    /// device's (`DeviceDma::bus_address`).
    pub fn dma_device(&self) -> &DeviceDma {
        &self.dma
    }

    /// The CPU address of `[offset, offset + len)` of a live region of this Hal's.
    fn address(&self, region: &DmaRegion, offset: usize, len: usize) -> Result<usize, HalError> {
        region.check(offset, len)?;
        let phys = DMA_REGIONS.lock(|r| {
            r.iter()
                .find(|l| l.is(self.slot, region))
                .map(|l| l.buf.phys)
        });
        let phys = phys.ok_or(HalError::NotOurs {
            paddr: region.paddr(),
        })?;
        Ok(phys as usize + offset)
    }

    /// `dma_alloc_coherent` as Linux's `GFP_KERNEL` (CMA), then from the atomic pool
    /// when no CMA area could serve it.
    fn alloc_coherent(&self, bytes: u64) -> Result<CoherentBuf, DmaError> {
        match dma_service::dma_alloc_coherent(&self.dma, bytes, true) {
            Err(DmaError::NoCoherentMemory { why, .. }) => {
                log::debug!(
                    "{}: {bytes} DMA bytes from the atomic pool: {why}",
                    self.dma.name
                );
                dma_service::dma_alloc_coherent(&self.dma, bytes, false)
            }
            other => other,
        }
    }
}

impl Hal for KmemHal {
    fn dma_alloc(&self, pages: usize) -> Result<DmaRegion, HalError> {
        let bytes = (pages as u64).checked_mul(PAGE_SIZE).filter(|b| *b > 0);
        let bytes = bytes.ok_or(HalError::OutOfMemory { pages })?;
        let buf = self.alloc_coherent(bytes).map_err(|e| {
            log::warn!("{}: DMA memory for virtio: {e}", self.dma.name);
            HalError::OutOfMemory { pages }
        })?;
        // Safety: the DMA API just handed us these `bytes` at `buf.phys` (CMA or atomic
        // pool pages, owned by us until `dma_free_coherent`, never a `no-map` carve-out);
        // RAM is identity-mapped, so the CPU address is a valid, writable pointer, and the
        // device holds no descriptor naming it yet.
        unsafe { core::ptr::write_bytes(buf.phys as usize as *mut u8, 0, bytes as usize) };
        let region = DmaRegion::new(buf.dma, pages);
        DMA_REGIONS.lock(|r| {
            r.push(LiveRegion {
                slot: self.slot,
                pages,
                buf,
            })
        });
        Ok(region)
    }

    fn dma_free(&self, region: DmaRegion) -> Result<(), HalError> {
        let live = DMA_REGIONS.lock(|r| {
            let at = r.iter().position(|l| l.is(self.slot, &region))?;
            Some(r.swap_remove(at))
        });
        let live = live.ok_or(HalError::NotOurs {
            paddr: region.paddr(),
        })?;
        if let Err(e) = dma_service::dma_free_coherent(&live.buf) {
            // Still allocated as far as the DMA API knows: keep counting it.
            log::warn!("{}: freeing DMA {:#x}: {e}", self.dma.name, live.buf.dma);
            let paddr = live.buf.dma;
            DMA_REGIONS.lock(|r| r.push(live));
            return Err(HalError::NotOurs { paddr });
        }
        Ok(())
    }

    fn read(&self, region: &DmaRegion, offset: usize, buf: &mut [u8]) -> Result<(), HalError> {
        let at = self.address(region, offset, buf.len())?;
        // Safety: `address` checked the range lies in a live DMA region of ours and gave
        // its CPU address, in identity-mapped RAM; `buf` is ordinary memory that cannot overlap it (the
        // regions are never handed out as Rust objects).
        unsafe { core::ptr::copy_nonoverlapping(at as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, region: &DmaRegion, offset: usize, data: &[u8]) -> Result<(), HalError> {
        let at = self.address(region, offset, data.len())?;
        // Safety: as in `read`, the other way round.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), at as *mut u8, data.len()) };
        Ok(())
    }

    fn read_u16(&self, region: &DmaRegion, offset: usize) -> Result<u16, HalError> {
        if !offset.is_multiple_of(2) {
            return Err(HalError::Misaligned { offset });
        }
        let at = self.address(region, offset, 2)?;
        // Safety: a live region of ours (checked), 2-byte aligned: one LDRH, which the
        // device's concurrent store cannot tear.
        Ok(u16::from_le(unsafe {
            core::ptr::read_volatile(at as *const u16)
        }))
    }

    fn write_u16(&self, region: &DmaRegion, offset: usize, value: u16) -> Result<(), HalError> {
        if !offset.is_multiple_of(2) {
            return Err(HalError::Misaligned { offset });
        }
        let at = self.address(region, offset, 2)?;
        // Safety: as in `read_u16`: one aligned STRH into our region.
        unsafe { core::ptr::write_volatile(at as *mut u16, value.to_le()) };
        Ok(())
    }

    fn barrier(&self, kind: Barrier) {
        match kind {
            Barrier::Write => barrier::dmb(barrier::ISHST),
            Barrier::Read => barrier::dmb(barrier::ISHLD),
            Barrier::Full => barrier::dsb(barrier::SY),
        }
    }

    fn interrupt_count(&self) -> u64 {
        USED_IRQS[self.slot].load(Ordering::Acquire)
    }

    fn wait_for_interrupt(&self, seen: u64) {
        if !self.interrupts {
            core::hint::spin_loop();
            return;
        }
        let state = crate::cpu::mask_interrupts();
        if self.interrupt_count() == seen {
            // With IRQs masked, a pending interrupt still ends WFI; it is taken once the
            // mask is restored. The timer tick bounds the sleep otherwise.
            aarch64_cpu::asm::wfi();
        }
        crate::cpu::restore_interrupts(state);
    }

    fn now_ns(&self) -> u64 {
        super::timer::uptime().as_nanos() as u64
    }
}
