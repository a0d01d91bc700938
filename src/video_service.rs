//! Video playback on the board: the loaded clip, decoded by the virtio-video decoder into
//! dma-bufs that the GPU scans out (bare metal only; the policy is `crate::video::player`).
//!
//! # Theory of operation
//!
//! [`play`] finds the clip (the `monolith,video-clip` reserved region QEMU's loader
//! filled), splits it into access units, gives the screen over from the display service
//! to the video, and starts a [`Player`] over three adapters:
//! - [`BoardDecoder`]: the decoder driver, plus the fences. Queueing a frame buffer makes
//!   a fence on the decoder's timeline and records it as the buffer's writer
//!   (`dma_resv`). The frame coming back signals it. An `ERROR` event, or the stream
//!   stopping, fails the timeline's pending fences.
//! - [`BoardBuffers`]: dma-bufs from the decoder's CMA areas, bitstream and frames from
//!   the `memory-region-names` entries of those names when the tree gives them (the
//!   two-bank board), else the decoder's area. A frame buffer is attached to the decoder
//!   *and* to the GPU, one segment each: the decoder writes the pages the GPU reads. The
//!   CPU writes bitstream only, inside the CPU-access bracket, and never touches a frame
//!   (`video info` reports the CPU-access brackets on frame buffers as copies: 0).
//! - [`GpuScreen`]: one 2D resource per frame buffer, whose one backing entry is the
//!   buffer's GPU bus address. Showing a frame is SET_SCANOUT + TRANSFER_TO_HOST_2D +
//!   RESOURCE_FLUSH. Like any reader it waits for the buffer's write fence, as a job when
//!   the fence is still pending.
//!
//! The console loop calls [`poll`] when idle, which runs one [`Player::step`]. So the
//! shell stays usable while a clip plays (`video stop`, `video info`). When the play ends
//! (finished, stopped, failed) everything is freed and the display gets the screen back.
//! `video play crc` logs each shown frame's CRC-32 (read inside a FROM_DEVICE bracket, a
//! read, not a copy): the test's oracle against the host's reference decode.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::cpu::IrqSafeLock;
use crate::display_service::{self, Showing};
use crate::dma::access::DmaDirection;
use crate::dma::fence::Usage;
use crate::dma_service::{self, BufId, ContextId, ContiguousMapping, DeviceDma, FenceId};
use crate::driver::virtio_gpu;
use crate::driver::virtio_video::{self, Decoder as VideoDriver};
use crate::kmem;
use crate::video::annexb;
use crate::video::clip::{self, ClipError};
use crate::video::player::{
    BufferKind, Buffers, Decoder, DecoderEvent, FrameFormat, PlayError, Player, Screen, Slot, State,
};
use crate::virtio::gpu::{Format as GpuFormat, Rect};
use crate::virtio::video::driver::Completion;
use crate::virtio::video::wire::{Format, Params, QueueType};

/// How often a console waiting for a key steps a running play, at least.
pub const STEP_US: u64 = 2_000;
/// GPU resource ids for frame buffers (the display's own resource ids start at 1).
const GPU_RESOURCE_BASE: u32 = 0x1000;
/// A queued frame that has not come back after this long fails its fence.
const FRAME_FENCE_TIMEOUT_US: u64 = 5_000_000;

/// Why `video` could not do what was asked.
#[derive(Debug)]
pub enum VideoServiceError {
    Clip(ClipError),
    Play(PlayError),
    /// A play is already running (or being stepped).
    Busy,
    NotPlaying,
}

impl fmt::Display for VideoServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoServiceError::Clip(e) => write!(f, "{e}"),
            VideoServiceError::Play(e) => write!(f, "{e}"),
            VideoServiceError::Busy => f.write_str("a clip is already playing (video stop)"),
            VideoServiceError::NotPlaying => f.write_str("no clip is playing"),
        }
    }
}

impl core::error::Error for VideoServiceError {}

/// What one buffer is attached to.
struct BufferState {
    buf: BufId,
    decoder: ContiguousMapping,
    gpu: Option<ContiguousMapping>,
}

