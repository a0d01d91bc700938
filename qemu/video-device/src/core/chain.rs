//! One descriptor chain as the core sees it, and the only code that touches its memory.
//!
//! # Theory of operation
//!
//! The vhost-user glue (or a test, or the fuzzer) turns a virtqueue chain into a
//! [`Chain`]: its head index and its descriptors `(guest address, length, writable)` in
//! order. Nothing about it is trusted:
//! - [`Chain::request`] checks the layout (readable descriptors first, then writable ones;
//!   at least one readable) and reads the readable part concatenated, so a request may be
//!   split over several descriptors (our driver sends RESOURCE_CREATE as request, entries,
//!   response). The readable total is capped at [`MAX_REQUEST`] before anything is
//!   allocated, and every read goes through vm-memory's checked accessors.
//! - [`Chain::respond`] writes a response across the writable descriptors (in a misordered
//!   chain too, so its error response still reaches the driver), never past any of them. A writable part too short for the whole response gets nothing (a truncated
//!   response would be misread): the chain is returned with used length 0 and the event is
//!   logged. A descriptor outside guest memory stops the write there; the used length says
//!   how much was written.
//!
//! Either way the caller gets a [`Completion`] to put on the used ring: every chain is
//! answered exactly once.
#![forbid(unsafe_code)]

use std::fmt;

use log::warn;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// Largest readable part accepted: RESOURCE_CREATE with 8 planes x 8 entries is 1112
/// bytes; anything longer is not a request of this device.
pub const MAX_REQUEST: usize = 4096;

/// One descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub addr: GuestAddress,
    pub len: u32,
    pub writable: bool,
}

/// One chain popped from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub descs: Vec<Desc>,
}

/// Which virtqueue a completion goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueIndex {
    Command = 0,
    Event = 1,
}

/// "Put `head` on the used ring of `queue` with `len` bytes written."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub queue: QueueIndex,
    pub head: u16,
    pub len: u32,
}

/// Why a chain's readable part is not a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// A readable descriptor after a writable one.
    ReadableAfterWritable,
    /// No readable descriptor at all.
    NoRequest,
    /// The readable part is longer than any request.
    TooLong(u64),
    /// A readable descriptor is not inside guest memory.
    Unreadable(GuestAddress),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::ReadableAfterWritable => {
                f.write_str("a readable descriptor follows a writable one")
            }
            ChainError::NoRequest => f.write_str("no readable descriptor"),
            ChainError::TooLong(n) => {
                write!(f, "readable part of {n} bytes, at most {MAX_REQUEST}")
            }
            ChainError::Unreadable(a) => {
                write!(
                    f,
                    "readable descriptor at {:#x} is outside guest memory",
                    a.0
                )
            }
        }
    }
}

impl Chain {
    fn readable(&self) -> impl Iterator<Item = &Desc> {
        self.descs.iter().take_while(|d| !d.writable)
    }

    /// The writable descriptors, wherever they are (a misordered chain still gets its
    /// error response in them).
    fn writable(&self) -> impl Iterator<Item = &Desc> {
        self.descs.iter().filter(|d| d.writable)
    }

    /// Bytes the writable part can take.
    pub fn writable_len(&self) -> u64 {
        self.writable().map(|d| u64::from(d.len)).sum()
    }

    /// Readable descriptors first, then writable ones?
    pub fn well_ordered(&self) -> bool {
        self.descs
            .iter()
            .skip_while(|d| !d.writable)
            .all(|d| d.writable)
    }

    /// The request: the readable descriptors' bytes, concatenated.
    pub fn request<M: GuestMemory>(&self, mem: &M) -> Result<Vec<u8>, ChainError> {
        if !self.well_ordered() {
            return Err(ChainError::ReadableAfterWritable);
        }
        let total: u64 = self.readable().map(|d| u64::from(d.len)).sum();
        if total == 0 {
            return Err(ChainError::NoRequest);
        }
        if total > MAX_REQUEST as u64 {
            return Err(ChainError::TooLong(total));
        }
        let mut bytes = vec![0u8; total as usize];
        let mut at = 0usize;
        for desc in self.readable() {
            let len = desc.len as usize;
            let Some(dst) = bytes.get_mut(at..at + len) else {
                return Err(ChainError::TooLong(total));
            };
            mem.read_slice(dst, desc.addr)
                .map_err(|_| ChainError::Unreadable(desc.addr))?;
            at += len;
        }
        Ok(bytes)
    }

    /// Write `bytes` as the response and say how the chain goes back (see the header).
    pub fn respond<M: GuestMemory>(&self, mem: &M, queue: QueueIndex, bytes: &[u8]) -> Completion {
        let done = |len| Completion {
            queue,
            head: self.head,
            len,
        };
        if self.writable_len() < bytes.len() as u64 {
            warn!(
                "chain {}: no room for a {}-byte response ({} writable bytes); returned with used length 0",
                self.head,
                bytes.len(),
                self.writable_len(),
            );
            return done(0);
        }
        let mut rest = bytes;
        let mut written = 0u32;
        for desc in self.writable() {
            if rest.is_empty() {
                break;
            }
            let n = rest.len().min(desc.len as usize);
            let (now, later) = rest.split_at(n);
            if mem.write_slice(now, desc.addr).is_err() {
                warn!(
                    "chain {}: writable descriptor at {:#x} is outside guest memory",
                    self.head, desc.addr.0
                );
                break;
            }
            written += n as u32;
            rest = later;
        }
        done(written)
    }

    /// Give the chain back untouched (used length 0).
    pub fn discard(&self, queue: QueueIndex) -> Completion {
        Completion {
            queue,
            head: self.head,
            len: 0,
        }
    }
}
