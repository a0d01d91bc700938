//! The virtio-video decoder driver (device id 31, v3 draft) over [`Device`]: probe,
//! capabilities, one stream, params, resources backed by one contiguous range each,
//! asynchronous buffer queueing, events, drain, clear and teardown.
//!
//! # Theory of operation
//!
//! Queues: 0 carries commands, 1 events. Features: VIRTIO_F_VERSION_1 and
//! RESOURCE_GUEST_PAGES are required; RESOURCE_NON_CONTIG is never accepted, offered or
//! not, so every resource is exactly one memory entry (the caller's contiguous range,
//! e.g. a CMA dma-buf), which is what a device without NON_CONTIG needs.
//!
//! Chains follow rust-vmm's strict device: one readable request descriptor of exactly the
//! struct's size, then one writable response descriptor (RESOURCE_CREATE: request, its
//! one 16-byte memory entry, response). Response descriptors are the expected response's
//! size or `max_resp_length` (capped at [`RESPONSE_SPACE`]), whichever is larger, so a
//! response that is too long is seen (and a device that writes past short descriptors
//! still lands in our page). QUERY_CAPABILITY answers into a buffer of `max_caps_length`
//! bytes (refused above [`MAX_CAPS_LENGTH`]), allocated for the query only.
//!
//! Synchronous commands (everything but RESOURCE_QUEUE) use one command page and
//! [`Device::request`]. RESOURCE_QUEUE is answered only when the device is done with the
//! buffer, so each resource has its own DMA page (request at 0, response at
//! [`RESPONSE_OFFSET`]), allocated by [`VideoDecoder::resource_create`] and freed when
//! the resource is destroyed: queueing a frame allocates no DMA memory. Queue chains go
//! out with [`Device::submit`]; their completions (also those `request` stashed while it
//! waited) come back through [`VideoDecoder::poll`] as typed [`Completion`]s. One 8-byte
//! event buffer is posted at a time on queue 1 (rust-vmm takes one) and reposted before
//! each event is decoded.
//!
//! Strictness: every response is checked for its type (the expected one or a spec error
//! 0x300-0x305; anything else, rust-vmm's 0x206-0x20B included, is
//! [`VideoError::UnexpectedResponse`]), its exact length and its stream id.
//!
//! Failure and cleanup: a device error leaves the driver's state as it was (the device
//! refused the step). [`VideoDecoder::teardown`] stops everything: clears both queues,
//! collects the buffers they return, destroys all resources and the stream; if any step
//! fails it resets the device, which forgets everything. A timeout or DEVICE_NEEDS_RESET
//! resets the device on the spot ([`Device`] does), and the driver then frees every
//! resource page and forgets the stream; [`VideoDecoder::reset`] brings the device up
//! again for a fresh stream. [`VideoDecoder::wait`] treats silence as a stall only when
//! the device owes progress (it holds bitstream and has a frame buffer to decode into,
//! or a drain is pending): then it resets the device and reports the timeout.
#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::wire::{
    self, buffer_flag, cmd, event, feature, parse_capability, planes_layout, Config, ErrorCode,
    Event, Format, FormatDesc, GetParams, GetParamsResp, Header, MemEntry, Message, NoData, Params,
    QueryCapability, QueueClear, QueueType, ResourceCreate, ResourceDestroyAll, ResourceQueue,
    ResourceQueueResp, Response, SetParams, StreamCreate, StreamDestroy, StreamDrain, WireError,
    CONFIG_SIZE, EVENT_SIZE, MAX_PLANES, MEM_ENTRY_SIZE,
};
use crate::util::size::PAGE_SIZE;
use crate::virtio::device::Token;
use crate::virtio::hal::{DmaRegion, Hal};
use crate::virtio::queue::{Buffer, Used};
use crate::virtio::transport::{Registers, TransportError};
use crate::virtio::{id, Device, HalError, VirtioError};

/// The command queue.
pub const COMMANDQ: u16 = 0;
/// The event queue.
pub const EVENTQ: u16 = 1;
/// Entries wanted for the command queue: two per chain, every resource of both queues
/// outstanding plus a synchronous command.
const COMMANDQ_SIZE: u16 = 256;
const EVENTQ_SIZE: u16 = 8;
/// Resources per queue.
pub const MAX_RESOURCES: usize = 32;
/// Largest `max_caps_length` accepted.
pub const MAX_CAPS_LENGTH: u32 = 64 * 1024;
/// Largest response descriptor for commands other than QUERY_CAPABILITY.
pub const RESPONSE_SPACE: usize = 256;
/// Where the memory entry of RESOURCE_CREATE sits in the command page.
const ENTRIES_OFFSET: usize = 1024;
/// Where responses land in the command page and in each resource's page.
pub const RESPONSE_OFFSET: usize = 2048;
/// The pseudo command of events, for error messages.
const EVENT: u32 = 0;

/// Buffer flags of a RESOURCE_QUEUE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferFlags(pub u32);

impl BufferFlags {
    /// The buffer holds no valid data (decode error, or returned by a clear).
    pub fn err(self) -> bool {
        self.0 & buffer_flag::ERR != 0
    }
    /// The last buffer of a drain.
    pub fn eos(self) -> bool {
        self.0 & buffer_flag::EOS != 0
    }
    pub fn keyframe(self) -> bool {
        self.0 & buffer_flag::IFRAME != 0
    }
}

