//! The device: command dispatch, the stream table, the event queue, faults and reset.
//!
//! # Theory of operation
//!
//! [`Device::command`] takes one chain of the command queue and either answers it at once
//! or keeps it (RESOURCE_QUEUE: answered when the buffer is done). Every chain is answered
//! exactly once, in this order of checks:
//! 1. the chain's layout and readable bytes ([`Chain::request`]) — else 0x300;
//! 2. the wire format ([`Request::parse`]: exact sizes, enumerations, counts) — 0x304, or
//!    0x300 for an unknown command type;
//! 3. an error-response fault for this command's count;
//! 4. the command itself: unknown stream 0x302, unknown resource 0x303, bad parameters
//!    0x304, a full table 0x301, a command out of order 0x300, controls 0x305.
//!
//! Whatever a command makes happen besides its own answer (pending chains returned,
//! frames decoded, events) comes back as [`Effects`]; the device turns them into
//! [`Completion`]s, in order: chains a command returns (QUEUE_CLEAR, STREAM_DESTROY)
//! before its own answer, frames decoded afterwards after it. The glue drains them with
//! [`Device::take_completions`] and puts them on the used rings.
//!
//! Faults fire once per device lifetime (a reset does not re-arm them), so a driver's
//! recovery after the fault is tested against a healthy device. After a stall fault the
//! device keeps every command chain unanswered until [`Device::reset`].
#![forbid(unsafe_code)]

use log::{debug, warn};
use monolith::virtio::video::wire::{
    cmd, encode_error, ErrorCode, Format, GetParamsResp, Header, MemType, Message, NoData, Request,
    WireError,
};
use vm_memory::GuestMemory;

use super::caps;
use super::chain::{Chain, Completion, QueueIndex};
use super::events::EventQueue;
use super::stream::{Ctx, Effects, Stream};
use crate::codec::DecoderFactory;
use crate::faults::Faults;

/// Streams at most.
pub const MAX_STREAMS: usize = 16;

/// The decoder device's protocol state.
pub struct Device {
    factory: Box<dyn DecoderFactory>,
    faults: Faults,
    /// Commands seen per type (for error-response faults), never reset.
    counts: Vec<(u32, u64)>,
    streams: Vec<Stream>,
    events: EventQueue,
    stalled: bool,
    stall_fired: bool,
    error_event_fired: bool,
    /// Chains kept unanswered while stalled.
    unanswered: u64,
    completions: Vec<Completion>,
}

/// A command's own answer.
enum Reply {
    Now(Vec<u8>),
    /// The chain is kept (a queued buffer).
    Kept,
}

fn error(code: ErrorCode, stream_id: u32) -> Reply {
    Reply::Now(encode_error(code, stream_id))
}

impl Device {
    pub fn new(factory: Box<dyn DecoderFactory>, faults: Faults) -> Device {
        Device {
            factory,
            faults,
            counts: Vec::new(),
            streams: Vec::new(),
            events: EventQueue::default(),
            stalled: false,
            stall_fired: false,
            error_event_fired: false,
            unanswered: 0,
            completions: Vec::new(),
        }
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    pub fn config(&self) -> monolith::virtio::video::wire::Config {
        caps::config()
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Chains kept unanswered by a stall.
    pub fn unanswered(&self) -> u64 {
        self.unanswered
    }

    pub fn stream(&self, id: u32) -> Option<&Stream> {
        self.streams.iter().find(|s| s.id == id)
    }

    /// Events waiting for an event buffer.
    pub fn pending_events(&self) -> usize {
        self.events.pending()
    }

    /// Chains to put on the used rings, oldest first.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.completions)
    }

    /// Virtio reset (or the rings stopping): every stream and buffer is forgotten; the
    /// chains they held are gone with the rings.
    pub fn reset(&mut self) {
        self.streams.clear();
        self.events.reset();
        self.stalled = false;
        self.unanswered = 0;
        self.completions.clear();
    }

    /// A buffer posted on the event queue.
    pub fn event_buffer<M: GuestMemory>(&mut self, mem: &M, chain: Chain) {
        self.events.post(mem, chain, &mut self.completions);
    }

    /// One chain of the command queue.
    pub fn command<M: GuestMemory>(&mut self, mem: &M, chain: Chain) {
        if self.stalled {
            self.unanswered += 1;
            return;
        }
        let bytes = match chain.request(mem) {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!("command chain {}: {e}", chain.head);
                let reply = encode_error(ErrorCode::InvalidOperation, 0);
                self.completions
                    .push(chain.respond(mem, QueueIndex::Command, &reply));
                return;
            }
        };
        let (stream_id, request) = match Request::parse(&bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                let stream_id = Header::decode(&bytes).map(|h| h.stream_id).unwrap_or(0);
                warn!("command chain {} (stream {stream_id}): {e}", chain.head);
                let code = match e {
                    WireError::UnknownCommand(_) => ErrorCode::InvalidOperation,
                    _ => ErrorCode::InvalidParameter,
                };
                let reply = encode_error(code, stream_id);
                self.completions
                    .push(chain.respond(mem, QueueIndex::Command, &reply));
                return;
            }
        };
        let type_ = Header::decode(&bytes).map(|h| h.type_).unwrap_or(0);
        let nth = self.count(type_);
        if let Some(code) = self.faults.error_response(type_, nth) {
            warn!("fault: command {type_:#x} #{nth} gets {code}");
            self.completions.push(chain.respond(
                mem,
                QueueIndex::Command,
                &encode_error(code, stream_id),
            ));
            return;
        }
        debug!("stream {stream_id}: {request:?}");
        let mut ctx = Ctx {
            mem,
            faults: &self.faults,
            stall_armed: !self.stall_fired,
            error_event_armed: !self.error_event_fired,
            effects: Effects::default(),
        };
        let (reply, chain, pump) = handle(
            &mut self.streams,
            &*self.factory,
            &mut ctx,
            stream_id,
            request,
            chain,
        );
        let mut effects = std::mem::take(&mut ctx.effects);
        self.completions.append(&mut effects.completions);
        if let (Reply::Now(bytes), Some(chain)) = (&reply, chain) {
            self.completions
                .push(chain.respond(mem, QueueIndex::Command, bytes));
        }
        if pump {
            if let Some(stream) = self.streams.iter_mut().find(|s| s.id == stream_id) {
                stream.pump(&mut ctx);
            }
        }
        effects.events.append(&mut ctx.effects.events);
        effects.stall |= ctx.effects.stall;
        self.error_event_fired |= effects.error_event | ctx.effects.error_event;
        self.completions.append(&mut ctx.effects.completions);
        for event in effects.events {
            self.events.send(mem, event, &mut self.completions);
        }
        if effects.stall && !self.stall_fired {
            self.stall_fired = true;
            self.stalled = true;
        }
    }

    fn count(&mut self, type_: u32) -> u64 {
        match self.counts.iter_mut().find(|(t, _)| *t == type_) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.counts.push((type_, 1));
                1
            }
        }
    }
}

