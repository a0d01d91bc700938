//! One decoding stream: its two queues' resources, the buffers queued on them, the
//! decoder, and the state machine that moves bitstream in and frames out.
//!
//! # Theory of operation
//!
//! Queued input buffers wait in order; [`Stream::pump`] feeds the oldest one to the
//! decoder one NAL unit at a time (its bytes are read from guest memory when its turn
//! comes, `data_sizes[0]` of them from its data offset) and answers its RESOURCE_QUEUE
//! chain once every byte is consumed (flagged ERR if the decoder refused some of it).
//! Each picture the decoder returns goes, converted, into the oldest queued output buffer
//! whose resource was created for the current layout, and that buffer's chain is answered
//! 0x202 with the timestamp of the input that completed the picture.
//!
//! A picture that cannot go out at once (no output buffer queued, or the front one made
//! for another size or format) is copied and held, and no more bitstream is fed until the
//! held pictures are out: that back-pressure bounds the device's memory by the output
//! queue, never by what the driver queues on input.
//!
//! Resolution changes: the first picture, and any picture of another size, sets the
//! decoded size, raises DECODER_RESOLUTION_CHANGED and is held. Output buffers created for
//! the old size stay at the front of the queue, unused, until the driver clears the output
//! queue (they come back flagged ERR), destroys the old resources, creates new ones from
//! GET_PARAMS(output) and queues them; only then is the held picture written.
//!
//! Drain: STREAM_DRAIN is answered at once; when the last queued input is consumed the
//! decoder is flushed, the remaining pictures go out, and then the next output buffer comes
//! back empty, flagged EOS.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use log::warn;
use monolith::virtio::video::wire::{
    buffer_flag, event, Crop, ErrorCode, Event, Format, Message, Params, PlaneFormat, QueueType,
    ResourceQueue, ResourceQueueResp, MAX_PLANES,
};
use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use super::chain::{Chain, Completion, QueueIndex};
use super::resources::{Resource, ResourceTable, MAX_RESOURCES};
use crate::annexb;
use crate::codec::Decoder;
use crate::faults::Faults;
use crate::frame::{convert, FrameLayout, FrameSink, OutputFormat, OwnedPicture, Picture};

/// Largest bitstream buffer (and RESOURCE_QUEUE `data_sizes[0]`): a 1080p IDR of a
/// Constrained Baseline stream is well under it.
pub const MAX_INPUT: u32 = 32 << 20;
/// Bitstream buffer size GET_PARAMS(input) suggests until SET_PARAMS changes it.
pub const DEFAULT_INPUT_SIZE: u32 = 1 << 20;
/// Smallest bitstream buffer size SET_PARAMS may ask for.
pub const MIN_INPUT_SIZE: u32 = 4096;
/// Pictures held at most (the back-pressure keeps it to one or two; a flush may add a few).
pub const MAX_HELD: usize = 8;

/// What handling a command produced besides its own response.
#[derive(Debug, Default)]
pub struct Effects {
    /// Chains answered (pending RESOURCE_QUEUE chains), in order.
    pub completions: Vec<Completion>,
    pub events: Vec<Event>,
    /// A stall fault fired: stop answering the command queue.
    pub stall: bool,
    /// The error-event fault fired.
    pub error_event: bool,
}

/// What one call into a stream needs from the device.
pub struct Ctx<'a, M> {
    pub mem: &'a M,
    pub faults: &'a Faults,
    /// May a stall fault still fire (faults fire once per device lifetime)?
    pub stall_armed: bool,
    /// May the error-event fault still fire?
    pub error_event_armed: bool,
    pub effects: Effects,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    Idle,
    /// Inputs still to decode, then flush.
    Requested,
    /// Flushed: the next output buffer goes back flagged EOS.
    Eos,
}

#[derive(Debug)]
struct QueuedInput {
    chain: Chain,
    resource_id: u32,
    timestamp: u64,
    size: u32,
    /// Read from guest memory when its turn comes.
    data: Option<Vec<u8>>,
    /// Bytes already fed to the decoder.
    consumed: usize,
    /// The decoder refused part of it, or its memory was unreadable.
    error: bool,
}

#[derive(Debug)]
struct QueuedOutput {
    chain: Chain,
    resource_id: u32,
}

#[derive(Debug)]
struct Held {
    picture: OwnedPicture,
    timestamp: u64,
}

/// A frame's destination: one resource's range of guest memory, every write checked
/// against the range and against the memory table of the moment.
struct GuestSink<'a, M> {
    mem: &'a M,
    base: GuestAddress,
    len: usize,
}