/// Something the device finished, as [`VideoDecoder::poll`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// A bitstream buffer is free again (consumed, or returned ERR by a clear).
    InputDone {
        resource: u32,
        timestamp: u64,
        flags: BufferFlags,
    },
    /// A frame buffer came back: decoded (timestamp of its bitstream), EOS (end of a
    /// drain, no picture) or ERR (cleared).
    Frame {
        resource: u32,
        timestamp: u64,
        flags: BufferFlags,
    },
    /// DECODER_RESOLUTION_CHANGED: the output queue's new params (already fetched).
    /// Clear the output queue, destroy its resources, create ones of the new size.
    ResolutionChanged(Params),
    /// An ERROR event: the stream is dead; only teardown is accepted.
    StreamError,
}

/// Why a decoder operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoError {
    /// Transport, queue, DMA, timeout or DEVICE_NEEDS_RESET.
    Virtio(VirtioError),
    /// The device answered a spec error code.
    Device {
        command: u32,
        code: ErrorCode,
    },
    /// A response type that is neither the expected one nor a spec error (rust-vmm's
    /// 0x206-0x20B errors end up here).
    UnexpectedResponse {
        command: u32,
        response: u32,
    },
    /// The response did not decode (length, field).
    Wire {
        command: u32,
        error: WireError,
    },
    /// The response or event names another stream.
    WrongStream {
        command: u32,
        expected: u32,
        got: u32,
    },
    /// One queued buffer failed; it is no longer queued.
    Buffer {
        queue: QueueType,
        resource: u32,
        error: Box<VideoError>,
    },
    /// An event type this driver does not know.
    UnknownEvent(u32),
    /// A completion for a chain the driver did not send.
    UnknownChain(Token),
    /// The device does not offer RESOURCE_GUEST_PAGES.
    NoGuestPages,
    /// A configuration field out of range.
    BadConfig {
        field: &'static str,
        value: u32,
    },
    NoStream,
    StreamExists,
    /// The device sent an ERROR event for the stream: tear it down.
    StreamFailed,
    /// No params for the queue yet: `params` or `set_params` first.
    NoParams(QueueType),
    /// The device's params cannot describe a buffer.
    BadParams {
        queue: QueueType,
        num_planes: u32,
    },
    NoResource {
        queue: QueueType,
        resource: u32,
    },
    AlreadyQueued {
        queue: QueueType,
        resource: u32,
    },
    /// Resources of a queue must all exist before its first buffer is queued (rust-vmm):
    /// destroy them all first.
    TooLate(QueueType),
    TooManyResources(QueueType),
    /// A backing range too short for the queue's buffers, empty, or over 4 GiB.
    BadBacking {
        len: u64,
        needed: u64,
    },
    /// A bitstream of 0 bytes or longer than its resource.
    BadData {
        bytes: u32,
        len: u32,
    },
    /// Buffers of the queue are still with the device: clear and poll first.
    Busy {
        queue: QueueType,
        outstanding: usize,
    },
}

impl From<VirtioError> for VideoError {
    fn from(e: VirtioError) -> Self {
        VideoError::Virtio(e)
    }
}

impl From<TransportError> for VideoError {
    fn from(e: TransportError) -> Self {
        VideoError::Virtio(VirtioError::Transport(e))
    }
}

impl From<HalError> for VideoError {
    fn from(e: HalError) -> Self {
        VideoError::Virtio(VirtioError::Hal(e))
    }
}

/// The command's v3 name for messages.
pub fn command_name(command: u32) -> &'static str {
    match command {
        EVENT => "event",
        cmd::QUERY_CAPABILITY => "QUERY_CAPABILITY",
        cmd::STREAM_CREATE => "STREAM_CREATE",
        cmd::STREAM_DESTROY => "STREAM_DESTROY",
        cmd::STREAM_DRAIN => "STREAM_DRAIN",
        cmd::RESOURCE_CREATE => "RESOURCE_CREATE",
        cmd::RESOURCE_QUEUE => "RESOURCE_QUEUE",
        cmd::RESOURCE_DESTROY_ALL => "RESOURCE_DESTROY_ALL",
        cmd::QUEUE_CLEAR => "QUEUE_CLEAR",
        cmd::GET_PARAMS_EXT => "GET_PARAMS_EXT",
        cmd::SET_PARAMS_EXT => "SET_PARAMS_EXT",
        _ => "command",
    }
}

