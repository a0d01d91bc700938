//! The shell's backend over the real firmware, and the console loop (bare metal only).
//!
//! # Theory of operation
//!
//! [`FirmwareBackend`] answers the shell from live state on every call: nothing about
//! memory is cached here, so `/proc/meminfo` read twice around a `cma alloc` shows the
//! change. What it does own is the console's own bookkeeping:
//! - the handle table of `cma alloc` (handle -> area, pfn, pages); handles count up from 1
//!   and are never reused in a run, so a stale handle cannot free someone else's pages;
//! - per area, the list of debugfs `alloc` allocations that `free` takes back
//!   ([`CmaDebugAllocations`], newest first like `mm/cma_debug.c`);
//! - the trace recorder and the current trace (recorded, or found at boot where
//!   `cargo xtask run --trace FILE` had QEMU load it).
//!
//! The file tree is a [`VfsTree`] registered once at start (procfs files, one sysfs and one
//! debugfs directory per CMA area), plus `/proc/device-tree`, served straight from the
//! parsed boot tree. Reads dispatch on the path.
//!
//! [`run`] is the console loop: prompt, then every received byte to the shell; power-off
//! and reboot go to PSCI. Output goes to the UART unchanged (the shell already ends lines
//! with CRLF), so a program driving the console sees exactly what the shell wrote.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::ops::Range;

use crate::kmem::{self, KmemError};
use crate::mm::Pfn;
use crate::shell::linuxfmt::{self, debugfs_free_count, CmaDebugAllocations, FreeOrder};
use crate::shell::vfs::VfsTree;
use crate::shell::{
    Access, Action, Backend, BackendError, CmaOp, DirEntry, DmabufOp, FsError, GpuOp, HeapOp,
    LevelFilter, MemOp, Shell, TraceOp, VideoOp,
};
use crate::util::PAGE_SIZE;

use super::buffers::ShellBuffers;
use super::devtree::{self, DtEntry, DtView};
use super::iomem::{self, IomemInput};
use super::trace::{self, ReplayTarget, TraceEvent, TraceRecorder};

const DT_DIR: &str = "/proc/device-tree";
const CMA_SYSFS: &str = "/sys/kernel/mm/cma";
const CMA_DEBUGFS: &str = "/sys/kernel/debug/cma";
const SYSFS_ATTRS: &[&str] = &[
    "alloc_pages_success",
    "alloc_pages_fail",
    "release_pages_success",
];
const DEBUGFS_READ_ATTRS: &[&str] = &[
    "base_pfn",
    "bitmap",
    "count",
    "maxchunk",
    "order_per_bit",
    "used",
];
/// `trace show` prints the file as hex up to this size (a few hundred events).
const TRACE_HEX_LIMIT: usize = 16 * 1024;

/// Benchmarks `bench NAME` runs (from [`crate::bench`]).
const BENCHES: &[&str] = &["cma-latency", "churn"];

struct Allocation {
    area: String,
    pfn: Pfn,
    pages: usize,
}

/// Where the current trace came from, for `trace show`.
enum TraceSource {
    Recorded,
    Loaded,
}

pub struct FirmwareBackend {
    tree: VfsTree,
    devtree: Option<DtView<'static, 'static>>,
    areas: Vec<String>,
    handles: BTreeMap<u64, Allocation>,
    next_handle: u64,
    debug_allocs: BTreeMap<String, CmaDebugAllocations>,
    recorder: TraceRecorder,
    trace: Option<(TraceSource, Vec<TraceEvent>)>,
    ram_pages: u64,
    buffers: ShellBuffers,
}

fn now_us() -> u64 {
    crate::driver::timer::uptime().as_micros() as u64
}

fn kmem_fs_error(error: KmemError) -> FsError {
    match error {
        KmemError::NoSuchArea(_) => FsError::NotFound,
        other => FsError::Other(other.to_string()),
    }
}

