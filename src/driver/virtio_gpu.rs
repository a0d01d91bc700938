//! The firmware's virtio-gpu instance: found on first use among the device tree's
//! `virtio,mmio` slots, kept for the whole run, called by the shell and display services.
//!
//! # Theory of operation
//!
//! [`probe`] walks `platform.virtio_mmio` for DeviceID 16, attaches it
//! ([`super::virtio_mmio::attach`]: registers, the DMA description of its node, the
//! interrupt) and brings the driver up ([`GpuDriver::new`]); its rings and its command
//! page are `dma_alloc_coherent` buffers, given back by [`shutdown`]. A GPU node that is
//! not `dma-coherent` is refused with that reason ([`AttachError::NotCoherent`]). Every other call probes first if needed. The driver lives in a
//! [`DriverSlot`], lent to one call at a time: a second caller meanwhile (an interrupt
//! handler, say) gets [`GpuServiceError::Busy`].

use alloc::string::String;

use crate::virtio::gpu::{DisplayInfo, Format, Framebuffer, GpuDriver, GpuError, Rect};
use crate::virtio::id;

use super::slot::{DriverSlot, Unavailable};
use super::virtio_mmio::{self, AttachError, KmemHal, MmioRegisters};
use super::virtio_probe;

type Driver = GpuDriver<KmemHal, MmioRegisters>;

static GPU: DriverSlot<Driver> = DriverSlot::new();

/// Why the GPU service could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuServiceError {
    /// No `virtio,mmio` slot holds a GPU (boot with `-device virtio-gpu-device`).
    NoDevice,
    /// Another call is using the GPU.
    Busy,
    Attach(AttachError),
    Gpu(GpuError),
}

impl From<Unavailable> for GpuServiceError {
    fn from(u: Unavailable) -> Self {
        match u {
            Unavailable::NoDevice => GpuServiceError::NoDevice,
            Unavailable::Busy => GpuServiceError::Busy,
        }
    }
}

impl From<GpuError> for GpuServiceError {
    fn from(e: GpuError) -> Self {
        GpuServiceError::Gpu(e)
    }
}

impl core::fmt::Display for GpuServiceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GpuServiceError::NoDevice => {
                write!(f, "no virtio-gpu device (QEMU: -device virtio-gpu-device)")
            }
            GpuServiceError::Busy => write!(f, "virtio-gpu is busy"),
            GpuServiceError::Attach(e) => write!(f, "virtio-gpu: {e}"),
            GpuServiceError::Gpu(e) => write!(f, "{e}"),
        }
    }
}

/// Find and bring up the GPU (once; later calls return at once).
pub fn probe() -> Result<(), GpuServiceError> {
    GPU.probe(bring_up)
}

/// The device-tree path of the GPU's slot (for its DMA description), if there is one.
pub fn device_path() -> Option<String> {
    virtio_probe::slots_with_id(id::GPU)
        .next()
        .map(|device| device.path.clone())
}

fn bring_up() -> Result<Driver, GpuServiceError> {
    let mut first_error = None;
    for device in virtio_probe::slots_with_id(id::GPU) {
        let (hal, regs) = virtio_mmio::attach(device).map_err(GpuServiceError::Attach)?;
        match GpuDriver::new(hal, regs) {
            Ok(driver) => {
                log::info!(
                    "virtio-gpu at {:#x} ({} scanout(s))",
                    device.base,
                    driver.num_scanouts()
                );
                return Ok(driver);
            }
            Err(e) => {
                log::warn!("virtio-gpu at {:#x}: {e}", device.base);
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.map_or(GpuServiceError::NoDevice, GpuServiceError::Gpu))
}

/// Run `f` on the driver (probing first if needed), with interrupts as the caller has
/// them and no lock held.
pub fn with<R>(f: impl FnOnce(&mut Driver) -> Result<R, GpuError>) -> Result<R, GpuServiceError> {
    GPU.with(bring_up, f)?.map_err(GpuServiceError::from)
}

/// Display size and scanouts, as GET_DISPLAY_INFO reports them.
pub fn info() -> Result<DisplayInfo, GpuServiceError> {
    with(|gpu| gpu.display_info())
}

/// Show `[phys, phys + len)` (one physically contiguous range, e.g. a CMA dma-buf) as a
/// `width` x `height` framebuffer on scanout 0. `format`: B8G8R8A8 or B8G8R8X8.
pub fn attach_framebuffer(
    phys: u64,
    len: u64,
    width: u32,
    height: u32,
    format: Format,
) -> Result<Framebuffer, GpuServiceError> {
    with(|gpu| gpu.attach_framebuffer(phys, len, width, height, format))
}

/// The framebuffer's memory moved to `phys`: re-attach it as the resource's backing.
pub fn move_backing(phys: u64) -> Result<Framebuffer, GpuServiceError> {
    with(|gpu| gpu.move_backing(phys))
}

/// Copy `rect` of the framebuffer to the display (transfer + flush).
pub fn flush(rect: Rect) -> Result<(), GpuServiceError> {
    with(|gpu| gpu.flush(rect))
}

/// Disable the scanout, detach the framebuffer's memory, drop the resource. After it
/// returns (even with an error) the device no longer references the memory.
pub fn off() -> Result<(), GpuServiceError> {
    with(|gpu| gpu.off())
}

/// Reset the device and bring it up again (after a timeout or DEVICE_NEEDS_RESET).
pub fn reset() -> Result<(), GpuServiceError> {
    with(|gpu| gpu.reset())
}

/// Turn the scanout off and release the driver and all its DMA memory; the next call
/// probes again.
pub fn shutdown() -> Result<(), GpuServiceError> {
    // Dropping turns the scanout off, resets the device and frees its memory.
    drop(GPU.take()?);
    Ok(())
}
