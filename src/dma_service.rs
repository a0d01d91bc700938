//! The DMA service: the firmware's one DMA state (heaps, dma-bufs, fences, the atomic
//! pool) over kmem and the CPU's cache instructions. Bare-metal only; the policy is in
//! [`crate::dma`].
//!
//! # Theory of operation
//!
//! [`init`] (from `runtime_init`, right after `kmem::init`) builds the heaps from the
//! reserved-memory plan and the CMA areas kmem really activated, sizes the coherent atomic
//! pool (`coherent_pool=` or 128 KiB per GiB) and takes it from kmem as one unmovable
//! block. Everything then lives in one [`DmaState`] under an [`IrqSafeLock`], like kmem's.
//!
//! Lock order: the DMA lock, then kmem's (the page source calls kmem while the DMA lock is
//! held); kmem never calls back here, so the two cannot deadlock. Jobs released by fence
//! calls run after the DMA lock is dropped, so a job may call this API itself.
//!
//! Seams: [`KmemPages`] is the heaps' [`PageSource`]: system pages are kmem's long-term
//! pins (`alloc_pinned(0, PinKind::Pinned)`: Movable with `NO_CMA`, never in a CMA
//! pageblock, never migrated), CMA runs are `kmem::cma_alloc`. [`CpuCache`] is the
//! [`CacheMaintenance`] over `cpu::cache` (the linear map is the identity, so a physical
//! range is its own virtual range).
//!
//! Fence time is microseconds of uptime; deadlines are checked on every fence call and by
//! [`fence_poll`].
//!
//! Coherent allocations: RAM is mapped cacheable everywhere (there is no uncached alias
//! yet), so for a non-coherent device a "coherent" buffer is cleaned and invalidated once
//! when handed out and the driver brackets its CPU accesses as with a streaming buffer.
//! On QEMU every device is in fact coherent.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::cpu::{cache, IrqSafeLock};
use crate::dma::access::{self, AccessError, CacheMaintenance, DmaDirection};
use crate::dma::buf::{BufError, BufTable};
use crate::dma::fence::{Event, FenceError, FenceOpError, FenceStatus, Fences, Usage};
use crate::dma::heap::{HeapError, Heaps, PageError, PageSource};
use crate::dma::pool::{self, AtomicPool, PoolError};
use crate::dma::{bufinfo as info, device::DeviceError, pages_for};
use crate::dt::platform::Platform;
use crate::kmem::{self, KmemError, PinKind};
use crate::mm::{ChunkId, ChunkInfo, Pfn, PAGE_SHIFT};

pub use crate::dma::buf::{AttachId, BufId, DmaSegment};
pub use crate::dma::fence::{ContextId, FenceId, JobId};
pub use crate::dma::DeviceDma;

/// What a job runs once its fences are signalled.
pub type Job = Box<dyn FnOnce() + Send>;

/// Why a DMA service call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmaError {
    NotInitialised,
    AlreadyInitialised,
    Heap(HeapError),
    Buf(BufError),
    Access(AccessError),
    Fence(FenceOpError),
    Pool(PoolError),
    Kmem(KmemError),
    Device(DeviceError),
    /// `buf_phys` on a buffer of several segments.
    NotContiguous {
        buf: BufId,
        segments: usize,
    },
    /// `vmap` of a buffer the CPU cannot map (a `no-map` carveout).
    NotMapped {
        buf: BufId,
    },
    /// A buffer's writer fence failed: what it wrote must not be read.
    WriterFailed {
        buf: BufId,
        fence: FenceId,
        why: String,
    },
    /// `dma_alloc_coherent` found nothing the device can reach.
    NoCoherentMemory {
        device: String,
        bytes: u64,
        why: String,
    },
    /// `dma_free_coherent` of something not handed out.
    NotCoherent {
        phys: u64,
    },
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::NotInitialised => f.write_str("DMA service not initialised"),
            DmaError::AlreadyInitialised => f.write_str("DMA service already initialised"),
            DmaError::Heap(e) => write!(f, "{e}"),
            DmaError::Buf(e) => write!(f, "{e}"),
            DmaError::Access(e) => write!(f, "{e}"),
            DmaError::Fence(e) => write!(f, "{e}"),
            DmaError::Pool(e) => write!(f, "{e}"),
            DmaError::Kmem(e) => write!(f, "{e}"),
            DmaError::Device(e) => write!(f, "{e}"),
            DmaError::NotContiguous { buf, segments } => {
                write!(
                    f,
                    "dma-buf {buf} has {segments} segments, not one contiguous range"
                )
            }
            DmaError::WriterFailed { buf, fence, why } => {
                write!(f, "dma-buf {buf}: its writer (fence {fence}) failed: {why}")
            }
            DmaError::NotMapped { buf } => {
                write!(
                    f,
                    "dma-buf {buf} is in a no-map carveout: the CPU cannot map it"
                )
            }
            DmaError::NoCoherentMemory { device, bytes, why } => {
                write!(f, "{device}: no coherent memory for {bytes} bytes: {why}")
            }
            DmaError::NotCoherent { phys } => write!(f, "{phys:#x} is not a coherent allocation"),
        }
    }
}