impl fmt::Display for VideoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoError::Virtio(e) => write!(f, "virtio-video: {e}"),
            VideoError::Device { command, code } => {
                write!(f, "virtio-video {} answered {code}", command_name(*command))
            }
            VideoError::UnexpectedResponse { command, response } => write!(
                f,
                "virtio-video {} answered unexpected type {response:#x}",
                command_name(*command)
            ),
            VideoError::Wire { command, error } => write!(
                f,
                "virtio-video {} response malformed: {error}",
                command_name(*command)
            ),
            VideoError::WrongStream {
                command,
                expected,
                got,
            } => write!(
                f,
                "virtio-video {} names stream {got}, expected {expected}",
                command_name(*command)
            ),
            VideoError::Buffer {
                queue,
                resource,
                error,
            } => write!(f, "{queue:?} buffer {resource}: {error}"),
            VideoError::UnknownEvent(t) => write!(f, "virtio-video: unknown event {t:#x}"),
            VideoError::UnknownChain(t) => {
                write!(
                    f,
                    "virtio-video: completion of chain {t}, which was not sent"
                )
            }
            VideoError::NoGuestPages => {
                write!(f, "virtio-video device does not offer RESOURCE_GUEST_PAGES")
            }
            VideoError::BadConfig { field, value } => {
                write!(f, "virtio-video config {field} = {value} is out of range")
            }
            VideoError::NoStream => write!(f, "no virtio-video stream"),
            VideoError::StreamExists => write!(f, "a virtio-video stream already exists"),
            VideoError::StreamFailed => {
                write!(
                    f,
                    "the device reported an error on the stream; tear it down"
                )
            }
            VideoError::NoParams(q) => write!(f, "no params for the {q:?} queue yet"),
            VideoError::BadParams { queue, num_planes } => {
                write!(f, "{queue:?} params with {num_planes} planes")
            }
            VideoError::NoResource { queue, resource } => {
                write!(f, "no {queue:?} resource {resource}")
            }
            VideoError::AlreadyQueued { queue, resource } => {
                write!(f, "{queue:?} resource {resource} is already queued")
            }
            VideoError::TooLate(q) => write!(
                f,
                "{q:?} buffers were queued: destroy all its resources before creating more"
            ),
            VideoError::TooManyResources(q) => {
                write!(f, "more than {MAX_RESOURCES} {q:?} resources")
            }
            VideoError::BadBacking { len, needed } => write!(
                f,
                "backing of {len} bytes for buffers of {needed} bytes (at most 4 GiB)"
            ),
            VideoError::BadData { bytes, len } => {
                write!(f, "{bytes} bitstream bytes for a resource of {len}")
            }
            VideoError::Busy { queue, outstanding } => write!(
                f,
                "{outstanding} {queue:?} buffer(s) still with the device: clear and poll first"
            ),
        }
    }
}

impl core::error::Error for VideoError {}

/// One resource: its backing and its own DMA page for RESOURCE_QUEUE.
struct Slot {
    page: DmaRegion,
    len: u32,
    /// The RESOURCE_QUEUE chain in flight, if queued.
    token: Option<Token>,
}

struct Stream {
    id: u32,
    failed: bool,
    /// STREAM_CREATE got an answer that was neither OK nor a refusal: the device may not
    /// know the stream, and teardown accepts "invalid stream id" as done.
    uncertain: bool,
    draining: bool,
    /// DECODER_RESOLUTION_CHANGED seen, no output resource created since.
    awaiting_outputs: bool,
    params: [Option<Params>; 2],
    /// A buffer was queued since the queue's last RESOURCE_DESTROY_ALL.
    streaming: [bool; 2],
    next_resource: [u32; 2],
}

impl Stream {
    fn new(id: u32, failed: bool) -> Self {
        Stream {
            id,
            failed,
            uncertain: failed,
            draining: false,
            awaiting_outputs: false,
            params: [None; 2],
            streaming: [false; 2],
            next_resource: [1; 2],
        }
    }
}

/// Whether a failed create may still have happened on the device: it answered, but not
/// with a spec error (a refusal) and not by going silent (it was reset).
fn ambiguous(e: &VideoError) -> bool {
    !matches!(e, VideoError::Device { .. } | VideoError::Virtio(_))
}

fn qi(queue: QueueType) -> usize {
    match queue {
        QueueType::Input => 0,
        QueueType::Output => 1,
    }
}

/// A virtio-video decoder.
pub struct VideoDecoder<H: Hal, R: Registers> {
    device: Device<H, R>,
    config: Config,
    cmd: Option<DmaRegion>,
    event: Option<DmaRegion>,
    event_token: Option<Token>,
    stream: Option<Stream>,
    slots: BTreeMap<(QueueType, u32), Slot>,
    next_stream_id: u32,
}

/// Check a response: type, stream id, exact length.
fn check<M: Message>(command: u32, stream_id: u32, bytes: &[u8]) -> Result<M, VideoError> {
    let wire = |error| VideoError::Wire { command, error };
    let header = Header::decode(bytes).map_err(wire)?;
    if header.type_ != M::TYPE && ErrorCode::from_u32(header.type_).is_none() {
        return Err(VideoError::UnexpectedResponse {
            command,
            response: header.type_,
        });
    }
    if header.stream_id != stream_id {
        return Err(VideoError::WrongStream {
            command,
            expected: stream_id,
            got: header.stream_id,
        });
    }
    match Response::<M>::parse(bytes).map_err(wire)? {
        Response::Ok(m) => Ok(m),
        Response::Error(code) => Err(VideoError::Device { command, code }),
    }
}