impl<M: GuestMemory> FrameSink for GuestSink<'_, M> {
    type Error = ();
    fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), ()> {
        let end = offset.checked_add(bytes.len()).ok_or(())?;
        if end > self.len {
            return Err(());
        }
        let addr = self.base.0.checked_add(offset as u64).ok_or(())?;
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|_| ())
    }
}

/// The output side: everything a decoded picture touches (kept apart from the decoder so
/// the decoder's callback can borrow it while the decoder runs).
struct Frames {
    stream_id: u32,
    format: OutputFormat,
    /// The decoded size, once the first picture is out.
    size: Option<(usize, usize)>,
    resources: ResourceTable,
    queued: VecDeque<QueuedOutput>,
    held: VecDeque<Held>,
    /// Frames written into output buffers.
    delivered: u64,
    /// An ERROR event went out (fault or unsupported size): decoding stopped.
    failed: bool,
    /// Timestamp of the input fed last (for pictures that come out of a flush).
    last_timestamp: u64,
}

fn queue_response(timestamp: u64, flags: u32, stream_id: u32) -> Vec<u8> {
    ResourceQueueResp {
        timestamp,
        flags,
        size: 0,
    }
    .encode(stream_id)
}

impl Frames {
    fn layout(&self) -> Option<FrameLayout> {
        self.size.map(|(w, h)| FrameLayout::new(self.format, w, h))
    }

    /// Is the oldest queued output buffer one made for the current layout?
    fn front_usable(&self) -> bool {
        let Some(current) = self.layout() else {
            return false;
        };
        let Some(front) = self.queued.front() else {
            return false;
        };
        self.resources
            .get(front.resource_id)
            .and_then(|r| r.layout)
            .is_some_and(|l| {
                (l.format, l.width, l.height) == (current.format, current.width, current.height)
            })
    }

    fn on_picture<M: GuestMemory>(
        &mut self,
        picture: &Picture<'_>,
        timestamp: u64,
        ctx: &mut Ctx<'_, M>,
    ) {
        if self.failed {
            return;
        }
        let size = (picture.width, picture.height);
        if self.size != Some(size) {
            let (w, h) = (picture.width as u32, picture.height as u32);
            if !super::caps::WIDTH.contains(w) || !super::caps::HEIGHT.contains(h) {
                warn!(
                    "stream {}: decoded size {w}x{h} is outside what the device offers",
                    self.stream_id
                );
                self.fail(ctx);
                return;
            }
            self.size = Some(size);
            ctx.effects.events.push(Event {
                event_type: event::DECODER_RESOLUTION_CHANGED,
                stream_id: self.stream_id,
            });
            self.hold(picture, timestamp);
            return;
        }
        if self.held.is_empty() && self.front_usable() && !ctx.effects.stall {
            self.deliver(picture, timestamp, ctx);
        } else {
            self.hold(picture, timestamp);
        }
    }

    fn hold(&mut self, picture: &Picture<'_>, timestamp: u64) {
        if self.held.len() >= MAX_HELD {
            warn!("stream {}: {MAX_HELD} pictures already wait for output buffers; dropping the oldest", self.stream_id);
            self.held.pop_front();
        }
        self.held.push_back(Held {
            picture: picture.to_owned(),
            timestamp,
        });
    }

    fn place_held<M: GuestMemory>(&mut self, ctx: &mut Ctx<'_, M>) {
        while !self.failed && !ctx.effects.stall && self.front_usable() {
            let Some(held) = self.held.pop_front() else {
                return;
            };
            self.deliver(&held.picture.as_picture(), held.timestamp, ctx);
        }
    }

    fn fail<M: GuestMemory>(&mut self, ctx: &mut Ctx<'_, M>) {
        self.failed = true;
        ctx.effects.events.push(Event {
            event_type: event::ERROR,
            stream_id: self.stream_id,
        });
    }

    /// Convert `picture` into the front output buffer (which [`Self::front_usable`]
    /// approved) and answer its chain.
    fn deliver<M: GuestMemory>(
        &mut self,
        picture: &Picture<'_>,
        timestamp: u64,
        ctx: &mut Ctx<'_, M>,
    ) {
        let Some(out) = self.queued.pop_front() else {
            return;
        };
        let written = match self.resources.get_mut(out.resource_id) {
            Some(resource) => {
                resource.queued = false;
                write_frame(ctx.mem, resource, picture)
            }
            None => false,
        };
        let flags = if written { 0 } else { buffer_flag::ERR };
        ctx.effects.completions.push(out.chain.respond(
            ctx.mem,
            QueueIndex::Command,
            &queue_response(timestamp, flags, self.stream_id),
        ));
        if !written {
            return;
        }
        self.delivered += 1;
        if ctx.error_event_armed
            && !ctx.effects.error_event
            && ctx.faults.error_event_after(self.delivered)
        {
            warn!(
                "stream {}: fault: ERROR event after frame {}",
                self.stream_id, self.delivered
            );
            ctx.effects.error_event = true;
            self.fail(ctx);
        }
        if ctx.stall_armed && ctx.faults.stall_after(self.delivered) {
            warn!(
                "fault: the command queue stalls after frame {}",
                self.delivered
            );
            ctx.effects.stall = true;
        }
    }