impl core::error::Error for DmaError {}

impl From<HeapError> for DmaError {
    fn from(e: HeapError) -> Self {
        DmaError::Heap(e)
    }
}
impl From<BufError> for DmaError {
    fn from(e: BufError) -> Self {
        DmaError::Buf(e)
    }
}
impl From<AccessError> for DmaError {
    fn from(e: AccessError) -> Self {
        DmaError::Access(e)
    }
}
impl From<FenceOpError> for DmaError {
    fn from(e: FenceOpError) -> Self {
        DmaError::Fence(e)
    }
}
impl From<PoolError> for DmaError {
    fn from(e: PoolError) -> Self {
        DmaError::Pool(e)
    }
}

/// The heaps' page source over kmem.
pub struct KmemPages;

fn page_error(e: KmemError) -> PageError {
    PageError(alloc::format!("{e}"))
}

impl PageSource for KmemPages {
    fn alloc_pages(&mut self, order: usize) -> Result<Pfn, PageError> {
        kmem::alloc_pinned(order, PinKind::Pinned).map_err(page_error)
    }
    fn free_pages(&mut self, pfn: Pfn, order: usize) -> Result<(), PageError> {
        kmem::free_pinned(pfn, order).map_err(page_error)
    }
    fn cma_alloc(&mut self, area: &str, count: usize, align_order: u32) -> Result<Pfn, PageError> {
        kmem::cma_alloc(area, count, align_order).map_err(page_error)
    }
    fn cma_alloc_movable(
        &mut self,
        area: &str,
        count: usize,
        align_order: u32,
    ) -> Result<ChunkInfo, PageError> {
        kmem::cma_alloc_movable(area, count, align_order).map_err(page_error)
    }
    fn cma_pin(&mut self, area: &str, id: ChunkId) -> Result<ChunkInfo, PageError> {
        kmem::cma_pin(area, id).map_err(page_error)
    }
    fn cma_unpin(&mut self, area: &str, id: ChunkId) -> Result<(), PageError> {
        kmem::cma_unpin(area, id).map_err(page_error)
    }
    fn cma_release_movable(&mut self, area: &str, id: ChunkId) -> Result<(), PageError> {
        kmem::cma_release_movable(area, id).map_err(page_error)
    }
    fn cma_release(&mut self, area: &str, pfn: Pfn, count: usize) -> Result<(), PageError> {
        kmem::cma_release(area, pfn, count).map_err(page_error)
    }
}

/// [`CacheMaintenance`] over the CPU's DC instructions.
pub struct CpuCache;

impl CacheMaintenance for CpuCache {
    fn line_size(&self) -> usize {
        cache::dcache_line_size()
    }
    fn clean(&mut self, phys: u64, len: u64) {
        cache::clean_dcache_range(phys as usize, len as usize);
    }
    fn invalidate(&mut self, phys: u64, len: u64) {
        // Safety: callers pass only the pages of a live dma-buf or coherent allocation
        // (handed out by a heap or the pool, so owned by the DMA layer and in the identity
        // map: `no-map` carveouts are refused before this), and only where the DMA API
        // says the device owned the memory (begin_cpu_access for FROM_DEVICE or
        // BIDIRECTIONAL, or a fresh allocation): CPU stores the invalidate may drop are
        // ones the contract says do not exist. Partial lines at the edges are cleaned
        // first by `invalidate_dcache_range`, so neighbouring data survives.
        unsafe { cache::invalidate_dcache_range(phys as usize, len as usize) }
    }
    fn clean_invalidate(&mut self, phys: u64, len: u64) {
        cache::clean_invalidate_dcache_range(phys as usize, len as usize);
    }
}

