//! The display: the GPU's framebuffer is a dma-buf from the GPU's CMA heap, and the CPU
//! draws in place into it (bare metal only).
//!
//! # Theory of operation
//!
//! [`show`] brings the screen up on first use, Linux-DRM style with a dumb buffer from a
//! heap: the GPU's DMA description from the device tree (its `memory-region` CMA area or
//! the default one; it cannot scatter-gather, so at most one segment), a dma-buf of
//! width x height x 4 bytes from that area's CMA heap, attached to the GPU and mapped
//! (one entry: its bus address), then `RESOURCE_CREATE_2D` + `ATTACH_BACKING` with that
//! one entry + `SET_SCANOUT`. A step that fails undoes the ones before it, so a refused
//! screen leaves CMA `used` where it was.
//!
//! A frame: `begin_cpu_access(TO_DEVICE)`, draw into the buffer's own pages (no staging
//! copy: the device scans out the very bytes the CPU wrote), `end_cpu_access(TO_DEVICE)`
//! (which cleans the lines for a non-coherent GPU), then `TRANSFER_TO_HOST_2D` +
//! `RESOURCE_FLUSH` of the damaged rectangle. The flush is the buffer's reader, so it
//! waits for the buffer's write fences (implicit sync, `dma_resv`): a producer that
//! added one (a decoder, later) gets its frame shown when it signals, as a job, without
//! anyone polling; a failed producer's frame is not shown and the reason is logged.
//!
//! The framebuffer is a movable dma-buf and the display a dynamic importer: it holds no pin
//! between frames, so the allocator may move the buffer to make room in the GPU's area
//! (the seeds' `cma_pin`/`cma_unpin`). Each frame pins it first; when the pin finds it
//! somewhere else, the display maps it again and re-attaches the resource's backing
//! (DETACH_BACKING + ATTACH_BACKING; the resource and the scanout stay), then draws and
//! flushes, and unpins. A flush deferred behind fences keeps its own pin (and reference)
//! until it has run: the device reads the backing only during the transfer.
//!
//! The memory map is live: the console loop calls [`refresh`] when it is idle, which
//! takes a new snapshot of the zone and repaints only the cells that changed.
//!
//! The screen is taken out of its slot for the length of a call (GPU requests sleep until
//! the device interrupts, so no IRQ-masking lock may be held across them); a second caller
//! meanwhile is told the display is busy.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use embedded_graphics::primitives::Rectangle;

use crate::cpu::IrqSafeLock;
use crate::display::{self, FrameBuffer, MemoryMapSnapshot};
use crate::dma::access::DmaDirection;
use crate::dma::heap::DEFAULT_CMA_HEAP;
use crate::dma_service::{self, AttachId, BufId, DeviceDma, DmaError};
use crate::driver::virtio_gpu::{self, GpuServiceError};
use crate::kmem;
use crate::mm::Pfn;
use crate::util::size::ByteSize;
use crate::virtio::gpu::{Format, Framebuffer, Rect};

/// What the screen shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Showing {
    Pattern,
    Map,
}

/// How often an idle console redraws the live memory map.
pub const REFRESH_US: u64 = 250_000;

const BYTES_PER_PIXEL: u32 = 4;

struct Screen {
    device: DeviceDma,
    buf: BufId,
    attachment: AttachId,
    fb: Framebuffer,
    /// Where the framebuffer was (CPU physical) when the GPU was given its address: a pin
    /// that finds it elsewhere re-attaches the backing.
    backing_phys: u64,
    /// How often the framebuffer was found moved and re-attached.
    moves: u64,
    showing: Showing,
    /// The memory map on screen, to repaint only what changed.
    map: Option<MemoryMapSnapshot>,
    frames: u64,
    last_refresh_us: u64,
    /// Live redraws stop after one fails (said once in the log); `gpu map` restarts them.
    live: bool,
}

enum Slot {
    Off,
    /// Boxed: the slot is a static, and the screen's state is larger than its other states.
    On(alloc::boxed::Box<Screen>),
    InUse,
}

static SCREEN: IrqSafeLock<Slot> = IrqSafeLock::new(Slot::Off);