    /// Every queued output buffer back, flagged ERR.
    fn give_back<M: GuestMemory>(&mut self, ctx: &mut Ctx<'_, M>) {
        for out in self.queued.drain(..) {
            if let Some(r) = self.resources.get_mut(out.resource_id) {
                r.queued = false;
            }
            ctx.effects.completions.push(out.chain.respond(
                ctx.mem,
                QueueIndex::Command,
                &queue_response(0, buffer_flag::ERR, self.stream_id),
            ));
        }
    }
}

/// Write one frame into an output resource, or say it could not be (range no longer in
/// guest memory, layout wrong): nothing is written then.
fn write_frame<M: GuestMemory>(mem: &M, resource: &Resource, picture: &Picture<'_>) -> bool {
    let Some(layout) = resource.layout else {
        return false;
    };
    if (layout.width, layout.height) != (picture.width, picture.height) {
        return false;
    }
    let len = resource.len as usize;
    if layout.total_size() > len || !mem.check_range(resource.addr, len, Permissions::Write) {
        warn!(
            "output resource {} is no longer inside guest memory",
            resource.id
        );
        return false;
    }
    let mut sink = GuestSink {
        mem,
        base: resource.addr,
        len,
    };
    convert(picture, &layout, &mut sink).is_ok()
}

/// One stream.
pub struct Stream {
    pub id: u32,
    decoder: Box<dyn Decoder>,
    inputs: ResourceTable,
    input_size: u32,
    queued_inputs: VecDeque<QueuedInput>,
    frames: Frames,
    drain: Drain,
}

impl Stream {
    pub fn new(id: u32, decoder: Box<dyn Decoder>) -> Stream {
        Stream {
            id,
            decoder,
            inputs: ResourceTable::default(),
            input_size: DEFAULT_INPUT_SIZE,
            queued_inputs: VecDeque::new(),
            frames: Frames {
                stream_id: id,
                format: OutputFormat::Nv12,
                size: None,
                resources: ResourceTable::default(),
                queued: VecDeque::new(),
                held: VecDeque::new(),
                delivered: 0,
                failed: false,
                last_timestamp: 0,
            },
            drain: Drain::Idle,
        }
    }

    pub fn failed(&self) -> bool {
        self.frames.failed
    }

    /// Frames written into output buffers so far.
    pub fn delivered(&self) -> u64 {
        self.frames.delivered
    }

    /// Pictures waiting for an output buffer.
    pub fn held(&self) -> usize {
        self.frames.held.len()
    }

    /// GET_PARAMS.
    pub fn params(&self, queue: QueueType) -> Params {
        let (w, h) = self.frames.size.unwrap_or((0, 0));
        let (w, h) = (w as u32, h as u32);
        let mut params = match queue {
            QueueType::Input => {
                let mut p = Params::new(QueueType::Input, Format::H264);
                p.num_planes = 1;
                p.plane_formats[0] = PlaneFormat {
                    plane_size: self.input_size,
                    stride: 0,
                };
                p
            }
            QueueType::Output => {
                let mut p = Params::new(QueueType::Output, self.frames.format.wire());
                let layout = FrameLayout::new(self.frames.format, w as usize, h as usize);
                p.num_planes = layout.num_planes as u32;
                p.plane_formats = layout.plane_formats();
                p.crop = Crop {
                    left: 0,
                    top: 0,
                    width: w,
                    height: h,
                };
                p
            }
        };
        params.frame_width = w;
        params.frame_height = h;
        params.min_buffers = 1;
        params.max_buffers = MAX_RESOURCES as u32;
        params
    }