/// Where a coherent allocation came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoherentSource {
    Cma {
        area: String,
        pfn: Pfn,
        count: usize,
    },
    Pool {
        pfn: Pfn,
        pages: usize,
    },
}

/// A `dma_alloc_coherent` buffer: its CPU address (identity-mapped) and the device's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoherentBuf {
    pub phys: u64,
    pub dma: u64,
    pub bytes: u64,
    pub source: CoherentSource,
}

/// Everything the DMA lock protects.
pub struct DmaState {
    heaps: Heaps,
    bufs: BufTable,
    fences: Fences<Job>,
    pool: Option<AtomicPool>,
    coherent: Vec<CoherentBuf>,
}

static STATE: IrqSafeLock<Option<DmaState>> = IrqSafeLock::new(None);

fn with<R>(f: impl FnOnce(&mut DmaState) -> Result<R, DmaError>) -> Result<R, DmaError> {
    STATE.lock(|s| s.as_mut().map_or(Err(DmaError::NotInitialised), f))
}

/// Build the DMA state (after `kmem::init`). Problems are logged; a pool that cannot be
/// taken leaves the service without one (non-waiting coherent allocations then fail).
pub fn init(platform: &Platform) -> Result<(), DmaError> {
    if with(|_| Ok(())).is_ok() {
        return Err(DmaError::AlreadyInitialised);
    }
    let plan = kmem::plan().ok_or(DmaError::Kmem(KmemError::NotInitialised))?;
    let active = kmem::cma_area_names();
    let managed = kmem::with_zone(|z| z.counters().managed_pages).map_err(DmaError::Kmem)?;
    let heaps = Heaps::new(plan, &active, managed);

    let ram: u64 = platform.memory.iter().map(|r| r.end - r.start).sum();
    let mut messages = Vec::new();
    let bytes = pool::atomic_pool_size(ram, platform.bootargs.as_deref(), &mut messages);
    for m in &messages {
        log::warn!("dma: {m}");
    }
    let order = pool::pool_order(bytes);
    let pool = match kmem::alloc_pinned(order, PinKind::Kernel) {
        Ok(pfn) => {
            let pages = 1usize << order;
            CpuCache.clean_invalidate((pfn as u64) << PAGE_SHIFT, (pages as u64) << PAGE_SHIFT);
            Some(AtomicPool::new(pfn, pages))
        }
        Err(e) => {
            log::warn!("dma: no atomic pool: {e}");
            None
        }
    };
    log::info!(
        "dma: heaps {}; atomic pool {}",
        heaps.names().join(", "),
        pool.as_ref()
            .map_or(String::from("none"), |p| crate::util::size::format_size(
                (p.size_pages() as u64) << PAGE_SHIFT
            ))
    );
    STATE.lock(|s| {
        *s = Some(DmaState {
            heaps,
            bufs: BufTable::new(),
            fences: Fences::new(),
            pool,
            coherent: Vec::new(),
        })
    });
    Ok(())
}

/// The DMA description of the device at `path`, from the boot tree and plan.
pub fn device(path: &str) -> Result<DeviceDma, DmaError> {
    let tree = crate::dtb::tree().ok_or(DmaError::NotInitialised)?;
    let plan = kmem::plan().ok_or(DmaError::NotInitialised)?;
    DeviceDma::from_tree(tree, plan, path).map_err(DmaError::Device)
}

/// `/dev/dma_heap` names.
pub fn heap_names() -> Vec<String> {
    with(|s| Ok(s.heaps.names())).unwrap_or_default()
}

/// `ls /dev/dma_heap`.
pub fn dev_dma_heap() -> String {
    info::heap_listing(&heap_names())
}

/// `DMA_HEAP_IOCTL_ALLOC`: a new dma-buf of `bytes` from `heap`, one reference.
pub fn heap_alloc(heap: &str, bytes: u64) -> Result<BufId, DmaError> {
    with(|s| {
        let allocation = s.heaps.allocate(heap, bytes, &mut KmemPages)?;
        Ok(s.bufs.export(allocation))
    })
}

/// A movable dma-buf of `bytes` from CMA heap `heap`: the area may move it to make room
/// while nothing pins it. Attaching a device pins it (a static importer, as Linux's
/// `dma_buf_attach` pins for importers that cannot take `move_notify`), and so does
/// [`vmap`] for its call; [`buf_pin`] pins it for a driver that re-points its device itself.
pub fn heap_alloc_movable(heap: &str, bytes: u64) -> Result<BufId, DmaError> {
    with(|s| {
        let allocation = s.heaps.allocate_movable(heap, bytes, &mut KmemPages)?;
        Ok(s.bufs.export(allocation))
    })
}

