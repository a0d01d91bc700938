//! xtask-qemu: --board virt
//!
//! In-QEMU tests of our virtio layer and the virtio-gpu 2D driver on the default board
//! (`-device virtio-gpu-device`, modern virtio-mmio transport): the GPU is found from the
//! device tree's `virtio,mmio` slots, display info decodes to QEMU's default mode, a
//! framebuffer allocated from the default CMA area is created, attached, scanned out,
//! transferred and flushed, with completions arriving by interrupt, then torn down with
//! the CMA area and the DMA pages back where they were; device error responses come
//! back as typed errors and leave nothing behind. The rings and the command page are
//! `dma_alloc_coherent` buffers: the DMA service counts them, the device gets their DMA
//! address (a `dma-ranges` offset shows), and `shutdown` gives every one back to the
//! service and its CMA area; a node without `dma-coherent` is refused, naming why.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use monolith::dma::DmaRange;
use monolith::driver::virtio_gpu::{self as gpu, GpuServiceError};
use monolith::driver::virtio_mmio::AttachError;
use monolith::driver::{gicv3, virtio_mmio, virtio_probe};
use monolith::test_harness::{run_tests, TestCase};
use monolith::util::size::{PAGE_SHIFT, PAGE_SIZE};
use monolith::virtio::gpu::wire::cmd;
use monolith::virtio::gpu::{ErrorResponse, Format, GpuError, Rect};
use monolith::virtio::{id, Hal};
use monolith::{dma_service, kmem};
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

/// What the DMA service and the GPU's CMA area hold: (coherent buffers, their pages, CMA
/// pages used, atomic pool pages used).
fn dma_view(area: &str) -> Result<(usize, usize, usize, usize), String> {
    let (buffers, pages) = dma_service::coherent_outstanding().map_err(e)?;
    let cma_used = kmem::cma_state(area).map_err(e)?.used;
    let (_, pool_used) = dma_service::pool_pages().map_err(e)?;
    Ok((buffers, pages, cma_used, pool_used))
}

fn gpu_found_on_the_modern_transport() -> Result<(), String> {
    let (slot, area) = gpu_slot()?;
    // Safety: as in `gpu_slot`.
    let (_, version) = unsafe { virtio_probe::identify(slot.base) }.ok_or("no transport")?;
    qemu_ensure_eq!(version, 2);
    qemu_ensure!(slot.intid.is_some(), "GPU slot without an interrupt");
    gpu::probe().map_err(e)?;
    // A second probe finds the instance already up.
    gpu::probe().map_err(e)?;
    qemu_ensure_eq!(gpu::with(|g| Ok(g.num_scanouts())).map_err(e)?, 1);

    // The control queue's rings and the command page: coherent buffers from the GPU's
    // CMA area (the default one), at the identity DMA address (`virt` has no dma-ranges).
    let regions = virtio_mmio::dma_regions();
    qemu_ensure!(
        regions.len() >= 2,
        "{regions:?}: rings and command page expected"
    );
    let pages: usize = regions.iter().map(|r| r.pages).sum();
    qemu_ensure_eq!(pages, virtio_mmio::dma_pages_outstanding());
    let cma = kmem::cma_state(&area).map_err(e)?;
    let (start, end) = (
        (cma.base_pfn as u64) << PAGE_SHIFT,
        ((cma.base_pfn + cma.count) as u64) << PAGE_SHIFT,
    );
    for r in &regions {
        qemu_ensure_eq!(r.dma, r.phys);
        qemu_ensure!(
            start <= r.phys && r.phys + r.pages as u64 * PAGE_SIZE <= end,
            "{r:?} is outside {area} [{start:#x}, {end:#x})"
        );
    }
    let (buffers, coherent_pages, cma_used, _) = dma_view(&area)?;
    qemu_ensure!(
        buffers >= regions.len(),
        "{buffers} coherent buffers for {regions:?}"
    );
    qemu_ensure!(coherent_pages >= pages && cma_used >= pages);
    Ok(())
}