    /// SET_PARAMS: the input's buffer size, the output's format; the decoder sets sizes.
    pub fn set_params(&mut self, params: &Params) -> Result<(), ErrorCode> {
        match params.queue_type {
            QueueType::Input => {
                if params.format != Format::H264 as u32 {
                    return Err(ErrorCode::InvalidParameter);
                }
                let size = params.plane_formats[0].plane_size;
                if size != 0 {
                    if !(MIN_INPUT_SIZE..=MAX_INPUT).contains(&size) {
                        return Err(ErrorCode::InvalidParameter);
                    }
                    self.input_size = size;
                }
            }
            QueueType::Output => {
                self.frames.format =
                    OutputFormat::from_wire(params.format).ok_or(ErrorCode::InvalidParameter)?;
            }
        }
        Ok(())
    }

    /// RESOURCE_CREATE.
    pub fn create_resource<M: GuestMemory>(
        &mut self,
        mem: &M,
        create: &monolith::virtio::video::wire::ResourceCreate,
        entries: &[monolith::virtio::video::wire::MemEntry],
    ) -> Result<(), ErrorCode> {
        let table = match create.queue_type {
            QueueType::Input => &self.inputs,
            QueueType::Output => &self.frames.resources,
        };
        if table.get(create.resource_id).is_some() {
            return Err(ErrorCode::InvalidResourceId);
        }
        if table.len() >= MAX_RESOURCES {
            return Err(ErrorCode::OutOfMemory);
        }
        let resource = Resource::new(mem, create, entries, self.frames.layout())?;
        match create.queue_type {
            QueueType::Input => self.inputs.insert(resource),
            QueueType::Output => self.frames.resources.insert(resource),
        }
    }

    /// RESOURCE_QUEUE: on success the chain is kept and answered when the buffer is done.
    pub fn queue(&mut self, chain: Chain, rq: &ResourceQueue) -> Result<(), (Chain, ErrorCode)> {
        if self.frames.failed {
            return Err((chain, ErrorCode::InvalidOperation));
        }
        match rq.queue_type {
            QueueType::Input => {
                let Some(resource) = self.inputs.get_mut(rq.resource_id) else {
                    return Err((chain, ErrorCode::InvalidResourceId));
                };
                if resource.queued {
                    return Err((chain, ErrorCode::InvalidOperation));
                }
                let room = resource.len - resource.data_offset;
                let size = rq.data_sizes[0];
                if rq.num_data_sizes != 1 || size > room || size > MAX_INPUT {
                    return Err((chain, ErrorCode::InvalidParameter));
                }
                resource.queued = true;
                self.queued_inputs.push_back(QueuedInput {
                    chain,
                    resource_id: rq.resource_id,
                    timestamp: rq.timestamp,
                    size,
                    data: None,
                    consumed: 0,
                    error: false,
                });
            }
            QueueType::Output => {
                let Some(resource) = self.frames.resources.get_mut(rq.resource_id) else {
                    return Err((chain, ErrorCode::InvalidResourceId));
                };
                if resource.queued {
                    return Err((chain, ErrorCode::InvalidOperation));
                }
                resource.queued = true;
                self.frames.queued.push_back(QueuedOutput {
                    chain,
                    resource_id: rq.resource_id,
                });
            }
        }
        Ok(())
    }

    /// STREAM_DRAIN (a second one while draining is an invalid operation).
    pub fn drain(&mut self) -> Result<(), ErrorCode> {
        if self.drain != Drain::Idle || self.frames.failed {
            return Err(ErrorCode::InvalidOperation);
        }
        self.drain = Drain::Requested;
        Ok(())
    }

    /// QUEUE_CLEAR: every pending buffer of `queue` back, flagged ERR. Clearing the input
    /// also drops held pictures and a drain in progress (the driver is seeking or
    /// stopping); clearing the output keeps held pictures for the buffers that follow
    /// (the resolution-change sequence clears the output queue).
    pub fn clear<M: GuestMemory>(&mut self, queue: QueueType, ctx: &mut Ctx<'_, M>) {
        match queue {
            QueueType::Input => {
                for input in self.queued_inputs.drain(..) {
                    if let Some(r) = self.inputs.get_mut(input.resource_id) {
                        r.queued = false;
                    }
                    ctx.effects.completions.push(input.chain.respond(
                        ctx.mem,
                        QueueIndex::Command,
                        &queue_response(input.timestamp, buffer_flag::ERR, self.id),
                    ));
                }
                self.frames.held.clear();
                self.drain = Drain::Idle;
            }
            QueueType::Output => self.frames.give_back(ctx),
        }
    }

    /// RESOURCE_DESTROY_ALL: pending buffers back first, then the resources go.
    pub fn destroy_all<M: GuestMemory>(&mut self, queue: QueueType, ctx: &mut Ctx<'_, M>) {
        match queue {
            QueueType::Input => {
                // Inputs must keep their order with held pictures: a clear says it all.
                self.clear(QueueType::Input, ctx);
                self.inputs.clear();
            }
            QueueType::Output => {
                self.frames.give_back(ctx);
                self.frames.resources.clear();
            }
        }
    }