/// Where a pinned buffer is: its one segment, and whether it moved since its last pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedBuf {
    pub phys: u64,
    pub len: u64,
    pub moved: bool,
}

/// `dma_buf_pin`: keep the buffer where it is until [`buf_unpin`] (for a buffer that is
/// not movable, just its place).
pub fn buf_pin(id: BufId) -> Result<PinnedBuf, DmaError> {
    with(|s| {
        let b = s.bufs.buf_mut(id)?;
        let moved = b.allocation.pin(&mut KmemPages)?;
        let (phys, len) = b.allocation.contiguous().ok_or(DmaError::NotContiguous {
            buf: id,
            segments: b.allocation.segments.len(),
        })?;
        Ok(PinnedBuf { phys, len, moved })
    })
}

/// `dma_buf_unpin`.
pub fn buf_unpin(id: BufId) -> Result<(), DmaError> {
    with(|s| Ok(s.bufs.buf_mut(id)?.allocation.unpin(&mut KmemPages)?))
}

fn release(
    s: &mut DmaState,
    allocation: Option<crate::dma::heap::Allocation>,
) -> Result<(), DmaError> {
    match allocation {
        Some(a) => s.heaps.free(&a, &mut KmemPages).map_err(DmaError::from),
        None => Ok(()),
    }
}

/// `get_dma_buf`.
pub fn buf_get(id: BufId) -> Result<(), DmaError> {
    with(|s| Ok(s.bufs.get(id)?))
}

/// `dma_buf_put`: the last reference gives every page back to its heap.
pub fn buf_put(id: BufId) -> Result<(), DmaError> {
    with(|s| {
        let released = s.bufs.put(id)?;
        release(s, released)
    })
}

/// One live buffer, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufSummary {
    pub id: BufId,
    pub size: u64,
    pub exp_name: String,
    pub segments: usize,
    pub count: usize,
    pub attachments: usize,
}

pub fn buf_list() -> Vec<BufSummary> {
    with(|s| {
        Ok(s.bufs
            .iter()
            .map(|b| BufSummary {
                id: b.id,
                size: b.size,
                exp_name: b.exp_name.clone(),
                segments: b.allocation.segments.len(),
                count: b.count(),
                attachments: b.attachments().len(),
            })
            .collect())
    })
    .unwrap_or_default()
}

/// `/sys/kernel/debug/dma_buf/bufinfo`.
pub fn bufinfo() -> String {
    with(|s| Ok(info::bufinfo(&s.bufs, &s.fences))).unwrap_or_default()
}

/// (physical address, length) of a contiguous buffer, for a driver that programs one
/// base register.
pub fn buf_phys(id: BufId) -> Result<(u64, u64), DmaError> {
    with(|s| {
        let b = s.bufs.buf(id)?;
        b.allocation.contiguous().ok_or(DmaError::NotContiguous {
            buf: id,
            segments: b.allocation.segments.len(),
        })
    })
}