/// One parsed command: its reply, the chain back when the reply is to be written now,
/// and whether the stream should be pumped afterwards.
fn handle<M: GuestMemory>(
    streams: &mut Vec<Stream>,
    factory: &dyn DecoderFactory,
    ctx: &mut Ctx<'_, M>,
    stream_id: u32,
    request: Request,
    chain: Chain,
) -> (Reply, Option<Chain>, bool) {
    let now = |reply: Reply, chain: Chain| (reply, Some(chain), false);
    let ok = || Reply::Now(NoData.encode(stream_id));
    match request {
        Request::QueryCapability(q) => now(
            Reply::Now(caps::capabilities(q.queue_type).encode(stream_id)),
            chain,
        ),
        Request::StreamCreate(create) => {
            if streams.iter().any(|s| s.id == stream_id) {
                return now(error(ErrorCode::InvalidOperation, stream_id), chain);
            }
            if create.coded_format != Format::H264
                || create.in_mem_type != MemType::GuestPages
                || create.out_mem_type != MemType::GuestPages
            {
                return now(error(ErrorCode::InvalidParameter, stream_id), chain);
            }
            if streams.len() >= MAX_STREAMS {
                return now(error(ErrorCode::OutOfMemory, stream_id), chain);
            }
            match factory.create() {
                Ok(decoder) => {
                    streams.push(Stream::new(stream_id, decoder));
                    now(ok(), chain)
                }
                Err(e) => {
                    warn!("stream {stream_id}: no decoder: {e}");
                    now(error(ErrorCode::OutOfMemory, stream_id), chain)
                }
            }
        }
        Request::Unsupported(type_) => {
            let code = match type_ {
                cmd::QUERY_CONTROL | cmd::GET_CONTROL | cmd::SET_CONTROL => {
                    ErrorCode::UnsupportedControl
                }
                _ => ErrorCode::InvalidOperation,
            };
            now(error(code, stream_id), chain)
        }
        request => {
            let Some(index) = streams.iter().position(|s| s.id == stream_id) else {
                return now(error(ErrorCode::InvalidStreamId, stream_id), chain);
            };
            if let Request::StreamDestroy(_) = request {
                let mut stream = streams.remove(index);
                stream.give_back_all(ctx);
                return now(ok(), chain);
            }
            let Some(stream) = streams.get_mut(index) else {
                return now(error(ErrorCode::InvalidStreamId, stream_id), chain);
            };
            let result = match request {
                Request::StreamDrain(_) => stream.drain().map(|()| ok()),
                Request::ResourceCreate(create, entries) => stream
                    .create_resource(ctx.mem, &create, &entries)
                    .map(|()| ok()),
                Request::ResourceQueue(rq) => {
                    return match stream.queue(chain, &rq) {
                        Ok(()) => (Reply::Kept, None, true),
                        Err((chain, code)) => (error(code, stream_id), Some(chain), false),
                    };
                }
                Request::ResourceDestroyAll(d) => {
                    stream.destroy_all(d.queue_type, ctx);
                    Ok(ok())
                }
                Request::QueueClear(c) => {
                    stream.clear(c.queue_type, ctx);
                    Ok(ok())
                }
                Request::GetParams(g) => Ok(Reply::Now(
                    GetParamsResp {
                        params: stream.params(g.queue_type),
                    }
                    .encode(stream_id),
                )),
                Request::SetParams(s) => stream.set_params(&s.params).map(|()| ok()),
                // Handled above; kept total so a new variant is a compile error.
                Request::QueryCapability(_)
                | Request::StreamCreate(_)
                | Request::StreamDestroy(_)
                | Request::Unsupported(_) => Err(ErrorCode::InvalidOperation),
            };
            match result {
                Ok(reply) => (reply, Some(chain), true),
                Err(code) => (error(code, stream_id), Some(chain), false),
            }
        }
    }
}