/// The decoder driver and the fences of its frames.
struct BoardDecoder<'a> {
    driver: &'a mut VideoDriver,
    fences: &'a mut Fencing,
    /// Completions met while waiting for something else, handed out first.
    stash: &'a mut Vec<Completion>,
}

/// Per play: the decoder's fence timeline and which buffer each resource is.
struct Fencing {
    context: ContextId,
    /// Frame resource id → its buffer.
    frame_bufs: BTreeMap<u32, BufId>,
    /// Frame resource id → the fence of its queued decode.
    pending: BTreeMap<u32, FenceId>,
}

fn play_error(
    step: &'static str,
) -> impl Fn(crate::virtio::video::driver::VideoError) -> PlayError {
    move |e| PlayError::new(step, e)
}

fn dma_error(step: &'static str) -> impl Fn(dma_service::DmaError) -> PlayError {
    move |e| PlayError::new(step, e)
}

impl Fencing {
    fn signal(&mut self, resource: u32) {
        if let Some(fence) = self.pending.remove(&resource) {
            if let Err(e) = dma_service::fence_signal(fence) {
                log::warn!("video: fence {fence}: {e}");
            }
        }
    }

    fn fail_all(&mut self, why: &str) {
        if !self.pending.is_empty() {
            let _ = dma_service::fence_fail_context(self.context, Some(why));
            self.pending.clear();
        }
    }
}

fn frame_format(params: &Params) -> Result<FrameFormat, PlayError> {
    let size = params
        .buffer_size()
        .filter(|&s| s > 0)
        .ok_or_else(|| PlayError::new("output params", "no plane sizes"))?;
    Ok(FrameFormat {
        width: params.frame_width,
        height: params.frame_height,
        stride: params.plane_formats[0].stride,
        size,
    })
}