/// Pins and references that deferred flushes held, to give back at the next display call:
/// a job's closure may be dropped inside the DMA service's lock (a refused submit), where
/// it must not call the service.
static DEFERRED_PINS: IrqSafeLock<Vec<BufId>> = IrqSafeLock::new(Vec::new());

/// A deferred flush's pin and reference on the framebuffer, handed back when the job has
/// run or was dropped unrun.
struct DeferredPin(BufId);

impl Drop for DeferredPin {
    fn drop(&mut self) {
        let buf = self.0;
        DEFERRED_PINS.lock(|pins| pins.push(buf));
    }
}

/// Give back what finished deferred flushes held.
fn release_deferred_pins() {
    for buf in DEFERRED_PINS.lock(core::mem::take) {
        if let Err(e) = dma_service::buf_unpin(buf).and_then(|()| dma_service::buf_put(buf)) {
            log::warn!("display: releasing a deferred flush's pin: {e}");
        }
    }
}

/// Why the display could not do what was asked.
#[derive(Debug)]
pub enum DisplayError {
    Gpu(GpuServiceError),
    Dma(DmaError),
    /// The GPU reports no enabled scanout.
    NoScanout,
    /// Another call is using the display.
    Busy,
    /// The framebuffer's bytes do not make a frame of the scanout's size.
    Framebuffer(display::FrameBufferError),
    /// A write fence on the framebuffer failed: the frame is not shown.
    ProducerFailed(String),
    /// The memory service is not up, so there is no map to draw.
    NoMemoryMap(kmem::KmemError),
}

impl fmt::Display for DisplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisplayError::Gpu(e) => write!(f, "{e}"),
            DisplayError::Dma(e) => write!(f, "framebuffer: {e}"),
            DisplayError::NoScanout => f.write_str("the GPU has no enabled scanout"),
            DisplayError::Busy => f.write_str("the display is busy"),
            DisplayError::Framebuffer(e) => write!(f, "framebuffer: {e}"),
            DisplayError::ProducerFailed(why) => write!(f, "frame not shown: {why}"),
            DisplayError::NoMemoryMap(e) => write!(f, "memory map: {e}"),
        }
    }
}

impl core::error::Error for DisplayError {}

impl From<GpuServiceError> for DisplayError {
    fn from(e: GpuServiceError) -> Self {
        DisplayError::Gpu(e)
    }
}

impl From<DmaError> for DisplayError {
    fn from(e: DmaError) -> Self {
        DisplayError::Dma(e)
    }
}

/// Take the screen out of its slot (bringing it up if it is off and `bring_up`), run `f`,
/// put it back. An error from bring-up leaves the slot off.
fn with_screen<R>(
    bring_up: bool,
    f: impl FnOnce(&mut Screen) -> Result<R, DisplayError>,
) -> Result<Option<R>, DisplayError> {
    let taken = SCREEN.lock(|slot| match core::mem::replace(slot, Slot::InUse) {
        Slot::On(screen) => Ok(Some(screen)),
        Slot::Off => Ok(None),
        Slot::InUse => Err(DisplayError::Busy),
    })?;
    let mut screen = match taken {
        Some(screen) => screen,
        None if bring_up => match bring_up_screen() {
            Ok(screen) => alloc::boxed::Box::new(screen),
            Err(e) => {
                SCREEN.lock(|slot| *slot = Slot::Off);
                return Err(e);
            }
        },
        None => {
            SCREEN.lock(|slot| *slot = Slot::Off);
            return Ok(None);
        }
    };
    let result = f(&mut screen);
    SCREEN.lock(|slot| *slot = Slot::On(screen));
    result.map(Some)
}

/// The GPU's device-tree path, for its DMA description.
fn gpu_device() -> Result<DeviceDma, DisplayError> {
    let path = virtio_gpu::device_path().ok_or(GpuServiceError::NoDevice)?;
    Ok(dma_service::device(&path)?
        .with_max_segments(1)
        .map_err(DmaError::Device)?)
}