impl<H: Hal, R: Registers> VideoDecoder<H, R> {
    /// Bring up the decoder behind `regs`: device id 31, VERSION_1 and
    /// RESOURCE_GUEST_PAGES, the configuration read and checked, the event buffer posted.
    pub fn new(hal: H, regs: R) -> Result<Self, VideoError> {
        let device = Device::new(
            hal,
            regs,
            id::VIDEO_DECODER,
            1 << feature::RESOURCE_GUEST_PAGES,
            &[COMMANDQ_SIZE, EVENTQ_SIZE],
        )?;
        let accepted = device.transport().features();
        let bytes = device.transport().read_config(|c| {
            let mut bytes = [0u8; CONFIG_SIZE];
            for (i, word) in bytes.chunks_exact_mut(4).enumerate() {
                word.copy_from_slice(&c.u32(4 * i)?.to_le_bytes());
            }
            Ok(bytes)
        })?;
        let config = Config::decode(&bytes).map_err(|error| VideoError::Wire {
            command: EVENT,
            error,
        })?;
        // From here on an error drops the driver: device reset, every page freed.
        let mut decoder = VideoDecoder {
            device,
            config,
            cmd: None,
            event: None,
            event_token: None,
            stream: None,
            slots: BTreeMap::new(),
            next_stream_id: 1,
        };
        if accepted & (1 << feature::RESOURCE_GUEST_PAGES) == 0 {
            return Err(VideoError::NoGuestPages);
        }
        let caps = config.max_caps_length;
        if !(16..=MAX_CAPS_LENGTH).contains(&caps) {
            return Err(VideoError::BadConfig {
                field: "max_caps_length",
                value: caps,
            });
        }
        decoder.cmd = Some(decoder.device.hal().dma_alloc(1)?);
        decoder.event = Some(decoder.device.hal().dma_alloc(1)?);
        decoder.post_event()?;
        Ok(decoder)
    }

    pub fn device(&self) -> &Device<H, R> {
        &self.device
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Change the per-command timeout.
    pub fn set_timeout_ns(&mut self, timeout_ns: u64) {
        self.device.set_timeout_ns(timeout_ns);
    }

    /// The stream's id, if one exists.
    pub fn stream_id(&self) -> Option<u32> {
        self.stream.as_ref().map(|s| s.id)
    }

    /// The params last read for `queue`.
    pub fn cached_params(&self, queue: QueueType) -> Option<Params> {
        self.stream.as_ref()?.params[qi(queue)]
    }

    /// Resources of `queue`, with whether each is queued.
    pub fn resources(&self, queue: QueueType) -> impl Iterator<Item = (u32, bool)> + '_ {
        self.slots
            .iter()
            .filter(move |((q, _), _)| *q == queue)
            .map(|((_, id), slot)| (*id, slot.token.is_some()))
    }

    /// Buffers of `queue` with the device.
    pub fn outstanding(&self, queue: QueueType) -> usize {
        self.resources(queue).filter(|(_, queued)| *queued).count()
    }

    fn response_space(&self, size: usize) -> usize {
        size.max((self.config.max_resp_length as usize).min(RESPONSE_SPACE))
    }

    /// The device was reset under us (timeout, DEVICE_NEEDS_RESET, a lie in the used
    /// ring): it holds nothing, so every resource page can go.
    fn forget(&mut self) {
        for (_, slot) in core::mem::take(&mut self.slots) {
            // A Hal that refuses its own region leaves nothing for us to do.
            let _ = self.device.hal().dma_free(slot.page);
        }
        self.stream = None;
        self.event_token = None;
    }

    /// Map a virtio failure, forgetting everything if it left the device reset.
    fn virtio<T>(&mut self, result: Result<T, VirtioError>) -> Result<T, VideoError> {
        result.map_err(|e| {
            if self.device.is_broken() {
                self.forget();
            }
            VideoError::Virtio(e)
        })
    }

    fn post_event(&mut self) -> Result<(), VideoError> {
        let Some(page) = self.event.as_ref() else {
            return Err(VideoError::Virtio(VirtioError::Broken));
        };
        let buffer = Buffer {
            paddr: page.paddr(),
            len: EVENT_SIZE as u32,
        };
        let token = self.device.submit(EVENTQ, &[], &[buffer]);
        self.event_token = Some(self.virtio(token)?);
        Ok(())
    }

    /// Send one synchronous chain: `request`, its memory entry for RESOURCE_CREATE, and
    /// `response` as the one writable descriptor. Returns the bytes the device wrote.
    fn send(
        &mut self,
        request: &[u8],
        entry: Option<MemEntry>,
        response: Buffer,
    ) -> Result<usize, VideoError> {
        let Some(cmd) = self.cmd.as_ref() else {
            return Err(VideoError::Virtio(VirtioError::Broken));
        };
        let hal = self.device.hal();
        hal.write(cmd, 0, request)?;
        let mut readable = [Buffer {
            paddr: cmd.paddr(),
            len: request.len() as u32,
        }; 2];
        let mut count = 1;
        if let Some(entry) = entry {
            hal.write(cmd, ENTRIES_OFFSET, &wire::encode_entries(&[entry]))?;
            readable[1] = Buffer {
                paddr: cmd.paddr() + ENTRIES_OFFSET as u64,
                len: MEM_ENTRY_SIZE as u32,
            };
            count = 2;
        }
        let written = self
            .device
            .request(COMMANDQ, &readable[..count], &[response]);
        Ok(self.virtio(written)? as usize)
    }