impl FirmwareBackend {
    /// Registers the file tree for the CMA areas `kmem` has, parses the boot device tree,
    /// and looks for a trace at [`trace::TRACE_LOAD_ADDR`]. Prints one line about each
    /// thing that is missing or found, so call it before the first prompt.
    pub fn new() -> FirmwareBackend {
        let mut tree = VfsTree::new();
        for file in ["meminfo", "buddyinfo", "pagetypeinfo", "zoneinfo", "iomem"] {
            tree.add_file(&format!("/proc/{}", file), Access::ReadOnly);
        }
        tree.add_dir(DT_DIR);
        tree.add_dir(CMA_SYSFS);
        tree.add_dir(CMA_DEBUGFS);
        let areas = kmem::cma_area_names();
        let mut debug_allocs = BTreeMap::new();
        for area in &areas {
            for attr in SYSFS_ATTRS {
                tree.add_file(
                    &format!("{}/{}/{}", CMA_SYSFS, area, attr),
                    Access::ReadOnly,
                );
            }
            // debugfs_create_dir order in cma_debugfs_add_one: alloc, base_pfn, count,
            // order_per_bit, free, maxchunk, used, bitmap. `ls` sorts anyway.
            tree.add_file(
                &format!("{}/{}/alloc", CMA_DEBUGFS, area),
                Access::WriteOnly,
            );
            tree.add_file(&format!("{}/{}/free", CMA_DEBUGFS, area), Access::WriteOnly);
            for attr in DEBUGFS_READ_ATTRS {
                tree.add_file(
                    &format!("{}/{}/{}", CMA_DEBUGFS, area, attr),
                    Access::ReadOnly,
                );
            }
            debug_allocs.insert(
                area.clone(),
                CmaDebugAllocations::new(FreeOrder::NewestFirst),
            );
        }
        ShellBuffers::register(&mut tree);
        super::pasr::register(&mut tree);
        let devtree = crate::dtb::tree().map(DtView::new);
        let platform = crate::runtime::platform();
        let ram_bytes: u64 = platform.memory.iter().map(|b| b.end - b.start).sum();
        let trace = match loaded_trace() {
            Ok(None) => None,
            Ok(Some(events)) => {
                crate::println!(
                    "trace: {} events loaded at {:#x} (see 'trace show', 'trace replay')",
                    events.len(),
                    trace::TRACE_LOAD_ADDR
                );
                Some((TraceSource::Loaded, events))
            }
            Err(error) => {
                crate::println!(
                    "trace: file at {:#x} ignored: {}",
                    trace::TRACE_LOAD_ADDR,
                    error
                );
                None
            }
        };
        FirmwareBackend {
            tree,
            devtree,
            areas,
            handles: BTreeMap::new(),
            next_handle: 1,
            debug_allocs,
            recorder: TraceRecorder::new(),
            trace,
            ram_pages: ram_bytes / PAGE_SIZE,
            buffers: ShellBuffers::default(),
        }
    }

    fn dt_path(path: &str) -> Option<&str> {
        if path == DT_DIR {
            return Some("/");
        }
        path.strip_prefix(DT_DIR)
            .filter(|rest| rest.starts_with('/'))
    }

    fn iomem_text(&self) -> String {
        let platform = crate::runtime::platform();
        let layout = crate::memory::mmu::kernel_image_layout();
        // What kmem kept from the buddy at boot (bank base to image end: DTB, trace window,
        // image; `/memreserve/`), as Linux lists its memblock reservations.
        let mut reserved: Vec<Range<u64>> = kmem::occupied_ranges(platform);
        let mut no_map = Vec::new();
        if let Some(plan) = kmem::plan() {
            reserved.extend(plan.kept_from_buddy());
            reserved.extend(plan.cma_areas.iter().map(|a| a.base..a.base + a.size));
            no_map = plan.not_mapped();
        }
        if let Ok(memmap) = kmem::memmap_range() {
            reserved.push(memmap);
        }
        let input = IomemInput {
            ram: platform.memory.clone(),
            no_map,
            // arm64: "Kernel code" runs from _stext to __init_begin, read-only data included.
            kernel_code: layout.text.start..layout.rodata.end,
            kernel_data: layout.data.start..kmem::image_range().end,
            reserved,
            devices: self
                .devtree
                .as_ref()
                .map(DtView::device_windows)
                .unwrap_or_default(),
        };
        iomem::render(&input)
    }