impl Decoder for BoardDecoder<'_> {
    fn start(&mut self, input_bytes: u64) -> Result<(), PlayError> {
        if self.driver.device().is_broken() {
            // An earlier play ended in a reset that did not bring the device back.
            self.driver.reset().map_err(play_error("decoder reset"))?;
        }
        self.driver
            .stream_create(Format::H264)
            .map_err(play_error("stream create"))?;
        let mut params = Params::new(QueueType::Input, Format::H264);
        params.num_planes = 1;
        params.plane_formats[0].plane_size = u32::try_from(input_bytes)
            .map_err(|_| PlayError::new("input params", "an access unit over 4 GiB"))?;
        self.driver
            .set_params(params)
            .map_err(play_error("input params"))?;
        Ok(())
    }

    fn add_input(&mut self, slot: &Slot) -> Result<u32, PlayError> {
        self.driver
            .resource_create(QueueType::Input, slot.bus, slot.len)
            .map_err(play_error("bitstream resource"))
    }

    fn queue_input(&mut self, resource: u32, timestamp: u64, bytes: u32) -> Result<(), PlayError> {
        self.driver
            .queue_input(resource, bytes, timestamp)
            .map_err(play_error("queue bitstream"))
    }

    fn output_format(&mut self) -> Result<FrameFormat, PlayError> {
        let mut params = self
            .driver
            .params(QueueType::Output)
            .map_err(play_error("output params"))?;
        if params.format != Format::Argb8888 as u32 {
            // What the GPU scans out: bytes B, G, R, A.
            params.format = Format::Argb8888 as u32;
            params = self
                .driver
                .set_params(params)
                .map_err(play_error("output format ARGB8888"))?;
        }
        if params.format != Format::Argb8888 as u32 {
            return Err(PlayError::new(
                "output params",
                format!(
                    "the decoder offers format {:#x}, not ARGB8888",
                    params.format
                ),
            ));
        }
        let format = frame_format(&params)?;
        if format.stride != format.width * 4 {
            return Err(PlayError::new(
                "output params",
                format!(
                    "rows of {} bytes; the GPU scans out {}x4 without padding",
                    format.stride, format.width
                ),
            ));
        }
        Ok(format)
    }

    fn add_output(&mut self, slot: &Slot, _format: &FrameFormat) -> Result<u32, PlayError> {
        let resource = self
            .driver
            .resource_create(QueueType::Output, slot.bus, slot.len)
            .map_err(play_error("frame resource"))?;
        self.fences.frame_bufs.insert(resource, slot.handle);
        Ok(resource)
    }

    fn queue_output(&mut self, resource: u32) -> Result<(), PlayError> {
        let buf =
            *self.fences.frame_bufs.get(&resource).ok_or_else(|| {
                PlayError::new("queue frame", format!("no frame buffer {resource}"))
            })?;
        let fence = dma_service::fence_create(self.fences.context, FRAME_FENCE_TIMEOUT_US)
            .map_err(dma_error("decode fence"))?;
        dma_service::buf_add_fence(buf, fence, Usage::Write).map_err(dma_error("decode fence"))?;
        self.fences.pending.insert(resource, fence);
        self.driver
            .queue_output(resource)
            .map_err(play_error("queue frame"))
    }

    fn poll(&mut self) -> Result<Option<DecoderEvent>, PlayError> {
        let completion = match self.stash.pop() {
            Some(c) => Some(c),
            None => self.driver.poll().map_err(play_error("decoder"))?,
        };
        Ok(completion.map(|c| match c {
            Completion::InputDone { resource, .. } => DecoderEvent::InputDone { resource },
            Completion::Frame {
                resource,
                timestamp,
                flags,
            } => {
                self.fences.signal(resource);
                DecoderEvent::Frame {
                    resource,
                    timestamp,
                    eos: flags.eos(),
                    error: flags.err(),
                }
            }
            Completion::ResolutionChanged(_) => DecoderEvent::ResolutionChanged,
            Completion::StreamError => {
                self.fences.fail_all("the decoder reported an error");
                DecoderEvent::Error
            }
        }))
    }

    fn drain(&mut self) -> Result<(), PlayError> {
        self.driver.drain().map_err(play_error("drain"))
    }

    fn drop_outputs(&mut self) -> Result<(), PlayError> {
        self.driver
            .clear(QueueType::Output)
            .map_err(play_error("clear frames"))?;
        while self.driver.outstanding(QueueType::Output) > 0 {
            match self
                .driver
                .wait(1_000_000_000)
                .map_err(play_error("clear frames"))?
            {
                Some(Completion::Frame { resource, .. }) => self.fences.signal(resource),
                Some(other) => self.stash.insert(0, other),
                None => {
                    return Err(PlayError::new(
                        "clear frames",
                        "the decoder kept frame buffers",
                    ))
                }
            }
        }
        self.driver
            .destroy_resources(QueueType::Output)
            .map_err(play_error("destroy frames"))?;
        self.fences.frame_bufs.clear();
        Ok(())
    }

    fn stop(&mut self) {
        if let Err(e) = self.driver.teardown() {
            log::warn!("video: stopping the stream: {e} (the decoder was reset)");
        }
        self.fences.fail_all("the stream stopped");
        self.fences.frame_bufs.clear();
        self.stash.clear();
    }
}

/// dma-bufs for the decoder and the GPU.
struct BoardBuffers<'a> {
    bitstream_device: &'a DeviceDma,
    frame_device: &'a DeviceDma,
    gpu: &'a DeviceDma,
    live: &'a mut BTreeMap<u32, BufferState>,
    /// CPU-access brackets for writing opened on frame buffers already freed.
    frame_copies: &'a mut u64,
}

