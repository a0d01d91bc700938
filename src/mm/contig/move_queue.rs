//! The records of one batch of moves, in a buffer the zone keeps from call to call.
//!
//! # Theory of operation
//!
//! The buffer is allocated (or grown) at most once per call, to at most [`MIGRATE_BATCH`]
//! records, and only when the call has something to move. The zone's fast path writes each
//! record straight into a free slot (`free_mut`, then `commit`), so queueing a page costs
//! no copy. If the heap has no room a one-slot buffer still works, without the batching.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::ContigError;
use crate::mm::{Move, Owner, MIGRATE_BATCH};

/// The moves of a batch, in a buffer allocated once per call: the fast path writes each
/// record straight into its slot (`free_mut`, then `commit`).
pub(super) struct MoveQueue {
    /// `buf.len()` is the capacity; `buf[..len]` are queued.
    buf: Vec<Move>,
    len: usize,
}

impl MoveQueue {
    /// A queue over a buffer kept from earlier calls (its length is the capacity).
    pub(super) fn with_buffer(buf: Vec<Move>) -> MoveQueue {
        MoveQueue { buf, len: 0 }
    }

    /// The buffer, for the next call.
    pub(super) fn into_buffer(self) -> Vec<Move> {
        self.buf
    }

    /// Room for `want` moves (at most [`MIGRATE_BATCH`]): the buffer grows if the heap has
    /// room; otherwise it stays as it is if it has any slot at all, else gets one slot
    /// (batches of one are still correct, just without the amortisation). Called before
    /// the first move is queued.
    pub(super) fn reserve(&mut self, want: usize) -> Result<(), ContigError> {
        let placeholder = Move::new(0, 0, 0, Owner::NONE);
        let target = want.clamp(1, MIGRATE_BATCH);
        if self.buf.len() >= target {
            return Ok(());
        }
        let have = self.buf.len();
        if self.buf.try_reserve_exact(target - have).is_ok() {
            self.buf.resize(target, placeholder);
            return Ok(());
        }
        if have != 0 {
            return Ok(());
        }
        if self.buf.try_reserve_exact(1).is_ok() {
            self.buf.push(placeholder);
            return Ok(());
        }
        Err(ContigError::NoMemory)
    }

    pub(super) fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    pub(super) fn queued(&self) -> &[Move] {
        &self.buf[..self.len]
    }

    pub(super) fn queued_mut(&mut self) -> &mut [Move] {
        &mut self.buf[..self.len]
    }

    /// The free slots, to be filled in order and then [`MoveQueue::commit`]ted.
    pub(super) fn free_mut(&mut self) -> &mut [Move] {
        &mut self.buf[self.len..]
    }

    pub(super) fn commit(&mut self, filled: usize) {
        self.len = (self.len + filled).min(self.buf.len());
    }

    /// Queue `m`; the caller checks [`MoveQueue::is_full`] first.
    pub(super) fn push(&mut self, m: Move) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = m;
            self.len += 1;
        }
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    /// The queued moves, leaving the queue empty.
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = Move> + '_ {
        let len = core::mem::take(&mut self.len);
        self.buf[..len].iter().copied()
    }
}