    fn read_cma_file(&self, dir: &str, area: &str, attr: &str) -> Result<String, FsError> {
        if !self.areas.iter().any(|a| a == area) {
            return Err(FsError::NotFound);
        }
        let state = kmem::cma_state(area).map_err(kmem_fs_error)?;
        let number = |n: u64| Ok(linuxfmt::number_attr(n));
        match (dir, attr) {
            (CMA_SYSFS, "alloc_pages_success") => number(state.stats.alloc_pages_success),
            (CMA_SYSFS, "alloc_pages_fail") => number(state.stats.alloc_pages_fail),
            (CMA_SYSFS, "release_pages_success") => number(state.stats.release_pages_success),
            (CMA_DEBUGFS, "base_pfn") => number(state.base_pfn as u64),
            (CMA_DEBUGFS, "count") => number(state.count as u64),
            (CMA_DEBUGFS, "order_per_bit") => number(state.order_per_bit as u64),
            (CMA_DEBUGFS, "used") => number(state.used as u64),
            (CMA_DEBUGFS, "maxchunk") => number(state.maxchunk as u64),
            (CMA_DEBUGFS, "bitmap") => {
                let (bitmap, nbits) = kmem::cma_bitmap(area).map_err(kmem_fs_error)?;
                Ok(linuxfmt::u32_array(&linuxfmt::bitmap_u32_words(
                    &bitmap, nbits,
                )))
            }
            _ => Err(FsError::NotFound),
        }
    }

    /// debugfs `alloc`: `cma_alloc_mem(cma, count)`, alignment 0, remembered for `free`.
    fn debugfs_alloc(&mut self, area: &str, value: &str) -> Result<(), FsError> {
        let pages = parse_count(value, self.ram_pages)?;
        let pfn = kmem::cma_alloc(area, pages as usize, 0).map_err(|error| match error {
            KmemError::NoSuchArea(_) => FsError::NotFound,
            _ => FsError::OutOfMemory,
        })?;
        if let Some(list) = self.debug_allocs.get_mut(area) {
            list.record(pfn as u64, pages);
        }
        Ok(())
    }

    /// debugfs `free`: `cma_free_mem`: whole allocations newest first, splitting the last
    /// only when a bitmap bit is one page.
    fn debugfs_free(&mut self, area: &str, value: &str) -> Result<(), FsError> {
        let pages = debugfs_free_count(value).ok_or(FsError::InvalidArgument)?;
        let order_per_bit = kmem::cma_state(area).map_err(kmem_fs_error)?.order_per_bit as u32;
        let Some(list) = self.debug_allocs.get_mut(area) else {
            return Err(FsError::NotFound);
        };
        let plan = list.free(pages, order_per_bit);
        let mut failure = None;
        for (pfn, count) in plan.releases {
            if let Err(error) = kmem::cma_release(area, pfn as Pfn, count as usize) {
                failure.get_or_insert(FsError::Other(error.to_string()));
            }
        }
        // Like Linux, asking to free more than was allocated frees what there is.
        failure.map_or(Ok(()), Err)
    }