impl Buffers for BoardBuffers<'_> {
    fn alloc(&mut self, kind: BufferKind, bytes: u64) -> Result<Slot, PlayError> {
        let (device, name) = match kind {
            BufferKind::Bitstream => (self.bitstream_device, "video-bitstream"),
            BufferKind::Frame => (self.frame_device, "video-frame"),
        };
        let (buf, decoder) =
            dma_service::device_buffer(device, bytes, name).map_err(dma_error("allocate"))?;
        let gpu = if kind == BufferKind::Frame {
            match dma_service::attach_contiguous(buf, self.gpu) {
                Ok(mapping) => Some(mapping),
                Err(e) => {
                    let _ = dma_service::detach_contiguous(buf, &decoder);
                    let _ = dma_service::buf_put(buf);
                    return Err(PlayError::new("attach frame to the GPU", e));
                }
            }
        } else {
            None
        };
        self.live.insert(buf, BufferState { buf, decoder, gpu });
        Ok(Slot {
            handle: buf,
            bus: decoder.segment.bus,
            len: decoder.segment.len,
            display_bus: gpu.map(|g| g.segment.bus),
        })
    }

    fn fill(&mut self, slot: &Slot, bytes: &[u8]) -> Result<(), PlayError> {
        let buf = slot.handle;
        dma_service::begin_cpu_access(buf, DmaDirection::ToDevice).map_err(dma_error("fill"))?;
        let copied = dma_service::vmap(buf, |mapped| match mapped.get_mut(..bytes.len()) {
            Some(room) => {
                room.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(PlayError::new("fill", "access unit larger than its buffer")),
        });
        dma_service::end_cpu_access(buf, DmaDirection::ToDevice).map_err(dma_error("fill"))?;
        copied.map_err(dma_error("fill"))?
    }

    fn free(&mut self, slot: Slot) {
        let Some(state) = self.live.remove(&slot.handle) else {
            return;
        };
        if state.gpu.is_some() {
            *self.frame_copies += dma_service::cpu_writes(state.buf).unwrap_or(0);
        }
        if let Some(gpu) = &state.gpu {
            let _ = dma_service::detach_contiguous(state.buf, gpu);
        }
        let _ = dma_service::detach_contiguous(state.buf, &state.decoder);
        if let Err(e) = dma_service::buf_put(state.buf) {
            log::warn!("video: releasing dma-buf {}: {e}", state.buf);
        }
    }
}

/// The GPU side: one resource per frame buffer.
struct GpuScreen<'a> {
    /// Screen index → (GPU resource id, its buffer).
    resources: &'a mut BTreeMap<usize, (u32, BufId)>,
    scanout: u32,
    /// Log each shown frame's CRC-32, read when it is shown (before the buffer can go
    /// back to the decoder).
    crc: bool,
    shown: &'a mut u64,
}

fn gpu_error(step: &'static str) -> impl Fn(virtio_gpu::GpuServiceError) -> PlayError {
    move |e| PlayError::new(step, e)
}

impl Screen for GpuScreen<'_> {
    fn add(&mut self, index: usize, slot: &Slot, format: &FrameFormat) -> Result<(), PlayError> {
        let gpu_bus = slot.display_bus.ok_or_else(|| {
            PlayError::new("GPU resource", "frame buffer not attached to the GPU")
        })?;
        let resource = GPU_RESOURCE_BASE + index as u32;
        let len = u32::try_from(format.size)
            .map_err(|_| PlayError::new("GPU resource", "frame larger than 4 GiB"))?;
        virtio_gpu::with(|g| {
            g.resource_create_2d(resource, GpuFormat::B8G8R8A8, format.width, format.height)?;
            if let Err(e) = g.attach_backing(resource, gpu_bus, len) {
                let _ = g.resource_unref(resource);
                return Err(e);
            }
            Ok(())
        })
        .map_err(gpu_error("GPU resource"))?;
        self.resources.insert(index, (resource, slot.handle));
        Ok(())
    }

    fn show(&mut self, index: usize, format: &FrameFormat) -> Result<(), PlayError> {
        let (resource, buf) = *self
            .resources
            .get(&index)
            .ok_or_else(|| PlayError::new("show", format!("no GPU resource for frame {index}")))?;
        if self.crc {
            log_crc(buf, *self.shown, format);
        }
        *self.shown += 1;
        let rect = Rect::new(0, 0, format.width, format.height);
        let scanout = self.scanout;
        let scan_out = move || {
            virtio_gpu::with(|g| {
                g.set_scanout(scanout, resource, rect)?;
                g.transfer_to_host_2d(resource, rect, 0)?;
                g.resource_flush(resource, rect)
            })
        };
        // The GPU reads the frame: after the decoder's write fence.
        let pending = dma_service::pending_writers(buf).map_err(dma_error("show"))?;
        if pending.is_empty() {
            return scan_out().map_err(gpu_error("show"));
        }
        let context =
            dma_service::fence_context("virtio-gpu", "video").map_err(dma_error("show"))?;
        dma_service::job_submit(
            context,
            &pending,
            FRAME_FENCE_TIMEOUT_US,
            alloc::boxed::Box::new(move || {
                if let Err(e) = scan_out() {
                    log::warn!("video: deferred scan-out: {e}");
                }
            }),
        )
        .map_err(dma_error("show"))?;
        Ok(())
    }

    fn remove_all(&mut self) {
        self.remove(|_| true, true);
    }

    fn keep_only(&mut self, index: usize) {
        self.remove(|i| i != index, false);
    }
}

