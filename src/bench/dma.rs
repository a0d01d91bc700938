//! The DMA benchmarks (`tests/bench_dma.rs`): a full-screen virtio-gpu frame on a CMA
//! dma-buf framebuffer, the CPU-access brackets against bare cache-maintenance loops, and
//! allocation latency of every heap and of `dma_alloc_coherent`, each printed as a table.
//!
//! # Theory of operation
//!
//! Counting: the PMU's event 0x08 INST_RETIRED in event counter 0. Under QEMU's
//! `-icount shift=0` (precise icount) that event is QEMU's raw instruction count
//! (`instructions_get_count` = `icount_get_raw`), so a figure is exactly the guest
//! instructions retired in the interval, interrupt handlers included. The generic counter
//! (CNTVCT, what `cma_latency` uses) would also count instructions, 16 per tick, but with
//! `sleep=off` it jumps to the next timer deadline whenever every CPU sits idle in WFI,
//! which a virtio request does while it waits for the device; the frame table prints both
//! and says whether they agree. The counter is 32 bits wide (PMUv3 before v3p5); intervals here stay
//! far below 2^32 and deltas are taken modulo 2^32.
//!
//! - [`frame_costs`]: a 1280x800 B8G8R8A8 framebuffer from the default CMA heap, attached
//!   (dma-buf attach + map) to the GPU's device description and shown with
//!   `attach_framebuffer`. A frame is: `begin_cpu_access(TO_DEVICE)`, draw the test
//!   pattern, `end_cpu_access`, `flush` of the whole screen (TRANSFER_TO_HOST_2D +
//!   RESOURCE_FLUSH). Two variants: drawn in place into the dma-buf, and drawn into a
//!   staging buffer that is then copied into the framebuffer. Every CPU copy into the
//!   framebuffer goes through [`CopyLedger::copy`], which counts copies and bytes; before
//!   each frame the framebuffer is zeroed (outside the measured interval) and after it
//!   every bar's pixels are checked, so each variant provably produced the frame with the
//!   copies its ledger shows.
//! - [`cpu_access_costs`]: a CMA and a system dma-buf attached and mapped to a device
//!   description built for the bench with `DeviceDma::new` (non-coherent, as
//!   `DmaConstraints::default()`): QEMU's tree marks the root `dma-coherent`, so a device
//!   from the tree would get no maintenance at all. Each bracket is compared with a bare
//!   DC loop by line over the same range (IVAC for begin FROM_DEVICE/BIDIRECTIONAL, CVAC
//!   for end; begin TO_DEVICE does no maintenance, as arm64 Linux).
//! - [`alloc_costs`]: `heap_alloc` + `buf_put` per heap, `dma_alloc_coherent` +
//!   `dma_free_coherent` waiting (CMA) and not waiting (atomic pool), per size, against a
//!   memcpy of the same bytes with kmem's copy routine (as `cma_latency`).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;

use super::report::{ratio, Stats};
use crate::display::{draw_test_pattern, pattern, FrameBuffer};
use crate::dma::access::DmaDirection;
use crate::dma::heap::{DEFAULT_CMA_HEAP, SYSTEM_HEAP};
use crate::dma_service::{self as dma, BufId, DeviceDma};
use crate::driver::virtio_gpu as gpu;
use crate::util::size::{format_size, KIB, MIB};
use crate::virtio::gpu::{Format, Rect};

/// Why a DMA benchmark stopped: the step and what it said.
pub type DmaBenchError = String;