    fn cma_list(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{:<24} {:>12} {:>8} {:>8} {:>8} {:>8}",
            "area", "base", "pages", "used", "maxchunk", "handles"
        );
        for area in &self.areas {
            let held = self.handles.values().filter(|a| &a.area == area).count();
            match kmem::cma_state(area) {
                Ok(state) => {
                    let _ = writeln!(
                        text,
                        "{:<24} {:>#12x} {:>8} {:>8} {:>8} {:>8}",
                        area,
                        (state.base_pfn as u64) * PAGE_SIZE,
                        state.count,
                        state.used,
                        state.maxchunk,
                        held
                    );
                    if state.movable_chunks > 0 || state.stats.chunks_moved > 0 {
                        let _ = writeln!(
                            text,
                            "  movable: {} buffers, {} pinned; defrag {}, {} moved ({} pages)",
                            state.movable_chunks,
                            state.pinned_chunks,
                            if state.defrag { "on" } else { "off" },
                            state.stats.chunks_moved,
                            state.stats.chunk_pages_moved
                        );
                    }
                }
                Err(error) => {
                    let _ = writeln!(text, "{:<24} {}", area, error);
                }
            }
        }
        if self.areas.is_empty() {
            text.push_str("(no CMA areas)\n");
        }
        for (handle, allocation) in &self.handles {
            let _ = writeln!(
                text,
                "  handle {} pfn {:#x} {} pages in {}",
                handle, allocation.pfn, allocation.pages, allocation.area
            );
        }
        text
    }

    fn cma_alloc(
        &mut self,
        area: &str,
        pages: u64,
        align_order: u32,
    ) -> Result<String, BackendError> {
        if !self.areas.iter().any(|a| a == area) {
            return Err(BackendError::NoSuchArea {
                name: String::from(area),
                have: self.areas.clone(),
            });
        }
        let pfn = kmem::cma_alloc(area, pages as usize, align_order).map_err(|error| {
            BackendError::CmaAlloc {
                area: String::from(area),
                pages,
                cause: error.into(),
            }
        })?;
        let handle = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(
            handle,
            Allocation {
                area: String::from(area),
                pfn,
                pages: pages as usize,
            },
        );
        self.recorder
            .cma_alloc(now_us(), area, pages, align_order, handle);
        Ok(format!(
            "handle {} pfn {:#x} ({} pages in {})",
            handle, pfn, pages, area
        ))
    }

    fn cma_free(&mut self, handle: u64) -> Result<String, BackendError> {
        let Some(allocation) = self.handles.get(&handle) else {
            return Err(BackendError::NoSuchHandle(handle));
        };
        kmem::cma_release(&allocation.area, allocation.pfn, allocation.pages).map_err(|error| {
            BackendError::CmaFree {
                handle,
                cause: error.into(),
            }
        })?;
        let pages = allocation.pages;
        self.handles.remove(&handle);
        self.recorder.cma_free(now_us(), handle);
        Ok(format!("freed handle {} ({} pages)", handle, pages))
    }

    fn mem_status(&self) -> String {
        let status = kmem::anon::status();
        format!(
            "workload: {}, {} pages ({} in CMA), {} migrations",
            if status.running { "running" } else { "stopped" },
            status.pages,
            status.pages_in_cma,
            status.migrations
        )
    }

    fn run_bench(&mut self, name: &str) -> Result<String, BackendError> {
        use crate::bench;
        match name {
            "cma-latency" => {
                let (area, rows) = bench::cma_latency(None, &[1, 16, 256, 1024], 3)
                    .map_err(BackendError::service)?;
                Ok(bench::format_latency(&area, &rows, 3))
            }
            "churn" => {
                let pages = 512;
                let mut results = Vec::new();
                for mode in [
                    bench::ChurnMode::Cma,
                    bench::ChurnMode::CmaPinsInCma,
                    bench::ChurnMode::BuddyHighOrder,
                    bench::ChurnMode::ContigMovable,
                ] {
                    results.push(
                        bench::churn_success(None, mode, pages, 16, 4, 1)
                            .map_err(BackendError::service)?,
                    );
                }
                Ok(bench::format_churn(pages, &results))
            }
            other => Err(BackendError::UnknownBenchmark {
                name: String::from(other),
                have: self.bench_names(),
            }),
        }
    }
}

impl Default for FirmwareBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// A page count written to a debugfs file: a plain number, 1 to the RAM size.
fn parse_count(value: &str, limit: u64) -> Result<u64, FsError> {
    match crate::shell::number::parse_u64(value.trim()) {
        Ok(pages) if (1..=limit).contains(&pages) => Ok(pages),
        _ => Err(FsError::InvalidArgument),
    }
}

/// The trace QEMU's loader put at [`trace::TRACE_LOAD_ADDR`], if there is one.
fn loaded_trace() -> Result<Option<Vec<TraceEvent>>, trace::TraceError> {
    let window = trace::TRACE_LOAD_ADDR..kmem::image_range().start;
    let in_ram = crate::runtime::platform()
        .memory
        .iter()
        .any(|bank| bank.start <= window.start && window.end <= bank.end);
    if !in_ram || window.end <= window.start {
        return Ok(None);
    }
    let window_len = ((window.end - window.start) as usize).min(trace::MAX_TRACE_BYTES);
    // Safety: the window is RAM between the DTB and the image (checked against the memory
    // banks above), identity-mapped as normal memory, and never handed to the page
    // allocator: kmem keeps everything from the bank base to the image end
    // (`kmem::occupied_ranges`). Nothing writes it after boot, and we only read, so a
    // shared slice over it for the duration of this function is sound; `u8` accepts any
    // content.
    let bytes: &[u8] =
        unsafe { core::slice::from_raw_parts(window.start as *const u8, window_len) };
    if !trace::has_magic(bytes) {
        return Ok(None);
    }
    trace::decode(bytes).map(Some)
}