impl GpuScreen<'_> {
    /// Detach and drop the resources whose index `which` picks; `blank` turns the scanout
    /// off first (it may show one of them).
    fn remove(&mut self, which: impl Fn(usize) -> bool, blank: bool) {
        let picked: Vec<usize> = self
            .resources
            .keys()
            .copied()
            .filter(|&i| which(i))
            .collect();
        let resources: Vec<u32> = picked
            .iter()
            .filter_map(|i| self.resources.remove(i).map(|(r, _)| r))
            .collect();
        if resources.is_empty() {
            return;
        }
        let scanout = self.scanout;
        let outcome = virtio_gpu::with(|g| {
            if blank {
                let _ = g.set_scanout(scanout, 0, Rect::new(0, 0, 0, 0));
            }
            for resource in &resources {
                let _ = g.detach_backing(*resource);
                let _ = g.resource_unref(*resource);
            }
            Ok(())
        });
        if let Err(e) = outcome {
            log::warn!("video: removing GPU resources: {e}");
        }
    }
}

/// One play.
struct Playback {
    player: Player,
    clip: &'static [u8],
    units_total: usize,
    /// What the display showed before, to give it back.
    restore: Option<Showing>,
    pipeline: Pipeline,
    /// Guest instructions spent in the play's steps (player, both drivers, fences), when
    /// the PMU counts them (under QEMU's `-icount`).
    instructions: Option<u64>,
}

/// What the player's three adapters work on: the devices' DMA descriptions, fences,
/// buffers and resources. Kept apart from the [`Player`] so the adapters can be made
/// before the player exists (its start needs them) and for every step after.
struct Pipeline {
    crc: bool,
    bitstream_device: DeviceDma,
    frame_device: DeviceDma,
    gpu: DeviceDma,
    fences: Fencing,
    stash: Vec<Completion>,
    live: BTreeMap<u32, BufferState>,
    resources: BTreeMap<usize, (u32, BufId)>,
    frame_copies: u64,
    /// Frames handed to the screen (numbers the CRC lines).
    shown: u64,
}