fn step<T, E: core::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, DmaBenchError> {
    r.map_err(|e| format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Instruction counting.

pub use crate::cpu::pmu::instructions_retired as instret;

/// Start counting instructions retired (see [`crate::cpu::pmu`]).
pub fn instret_init() -> Result<(), DmaBenchError> {
    crate::cpu::pmu::count_instructions().map_err(String::from)
}

/// What an empty interval counts: the counter reads themselves (part of every figure).
pub fn instret_overhead() -> u64 {
    count(|| ()).0
}

/// Instructions retired while `f` ran, and its result.
fn count<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let t0 = instret();
    let r = f();
    (u64::from(instret().wrapping_sub(t0)), r)
}

/// A memcpy of `len` bytes (multiple of 128) between two contiguous buffers, kmem's copy.
fn memcpy_cost(dst: u64, src: u64, len: usize) -> u64 {
    count(|| {
        // Safety: callers pass two disjoint CMA dma-bufs they hold, identity-mapped RAM of
        // at least `len` bytes each that nothing else touches.
        unsafe { crate::kmem::copy_bytes(dst as *mut u8, src as *const u8, len) }
    })
    .0
}

// ---------------------------------------------------------------------------------------
// 1. Frames.

/// Every CPU copy into the framebuffer from elsewhere, counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct CopyLedger {
    pub copies: u64,
    pub bytes: u64,
}

impl CopyLedger {
    /// Copy `src` into `dst` (the framebuffer): the only way the benchmark copies into it.
    fn copy(&mut self, dst: &mut [u8], src: &[u8]) {
        let n = dst.len().min(src.len());
        let len = n & !127;
        // Safety: two distinct live slices of at least `len` bytes, `len` a multiple of 128.
        unsafe { crate::kmem::copy_bytes(dst.as_mut_ptr(), src.as_ptr(), len) };
        dst[len..n].copy_from_slice(&src[len..n]);
        self.copies += 1;
        self.bytes += n as u64;
    }
}

/// One variant's per-frame costs (medians over the frames).
#[derive(Debug, Default, Clone)]
pub struct FrameRow {
    pub label: &'static str,
    pub draw: Stats,
    pub copy: Stats,
    pub flush: Stats,
    pub total: Stats,
    /// CNTVCT ticks of the flush (median): would include the idle jumps of `sleep=off`.
    pub flush_ticks: u64,
    pub copies_per_frame: f64,
    pub bytes_per_frame: f64,
}

/// Frame measurement results.
pub struct FrameReport {
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    pub heap: &'static str,
    pub rows: Vec<FrameRow>,
    pub synced: usize,
    /// Instructions an empty interval counts.
    pub overhead: u64,
}

fn gpu_slot_path() -> Result<String, DmaBenchError> {
    crate::driver::virtio_gpu::device_path()
        .ok_or_else(|| String::from("no virtio-gpu in any virtio-mmio slot"))
}

/// `frames` frames drawn in place and `frames` through the staging buffer, each checked;
/// returns the two rows and how many attachments the brackets synced.
fn draw_frames(
    fb: &mut [u8],
    staging: &mut [u8],
    fb_id: BufId,
    (width, height): (u32, u32),
    frames: usize,
) -> Result<(Vec<FrameRow>, usize), DmaBenchError> {
    let bytes = width as usize * height as usize * 4;
    let mut rows = Vec::new();
    let mut synced = 0;
    for staged in [false, true] {
        let mut ledger = CopyLedger::default();
        let (mut draw, mut copy, mut flush, mut total, mut ticks) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..frames {
            fb.fill(0);
            let t0 = instret();
            synced += step(
                "begin_cpu_access",
                dma::begin_cpu_access(fb_id, DmaDirection::ToDevice),
            )?;
            let target: &mut [u8] = if staged {
                &mut staging[..]
            } else {
                &mut fb[..]
            };
            let mut canvas = step(
                "FrameBuffer",
                FrameBuffer::new(target, width, height, width as usize * 4),
            )?;
            let _ = draw_test_pattern(&mut canvas);
            let t1 = instret();
            if staged {
                ledger.copy(&mut fb[..bytes], &staging[..bytes]);
            }
            let t2 = instret();
            synced += step(
                "end_cpu_access",
                dma::end_cpu_access(fb_id, DmaDirection::ToDevice),
            )?;
            let c0 = crate::driver::timer::counter();
            let t3 = instret();
            step("flush", gpu::flush(Rect::new(0, 0, width, height)))?;
            let t4 = instret();
            ticks.push(crate::driver::timer::counter() - c0);
            draw.push(u64::from(t1.wrapping_sub(t0)));
            copy.push(u64::from(t2.wrapping_sub(t1)));
            flush.push(u64::from(t4.wrapping_sub(t3)));
            total.push(u64::from(t4.wrapping_sub(t0)));
            check_pattern(fb, width, height)?;
        }
        rows.push(FrameRow {
            label: if staged { "staging + copy" } else { "in place" },
            draw: Stats::of(&mut draw),
            copy: Stats::of(&mut copy),
            flush: Stats::of(&mut flush),
            total: Stats::of(&mut total),
            flush_ticks: Stats::of(&mut ticks).median,
            copies_per_frame: ledger.copies as f64 / frames.max(1) as f64,
            bytes_per_frame: ledger.bytes as f64 / frames.max(1) as f64,
        });
    }
    Ok((rows, synced))
}