    /// A synchronous command answered with `Resp` (or a spec error) in the command page.
    fn command<Resp: Message>(
        &mut self,
        command: u32,
        stream_id: u32,
        request: &[u8],
        entry: Option<MemEntry>,
    ) -> Result<Resp, VideoError> {
        let len = self.response_space(Resp::SIZE);
        let Some(paddr) = self.cmd.as_ref().map(DmaRegion::paddr) else {
            return Err(VideoError::Virtio(VirtioError::Broken));
        };
        let response = Buffer {
            paddr: paddr + RESPONSE_OFFSET as u64,
            len: len as u32,
        };
        let written = self.send(request, entry, response)?;
        let mut bytes = [0u8; RESPONSE_SPACE];
        let bytes = &mut bytes[..written.min(RESPONSE_SPACE)];
        if let Some(cmd) = self.cmd.as_ref() {
            self.device.hal().read(cmd, RESPONSE_OFFSET, bytes)?;
        }
        check::<Resp>(command, stream_id, bytes)
    }

    fn stream_ref(&self) -> Result<&Stream, VideoError> {
        match self.stream.as_ref() {
            Some(s) if s.failed => Err(VideoError::StreamFailed),
            Some(s) => Ok(s),
            None => Err(VideoError::NoStream),
        }
    }

    fn stream_mut(&mut self) -> Result<&mut Stream, VideoError> {
        self.stream_ref()?;
        self.stream.as_mut().ok_or(VideoError::NoStream)
    }

    /// QUERY_CAPABILITY for `queue`: the formats it takes and their frame sizes.
    pub fn query_capability(&mut self, queue: QueueType) -> Result<Vec<FormatDesc>, VideoError> {
        let command = cmd::QUERY_CAPABILITY;
        let caps_len = self.config.max_caps_length as usize;
        let pages = caps_len.div_ceil(PAGE_SIZE as usize);
        let caps = self.device.hal().dma_alloc(pages)?;
        let response = Buffer {
            paddr: caps.paddr(),
            len: caps_len as u32,
        };
        let request = QueryCapability { queue_type: queue }.encode(0);
        let result = self.send(&request, None, response).and_then(|written| {
            let mut bytes = vec![0u8; written];
            self.device.hal().read(&caps, 0, &mut bytes)?;
            Ok(bytes)
        });
        // Answered, or the device was reset: either way it no longer writes here.
        let _ = self.device.hal().dma_free(caps);
        let bytes = result?;
        let wire = |error| VideoError::Wire { command, error };
        let header = Header::decode(&bytes).map_err(wire)?;
        if header.type_ != wire::resp::OK_QUERY_CAPABILITY
            && ErrorCode::from_u32(header.type_).is_none()
        {
            return Err(VideoError::UnexpectedResponse {
                command,
                response: header.type_,
            });
        }
        if header.stream_id != 0 {
            return Err(VideoError::WrongStream {
                command,
                expected: 0,
                got: header.stream_id,
            });
        }
        match parse_capability(&bytes).map_err(wire)? {
            Response::Ok(caps) => Ok(caps.descs),
            Response::Error(code) => Err(VideoError::Device { command, code }),
        }
    }

    /// STREAM_CREATE for `coded_format` bitstream into guest-page resources. One stream
    /// at a time; returns its id.
    pub fn stream_create(&mut self, coded_format: Format) -> Result<u32, VideoError> {
        if self.stream.is_some() {
            return Err(VideoError::StreamExists);
        }
        let id = self.next_stream_id;
        self.next_stream_id = self.next_stream_id.checked_add(1).unwrap_or(1);
        let request = StreamCreate::new(coded_format, "monolith").encode(id);
        let result = self.command::<NoData>(cmd::STREAM_CREATE, id, &request, None);
        if let Err(e) = result {
            if ambiguous(&e) {
                // The device may have made the stream: keep it, failed, for teardown.
                self.stream = Some(Stream::new(id, true));
            }
            return Err(e);
        }
        self.stream = Some(Stream::new(id, false));
        Ok(id)
    }

    /// GET_PARAMS_EXT for `queue` (remembered for resource creation).
    pub fn params(&mut self, queue: QueueType) -> Result<Params, VideoError> {
        let id = self.stream_ref()?.id;
        let command = cmd::GET_PARAMS_EXT;
        let request = GetParams { queue_type: queue }.encode(id);
        let params = self
            .command::<GetParamsResp>(command, id, &request, None)?
            .params;
        if params.queue_type != queue {
            return Err(VideoError::Wire {
                command,
                error: WireError::Field {
                    field: "params.queue_type",
                    value: params.queue_type as u32,
                },
            });
        }
        self.stream_mut()?.params[qi(queue)] = Some(params);
        Ok(params)
    }

    /// SET_PARAMS_EXT, then GET_PARAMS_EXT: the params as the device took them.
    pub fn set_params(&mut self, params: Params) -> Result<Params, VideoError> {
        let id = self.stream_ref()?.id;
        let request = SetParams { params }.encode(id);
        self.command::<NoData>(cmd::SET_PARAMS_EXT, id, &request, None)?;
        self.params(params.queue_type)
    }