fn bring_up_screen() -> Result<Screen, DisplayError> {
    let info = virtio_gpu::info()?;
    let scanout = info.primary().ok_or(DisplayError::NoScanout)?;
    let (width, height) = (scanout.rect.width, scanout.rect.height);
    let device = gpu_device()?;
    let heap = String::from(device.cma_area.as_deref().unwrap_or(DEFAULT_CMA_HEAP));
    let bytes = u64::from(width) * u64::from(height) * u64::from(BYTES_PER_PIXEL);
    let (buf, mapping) = dma_service::device_buffer_movable(&device, bytes, "framebuffer")?;
    let attachment = mapping.attachment;
    let undo = || {
        let _ = dma_service::detach_contiguous(buf, &mapping);
        let _ = dma_service::buf_put(buf);
    };
    // Pinned while the GPU is told where it is; mapped again under the pin, so the address
    // is the one the pin holds.
    let pinned = dma_service::buf_pin(buf).and_then(|pin| {
        let segments = dma_service::remap(buf, attachment);
        match segments.as_deref() {
            Ok([segment]) => Ok((pin.phys, *segment)),
            Ok(other) => Err(DmaError::NotContiguous {
                buf,
                segments: other.len(),
            }),
            Err(e) => Err(e.clone()),
        }
    });
    let (backing_phys, segment) = match pinned {
        Ok(at) => at,
        Err(e) => {
            let _ = dma_service::buf_unpin(buf);
            undo();
            return Err(e.into());
        }
    };
    let attached =
        virtio_gpu::attach_framebuffer(segment.bus, segment.len, width, height, Format::B8G8R8X8);
    let unpinned = dma_service::buf_unpin(buf);
    match attached.map_err(DisplayError::from).and_then(|fb| {
        unpinned?;
        Ok(fb)
    }) {
        Ok(fb) => {
            log::info!(
                "display: {width}x{height} framebuffer, dma-buf {buf} ({}) from heap {heap} at bus {:#x}",
                ByteSize(bytes),
                segment.bus
            );
            Ok(Screen {
                device,
                buf,
                attachment,
                fb,
                backing_phys,
                moves: 0,
                showing: Showing::Pattern,
                map: None,
                frames: 0,
                last_refresh_us: 0,
                live: false,
            })
        }
        Err(e) => {
            let _ = virtio_gpu::off();
            undo();
            Err(e)
        }
    }
}

fn rect_of(r: &Rectangle) -> Rect {
    Rect::new(
        r.top_left.x.max(0) as u32,
        r.top_left.y.max(0) as u32,
        r.size.width,
        r.size.height,
    )
}

impl Screen {
    /// Run a frame with the framebuffer pinned, first following it if it moved while it
    /// was not (see the module docs).
    fn pinned<R>(
        &mut self,
        frame: impl FnOnce(&mut Screen) -> Result<R, DisplayError>,
    ) -> Result<R, DisplayError> {
        let pin = dma_service::buf_pin(self.buf)?;
        let result = self.follow(pin.phys).and_then(|()| frame(self));
        let unpinned = dma_service::buf_unpin(self.buf);
        let result = result?;
        unpinned?;
        Ok(result)
    }

    /// The pinned framebuffer is at `phys`: if that is not where the GPU reads it, map it
    /// again and re-attach the resource's backing there.
    fn follow(&mut self, phys: u64) -> Result<(), DisplayError> {
        if phys == self.backing_phys {
            return Ok(());
        }
        let segments = dma_service::remap(self.buf, self.attachment)?;
        let [segment] = segments.as_slice() else {
            return Err(DmaError::NotContiguous {
                buf: self.buf,
                segments: segments.len(),
            }
            .into());
        };
        self.fb = virtio_gpu::move_backing(segment.bus)?;
        log::info!(
            "display: framebuffer dma-buf {} moved from {:#x} to {phys:#x}; backing re-attached",
            self.buf,
            self.backing_phys
        );
        self.backing_phys = phys;
        self.moves += 1;
        Ok(())
    }