/// `dma_buf_vmap` for a contiguous buffer in the linear map: run `f` on its bytes. The
/// buffer holds an extra reference for the call, so its pages cannot be released under
/// `f`; the lock is not held, so `f` may take as long as drawing a frame takes. The caller
/// brackets CPU access with [`begin_cpu_access`]/[`end_cpu_access`] as for any CPU use.
pub fn vmap<R>(id: BufId, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, DmaError> {
    let (phys, len) = with(|s| {
        let b = s.bufs.buf_mut(id)?;
        if !b.allocation.cpu_mapped {
            return Err(DmaError::NotMapped { buf: id });
        }
        // A movable buffer stays put for the call (and is found where it is now).
        b.allocation.pin(&mut KmemPages)?;
        let range = match b.allocation.contiguous() {
            Some(range) => range,
            None => {
                let segments = b.allocation.segments.len();
                b.allocation.unpin(&mut KmemPages)?;
                return Err(DmaError::NotContiguous { buf: id, segments });
            }
        };
        s.bufs.get(id)?;
        Ok(range)
    })?;
    // Safety: `[phys, phys + len)` is the buffer's one segment, RAM in the identity map
    // (`cpu_mapped`: not a no-map carveout), and it stays allocated while the reference
    // taken above is held, until the `buf_put` below (and in place: a movable buffer is
    // pinned until the `buf_unpin` before it). The heaps hand each page to one
    // buffer only, so no other Rust reference to these bytes exists; devices may access
    // them too, which is what the CPU-access brackets order. Any byte pattern is a
    // valid `u8`.
    let bytes = unsafe { core::slice::from_raw_parts_mut(phys as usize as *mut u8, len as usize) };
    let result = f(bytes);
    buf_unpin(id)?;
    buf_put(id)?;
    Ok(result)
}

/// Every segment of a buffer as (physical address, length).
pub fn buf_segments(id: BufId) -> Result<Vec<(u64, u64)>, DmaError> {
    with(|s| {
        Ok(s.bufs
            .buf(id)?
            .allocation
            .segments
            .iter()
            .map(|g| (g.phys(), g.len()))
            .collect())
    })
}

pub fn set_name(id: BufId, name: &str) -> Result<(), DmaError> {
    with(|s| Ok(s.bufs.set_name(id, name)?))
}

/// `dma_buf_attach` (takes a reference until [`detach`]). A movable buffer is pinned for
/// the attachment's life: the device keeps the address it maps.
pub fn attach(id: BufId, device: &DeviceDma) -> Result<AttachId, DmaError> {
    with(|s| {
        s.bufs.buf_mut(id)?.allocation.pin(&mut KmemPages)?;
        s.bufs.attach(id, device).map_err(|e| {
            if let Ok(b) = s.bufs.buf_mut(id) {
                let _ = b.allocation.unpin(&mut KmemPages);
            }
            DmaError::from(e)
        })
    })
}

/// `dma_buf_dynamic_attach`: an attachment that does not pin. The importer pins with
/// [`buf_pin`] around each use of the device and maps again when the buffer moved
/// ([`remap`]).
pub fn attach_dynamic(id: BufId, device: &DeviceDma) -> Result<AttachId, DmaError> {
    with(|s| Ok(s.bufs.attach_dynamic(id, device)?))
}

/// `dma_buf_detach` (drops a static attachment's pin of a movable buffer).
pub fn detach(id: BufId, attachment: AttachId) -> Result<(), DmaError> {
    with(|s| {
        let pinned = s
            .bufs
            .buf(id)?
            .attachments()
            .iter()
            .find(|a| a.id == attachment)
            .is_some_and(|a| !a.dynamic);
        let released = s.bufs.detach(id, attachment)?;
        match released {
            Some(mut allocation) => {
                if pinned {
                    allocation.unpin(&mut KmemPages)?;
                }
                release(s, Some(allocation))
            }
            None if pinned => Ok(s.bufs.buf_mut(id)?.allocation.unpin(&mut KmemPages)?),
            None => Ok(()),
        }
    })
}

/// A dynamic importer's re-map after its buffer moved (`move_notify`, then
/// `dma_buf_map_attachment` again): the device addresses of the buffer where it is now.
/// The caller holds a pin.
pub fn remap(id: BufId, attachment: AttachId) -> Result<Vec<DmaSegment>, DmaError> {
    with(|s| {
        s.bufs.unmap(id, attachment)?;
        Ok(s.bufs.map(id, attachment)?)
    })
}

/// [`device_buffer`] for a dynamic importer: a movable buffer from the device's CMA heap,
/// attached without a pin and mapped where it is now. The importer pins it around each
/// use ([`buf_pin`]) and calls [`remap`] when the pin says it moved.
pub fn device_buffer_movable(
    device: &DeviceDma,
    bytes: u64,
    name: &str,
) -> Result<(BufId, ContiguousMapping), DmaError> {
    let buf = heap_alloc_movable(device_heap(device), bytes)?;
    let attached = set_name(buf, name).and_then(|()| attach_dynamic(buf, device));
    let attachment = match attached {
        Ok(attachment) => attachment,
        Err(e) => {
            let _ = buf_put(buf);
            return Err(e);
        }
    };
    match map_contiguous(buf, attachment) {
        Ok(segment) => Ok((
            buf,
            ContiguousMapping {
                attachment,
                segment,
            },
        )),
        Err(e) => {
            let _ = detach(buf, attachment);
            let _ = buf_put(buf);
            Err(e)
        }
    }
}

/// The CMA heap a device's buffers come from: its own area's, else the default one.
fn device_heap(device: &DeviceDma) -> &str {
    device
        .cma_area
        .as_deref()
        .unwrap_or(crate::dma::heap::DEFAULT_CMA_HEAP)
}

/// Map an attachment as one bus range (the device takes one segment); a mapping of more
/// segments is undone and refused.
fn map_contiguous(id: BufId, attachment: AttachId) -> Result<DmaSegment, DmaError> {
    let segments = map(id, attachment)?;
    match segments.as_slice() {
        [segment] => Ok(*segment),
        _ => {
            let _ = unmap(id, attachment);
            Err(DmaError::NotContiguous {
                buf: id,
                segments: segments.len(),
            })
        }
    }
}

/// A device's attachment to a buffer, mapped as one bus range (the device cannot
/// scatter-gather: its attach refused more than one segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContiguousMapping {
    pub attachment: AttachId,
    pub segment: DmaSegment,
}