fn check_pattern(fb: &[u8], width: u32, height: u32) -> Result<(), DmaBenchError> {
    let stride = width as usize * 4;
    for (bar, colour) in pattern::BAR_COLOURS.iter().enumerate() {
        let columns = pattern::bar_columns(bar, width);
        for (x, y) in [
            (columns.start, 0),
            (columns.end - 1, height - 1),
            (columns.start, height / 2),
        ] {
            let at = y as usize * stride + x as usize * 4;
            let want = crate::display::framebuffer::bgra(*colour);
            if fb[at..at + 4] != want {
                return Err(format!(
                    "frame check: pixel ({x},{y}) is {:?}, not bar {bar}",
                    &fb[at..at + 4]
                ));
            }
        }
    }
    Ok(())
}

/// Full-screen frames on a CMA dma-buf attached to the GPU, drawn in place and through a
/// staging buffer; see the module header.
pub fn frame_costs(frames: usize) -> Result<FrameReport, DmaBenchError> {
    let info = step("GET_DISPLAY_INFO", gpu::info())?;
    let mode = info.primary().ok_or("no enabled scanout")?.rect;
    let (width, height) = (mode.width, mode.height);
    let bytes = u64::from(width) * u64::from(height) * 4;
    let gpu_dev = step("GPU device", dma::device(&gpu_slot_path()?))?;
    let fb_id = step(
        "framebuffer heap_alloc",
        dma::heap_alloc(DEFAULT_CMA_HEAP, bytes),
    )?;
    let staging_id = match dma::heap_alloc(DEFAULT_CMA_HEAP, bytes) {
        Ok(id) => id,
        Err(e) => {
            let _ = dma::buf_put(fb_id);
            return Err(format!("staging heap_alloc: {e}"));
        }
    };
    let result = (|| -> Result<FrameReport, DmaBenchError> {
        let attachment = step("attach", dma::attach(fb_id, &gpu_dev))?;
        // The device gets the buffer's bus address, as any DMA user would.
        let mapped = step("map", dma::map(fb_id, attachment))?;
        let segment = mapped.first().ok_or("map gave no segment")?;
        let shown = (|| -> Result<FrameReport, DmaBenchError> {
            step(
                "attach_framebuffer",
                gpu::attach_framebuffer(segment.bus, segment.len, width, height, Format::B8G8R8A8),
            )?;
            let drawn = dma::vmap(fb_id, |fb| {
                dma::vmap(staging_id, |staging| {
                    draw_frames(fb, staging, fb_id, (width, height), frames)
                })
            });
            let (rows, synced) = step("vmap", step("vmap", drawn)?)??;
            Ok(FrameReport {
                width,
                height,
                frames,
                heap: DEFAULT_CMA_HEAP,
                rows,
                synced,
                overhead: instret_overhead(),
            })
        })();
        let off = gpu::off();
        let _ = dma::unmap(fb_id, attachment);
        let _ = dma::detach(fb_id, attachment);
        let report = shown?;
        step("off", off)?;
        Ok(report)
    })();
    let put_fb = dma::buf_put(fb_id);
    let put_staging = dma::buf_put(staging_id);
    let report = result?;
    step("buf_put", put_fb)?;
    step("buf_put", put_staging)?;
    Ok(report)
}