/// Replay over the real allocator; allocations bypass the handle table.
struct Machine;

impl ReplayTarget for Machine {
    type Token = (String, Pfn, usize);

    fn now_us(&mut self) -> u64 {
        now_us()
    }

    fn cma_alloc(
        &mut self,
        area: &str,
        pages: u64,
        align_order: u32,
    ) -> Result<Self::Token, String> {
        kmem::cma_alloc(area, pages as usize, align_order)
            .map(|pfn| (String::from(area), pfn, pages as usize))
            .map_err(|e| format!("cma alloc {} {}: {}", area, pages, e))
    }

    fn cma_free(&mut self, (area, pfn, pages): Self::Token) -> Result<(), String> {
        kmem::cma_release(&area, pfn, pages).map_err(|e| e.to_string())
    }

    fn mem_grow(&mut self, pages: u64) -> Result<u64, String> {
        // A trace records grow/shrink, not `mem start`: start the workload if needed.
        if !kmem::anon::status().running {
            kmem::anon::start().map_err(|e| e.to_string())?;
        }
        kmem::anon::grow(pages as usize)
            .map(|n| n as u64)
            .map_err(|e| e.to_string())
    }

    fn mem_shrink(&mut self, pages: u64) -> Result<u64, String> {
        kmem::anon::shrink(pages as usize)
            .map(|n| n as u64)
            .map_err(|e| e.to_string())
    }
}

impl Backend for FirmwareBackend {
    fn fs_list(&mut self, dir: &str) -> Result<Vec<DirEntry>, FsError> {
        if let Some(node) = Self::dt_path(dir) {
            let tree = self.devtree.as_ref().ok_or(FsError::NotFound)?;
            return match tree.list(node) {
                Some(entries) => Ok(entries
                    .into_iter()
                    .map(|entry| match entry {
                        DtEntry::Node(name) => DirEntry::dir(&name),
                        DtEntry::Property(name) => DirEntry::file(&name, Access::ReadOnly),
                    })
                    .collect()),
                None if tree.property(node).is_some() => Err(FsError::NotADirectory),
                None => Err(FsError::NotFound),
            };
        }
        self.tree.list(dir)
    }