/// `dma_buf_attach` + `dma_buf_map_attachment` for a device that takes one segment; on
/// any refusal nothing stays attached.
pub fn attach_contiguous(id: BufId, device: &DeviceDma) -> Result<ContiguousMapping, DmaError> {
    let attachment = attach(id, device)?;
    match map_contiguous(id, attachment) {
        Ok(segment) => Ok(ContiguousMapping {
            attachment,
            segment,
        }),
        Err(e) => {
            let _ = detach(id, attachment);
            Err(e)
        }
    }
}

/// Undo [`attach_contiguous`].
pub fn detach_contiguous(id: BufId, mapping: &ContiguousMapping) -> Result<(), DmaError> {
    let unmapped = unmap(id, mapping.attachment);
    detach(id, mapping.attachment).and(unmapped)
}

/// A named dma-buf of `bytes` from `device`'s CMA heap (its own area, else the default
/// one), attached to and mapped for `device` as one range. On failure nothing is left.
pub fn device_buffer(
    device: &DeviceDma,
    bytes: u64,
    name: &str,
) -> Result<(BufId, ContiguousMapping), DmaError> {
    let buf = heap_alloc(device_heap(device), bytes)?;
    let mapped = set_name(buf, name).and_then(|()| attach_contiguous(buf, device));
    match mapped {
        Ok(mapping) => Ok((buf, mapping)),
        Err(e) => {
            let _ = buf_put(buf);
            Err(e)
        }
    }
}

/// `dma_buf_map_attachment`: device addresses, one entry per segment.
pub fn map(id: BufId, attachment: AttachId) -> Result<Vec<DmaSegment>, DmaError> {
    with(|s| Ok(s.bufs.map(id, attachment)?))
}

pub fn unmap(id: BufId, attachment: AttachId) -> Result<(), DmaError> {
    with(|s| Ok(s.bufs.unmap(id, attachment)?))
}

/// `DMA_BUF_IOCTL_SYNC` start: returns how many attachments were synced.
pub fn begin_cpu_access(id: BufId, dir: DmaDirection) -> Result<usize, DmaError> {
    with(|s| {
        let synced = access::begin_cpu_access(s.bufs.buf(id)?, dir, &mut CpuCache)?;
        if dir != DmaDirection::FromDevice {
            s.bufs.buf_mut(id)?.cpu_writes += 1;
        }
        Ok(synced)
    })
}

/// How often the CPU opened buffer `id` for writing ([`begin_cpu_access`] with
/// `TO_DEVICE` or `BIDIRECTIONAL`).
pub fn cpu_writes(id: BufId) -> Result<u64, DmaError> {
    with(|s| Ok(s.bufs.buf(id)?.cpu_writes))
}

/// `DMA_BUF_IOCTL_SYNC` end.
pub fn end_cpu_access(id: BufId, dir: DmaDirection) -> Result<usize, DmaError> {
    with(|s| Ok(access::end_cpu_access(s.bufs.buf(id)?, dir, &mut CpuCache)?))
}