/// The frame table as printable text.
pub fn format_frames(r: &FrameReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "full-screen frame, {}x{} B8G8R8A8 ({}), framebuffer a '{}' dma-buf attached to the GPU; {} frames per variant; guest instructions (PMU INST_RETIRED) min/median/max",
        r.width,
        r.height,
        format_size(u64::from(r.width) * u64::from(r.height) * 4),
        r.heap,
        r.frames
    );
    let _ = writeln!(
        out,
        "frame = begin_cpu_access(TO_DEVICE) + draw test pattern + [copy] + end_cpu_access + flush (TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of the whole screen)"
    );
    let _ = writeln!(
        out,
        "{:<15} {:>26} {:>22} {:>20} {:>26} {:>14} {:>12} {:>11}",
        "variant",
        "draw",
        "copy into fb",
        "flush",
        "whole frame",
        "CNTVCT x16",
        "copies/frame",
        "bytes/frame"
    );
    let mut agree = true;
    for row in &r.rows {
        let by_counter = row.flush_ticks * 16;
        agree &= by_counter.abs_diff(row.flush.median) * 20 <= row.flush.median;
        let _ = writeln!(
            out,
            "{:<15} {:>26} {:>22} {:>20} {:>26} {:>14} {:>12} {:>11}",
            row.label,
            row.draw.to_string(),
            row.copy.to_string(),
            row.flush.to_string(),
            row.total.to_string(),
            by_counter,
            format!("{:.0}", row.copies_per_frame),
            format!("{:.0}", row.bytes_per_frame)
        );
    }
    let _ = writeln!(
        out,
        "copies: every CPU copy into the framebuffer goes through one counting routine; the framebuffer is zeroed before each frame and checked bar by bar after it, so 'in place' showed every frame with 0 copies and 'staging' with 1 of the whole screen. An empty interval counts {} (the 'copy' of 'in place' is that plus the branch around the copy). begin/end synced {} attachment(s): the GPU is dma-coherent on QEMU.",
        r.overhead, r.synced
    );
    let _ = writeln!(
        out,
        "CNTVCT x16: the flush's generic-counter ticks (median) times 16 instructions a tick; {}",
        if agree {
            "within 5% of the PMU count: waiting in WFI for the GPU's interrupts skipped no time"
        } else {
            "more than 5% off the PMU count: under sleep=off the counter jumps to the next timer deadline while the CPU waits in WFI, which is why the figures are PMU counts"
        }
    );
    out
}

// ---------------------------------------------------------------------------------------
// 2. CPU-access brackets.

/// Which DC instruction a bare loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dc {
    Ivac,
    Cvac,
    Civac,
}

/// The bare loop: one DC by line over `[start, start + len)`, then DSB SY.
fn bare_dc(op: Dc, start: u64, len: u64) {
    let line = crate::cpu::cache::dcache_line_size() as u64;
    let end = start + len;
    let mut at = start & !(line - 1);
    while at < end {
        // Safety: the range is a dma-buf this benchmark holds, identity-mapped; IVAC only
        // drops lines whose data was written back by the previous operation (the buffer
        // holds nothing anyone needs), CVAC and CIVAC lose nothing.
        unsafe {
            match op {
                Dc::Ivac => core::arch::asm!("dc ivac, {a}", a = in(reg) at, options(nostack)),
                Dc::Cvac => core::arch::asm!("dc cvac, {a}", a = in(reg) at, options(nostack)),
                Dc::Civac => core::arch::asm!("dc civac, {a}", a = in(reg) at, options(nostack)),
            }
        }
        at += line;
    }
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
}