fn dma_ranges_offset_is_what_the_device_gets() -> Result<(), String> {
    let (slot, area) = gpu_slot()?;
    let before = dma_view(&area)?;
    let outstanding = virtio_mmio::dma_pages_outstanding();
    // The GPU's own description, behind a bus that sees RAM at 0 (bus 0 = CPU
    // 0x4000_0000), as a `dma-ranges` would say.
    let mut dma = dma_service::device(&slot.path).map_err(e)?;
    qemu_ensure!(
        dma.constraints.coherent,
        "QEMU's virt root says dma-coherent"
    );
    let ram = monolith::runtime::platform()
        .memory
        .first()
        .cloned()
        .ok_or("no RAM")?;
    let range = DmaRange {
        cpu_start: ram.start,
        bus_start: 0,
        size: ram.end - ram.start,
    };
    dma.ranges = alloc::vec![range];
    dma.constraints.addr_limit = range.size - 1;
    let (hal, _) = virtio_mmio::attach_with(slot, dma).map_err(e)?;

    let region = hal.dma_alloc(2).map_err(e)?;
    let live = virtio_mmio::dma_regions()
        .into_iter()
        .find(|r| r.dma == region.paddr())
        .ok_or("the new region is not listed")?;
    qemu_ensure_eq!(live.pages, 2);
    // bus = CPU - offset
    qemu_ensure_eq!(region.paddr(), live.phys - ram.start);
    // Zeroed, and the CPU's accesses land at the CPU address.
    let mut buf = [0xffu8; 8];
    hal.read(&region, 2 * PAGE_SIZE as usize - 8, &mut buf)
        .map_err(e)?;
    qemu_ensure_eq!(buf, [0u8; 8]);
    hal.write_u32(&region, 4, 0x1234_5678).map_err(e)?;
    // Safety: `live.phys` is the region's CPU address, identity-mapped RAM the region
    // owns for as long as it is live; one aligned read of what the Hal wrote.
    let raw = unsafe { core::ptr::read_volatile((live.phys as usize + 4) as *const u32) };
    qemu_ensure_eq!(u32::from_le(raw), 0x1234_5678);
    qemu_ensure!(
        hal.write(&region, 2 * PAGE_SIZE as usize - 1, &[0, 0])
            .is_err(),
        "a write past the end was accepted"
    );
    let (buffers, pages, cma_used, pool_used) = dma_view(&area)?;
    qemu_ensure_eq!((buffers, pages), (before.0 + 1, before.1 + 2));
    qemu_ensure_eq!(cma_used + pool_used, before.2 + before.3 + 2);
    hal.dma_free(region).map_err(e)?;

    qemu_ensure_eq!(dma_view(&area)?, before);
    qemu_ensure_eq!(virtio_mmio::dma_pages_outstanding(), outstanding);
    Ok(())
}

fn a_node_without_dma_coherent_is_refused() -> Result<(), String> {
    let (slot, area) = gpu_slot()?;
    let before = dma_view(&area)?;
    let outstanding = virtio_mmio::dma_pages_outstanding();
    let mut dma = dma_service::device(&slot.path).map_err(e)?;
    dma.constraints.coherent = false;
    let refused = virtio_mmio::attach_with(slot, dma).map(|_| ());
    qemu_ensure_eq!(
        refused.clone(),
        Err(AttachError::NotCoherent {
            path: slot.path.clone()
        })
    );
    let message = format!("{}", refused.unwrap_err());
    qemu_ensure!(
        message.contains(&slot.path) && message.contains("not dma-coherent"),
        "{message}"
    );
    // A node the tree does not have: the DMA description's error, named.
    let mut ghost = slot.clone();
    ghost.path = String::from("/no-such-virtio");
    match virtio_mmio::attach(&ghost) {
        Err(AttachError::Dma { path, .. }) => qemu_ensure_eq!(path, ghost.path),
        other => return Err(format!("{:?}", other.map(|_| ()))),
    }
    qemu_ensure_eq!(dma_view(&area)?, before);
    qemu_ensure_eq!(virtio_mmio::dma_pages_outstanding(), outstanding);
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
    let view_before = dma_view(&area)?;
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
    qemu_ensure_eq!(dma_view(&area)?, view_before);
    Ok(())
}

fn device_errors_are_typed_and_leave_nothing() -> Result<(), String> {
    let (_, area) = gpu_slot()?;
    let used_before = kmem::cma_state(&area).map_err(e)?.used;
    let dma_before = virtio_mmio::dma_pages_outstanding();
    let view_before = dma_view(&area)?;
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
    qemu_ensure_eq!(dma_view(&area)?, view_before);
    Ok(())
}

fn reset_and_shutdown_release_everything() -> Result<(), String> {
    let (_, area) = gpu_slot()?;
    gpu::reset().map_err(e)?;
    gpu::info().map_err(e)?;
    let regions = virtio_mmio::dma_regions().len();
    let pages = virtio_mmio::dma_pages_outstanding();
    let up = dma_view(&area)?;
    gpu::shutdown().map_err(e)?;
    qemu_ensure_eq!(virtio_mmio::dma_pages_outstanding(), 0);
    qemu_ensure!(virtio_mmio::dma_regions().is_empty());
    // Every ring and buffer went back through dma_free_coherent, to the CMA area it came
    // from (on `virt` the default area serves them all; the atomic pool is untouched).
    let down = dma_view(&area)?;
    qemu_ensure_eq!(down, (up.0 - regions, up.1 - pages, up.2 - pages, up.3));
    // The next use probes again, and takes the same again.
    gpu::info().map_err(e)?;
    qemu_ensure!(virtio_mmio::dma_pages_outstanding() > 0);
    qemu_ensure_eq!(virtio_mmio::dma_pages_outstanding(), pages);
    qemu_ensure_eq!(dma_view(&area)?, up);
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
                name: "dma_ranges_offset_is_what_the_device_gets",
                run: dma_ranges_offset_is_what_the_device_gets,
            },
            TestCase {
                name: "a_node_without_dma_coherent_is_refused",
                run: a_node_without_dma_coherent_is_refused,
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