    fn fs_read(&mut self, path: &str) -> Result<String, FsError> {
        if let Some(property) = Self::dt_path(path) {
            let tree = self.devtree.as_ref().ok_or(FsError::NotFound)?;
            return tree
                .property(property)
                .map(|value| devtree::property_text(&value))
                .ok_or(FsError::NotFound);
        }
        if let Some(result) = ShellBuffers::read(path) {
            return result;
        }
        if let Some(result) = super::pasr::read(path) {
            return result;
        }
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            ["proc", "meminfo"] => kmem::meminfo().map_err(kmem_fs_error),
            ["proc", "buddyinfo"] => kmem::buddyinfo().map_err(kmem_fs_error),
            ["proc", "pagetypeinfo"] => kmem::pagetypeinfo().map_err(kmem_fs_error),
            ["proc", "zoneinfo"] => kmem::zoneinfo().map_err(kmem_fs_error),
            ["proc", "iomem"] => Ok(self.iomem_text()),
            ["sys", "kernel", "mm", "cma", area, attr] => self.read_cma_file(CMA_SYSFS, area, attr),
            ["sys", "kernel", "debug", "cma", area, attr] => {
                self.read_cma_file(CMA_DEBUGFS, area, attr)
            }
            _ => Err(FsError::NotFound),
        }
    }

    fn fs_write(&mut self, path: &str, value: &str) -> Result<(), FsError> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            ["sys", "kernel", "debug", "cma", area, "alloc"] => {
                let area = String::from(*area);
                self.debugfs_alloc(&area, value)
            }
            ["sys", "kernel", "debug", "cma", area, "free"] => {
                let area = String::from(*area);
                self.debugfs_free(&area, value)
            }
            _ => Err(FsError::PermissionDenied),
        }
    }

    fn mem(&mut self, op: MemOp) -> Result<String, BackendError> {
        match op {
            MemOp::Start => {
                kmem::anon::start().map_err(BackendError::service)?;
                Ok(self.mem_status())
            }
            MemOp::Grow { pages } => {
                let added = kmem::anon::grow(pages as usize).map_err(BackendError::service)?;
                self.recorder.mem_grow(now_us(), added as u64);
                let note = if (added as u64) < pages {
                    " (stopped at the low watermark)"
                } else {
                    ""
                };
                Ok(format!(
                    "grew by {} pages{}; {}",
                    added,
                    note,
                    self.mem_status()
                ))
            }
            MemOp::Shrink { pages } => {
                let freed = kmem::anon::shrink(pages as usize).map_err(BackendError::service)?;
                self.recorder.mem_shrink(now_us(), freed as u64);
                Ok(format!("shrank by {} pages; {}", freed, self.mem_status()))
            }
            MemOp::Verify => {
                let report = kmem::anon::verify().map_err(BackendError::service)?;
                if report.bad_pages == 0 {
                    Ok(format!(
                        "verified {} pages: all intact",
                        report.pages_checked
                    ))
                } else {
                    Err(BackendError::Corrupted {
                        checked: report.pages_checked,
                        bad: report.bad_pages,
                    })
                }
            }
            MemOp::Status => Ok(self.mem_status()),
        }
    }

    fn cma(&mut self, op: CmaOp<'_>) -> Result<String, BackendError> {
        match op {
            CmaOp::List => Ok(self.cma_list()),
            CmaOp::Alloc {
                area,
                pages,
                align_order,
            } => self.cma_alloc(area, pages, align_order),
            CmaOp::Free { handle } => self.cma_free(handle),
        }
    }

    fn heap(&mut self, op: HeapOp<'_>) -> Result<String, BackendError> {
        self.buffers.heap(op)
    }

    fn dmabuf(&mut self, op: DmabufOp) -> Result<String, BackendError> {
        self.buffers.dmabuf(op)
    }

    fn video(&mut self, op: VideoOp) -> Result<String, BackendError> {
        use crate::video_service as video;
        match op {
            VideoOp::Play { looping, crc } => video::play(looping, crc),
            VideoOp::Stop => video::stop(),
            VideoOp::Info => video::info(),
        }
        .map_err(BackendError::service)
    }

    fn pasr(&mut self) -> Result<String, BackendError> {
        super::pasr::banks()
    }

    fn suspend(&mut self, seconds: u64) -> Result<String, BackendError> {
        super::pasr::suspend(seconds)
    }

    fn gpu(&mut self, op: GpuOp) -> Result<String, BackendError> {
        use crate::display_service::{self as display, Showing};
        match op {
            GpuOp::Info => display::info(),
            GpuOp::Pattern => display::show(Showing::Pattern),
            GpuOp::Map => display::show(Showing::Map),
            GpuOp::Off => display::off(),
        }
        .map_err(BackendError::service)
    }

    fn dt(&mut self, path: Option<&str>) -> Result<String, BackendError> {
        let tree = self.devtree.as_ref().ok_or(BackendError::NoDeviceTree)?;
        let path = path.unwrap_or("/");
        // Accept the procfs spelling too, since completion offers it.
        let node = Self::dt_path(&crate::shell::vfs::normalize(path))
            .map(String::from)
            .unwrap_or_else(|| String::from(path));
        match tree.render(&node) {
            Some(text) => Ok(text),
            None => match tree.property(&node) {
                Some(value) => {
                    let name = node.rsplit('/').next().unwrap_or("");
                    Ok(devtree::property_dts(name, &value))
                }
                None => Err(BackendError::NoSuchNode(String::from(path))),
            },
        }
    }

    fn trace(&mut self, op: TraceOp) -> Result<String, BackendError> {
        match op {
            TraceOp::Record => {
                if self.recorder.is_recording() {
                    return Err(BackendError::AlreadyRecording);
                }
                self.recorder.start(now_us());
                Ok(String::from(
                    "recording cma alloc/free and mem grow/shrink (trace stop ends it)",
                ))
            }
            TraceOp::Stop => {
                if !self.recorder.is_recording() {
                    return Err(BackendError::NotRecording);
                }
                let (events, skipped) = self.recorder.stop();
                let count = events.len();
                self.trace = Some((TraceSource::Recorded, events));
                let mut text = format!("recorded {} events", count);
                if skipped > 0 {
                    let _ = write!(
                        text,
                        "; {} free(s) of allocations made before recording were left out",
                        skipped
                    );
                }
                Ok(text)
            }
            TraceOp::Replay { times } => {
                if self.recorder.is_recording() {
                    return Err(BackendError::StillRecording);
                }
                let Some((_, events)) = &self.trace else {
                    return Err(BackendError::NoTrace);
                };
                let report = trace::replay(events, times, &mut Machine);
                Ok(report.to_string())
            }
            TraceOp::Show => {
                if self.recorder.is_recording() {
                    return Ok(format!(
                        "recording: {} events so far (trace stop ends it)",
                        self.recorder.len()
                    ));
                }
                match &self.trace {
                    Some((source, events)) => {
                        let source = match source {
                            TraceSource::Recorded => String::from("recorded"),
                            TraceSource::Loaded => {
                                format!("loaded at {:#x}", trace::TRACE_LOAD_ADDR)
                            }
                        };
                        Ok(trace::show(&source, events, TRACE_HEX_LIMIT))
                    }
                    None => Err(BackendError::NoTrace),
                }
            }
        }
    }

    fn bench(&mut self, name: Option<&str>) -> Result<String, BackendError> {
        match name {
            Some(name) => self.run_bench(name),
            None => {
                let mut text = String::new();
                for name in BENCHES {
                    let _ = writeln!(text, "== bench {}", name);
                    match self.run_bench(name) {
                        Ok(result) => text.push_str(&result),
                        Err(error) => {
                            let _ = writeln!(text, "failed: {}", error);
                        }
                    }
                }
                Ok(text)
            }
        }
    }

    fn bench_names(&self) -> Vec<String> {
        BENCHES.iter().map(|name| String::from(*name)).collect()
    }

    fn log_level(&self) -> LevelFilter {
        crate::logger::level()
    }

    fn set_log_level(&mut self, level: LevelFilter) -> Result<(), BackendError> {
        crate::logger::set_level(level);
        Ok(())
    }

    fn page_limit(&self) -> u64 {
        self.ram_pages
    }
}