/// One bracket of the CPU-access table.
#[derive(Debug, Clone)]
pub struct AccessRow {
    pub heap: &'static str,
    pub segments: usize,
    pub op: &'static str,
    /// What the bracket does for a non-coherent device.
    pub does: &'static str,
    pub per_mib: u64,
    /// The bare loop it is compared with, and its cost per MiB.
    pub bare: Option<(&'static str, u64)>,
    pub synced: usize,
}

pub struct AccessReport {
    pub bytes: u64,
    pub line: usize,
    pub trials: usize,
    pub rows: Vec<AccessRow>,
    /// Bare loops per MiB: IVAC, CVAC, CIVAC.
    pub bare: [(&'static str, u64); 3],
    /// begin(FROM_DEVICE) + end on a coherent attachment (nothing to do), per call.
    pub coherent_pair: u64,
}

/// (name, what it does, begin or end, direction, the bare loop and its total cost).
type Bracket = (
    &'static str,
    &'static str,
    bool,
    DmaDirection,
    Option<(&'static str, u64)>,
);

fn median(mut v: Vec<u64>) -> u64 {
    Stats::of(&mut v).median
}

/// Brackets on CMA and system dma-bufs of `bytes` attached to a non-coherent device,
/// against bare DC loops; see the module header.
pub fn cpu_access_costs(bytes: u64, trials: usize) -> Result<AccessReport, DmaBenchError> {
    let mib = bytes / MIB;
    if mib == 0 || !bytes.is_multiple_of(MIB) {
        return Err(format!("{bytes} bytes is not a whole number of MiB"));
    }
    let per_mib = |x: u64| x / mib;
    let noncoherent = DeviceDma::new("bench-noncoherent", None);
    let mut coherent = DeviceDma::new("bench-coherent", None);
    coherent.constraints.coherent = true;
    let mut rows = Vec::new();
    let mut bare = [("DC IVAC", 0), ("DC CVAC", 0), ("DC CIVAC", 0)];
    let mut coherent_pair = 0;
    for heap in [DEFAULT_CMA_HEAP, SYSTEM_HEAP] {
        let id = step("heap_alloc", dma::heap_alloc(heap, bytes))?;
        let r = (|| -> Result<(), DmaBenchError> {
            let segments = step("buf_segments", dma::buf_segments(id))?;
            let a = step("attach", dma::attach(id, &noncoherent))?;
            step("map", dma::map(id, a))?;
            let measure = |f: &dyn Fn() -> Result<usize, dma::DmaError>| -> Result<(u64, usize), DmaBenchError> {
                let mut v = Vec::new();
                let mut synced = 0;
                for _ in 0..trials {
                    let (n, r) = count(f);
                    synced = step("bracket", r)?;
                    v.push(n);
                }
                Ok((median(v), synced))
            };
            let bare_cost = |op: Dc| {
                let mut v = Vec::new();
                for _ in 0..trials {
                    v.push(
                        count(|| {
                            for &(p, l) in &segments {
                                bare_dc(op, p, l);
                            }
                        })
                        .0,
                    );
                }
                median(v)
            };
            let (ivac, cvac, civac) = (
                bare_cost(Dc::Ivac),
                bare_cost(Dc::Cvac),
                bare_cost(Dc::Civac),
            );
            if heap == DEFAULT_CMA_HEAP {
                bare = [
                    ("DC IVAC", per_mib(ivac)),
                    ("DC CVAC", per_mib(cvac)),
                    ("DC CIVAC", per_mib(civac)),
                ];
            }
            let brackets: [Bracket; 6] = [
                (
                    "begin TO_DEVICE",
                    "nothing",
                    true,
                    DmaDirection::ToDevice,
                    None,
                ),
                (
                    "begin FROM_DEVICE",
                    "invalidate",
                    true,
                    DmaDirection::FromDevice,
                    Some(("DC IVAC", ivac)),
                ),
                (
                    "begin BIDIRECTIONAL",
                    "invalidate",
                    true,
                    DmaDirection::Bidirectional,
                    Some(("DC IVAC", ivac)),
                ),
                (
                    "end TO_DEVICE",
                    "clean",
                    false,
                    DmaDirection::ToDevice,
                    Some(("DC CVAC", cvac)),
                ),
                (
                    "end FROM_DEVICE",
                    "clean",
                    false,
                    DmaDirection::FromDevice,
                    Some(("DC CVAC", cvac)),
                ),
                (
                    "end BIDIRECTIONAL",
                    "clean",
                    false,
                    DmaDirection::Bidirectional,
                    Some(("DC CVAC", cvac)),
                ),
            ];
            for (op, does, begin, dir, base) in brackets {
                let (cost, synced) = if begin {
                    measure(&|| dma::begin_cpu_access(id, dir))?
                } else {
                    measure(&|| dma::end_cpu_access(id, dir))?
                };
                rows.push(AccessRow {
                    heap,
                    segments: segments.len(),
                    op,
                    does,
                    per_mib: per_mib(cost),
                    bare: base.map(|(n, c)| (n, per_mib(c))),
                    synced,
                });
            }
            step("unmap", dma::unmap(id, a))?;
            step("detach", dma::detach(id, a))?;
            if heap == DEFAULT_CMA_HEAP {
                let c = step("attach", dma::attach(id, &coherent))?;
                step("map", dma::map(id, c))?;
                let (pair, _) = measure(&|| {
                    let n = dma::begin_cpu_access(id, DmaDirection::FromDevice)?;
                    Ok(n + dma::end_cpu_access(id, DmaDirection::FromDevice)?)
                })?;
                coherent_pair = pair;
                step("unmap", dma::unmap(id, c))?;
                step("detach", dma::detach(id, c))?;
            }
            Ok(())
        })();
        let put = dma::buf_put(id);
        r?;
        step("buf_put", put)?;
    }
    Ok(AccessReport {
        bytes,
        line: crate::cpu::cache::dcache_line_size(),
        trials,
        rows,
        bare,
        coherent_pair,
    })
}

/// The CPU-access table as printable text.
pub fn format_access(r: &AccessReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "begin_cpu_access/end_cpu_access on a {} dma-buf attached and mapped to a non-coherent device (DeviceDma::new: QEMU's tree is dma-coherent, which skips all maintenance); {}-byte lines; {} trials, median guest instructions per MiB; ratio = bracket / bare DC loop by line over the same segments",
        format_size(r.bytes),
        r.line,
        r.trials
    );
    let _ = writeln!(
        out,
        "{:<20} {:>8} {:<22} {:>10} {:>12} {:>12} {:>7} {:>6}",
        "heap", "segments", "bracket", "does", "instr/MiB", "bare/MiB", "ratio", "synced"
    );
    for row in &r.rows {
        let (bare_name, bare) = row.bare.map_or((String::from("-"), 0), |(n, c)| {
            (format!("{c} {}", &n[3..]), c)
        });
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:<22} {:>10} {:>12} {:>12} {:>7} {:>6}",
            row.heap,
            row.segments,
            row.op,
            row.does,
            row.per_mib,
            bare_name,
            ratio(row.per_mib, bare),
            row.synced
        );
    }
    let _ = writeln!(
        out,
        "bare loops per MiB (CMA buffer): {}; the same buffer attached to a coherent device: begin(FROM_DEVICE) + end together {} instructions, 0 attachments synced",
        r.bare.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", "),
        r.coherent_pair
    );
    out
}