/// `dma_alloc_coherent`. `can_wait` false is Linux's `GFP_ATOMIC`: only the atomic pool
/// (a CMA allocation may migrate, which waits). Otherwise the device's CMA area, then
/// the default area. The result must be reachable by the device.
pub fn dma_alloc_coherent(
    device: &DeviceDma,
    bytes: u64,
    can_wait: bool,
) -> Result<CoherentBuf, DmaError> {
    let count = pages_for(bytes)
        .filter(|c| *c > 0)
        .ok_or(DmaError::Heap(HeapError::ZeroSize))?;
    let fail = |why: String| DmaError::NoCoherentMemory {
        device: device.name.clone(),
        bytes,
        why,
    };
    with(|s| {
        let reach = |phys: u64| {
            let len = (count as u64) << PAGE_SHIFT;
            device
                .bus_address(phys, len)
                .filter(|bus| bus.saturating_add(len - 1) <= device.constraints.addr_limit)
        };
        let mut why = String::new();
        let mut found = None;
        if can_wait {
            let default = kmem::plan()
                .and_then(|p| p.default_cma_area())
                .map(|a| a.name.clone());
            let mut areas: Vec<String> = device.cma_area.iter().cloned().collect();
            areas.extend(default.filter(|d| device.cma_area.as_ref() != Some(d)));
            let align = crate::dma::get_order(bytes).min(crate::dma::heap::cma::CMA_ALIGNMENT);
            for area in areas {
                match kmem::cma_alloc(&area, count, align) {
                    Ok(pfn) => match reach((pfn as u64) << PAGE_SHIFT) {
                        Some(dma) => {
                            found = Some((pfn, dma, CoherentSource::Cma { area, pfn, count }));
                            break;
                        }
                        None => {
                            let _ = kmem::cma_release(&area, pfn, count);
                            why = alloc::format!("area {area} is out of the device's reach");
                        }
                    },
                    Err(e) => why = alloc::format!("{e}"),
                }
            }
            if why.is_empty() && found.is_none() {
                why = String::from("no CMA area");
            }
        } else {
            let pool = s
                .pool
                .as_mut()
                .ok_or_else(|| fail(String::from("no atomic pool")))?;
            let (pfn, pages) = pool.alloc(bytes)?;
            match reach((pfn as u64) << PAGE_SHIFT) {
                Some(dma) => found = Some((pfn, dma, CoherentSource::Pool { pfn, pages })),
                None => {
                    pool.free(pfn, pages)?;
                    why = String::from("the atomic pool is out of the device's reach");
                }
            }
        }
        let (pfn, dma, source) = found.ok_or_else(|| fail(why))?;
        let phys = (pfn as u64) << PAGE_SHIFT;
        if !device.constraints.coherent {
            CpuCache.clean_invalidate(phys, (count as u64) << PAGE_SHIFT);
        }
        let buf = CoherentBuf {
            phys,
            dma,
            bytes,
            source,
        };
        s.coherent.push(buf.clone());
        Ok(buf)
    })
}

/// `dma_free_coherent`.
pub fn dma_free_coherent(buf: &CoherentBuf) -> Result<(), DmaError> {
    with(|s| {
        let at = s
            .coherent
            .iter()
            .position(|b| b == buf)
            .ok_or(DmaError::NotCoherent { phys: buf.phys })?;
        match &buf.source {
            CoherentSource::Cma { area, pfn, count } => {
                kmem::cma_release(area, *pfn, *count).map_err(DmaError::Kmem)?
            }
            CoherentSource::Pool { pfn, pages } => s
                .pool
                .as_mut()
                .ok_or(DmaError::NotCoherent { phys: buf.phys })?
                .free(*pfn, *pages)?,
        }
        s.coherent.swap_remove(at);
        Ok(())
    })
}

/// Live `dma_alloc_coherent` buffers: (how many, pages they cover).
pub fn coherent_outstanding() -> Result<(usize, usize), DmaError> {
    with(|s| {
        let pages = s
            .coherent
            .iter()
            .map(|b| pages_for(b.bytes).unwrap_or(0))
            .sum();
        Ok((s.coherent.len(), pages))
    })
}

/// Atomic pool (size, used) in pages.
pub fn pool_pages() -> Result<(usize, usize), DmaError> {
    with(|s| {
        Ok(s.pool
            .as_ref()
            .map_or((0, 0), |p| (p.size_pages(), p.used_pages())))
    })
}

/// Microseconds of uptime: the fences' clock.
pub fn now_us() -> u64 {
    crate::driver::timer::uptime().as_micros() as u64
}

/// Run what fence calls released, with the DMA lock not held. A job that will never run
/// is dropped with a message; its output fence already carries the reason.
fn run(events: Vec<Event<Job>>) {
    for e in events {
        match e {
            Event::Run { payload, .. } => payload(),
            Event::Failed { job, reason, .. } => log::warn!("dma: job {job} not run: {reason}"),
        }
    }
}