    /// RESOURCE_CREATE on `queue` backed by `[paddr, paddr + len)`, one physically
    /// contiguous range (a bus address from the DMA API), as one memory entry holding
    /// all planes at the offsets the queue's params give. Returns the resource id.
    /// All resources of a queue come before its first queued buffer.
    pub fn resource_create(
        &mut self,
        queue: QueueType,
        paddr: u64,
        len: u64,
    ) -> Result<u32, VideoError> {
        let stream = self.stream_ref()?;
        let (id, resource_id) = (stream.id, stream.next_resource[qi(queue)]);
        if stream.streaming[qi(queue)] {
            return Err(VideoError::TooLate(queue));
        }
        let params = stream.params[qi(queue)].ok_or(VideoError::NoParams(queue))?;
        if self.resources(queue).count() >= MAX_RESOURCES {
            return Err(VideoError::TooManyResources(queue));
        }
        let planes = params.num_planes as usize;
        if planes == 0 || planes > MAX_PLANES {
            return Err(VideoError::BadParams {
                queue,
                num_planes: params.num_planes,
            });
        }
        let needed = params.buffer_size().unwrap_or(u64::MAX);
        let length = u32::try_from(len).ok().filter(|l| *l > 0 && len >= needed);
        let Some(length) = length else {
            return Err(VideoError::BadBacking { len, needed });
        };
        let mut create = ResourceCreate {
            queue_type: queue,
            resource_id,
            planes_layout: planes_layout::SINGLE_BUFFER,
            num_planes: params.num_planes,
            plane_offsets: [0; MAX_PLANES],
            num_entries: [0; MAX_PLANES],
        };
        create.num_entries[0] = 1;
        let mut offset = 0u32;
        for p in 0..planes {
            create.plane_offsets[p] = offset;
            offset = offset.saturating_add(params.plane_formats[p].plane_size);
        }
        let page = self.device.hal().dma_alloc(1)?;
        let entry = MemEntry {
            addr: paddr,
            length,
        };
        let request = create.encode(id);
        let result = self.command::<NoData>(cmd::RESOURCE_CREATE, id, &request, Some(entry));
        if let Err(e) = result {
            if ambiguous(&e) && !self.device.is_broken() {
                // The device may hold the resource (and the caller's memory): keep it,
                // so destroying the queue's resources covers it, and fail the stream.
                self.slots.insert(
                    (queue, resource_id),
                    Slot {
                        page,
                        len: length,
                        token: None,
                    },
                );
                if let Some(s) = self.stream.as_mut() {
                    s.next_resource[qi(queue)] = resource_id.checked_add(1).unwrap_or(1);
                    s.failed = true;
                }
            } else {
                let _ = self.device.hal().dma_free(page);
            }
            return Err(e);
        }
        let stream = self.stream_mut()?;
        stream.next_resource[qi(queue)] = resource_id.checked_add(1).unwrap_or(1);
        if queue == QueueType::Output {
            stream.awaiting_outputs = false;
        }
        self.slots.insert(
            (queue, resource_id),
            Slot {
                page,
                len: length,
                token: None,
            },
        );
        Ok(resource_id)
    }

    fn queue(
        &mut self,
        queue: QueueType,
        resource: u32,
        bytes: u32,
        timestamp: u64,
    ) -> Result<(), VideoError> {
        let id = self.stream_ref()?.id;
        let response_len = self.response_space(ResourceQueueResp::SIZE);
        let slot = self
            .slots
            .get(&(queue, resource))
            .ok_or(VideoError::NoResource { queue, resource })?;
        if slot.token.is_some() {
            return Err(VideoError::AlreadyQueued { queue, resource });
        }
        let mut request = ResourceQueue {
            queue_type: queue,
            resource_id: resource,
            timestamp,
            num_data_sizes: 0,
            data_sizes: [0; MAX_PLANES],
        };
        if queue == QueueType::Input {
            if bytes == 0 || bytes > slot.len {
                return Err(VideoError::BadData {
                    bytes,
                    len: slot.len,
                });
            }
            request.num_data_sizes = 1;
            request.data_sizes[0] = bytes;
        }
        self.device
            .hal()
            .write(&slot.page, 0, &request.encode(id))?;
        let readable = Buffer {
            paddr: slot.page.paddr(),
            len: ResourceQueue::SIZE as u32,
        };
        let writable = Buffer {
            paddr: slot.page.paddr() + RESPONSE_OFFSET as u64,
            len: response_len as u32,
        };
        let token = self.device.submit(COMMANDQ, &[readable], &[writable]);
        let token = self.virtio(token)?;
        if let Some(slot) = self.slots.get_mut(&(queue, resource)) {
            slot.token = Some(token);
        }
        self.stream_mut()?.streaming[qi(queue)] = true;
        Ok(())
    }

    /// RESOURCE_QUEUE a bitstream buffer: `bytes` of it hold coded data; `timestamp`
    /// (ns) comes back on the frame decoded from it. Answered through [`Self::poll`].
    pub fn queue_input(
        &mut self,
        resource: u32,
        bytes: u32,
        timestamp: u64,
    ) -> Result<(), VideoError> {
        self.queue(QueueType::Input, resource, bytes, timestamp)
    }

    /// RESOURCE_QUEUE an empty frame buffer for the device to decode into.
    pub fn queue_output(&mut self, resource: u32) -> Result<(), VideoError> {
        self.queue(QueueType::Output, resource, 0, 0)
    }

    /// The next completion, without waiting: buffers the device is done with first, then
    /// events. `Ok(None)`: nothing yet.
    pub fn poll(&mut self) -> Result<Option<Completion>, VideoError> {
        let used = self.device.pop_used(COMMANDQ);
        if let Some(used) = self.virtio(used)? {
            return self.buffer_done(used).map(Some);
        }
        let used = self.device.pop_used(EVENTQ);
        if let Some(used) = self.virtio(used)? {
            return self.event_done(used);
        }
        Ok(None)
    }