/// The UART as the shell's sink: bytes go out as the shell wrote them (CRLF included).
struct ConsoleOut;

impl Write for ConsoleOut {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        crate::console::write_bytes(text.as_bytes());
        Ok(())
    }
}

/// The console loop: never returns; `poweroff` and `reboot` leave through PSCI.
pub fn run() -> ! {
    let mut backend = FirmwareBackend::new();
    let mut shell = Shell::new();
    let mut out = ConsoleOut;
    shell.show_prompt(&mut out);
    let idle = core::time::Duration::from_micros(crate::display_service::REFRESH_US);
    let playing_idle = core::time::Duration::from_micros(crate::video_service::STEP_US);
    loop {
        // An idle console does the housekeeping nobody asks for: fences past their
        // deadline fail (so whatever waits on them is released), ended fences nobody
        // names are forgotten, and the live memory map is brought up to date. While a
        // clip plays, the video is stepped after every wake-up (the decoder's interrupt
        // wakes the wait too) and at least every `STEP_US`.
        let playing = crate::video_service::is_playing();
        let byte = crate::console::wait_byte_timeout(if playing { playing_idle } else { idle });
        if playing {
            crate::video_service::poll();
        }
        let Some(byte) = byte else {
            let _ = crate::dma_service::fence_poll();
            let _ = crate::dma_service::fence_retire();
            crate::display_service::refresh();
            continue;
        };
        match shell.input(byte, &mut backend, &mut out) {
            Action::Continue => {}
            Action::PowerOff => crate::psci::system_off(),
            Action::Reboot => crate::psci::system_reset(),
        }
    }
}
