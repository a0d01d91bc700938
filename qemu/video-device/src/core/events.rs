//! The event queue: buffers the driver posts and events waiting for one.
//!
//! The driver posts 8-byte writable buffers on queue 1; the device keeps them (as many as
//! the driver posts, up to [`MAX_BUFFERS`]) and writes one `{event_type, stream_id}` into
//! the oldest when an event happens. An event with no buffer waits in a queue of at most
//! [`MAX_PENDING`]; beyond that the newest is dropped and logged (a driver that posts no
//! buffers cannot make the device grow). A posted chain that is not one writable buffer
//! of at least 8 bytes goes straight back with used length 0.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use log::warn;
use monolith::virtio::video::wire::{Event, EVENT_SIZE};
use vm_memory::GuestMemory;

use super::chain::{Chain, Completion, QueueIndex};

/// Posted buffers kept (a queue of 256 entries cannot post more).
pub const MAX_BUFFERS: usize = 256;
/// Events waiting for a buffer.
pub const MAX_PENDING: usize = 64;

#[derive(Debug, Default)]
pub struct EventQueue {
    buffers: VecDeque<Chain>,
    pending: VecDeque<Event>,
}

impl EventQueue {
    /// A buffer from the driver; may deliver a waiting event at once.
    pub fn post<M: GuestMemory>(&mut self, mem: &M, chain: Chain, out: &mut Vec<Completion>) {
        let usable = chain.descs.iter().all(|d| d.writable)
            && chain.writable_len() >= EVENT_SIZE as u64
            && self.buffers.len() < MAX_BUFFERS;
        if !usable {
            warn!(
                "event chain {}: not one writable buffer of {EVENT_SIZE} bytes (or too many posted); returned unused",
                chain.head
            );
            out.push(chain.discard(QueueIndex::Event));
            return;
        }
        self.buffers.push_back(chain);
        self.deliver(mem, out);
    }

    /// An event from the device.
    pub fn send<M: GuestMemory>(&mut self, mem: &M, event: Event, out: &mut Vec<Completion>) {
        if self.pending.len() >= MAX_PENDING {
            warn!("event {event:?} dropped: {MAX_PENDING} events already wait for buffers");
            return;
        }
        self.pending.push_back(event);
        self.deliver(mem, out);
    }

    fn deliver<M: GuestMemory>(&mut self, mem: &M, out: &mut Vec<Completion>) {
        while !self.pending.is_empty() && !self.buffers.is_empty() {
            let (Some(event), Some(chain)) = (self.pending.pop_front(), self.buffers.pop_front())
            else {
                break;
            };
            out.push(chain.respond(mem, QueueIndex::Event, &event.encode()));
        }
    }

    /// Device reset: buffers and events are gone with the rings.
    pub fn reset(&mut self) {
        self.buffers.clear();
        self.pending.clear();
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