// ---------------------------------------------------------------------------------------
// 3. Allocation latency.

/// One allocator's row: per size, the median cost of allocation + free, or why none.
#[derive(Debug, Clone)]
pub struct AllocRow {
    pub label: String,
    pub costs: Vec<Result<u64, String>>,
}

pub struct AllocReport {
    pub sizes: Vec<u64>,
    pub trials: usize,
    pub memcpy: Vec<u64>,
    pub rows: Vec<AllocRow>,
    pub pool_bytes: u64,
    /// Carveout heaps (rows of their own above; none on `virt`).
    pub carveouts: Vec<String>,
    pub device: String,
}

fn short(e: &dma::DmaError) -> String {
    match e {
        dma::DmaError::Pool(_) => String::from("over pool"),
        _ => String::from("failed"),
    }
}

/// Allocation + free latency per heap and per `dma_alloc_coherent` source; see the module
/// header.
pub fn alloc_costs(sizes: &[u64], trials: usize) -> Result<AllocReport, DmaBenchError> {
    let max = sizes.iter().copied().max().unwrap_or(0);
    // memcpy baseline between two CMA dma-bufs.
    let src = step("memcpy buffer", dma::heap_alloc(DEFAULT_CMA_HEAP, max))?;
    let dst = match dma::heap_alloc(DEFAULT_CMA_HEAP, max) {
        Ok(d) => d,
        Err(e) => {
            let _ = dma::buf_put(src);
            return Err(format!("memcpy buffer: {e}"));
        }
    };
    let memcpy = (|| -> Result<Vec<u64>, DmaBenchError> {
        let (s, _) = step("buf_phys", dma::buf_phys(src))?;
        let (d, _) = step("buf_phys", dma::buf_phys(dst))?;
        Ok(sizes
            .iter()
            .map(|&n| median((0..trials).map(|_| memcpy_cost(d, s, n as usize)).collect()))
            .collect())
    })();
    let _ = dma::buf_put(src);
    let _ = dma::buf_put(dst);
    let memcpy = memcpy?;

    let mut rows = Vec::new();
    for heap in dma::heap_names() {
        let costs = sizes
            .iter()
            .map(|&n| {
                let mut v = Vec::new();
                for _ in 0..trials {
                    let (c, r) =
                        count(|| dma::heap_alloc(&heap, n).and_then(|id: BufId| dma::buf_put(id)));
                    r.map_err(|e| short(&e))?;
                    v.push(c);
                }
                Ok(median(v))
            })
            .collect();
        rows.push(AllocRow {
            label: format!("heap {heap}"),
            costs,
        });
    }
    let device = step("GPU device", dma::device(&gpu_slot_path()?))?;
    for (label, can_wait) in [("coherent, CMA", true), ("coherent, atomic pool", false)] {
        let costs = sizes
            .iter()
            .map(|&n| {
                let mut v = Vec::new();
                for _ in 0..trials {
                    let (c, r) = count(|| {
                        dma::dma_alloc_coherent(&device, n, can_wait)
                            .and_then(|b| dma::dma_free_coherent(&b))
                    });
                    r.map_err(|e| short(&e))?;
                    v.push(c);
                }
                Ok(median(v))
            })
            .collect();
        rows.push(AllocRow {
            label: String::from(label),
            costs,
        });
    }
    let pool_bytes = step("pool", dma::pool_pages())?.0 as u64 * crate::util::PAGE_SIZE;
    let areas = crate::kmem::cma_area_names();
    let carveouts: Vec<String> = dma::heap_names()
        .into_iter()
        .filter(|h| h != SYSTEM_HEAP && h != DEFAULT_CMA_HEAP && !areas.contains(h))
        .collect();
    Ok(AllocReport {
        sizes: sizes.to_vec(),
        trials,
        memcpy,
        rows,
        pool_bytes,
        carveouts,
        device: format!(
            "{} ({})",
            device.name,
            if device.constraints.coherent {
                "dma-coherent"
            } else {
                "non-coherent"
            }
        ),
    })
}