    fn buffer_done(&mut self, used: Used) -> Result<Completion, VideoError> {
        let found = self
            .slots
            .iter_mut()
            .find(|(_, slot)| slot.token == Some(used.token));
        let Some((&(queue, resource), slot)) = found else {
            return Err(VideoError::UnknownChain(used.token));
        };
        slot.token = None;
        let mut bytes = [0u8; RESPONSE_SPACE];
        let bytes = &mut bytes[..(used.len as usize).min(RESPONSE_SPACE)];
        self.device.hal().read(&slot.page, RESPONSE_OFFSET, bytes)?;
        let stream_id = self.stream.as_ref().map_or(0, |s| s.id);
        let response =
            check::<ResourceQueueResp>(cmd::RESOURCE_QUEUE, stream_id, bytes).map_err(|error| {
                VideoError::Buffer {
                    queue,
                    resource,
                    error: Box::new(error),
                }
            })?;
        let flags = BufferFlags(response.flags);
        let timestamp = response.timestamp;
        Ok(match queue {
            QueueType::Input => Completion::InputDone {
                resource,
                timestamp,
                flags,
            },
            QueueType::Output => {
                if flags.eos() {
                    if let Some(s) = self.stream.as_mut() {
                        s.draining = false;
                    }
                }
                Completion::Frame {
                    resource,
                    timestamp,
                    flags,
                }
            }
        })
    }

    fn event_done(&mut self, used: Used) -> Result<Option<Completion>, VideoError> {
        if self.event_token != Some(used.token) {
            return Err(VideoError::UnknownChain(used.token));
        }
        let mut bytes = [0u8; EVENT_SIZE];
        let len = (used.len as usize).min(EVENT_SIZE);
        if let Some(page) = self.event.as_ref() {
            self.device.hal().read(page, 0, &mut bytes[..len])?;
        }
        // Repost before looking at it, so a bad event does not cost the next one.
        self.post_event()?;
        let wire = |error| VideoError::Wire {
            command: EVENT,
            error,
        };
        let e = Event::decode(&bytes[..used.len as usize]).map_err(wire)?;
        let expected = self.stream.as_ref().map_or(0, |s| s.id);
        // An event the device queued for a stream we have destroyed since (an ERROR that
        // crossed our teardown) is stale, not a fault: drop it.
        let stale = e.stream_id != expected && (1..self.next_stream_id).contains(&e.stream_id);
        if stale {
            return Ok(None);
        }
        if self.stream.is_none() || e.stream_id != expected {
            return Err(VideoError::WrongStream {
                command: EVENT,
                expected,
                got: e.stream_id,
            });
        }
        match e.event_type {
            event::ERROR => {
                if let Some(s) = self.stream.as_mut() {
                    s.failed = true;
                }
                Ok(Some(Completion::StreamError))
            }
            event::DECODER_RESOLUTION_CHANGED => {
                let params = self.params(QueueType::Output)?;
                self.stream_mut()?.awaiting_outputs = true;
                Ok(Some(Completion::ResolutionChanged(params)))
            }
            other => Err(VideoError::UnknownEvent(other)),
        }
    }

    /// Whether the device owes us something: it holds bitstream and a frame buffer to
    /// decode into (or output resources are not asked for yet), or a drain is pending.
    fn owes_progress(&self) -> bool {
        let Some(stream) = self.stream.as_ref() else {
            return false;
        };
        if stream.failed || stream.awaiting_outputs {
            return false;
        }
        let input = self.outstanding(QueueType::Input) > 0;
        let output = self.outstanding(QueueType::Output) > 0;
        let no_outputs = self.resources(QueueType::Output).next().is_none();
        (input && (output || no_outputs)) || (stream.draining && output)
    }

    /// [`Self::poll`], sleeping up to `timeout_ns` for something to arrive. Silence while
    /// the device owes progress is a stall: the device is reset, everything on it
    /// forgotten, and the timeout returned ([`Self::reset`] starts again). Silence
    /// otherwise is `Ok(None)`.
    pub fn wait(&mut self, timeout_ns: u64) -> Result<Option<Completion>, VideoError> {
        let start = self.device.hal().now_ns();
        loop {
            if let Some(c) = self.poll()? {
                return Ok(Some(c));
            }
            let waited = self.device.hal().now_ns().saturating_sub(start);
            let arrived = self.device.wait_used(timeout_ns.saturating_sub(waited));
            if self.virtio(arrived)? {
                continue;
            }
            if !self.owes_progress() {
                return Ok(None);
            }
            let waited = self.device.hal().now_ns().saturating_sub(start);
            self.device.halt();
            self.forget();
            return Err(VideoError::Virtio(VirtioError::Timeout {
                queue: COMMANDQ,
                waited_ms: waited / 1_000_000,
            }));
        }
    }

    /// STREAM_DRAIN: decode everything queued; the drain ends with a [`Completion::Frame`]
    /// flagged EOS.
    pub fn drain(&mut self) -> Result<(), VideoError> {
        let id = self.stream_ref()?.id;
        self.command::<NoData>(cmd::STREAM_DRAIN, id, &StreamDrain.encode(id), None)?;
        self.stream_mut()?.draining = true;
        Ok(())
    }