    /// Draw in place with the CPU-access bracket; returns what `draw` returned.
    fn draw<R>(&mut self, draw: impl FnOnce(&mut FrameBuffer<'_>) -> R) -> Result<R, DisplayError> {
        let (width, height, stride) = (self.fb.width, self.fb.height, self.fb.stride as usize);
        dma_service::begin_cpu_access(self.buf, DmaDirection::ToDevice)?;
        let drawn = dma_service::vmap(self.buf, |bytes| {
            FrameBuffer::new(bytes, width, height, stride).map(|mut target| draw(&mut target))
        });
        dma_service::end_cpu_access(self.buf, DmaDirection::ToDevice)?;
        drawn?.map_err(DisplayError::Framebuffer)
    }

    /// Show `rect`: now if the buffer's writers are done, else as a job when they are.
    fn flush(&mut self, rect: Rect) -> Result<(), DisplayError> {
        let pending = match dma_service::pending_writers(self.buf) {
            Err(DmaError::WriterFailed { fence, why, .. }) => {
                return Err(DisplayError::ProducerFailed(format!(
                    "fence {fence}: {why}"
                )))
            }
            other => other?,
        };
        self.frames += 1;
        if pending.is_empty() {
            return Ok(virtio_gpu::flush(rect)?);
        }
        let context = dma_service::fence_context("virtio-gpu", "scanout")?;
        // The deferred transfer reads the buffer: it holds its own pin and reference until
        // it has run, whatever the frame does meanwhile.
        let buf = self.buf;
        dma_service::buf_get(buf)?;
        if let Err(e) = dma_service::buf_pin(buf) {
            let _ = dma_service::buf_put(buf);
            return Err(e.into());
        }
        let held = DeferredPin(buf);
        let submitted = dma_service::job_submit(
            context,
            &pending,
            1_000_000,
            alloc::boxed::Box::new(move || {
                let _held = held;
                if let Err(e) = virtio_gpu::flush(rect) {
                    log::warn!("display: deferred flush: {e}");
                }
            }),
        );
        if submitted.is_err() {
            release_deferred_pins();
        }
        submitted?;
        Ok(())
    }

    fn whole(&self) -> Rect {
        Rect::new(0, 0, self.fb.width, self.fb.height)
    }

    fn show_pattern(&mut self) -> Result<(), DisplayError> {
        self.draw(|target| {
            let _ = display::draw_test_pattern(target);
        })?;
        self.showing = Showing::Pattern;
        self.live = false;
        self.map = None;
        let whole = self.whole();
        self.flush(whole)
    }

    /// Draw the map whole (`full`) or repaint what changed since the last one.
    fn show_map(&mut self, full: bool) -> Result<(), DisplayError> {
        let snapshot = memory_map_snapshot()?;
        let previous = if full { None } else { self.map.take() };
        let damage = self.draw(|target| match &previous {
            Some(before) => display::redraw_memory_map(target, before, &snapshot).ok(),
            None => display::draw_memory_map(target, &snapshot)
                .ok()
                .map(|()| alloc::vec![target_box(target)]),
        })?;
        self.showing = Showing::Map;
        self.live = true;
        self.map = Some(snapshot);
        match damage.as_deref().and_then(display::memory_map::bounding) {
            Some(rect) => self.flush(rect_of(&rect)),
            None => Ok(()),
        }
    }
}

fn target_box(target: &FrameBuffer<'_>) -> Rectangle {
    Rectangle::new(
        embedded_graphics::prelude::Point::zero(),
        embedded_graphics::prelude::Size::new(target.width(), target.height()),
    )
}

/// The zone now, with every CMA area outlined and named.
fn memory_map_snapshot() -> Result<MemoryMapSnapshot, DisplayError> {
    let areas: Vec<(String, core::ops::Range<Pfn>)> = kmem::cma_area_names()
        .into_iter()
        .filter_map(|name| {
            let state = kmem::cma_state(&name).ok()?;
            Some((name, state.base_pfn..state.base_pfn + state.count))
        })
        .collect();
    let named: Vec<(&str, core::ops::Range<Pfn>)> = areas
        .iter()
        .map(|(name, range)| (name.as_str(), range.clone()))
        .collect();
    let masked = kmem::pasr::masked_pfn_ranges();
    kmem::with_zone(|zone| {
        display::zone_snapshot(zone, &named, "Monolith memory map", masked.as_deref())
    })
    .map_err(DisplayError::NoMemoryMap)
}

/// `gpu pattern` / `gpu map`: bring the screen up if needed and show `what`.
pub fn show(what: Showing) -> Result<String, DisplayError> {
    release_deferred_pins();
    with_screen(true, |screen| {
        match what {
            Showing::Pattern => screen.pinned(Screen::show_pattern)?,
            Showing::Map => screen.pinned(|s| s.show_map(true))?,
        }
        Ok(format!(
            "showing the {} on {}x{} (dma-buf {})",
            match what {
                Showing::Pattern => "test pattern",
                Showing::Map => "memory map",
            },
            screen.fb.width,
            screen.fb.height,
            screen.buf
        ))
    })
    .map(Option::unwrap_or_default)
}

/// The framebuffer's dma-buf and how often it was found moved, while the screen is on.
pub fn framebuffer() -> Option<(BufId, u64)> {
    SCREEN.lock(|slot| match slot {
        Slot::On(screen) => Some((screen.buf, screen.moves)),
        _ => None,
    })
}

/// `gpu off`: scanout off, backing detached, resource dropped, framebuffer given back.
/// What the screen shows, if it is on (the video asks, to give it back after a play).
pub fn showing() -> Option<Showing> {
    SCREEN.lock(|slot| match slot {
        Slot::On(screen) => Some(screen.showing),
        _ => None,
    })
}

pub fn off() -> Result<String, DisplayError> {
    let taken = SCREEN.lock(|slot| match core::mem::replace(slot, Slot::Off) {
        Slot::On(screen) => Ok(Some(screen)),
        Slot::Off => Ok(None),
        Slot::InUse => {
            *slot = Slot::InUse;
            Err(DisplayError::Busy)
        }
    })?;
    release_deferred_pins();
    let Some(screen) = taken else {
        return Ok(String::from("display already off"));
    };
    // After `off` returns, even with an error, the device no longer references the pages
    // (the driver resets it when a step fails), so the buffer can always go back.
    let gpu = virtio_gpu::off();
    let _ = dma_service::unmap(screen.buf, screen.attachment);
    let _ = dma_service::detach(screen.buf, screen.attachment);
    dma_service::buf_put(screen.buf)?;
    gpu?;
    Ok(format!(
        "display off after {} frame(s); framebuffer dma-buf {} released",
        screen.frames, screen.buf
    ))
}

/// `gpu info`: the device and what is on screen.
pub fn info() -> Result<String, DisplayError> {
    let display = virtio_gpu::info()?;
    let mut text = String::new();
    for (index, scanout) in display.scanouts.iter().enumerate() {
        text.push_str(&format!(
            "scanout {index}: {}x{} at ({}, {}){}\n",
            scanout.rect.width,
            scanout.rect.height,
            scanout.rect.x,
            scanout.rect.y,
            if scanout.enabled { ", enabled" } else { "" }
        ));
    }
    let on_screen = SCREEN.lock(|slot| match slot {
        Slot::On(s) => Some(format!(
            "showing: {}\nframebuffer: dma-buf {} ({}x{}, stride {}, {}) at {:#x}, from heap {}, attached to {}\nframes: {}\n",
            match s.showing {
                Showing::Pattern => "test pattern",
                Showing::Map => "memory map (live)",
            },
            s.buf,
            s.fb.width,
            s.fb.height,
            s.fb.stride,
            ByteSize(s.fb.len),
            s.fb.paddr,
            s.device.cma_area.as_deref().unwrap_or(DEFAULT_CMA_HEAP),
            s.device.name,
            s.frames
        )),
        Slot::Off => Some(String::from("showing: nothing (display off)\n")),
        Slot::InUse => None,
    });
    text.push_str(on_screen.as_deref().unwrap_or("showing: (busy)\n"));
    Ok(text)
}

/// Called by an idle console: repaint the live memory map where it changed, at most every
/// [`REFRESH_US`]. An error is logged, not returned (nobody asked), and stops live redraws.
pub fn refresh() {
    release_deferred_pins();
    let now = dma_service::now_us();
    let due = SCREEN.lock(|slot| match slot {
        Slot::On(s) => s.live && now >= s.last_refresh_us + REFRESH_US,
        _ => false,
    });
    if !due {
        return;
    }
    let result = with_screen(false, |screen| {
        screen.last_refresh_us = now;
        let shown = screen.pinned(|s| s.show_map(false));
        if shown.is_err() {
            screen.live = false;
        }
        shown
    });
    if let Err(e) = result {
        log::warn!("display: live map stopped ('gpu map' restarts it): {e}");
    }
}