    /// STREAM_DESTROY: every pending chain of both queues back, flagged ERR.
    pub fn give_back_all<M: GuestMemory>(&mut self, ctx: &mut Ctx<'_, M>) {
        self.clear(QueueType::Input, ctx);
        self.frames.give_back(ctx);
    }

    /// Answer the oldest input once every NAL unit of it went to the decoder, even while
    /// its pictures are still held: the driver may refill it.
    fn finish_consumed_input<M: GuestMemory>(&mut self, ctx: &mut Ctx<'_, M>) {
        let Some(input) = self.queued_inputs.front() else {
            return;
        };
        let Some(data) = &input.data else {
            return;
        };
        if annexb::next_nal(data, input.consumed).is_some() {
            return;
        }
        let Some(input) = self.queued_inputs.pop_front() else {
            return;
        };
        let flags = if input.error { buffer_flag::ERR } else { 0 };
        if let Some(r) = self.inputs.get_mut(input.resource_id) {
            r.queued = false;
        }
        ctx.effects.completions.push(input.chain.respond(
            ctx.mem,
            QueueIndex::Command,
            &queue_response(input.timestamp, flags, self.id),
        ));
    }

    /// Move what can move: held pictures out, bitstream in, EOS at the end of a drain.
    pub fn pump<M: GuestMemory>(&mut self, ctx: &mut Ctx<'_, M>) {
        loop {
            if self.frames.failed || ctx.effects.stall {
                return;
            }
            self.finish_consumed_input(ctx);
            self.frames.place_held(ctx);
            if !self.frames.held.is_empty() || self.frames.failed || ctx.effects.stall {
                return;
            }
            if self.drain == Drain::Eos {
                if let Some(out) = self.frames.queued.pop_front() {
                    if let Some(r) = self.frames.resources.get_mut(out.resource_id) {
                        r.queued = false;
                    }
                    ctx.effects.completions.push(out.chain.respond(
                        ctx.mem,
                        QueueIndex::Command,
                        &queue_response(self.frames.last_timestamp, buffer_flag::EOS, self.id),
                    ));
                    self.drain = Drain::Idle;
                }
                return;
            }
            let Some(input) = self.queued_inputs.front_mut() else {
                if self.drain == Drain::Requested {
                    let timestamp = self.frames.last_timestamp;
                    let frames = &mut self.frames;
                    if let Err(e) = self
                        .decoder
                        .flush(&mut |p| frames.on_picture(p, timestamp, ctx))
                    {
                        warn!("stream {}: flush: {e}", self.id);
                    }
                    self.drain = Drain::Eos;
                    continue;
                }
                return;
            };
            if input.data.is_none() {
                input.data = Some(
                    read_input(ctx.mem, self.inputs.get(input.resource_id), input.size)
                        .unwrap_or_else(|| {
                            input.error = true;
                            Vec::new()
                        }),
                );
            }
            let data = input.data.as_deref().unwrap_or_default();
            // No NAL unit left: the top of the loop answers the input.
            if let Some(unit) = annexb::next_nal(data, input.consumed) {
                let (start, end) = (unit.start, unit.payload.end);
                input.consumed = end;
                let timestamp = input.timestamp;
                self.frames.last_timestamp = timestamp;
                let frames = &mut self.frames;
                let nal = data.get(start..end).unwrap_or_default();
                if let Err(e) = self
                    .decoder
                    .decode(nal, &mut |p| frames.on_picture(p, timestamp, ctx))
                {
                    warn!("stream {}: input {}: {e}", self.id, input.resource_id);
                    input.error = true;
                }
            }
        }
    }
}

/// An input buffer's bitstream, if its resource still lies in guest memory.
fn read_input<M: GuestMemory>(mem: &M, resource: Option<&Resource>, size: u32) -> Option<Vec<u8>> {
    let resource = resource?;
    let addr = resource
        .addr
        .0
        .checked_add(u64::from(resource.data_offset))?;
    let mut data = vec![0u8; size as usize];
    match mem.read_slice(&mut data, GuestAddress(addr)) {
        Ok(()) => Some(data),
        Err(_) => {
            warn!(
                "input resource {} is no longer inside guest memory",
                resource.id
            );
            None
        }
    }
}

// Referenced so the wire's plane limit and ours cannot drift apart silently.
const _: () = assert!(MAX_PLANES >= 2);