    /// QUEUE_CLEAR: the device gives back every buffer of `queue` flagged ERR (through
    /// [`Self::poll`]). Accepted on a failed stream, for teardown.
    pub fn clear(&mut self, queue: QueueType) -> Result<(), VideoError> {
        let id = self.stream.as_ref().ok_or(VideoError::NoStream)?.id;
        let request = QueueClear { queue_type: queue }.encode(id);
        self.command::<NoData>(cmd::QUEUE_CLEAR, id, &request, None)?;
        if let Some(s) = self.stream.as_mut() {
            if queue == QueueType::Input {
                s.draining = false;
            }
        }
        Ok(())
    }

    /// RESOURCE_DESTROY_ALL on `queue` and free their pages. None may be queued.
    pub fn destroy_resources(&mut self, queue: QueueType) -> Result<(), VideoError> {
        let id = self.stream.as_ref().ok_or(VideoError::NoStream)?.id;
        let outstanding = self.outstanding(queue);
        if outstanding > 0 {
            return Err(VideoError::Busy { queue, outstanding });
        }
        let request = ResourceDestroyAll { queue_type: queue }.encode(id);
        self.command::<NoData>(cmd::RESOURCE_DESTROY_ALL, id, &request, None)?;
        self.free_slots(Some(queue));
        if let Some(s) = self.stream.as_mut() {
            s.streaming[qi(queue)] = false;
        }
        Ok(())
    }

    fn free_slots(&mut self, queue: Option<QueueType>) {
        let keys: Vec<(QueueType, u32)> = self
            .slots
            .keys()
            .filter(|(q, _)| queue.is_none_or(|queue| *q == queue))
            .copied()
            .collect();
        for key in keys {
            if let Some(slot) = self.slots.remove(&key) {
                let _ = self.device.hal().dma_free(slot.page);
            }
        }
    }

    /// STREAM_DESTROY (the device drops the stream's resources). No buffer may be queued.
    pub fn stream_destroy(&mut self) -> Result<(), VideoError> {
        let id = self.stream.as_ref().ok_or(VideoError::NoStream)?.id;
        for queue in [QueueType::Input, QueueType::Output] {
            let outstanding = self.outstanding(queue);
            if outstanding > 0 {
                return Err(VideoError::Busy { queue, outstanding });
            }
        }
        self.command::<NoData>(cmd::STREAM_DESTROY, id, &StreamDestroy.encode(id), None)?;
        self.free_slots(None);
        self.stream = None;
        Ok(())
    }

    /// Stop everything: clear both queues, collect the buffers they give back, destroy
    /// all resources and the stream. If the device refuses or stalls on any step it is
    /// reset and brought up again, so in every outcome it holds no resource and no
    /// buffer of the caller's when this returns; the first error is returned.
    pub fn teardown(&mut self) -> Result<(), VideoError> {
        if self.stream.is_none() {
            self.free_slots(None);
            return Ok(());
        }
        let result = self.stop();
        if result.is_err() && (self.stream.is_some() || !self.slots.is_empty()) {
            self.device.halt();
            self.forget();
            let _ = self.reset();
        }
        result
    }

    fn stop(&mut self) -> Result<(), VideoError> {
        for queue in [QueueType::Input, QueueType::Output] {
            if self.outstanding(queue) > 0 {
                self.clear(queue)?;
            }
        }
        let timeout = self.device.timeout_ns();
        let start = self.device.hal().now_ns();
        while self.outstanding(QueueType::Input) + self.outstanding(QueueType::Output) > 0 {
            // What comes back is the clear's ERR buffers; nobody wants them now, and a
            // malformed one is no longer queued either.
            match self.poll() {
                Ok(Some(_)) | Err(VideoError::Buffer { .. }) => continue,
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            let waited = self.device.hal().now_ns().saturating_sub(start);
            if waited >= timeout {
                return Err(VideoError::Virtio(VirtioError::Timeout {
                    queue: COMMANDQ,
                    waited_ms: waited / 1_000_000,
                }));
            }
            let arrived = self.device.wait_used(timeout - waited);
            self.virtio(arrived)?;
        }
        let result = self
            .destroy_resources(QueueType::Input)
            .and_then(|()| self.destroy_resources(QueueType::Output))
            .and_then(|()| self.stream_destroy());
        let uncertain = self.stream.as_ref().is_some_and(|s| s.uncertain);
        match result {
            Err(VideoError::Device {
                code: ErrorCode::InvalidStreamId,
                ..
            }) if uncertain => {
                // The stream never existed on the device: nothing holds our pages.
                self.free_slots(None);
                self.stream = None;
                Ok(())
            }
            other => other,
        }
    }

    /// Reset the device and bring it up again (after a timeout, DEVICE_NEEDS_RESET, or
    /// to abandon a stream): it forgets every stream and resource, and so does the
    /// driver; the event buffer is posted again.
    pub fn reset(&mut self) -> Result<(), VideoError> {
        self.device.halt();
        self.forget();
        self.device.reset()?;
        self.post_event()
    }
}

impl<H: Hal, R: Registers> Drop for VideoDecoder<H, R> {
    fn drop(&mut self) {
        if self.stream.is_some() && !self.device.is_broken() {
            let _ = self.stop();
        }
        // The device must not write our pages once they are freed: reset it first.
        self.device.halt();
        self.forget();
        for page in [self.cmd.take(), self.event.take()].into_iter().flatten() {
            let _ = self.device.hal().dma_free(page);
        }
    }
}