/// The allocation table as printable text.
pub fn format_alloc(r: &AllocReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "allocation + free latency, {} trials per size, median guest instructions (ratio to a memcpy of the same bytes); dma_alloc_coherent for {}; atomic pool {}; carveout heaps: {}",
        r.trials,
        r.device,
        format_size(r.pool_bytes),
        if r.carveouts.is_empty() { String::from("none on this board") } else { r.carveouts.join(", ") }
    );
    let _ = write!(out, "{:<34}", "allocator");
    for &n in &r.sizes {
        let _ = write!(out, " {:>20}", format_size(n));
    }
    let _ = writeln!(out);
    let _ = write!(out, "{:<34}", "memcpy (kmem copy routine)");
    for &m in &r.memcpy {
        let _ = write!(out, " {:>20}", m);
    }
    let _ = writeln!(out);
    for row in &r.rows {
        let _ = write!(out, "{:<34}", row.label);
        for (cost, &m) in row.costs.iter().zip(&r.memcpy) {
            let cell = match cost {
                Ok(c) => format!("{c} ({}x)", ratio(*c, m)),
                Err(why) => why.clone(),
            };
            let _ = write!(out, " {:>20}", cell);
        }
        let _ = writeln!(out);
    }
    out
}

/// The sizes of the allocation table: 4 KiB, 64 KiB, 1 MiB, 8 MiB.
pub const ALLOC_SIZES: [u64; 4] = [4 * KIB, 64 * KIB, MIB, 8 * MIB];