fn fence_call<R>(
    f: impl FnOnce(&mut Fences<Job>, u64) -> Result<(R, Vec<Event<Job>>), FenceOpError>,
) -> Result<R, DmaError> {
    let now = now_us();
    let (r, events) = with(|s| {
        let mut events = s.fences.poll(now);
        let (r, more) = f(&mut s.fences, now)?;
        events.extend(more);
        Ok((r, events))
    })?;
    run(events);
    Ok(r)
}

/// A new fence timeline for a device.
pub fn fence_context(driver: &str, timeline: &str) -> Result<ContextId, DmaError> {
    with(|s| Ok(s.fences.new_context(driver, timeline)))
}

/// A pending fence that fails unless signalled within `timeout_us`.
pub fn fence_create(context: ContextId, timeout_us: u64) -> Result<FenceId, DmaError> {
    fence_call(|f, now| Ok((f.create(context, now, timeout_us)?, Vec::new())))
}

/// `dma_fence_signal`; jobs it releases run before this returns.
pub fn fence_signal(id: FenceId) -> Result<(), DmaError> {
    fence_call(|f, _| Ok(((), f.signal(id)?)))
}

/// The device behind `context` errored (`reason`) or was reset (`None`): all its pending
/// fences fail.
pub fn fence_fail_context(context: ContextId, reason: Option<&str>) -> Result<(), DmaError> {
    let error = match reason {
        Some(r) => FenceError::DeviceError {
            context,
            reason: String::from(r),
        },
        None => FenceError::Reset { context },
    };
    fence_call(|f, _| Ok(((), f.fail_context(context, error))))
}

/// Fail the fences whose deadline has passed (and whatever waits on them).
pub fn fence_poll() -> Result<(), DmaError> {
    fence_call(|_, _| Ok(((), Vec::new())))
}

/// Forget fences that ended and that no buffer's reservation and no waiting job still
/// names (their status can no longer be asked for). Call it now and then, e.g. after
/// releasing buffers.
pub fn fence_retire() -> Result<(), DmaError> {
    with(|s| {
        let bufs = &s.bufs;
        s.fences
            .retire(|id| bufs.iter().any(|b| b.resv.fences().any(|(_, f)| f == id)));
        Ok(())
    })
}

pub fn fence_status(id: FenceId) -> Result<FenceStatus, DmaError> {
    with(|s| {
        s.fences
            .fence(id)
            .map(|f| f.status.clone())
            .ok_or(DmaError::Fence(FenceOpError::NoSuchFence(id)))
    })
}

/// Queue `job` to run once every fence in `waits` signalled; returns the job's id and
/// its output fence (on `context`, failing after `timeout_us`). May run it at once.
pub fn job_submit(
    context: ContextId,
    waits: &[FenceId],
    timeout_us: u64,
    job: Job,
) -> Result<(JobId, FenceId), DmaError> {
    fence_call(|f, now| {
        let (id, out, events) = f.submit(context, waits, now, timeout_us, job)?;
        Ok(((id, out), events))
    })
}

/// What an access to buffer `id` must wait for (implicit sync: a writer everything, a
/// reader the writer).
pub fn buf_waits(id: BufId, write: bool) -> Result<Vec<FenceId>, DmaError> {
    with(|s| Ok(s.bufs.buf(id)?.resv.waits_for(write)))
}

/// The writer fences a reader of buffer `id` must still wait for (none: read now), or
/// [`DmaError::WriterFailed`] when a writer failed and the contents are not to be shown.
pub fn pending_writers(id: BufId) -> Result<Vec<FenceId>, DmaError> {
    let mut pending = Vec::new();
    for fence in buf_waits(id, false)? {
        match fence_status(fence)? {
            FenceStatus::Signalled => {}
            FenceStatus::Pending => pending.push(fence),
            FenceStatus::Failed(why) => {
                return Err(DmaError::WriterFailed {
                    buf: id,
                    fence,
                    why: format!("{why}"),
                })
            }
        }
    }
    Ok(pending)
}

/// Record `fence` in the buffer's reservation as its writer or one of its readers.
pub fn buf_add_fence(id: BufId, fence: FenceId, usage: Usage) -> Result<(), DmaError> {
    with(|s| {
        s.fences
            .fence(fence)
            .ok_or(DmaError::Fence(FenceOpError::NoSuchFence(fence)))?;
        let resv = &mut s.bufs.buf_mut(id)?.resv;
        match usage {
            Usage::Write => resv.add_write(fence),
            Usage::Read => resv.add_read(fence),
        }
        Ok(())
    })
}
