//! xtask-qemu: --board virt
//!
//! In-QEMU tests of our virtio layer and the virtio-gpu 2D driver on the default board
//! (`-device virtio-gpu-device`, modern virtio-mmio transport): the GPU is found from the
//! device tree's `virtio,mmio` slots, display info decodes to QEMU's default mode, a
//! framebuffer allocated from the default CMA area is created, attached, scanned out,
//! transferred and flushed, with completions arriving by interrupt, then torn down with
//! the CMA area and the DMA pages back where they were; device error responses come
//! back as typed errors and leave nothing behind.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use monolith::driver::virtio_gpu::{self as gpu, GpuServiceError};
use monolith::driver::{gicv3, virtio_mmio, virtio_probe};
use monolith::kmem;
use monolith::test_harness::{run_tests, TestCase};
use monolith::util::size::{PAGE_SHIFT, PAGE_SIZE};
use monolith::virtio::gpu::wire::cmd;
use monolith::virtio::gpu::{ErrorResponse, Format, GpuError, Rect};
use monolith::virtio::{id, Hal};
use monolith::{qemu_ensure, qemu_ensure_eq};

fn e(err: impl core::fmt::Display) -> String {
    format!("{err}")
}

/// The GPU's `virtio,mmio` node and the CMA area it allocates from (the default one).
fn gpu_slot() -> Result<(&'static monolith::dt::platform::MmioDevice, String), String> {
    let platform = monolith::runtime::platform();
    let slot = platform
        .virtio_mmio
        .iter()
        // Safety: every window is a `virtio,mmio` node's `reg`, identity-mapped as device
        // memory by the boot code.
        .find(|d| unsafe { virtio_probe::identify(d.base) }.is_some_and(|(id, _)| id == id::GPU))
        .ok_or("no virtio-gpu in any virtio-mmio slot")?;
    let area = kmem::cma_area_for_device(&slot.path).ok_or("no default CMA area")?;
    Ok((slot, area))
}

fn gpu_found_on_the_modern_transport() -> Result<(), String> {
    let (slot, _) = gpu_slot()?;
    // Safety: as in `gpu_slot`.
    let (_, version) = unsafe { virtio_probe::identify(slot.base) }.ok_or("no transport")?;
    qemu_ensure_eq!(version, 2);
    qemu_ensure!(slot.intid.is_some(), "GPU slot without an interrupt");
    gpu::probe().map_err(e)?;
    // A second probe finds the instance already up.
    gpu::probe().map_err(e)?;
    qemu_ensure_eq!(gpu::with(|g| Ok(g.num_scanouts())).map_err(e)?, 1);
    Ok(())
}

fn display_info_is_qemus_default_mode() -> Result<(), String> {
    let info = gpu::info().map_err(e)?;
    let primary = info.primary().ok_or("no enabled scanout")?;
    // QEMU's virtio-gpu default (xres=1280, yres=800): a decode that got the layout wrong
    // would not produce it.
    qemu_ensure_eq!((primary.rect.width, primary.rect.height), (1280, 800));
    qemu_ensure_eq!(primary.index, 0);
    Ok(())
}

/// Fill a `width` x `height` framebuffer at `phys` with a B,G,R,X gradient.
fn fill(phys: u64, width: u32, height: u32) {
    for y in 0..height {
        for x in 0..width {
            let pixel = [(x & 0xff) as u8, (y & 0xff) as u8, 0x80, 0xff];
            let at = phys as usize + ((y * width + x) * 4) as usize;
            // Safety: the caller allocated `width * height * 4` bytes at `phys` from CMA,
            // identity-mapped RAM that nothing else uses.
            unsafe { core::ptr::copy_nonoverlapping(pixel.as_ptr(), at as *mut u8, 4) };
        }
    }
}