impl Pipeline {
    /// Runs `f` with the three adapters over the decoder driver.
    fn with_adapters<R>(
        &mut self,
        f: impl FnOnce(&mut BoardDecoder<'_>, &mut BoardBuffers<'_>, &mut GpuScreen<'_>) -> R,
    ) -> Result<R, virtio_video::VideoServiceError> {
        virtio_video::with(|driver| {
            let mut decoder = BoardDecoder {
                driver,
                fences: &mut self.fences,
                stash: &mut self.stash,
            };
            let mut buffers = BoardBuffers {
                bitstream_device: &self.bitstream_device,
                frame_device: &self.frame_device,
                gpu: &self.gpu,
                live: &mut self.live,
                frame_copies: &mut self.frame_copies,
            };
            let mut screen = GpuScreen {
                resources: &mut self.resources,
                scanout: 0,
                crc: self.crc,
                shown: &mut self.shown,
            };
            Ok(f(&mut decoder, &mut buffers, &mut screen))
        })
    }
}

enum PlaySlot {
    Idle,
    Playing(alloc::boxed::Box<Playback>),
    InUse,
}

static PLAYBACK: IrqSafeLock<PlaySlot> = IrqSafeLock::new(PlaySlot::Idle);
static LAST: IrqSafeLock<Option<String>> = IrqSafeLock::new(None);

fn take() -> Result<Option<alloc::boxed::Box<Playback>>, VideoServiceError> {
    PLAYBACK.lock(|slot| match core::mem::replace(slot, PlaySlot::InUse) {
        PlaySlot::Playing(p) => Ok(Some(p)),
        PlaySlot::Idle => {
            *slot = PlaySlot::Idle;
            Ok(None)
        }
        PlaySlot::InUse => Err(VideoServiceError::Busy),
    })
}

fn put(playback: Option<alloc::boxed::Box<Playback>>) {
    PLAYBACK.lock(|slot| {
        *slot = match playback {
            Some(p) => PlaySlot::Playing(p),
            None => PlaySlot::Idle,
        }
    });
}

fn decoder_devices() -> Result<(DeviceDma, DeviceDma), PlayError> {
    let path = virtio_video::device_path().ok_or_else(|| {
        PlayError::new(
            "decoder",
            "no virtio-video decoder (boot --board virt-video)",
        )
    })?;
    let device = dma_service::device(&path)
        .and_then(|d| {
            d.with_max_segments(1)
                .map_err(dma_service::DmaError::Device)
        })
        .map_err(dma_error("decoder DMA"))?;
    let plan =
        kmem::plan().ok_or_else(|| PlayError::new("decoder DMA", "no reserved-memory plan"))?;
    Ok((
        device.clone().for_region_named(plan, "bitstream"),
        device.for_region_named(plan, "frames"),
    ))
}

fn gpu_device() -> Result<DeviceDma, PlayError> {
    let path =
        virtio_gpu::device_path().ok_or_else(|| PlayError::new("GPU", "no virtio-gpu device"))?;
    dma_service::device(&path)
        .and_then(|d| {
            d.with_max_segments(1)
                .map_err(dma_service::DmaError::Device)
        })
        .map_err(dma_error("GPU DMA"))
}

/// The clip's bitstream and its access units.
fn loaded_clip() -> Result<(&'static [u8], Vec<Range<usize>>), VideoServiceError> {
    let region = kmem::reserved_region_bytes(clip::COMPATIBLE)
        .ok_or(VideoServiceError::Clip(ClipError::NoRegion))?;
    let range = clip::bitstream(region).map_err(VideoServiceError::Clip)?;
    let bitstream = &region[range];
    let units = annexb::access_units(bitstream);
    Ok((bitstream, units))
}

/// `video play [loop] [crc]`.
pub fn play(looping: bool, crc: bool) -> Result<String, VideoServiceError> {
    match take()? {
        Some(playback) if !playback.player.is_over() => {
            // One play at a time: put it back untouched.
            put(Some(playback));
            return Err(VideoServiceError::Busy);
        }
        // A finished play's last frame makes way for the new one.
        Some(mut finished) => release(&mut finished),
        None => {}
    }
    let outcome = start(looping, crc);
    match outcome {
        Ok((playback, text)) => {
            put(Some(playback));
            Ok(text)
        }
        Err(e) => {
            put(None);
            Err(e)
        }
    }
}

fn start(
    looping: bool,
    crc: bool,
) -> Result<(alloc::boxed::Box<Playback>, String), VideoServiceError> {
    let (clip, units) = loaded_clip()?;
    let units_total = units.len();
    let (bitstream_device, frame_device) = decoder_devices().map_err(VideoServiceError::Play)?;
    let gpu = gpu_device().map_err(VideoServiceError::Play)?;
    let context = dma_service::fence_context("virtio-video", "decode")
        .map_err(|e| VideoServiceError::Play(PlayError::new("fences", e)))?;
    let mut pipeline = Pipeline {
        crc,
        bitstream_device,
        frame_device,
        gpu,
        fences: Fencing {
            context,
            frame_bufs: BTreeMap::new(),
            pending: BTreeMap::new(),
        },
        stash: Vec::new(),
        live: BTreeMap::new(),
        resources: BTreeMap::new(),
        frame_copies: 0,
        shown: 0,
    };
    // The video takes the screen; the display gets it back when the play ends.
    let restore = display_service::showing();
    if restore.is_some() {
        let _ = display_service::off();
    }
    let started = pipeline
        .with_adapters(|decoder, buffers, _| Player::start(clip, units, looping, decoder, buffers));
    let player = match started {
        Ok(Ok(player)) => player,
        Ok(Err(e)) => {
            give_screen_back(restore);
            return Err(VideoServiceError::Play(e));
        }
        Err(e) => {
            give_screen_back(restore);
            return Err(VideoServiceError::Play(PlayError::new("decoder", e)));
        }
    };
    let text = format!(
        "playing {units_total} access units ({} bytes){}",
        clip.len(),
        if looping { ", looping" } else { "" }
    );
    let playback = alloc::boxed::Box::new(Playback {
        player,
        clip,
        units_total,
        restore,
        pipeline,
        instructions: crate::cpu::pmu::count_instructions().ok().map(|()| 0),
    });
    Ok((playback, text))
}

fn give_screen_back(restore: Option<Showing>) {
    if let Some(showing) = restore {
        if let Err(e) = display_service::show(showing) {
            log::warn!("video: giving the screen back: {e}");
        }
    }
}

/// Runs one step of the play, if one is running (the console calls it when idle).
pub fn poll() {
    let Ok(Some(mut playback)) = take() else {
        return;
    };
    if playback.player.is_over() {
        put(Some(playback));
        return;
    }
    let now = dma_service::now_us();
    let clip = playback.clip;
    let before = crate::cpu::pmu::instructions_retired();
    let stepped = with_adapters(&mut playback, |player, decoder, buffers, screen| {
        player.step(clip, now, decoder, buffers, screen)
    });
    if let Some(total) = playback.instructions.as_mut() {
        *total += u64::from(crate::cpu::pmu::instructions_retired().wrapping_sub(before));
    }
    match stepped {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log::warn!("video: {e}"),
        Err(e) => log::warn!("video: {e}"),
    }
    if playback.player.is_over() {
        finish(playback);
    } else {
        put(Some(playback));
    }
}

/// Runs `f` with the play's player and its three adapters over the decoder driver.
fn with_adapters<R>(
    p: &mut Playback,
    f: impl FnOnce(&mut Player, &mut BoardDecoder<'_>, &mut BoardBuffers<'_>, &mut GpuScreen<'_>) -> R,
) -> Result<R, virtio_video::VideoServiceError> {
    let Playback {
        player, pipeline, ..
    } = p;
    pipeline.with_adapters(|decoder, buffers, screen| f(player, decoder, buffers, screen))
}

/// Stop the play (a finished one: free its last frame) and give the screen back.
fn release(playback: &mut Playback) {
    if let Err(e) = with_adapters(playback, |player, decoder, buffers, screen| {
        player.stop(decoder, buffers, screen)
    }) {
        log::warn!("video: stop: {e}");
    }
    let _ = dma_service::fence_retire();
    give_screen_back(playback.restore);
}

fn log_crc(buf: BufId, number: u64, format: &FrameFormat) {
    let len = format.size as usize;
    let crc = dma_service::begin_cpu_access(buf, DmaDirection::FromDevice).and_then(|_| {
        let crc = dma_service::vmap(buf, |bytes| crc32fast::hash(&bytes[..len.min(bytes.len())]));
        let _ = dma_service::end_cpu_access(buf, DmaDirection::FromDevice);
        crc
    });
    match crc {
        Ok(crc) => log::info!(
            "video: frame {number} {}x{} crc32 {crc:08x}",
            format.width,
            format.height
        ),
        Err(e) => log::warn!("video: frame {number}: crc: {e}"),
    }
}

/// The play is over: record its summary, give the screen back.
fn finish(playback: alloc::boxed::Box<Playback>) {
    let summary = describe(&playback);
    let outcome = match playback.player.state() {
        State::Finished => String::from("finished"),
        State::Stopped => String::from("stopped"),
        State::Failed(why) => format!("failed: {why}"),
        other => format!("{other:?}"),
    };
    log::info!(
        "video: {outcome} ({} frames shown)",
        playback.player.stats().frames_shown
    );
    LAST.lock(|last| *last = Some(format!("last play {outcome}\n{summary}")));
    let _ = dma_service::fence_retire();
    if playback.player.holds_buffers() {
        // The last frame stays on screen until `video stop` or the next play.
        put(Some(playback));
    } else {
        give_screen_back(playback.restore);
        put(None);
    }
}

fn describe(p: &Playback) -> String {
    let stats = p.player.stats();
    let (size, format) = match p.player.format() {
        Some(f) => (
            format!("{}x{}", f.width, f.height),
            "ARGB8888 (B8G8R8A8 on the GPU)",
        ),
        None => (String::from("-"), "-"),
    };
    let fps = stats.millifps().map_or(String::from("-"), |m| {
        format!("{}.{:03}", m / 1000, m % 1000)
    });
    let copies = p.pipeline.frame_copies
        + p.pipeline
            .live
            .values()
            .filter(|b| b.gpu.is_some())
            .map(|b| dma_service::cpu_writes(b.buf).unwrap_or(0))
            .sum::<u64>();
    let copies_per_frame = match stats.frames_shown {
        0 => String::from("-"),
        shown => format!("{}.{:02}", copies / shown, copies * 100 / shown % 100),
    };
    let instructions = match (p.instructions, stats.frames_shown) {
        (Some(total), shown) if shown > 0 => format!("{}", total / shown),
        _ => String::from("- (the PMU counts instructions under -icount only)"),
    };
    format!(
        "format {format}\nsize {size}\nframes {} shown, {} decoded, {} access units\nfps {fps}\n\
         resolution changes {}\nloops {}\ncopies per frame {copies_per_frame} ({copies} CPU writes into frame buffers)\n\
         guest instructions per frame {instructions}",
        stats.frames_shown,
        stats.frames_decoded,
        p.units_total,
        stats.resolution_changes,
        stats.loops,
    )
}

/// `video stop`: stop a running play, or take a finished play's last frame off the screen.
pub fn stop() -> Result<String, VideoServiceError> {
    let mut playback = take()?.ok_or(VideoServiceError::NotPlaying)?;
    let was_over = playback.player.is_over();
    release(&mut playback);
    let text = describe(&playback);
    if !was_over {
        LAST.lock(|last| *last = Some(format!("last play stopped\n{text}")));
    }
    put(None);
    Ok(if was_over {
        String::from("last frame released")
    } else {
        format!("stopped\n{text}")
    })
}

/// `video info`: the decoder (probed on first use, so its rings count from here on) and
/// the current or last play.
pub fn info() -> Result<String, VideoServiceError> {
    let device = match virtio_video::with(|d| Ok(String::from(d.config().name()))) {
        Ok(name) => format!(
            "decoder {name} at {}",
            virtio_video::device_path().unwrap_or_default()
        ),
        Err(e) => format!("decoder: {e}"),
    };
    let current = take()?;
    let text = match &current {
        Some(p) if p.player.is_over() => format!(
            "{}\n(its last frame is on screen: video stop releases it)",
            LAST.lock(|last| last.clone()).unwrap_or_default()
        ),
        Some(p) => format!("playing ({:?})\n{}", p.player.state(), describe(p)),
        None => LAST
            .lock(|last| last.clone())
            .unwrap_or_else(|| String::from("nothing played yet (video play)")),
    };
    put(current);
    Ok(format!("{device}\n{text}"))
}

/// Whether a play is running (the console polls faster then).
pub fn is_playing() -> bool {
    PLAYBACK.lock(|slot| match slot {
        PlaySlot::Playing(p) => !p.player.is_over(),
        PlaySlot::InUse => true,
        PlaySlot::Idle => false,
    })
}