fn framebuffer_from_cma_is_shown_and_torn_down() -> Result<(), String> {
    let (_, area) = gpu_slot()?;
    let info = gpu::info().map_err(e)?;
    let mode = info.primary().ok_or("no enabled scanout")?.rect;
    let (width, height) = (mode.width, mode.height);
    let len = u64::from(width) * u64::from(height) * 4;
    let pages = len.div_ceil(PAGE_SIZE) as usize;

    let used_before = kmem::cma_state(&area).map_err(e)?.used;
    let dma_before = virtio_mmio::dma_pages_outstanding();
    let pfn = kmem::cma_alloc(&area, pages, 0).map_err(e)?;
    let phys = (pfn as u64) << PAGE_SHIFT;
    fill(phys, width, height);

    let irqs_before = gpu::with(|g| Ok(g.device().hal().interrupt_count())).map_err(e)?;
    let handled_before = gicv3::stats().handled;
    let result = (|| -> Result<(), String> {
        let fb = gpu::attach_framebuffer(
            phys,
            pages as u64 * PAGE_SIZE,
            width,
            height,
            Format::B8G8R8X8,
        )
        .map_err(e)?;
        qemu_ensure_eq!((fb.width, fb.height, fb.stride), (width, height, width * 4));
        gpu::flush(Rect::new(0, 0, width, height)).map_err(e)?;
        gpu::flush(Rect::new(10, 20, 100, 50)).map_err(e)?;
        qemu_ensure!(
            gpu::flush(Rect::new(width - 1, 0, 2, 1)).is_err(),
            "a rectangle past the edge was accepted"
        );
        Ok(())
    })();
    // Teardown runs whatever happened above.
    let off = gpu::off();
    let irqs_after = gpu::with(|g| Ok(g.device().hal().interrupt_count())).map_err(e)?;
    kmem::cma_release(&area, pfn, pages).map_err(e)?;
    result?;
    off.map_err(e)?;
    qemu_ensure!(gpu::with(|g| Ok(g.framebuffer().is_none())).map_err(e)?);

    // 3 set-up + 2 x 2 flush + 3 teardown commands, each completed by its interrupt.
    qemu_ensure!(
        irqs_after >= irqs_before + 10,
        "only {} used-buffer interrupts for 10 commands",
        irqs_after - irqs_before
    );
    qemu_ensure!(gicv3::stats().handled >= handled_before + 10);
    qemu_ensure_eq!(kmem::cma_state(&area).map_err(e)?.used, used_before);
    qemu_ensure_eq!(virtio_mmio::dma_pages_outstanding(), dma_before);
    Ok(())
}

fn device_errors_are_typed_and_leave_nothing() -> Result<(), String> {
    let (_, area) = gpu_slot()?;
    let used_before = kmem::cma_state(&area).map_err(e)?.used;
    let dma_before = virtio_mmio::dma_pages_outstanding();
    let pfn = kmem::cma_alloc(&area, 1, 0).map_err(e)?;
    let phys = (pfn as u64) << PAGE_SHIFT;

    let attach = gpu::with(|g| g.attach_backing(0xdead, phys, PAGE_SIZE as u32));
    let scanout = gpu::with(|g| g.set_scanout(7, 0, Rect::default()));
    // Too small a backing never reaches the device.
    let small = gpu::attach_framebuffer(phys, PAGE_SIZE, 1280, 800, Format::B8G8R8A8);
    kmem::cma_release(&area, pfn, 1).map_err(e)?;

    qemu_ensure_eq!(
        attach,
        Err(GpuServiceError::Gpu(GpuError::Device {
            command: cmd::RESOURCE_ATTACH_BACKING,
            error: ErrorResponse::InvalidResourceId
        }))
    );
    qemu_ensure_eq!(
        scanout,
        Err(GpuServiceError::Gpu(GpuError::Device {
            command: cmd::SET_SCANOUT,
            error: ErrorResponse::InvalidScanoutId
        }))
    );
    qemu_ensure!(
        matches!(
            small,
            Err(GpuServiceError::Gpu(GpuError::BadBacking { .. }))
        ),
        "{small:?}"
    );
    // The device keeps working.
    gpu::info().map_err(e)?;
    qemu_ensure_eq!(kmem::cma_state(&area).map_err(e)?.used, used_before);
    qemu_ensure_eq!(virtio_mmio::dma_pages_outstanding(), dma_before);
    Ok(())
}

fn reset_and_shutdown_release_everything() -> Result<(), String> {
    gpu::reset().map_err(e)?;
    gpu::info().map_err(e)?;
    gpu::shutdown().map_err(e)?;
    qemu_ensure_eq!(virtio_mmio::dma_pages_outstanding(), 0);
    // The next use probes again.
    gpu::info().map_err(e)?;
    qemu_ensure!(virtio_mmio::dma_pages_outstanding() > 0);
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "virtio_gpu",
        &[
            TestCase {
                name: "gpu_found_on_the_modern_transport",
                run: gpu_found_on_the_modern_transport,
            },
            TestCase {
                name: "display_info_is_qemus_default_mode",
                run: display_info_is_qemus_default_mode,
            },
            TestCase {
                name: "framebuffer_from_cma_is_shown_and_torn_down",
                run: framebuffer_from_cma_is_shown_and_torn_down,
            },
            TestCase {
                name: "device_errors_are_typed_and_leave_nothing",
                run: device_errors_are_typed_and_leave_nothing,
            },
            TestCase {
                name: "reset_and_shutdown_release_everything",
                run: reset_and_shutdown_release_everything,
            },
        ],
    )
}
