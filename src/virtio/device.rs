//! A virtio device as a driver sees it: transport + queues + Hal, brought up and torn down
//! as one, with a synchronous request helper and asynchronous chains beside it.
//!
//! # Theory of operation
//!
//! [`Device::new`] probes the transport, checks the device type, negotiates features,
//! creates each requested queue (size: the driver's wish capped by QueueNumMax, rounded
//! down to a power of two), registers it with the transport and sets DRIVER_OK
//! (section 3.1.1). A failure on the way sets FAILED, resets the device and frees the
//! queues already made.
//!
//! [`Device::request`] adds one chain, notifies if the device wants it, then waits: read
//! the Hal's interrupt count, pop the used ring, and only if nothing came back sleep until
//! the count moves (the Hal returns at once when an interrupt arrived after the read, so
//! no wake-up is lost). Each round also reads Status for DEVICE_NEEDS_RESET (2.1.1). When
//! the deadline passes, or the device writes something the queue refuses, or it needs a
//! reset, the device is reset at once, so it can no longer touch the buffers the caller
//! is about to reuse or free, and it stays [`VirtioError::Broken`] until
//! [`Device::reset`] brings it up again with the same features and queues.
//!
//! Asynchronous chains (what virtio-video needs: many RESOURCE_QUEUE chains outstanding on
//! queue 0, each answered only when its buffer is done, an event buffer always posted on
//! queue 1): [`Device::submit`] adds a chain and notifies, returning its [`Token`];
//! [`Device::pop_used`] hands back completed chains, and [`Device::wait_used`] sleeps until
//! any queue has one or a timeout passes (a timeout there is not a failure: whether
//! silence means a stalled device is the driver's call, and it can [`Device::halt`]).
//! `request` may run while chains of the same queue are outstanding: whatever it pops
//! that is not its own chain goes to a per-queue stash (capacity reserved at bring-up,
//! so no allocation per chain), and `pop_used` returns stashed completions first, in the
//! order the device used them. A reset empties the stash: the device gave nothing back.
//!
//! Dropping a `Device` resets it, then frees its queue memory.
#![forbid(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::hal::Hal;
pub use super::queue::Used;
use super::queue::{Buffer, SplitQueue};
use super::transport::{Registers, Transport, TransportError};
use super::VirtioError;

/// Default time a request may take before the device counts as dead.
pub const DEFAULT_TIMEOUT_NS: u64 = 1_000_000_000;

/// A chain handed to the device: its head descriptor, as [`Used::token`] names it.
pub type Token = u16;

/// A device driven through one transport, with its queues.
pub struct Device<H: Hal, R: Registers> {
    hal: H,
    transport: Transport<R>,
    queues: Vec<SplitQueue>,
    /// Per queue: completions `request` popped that were not its chain.
    stash: Vec<VecDeque<Used>>,
    wanted_features: u64,
    broken: bool,
    timeout_ns: u64,
}

impl<H: Hal, R: Registers> Device<H, R> {
    /// Bring up the device behind `regs`: it must be of type `device_id`; `features` are
    /// the device-specific bits the driver can use; `queue_sizes[i]` is the size wanted
    /// for queue `i` (capped by the device's QueueNumMax).
    pub fn new(
        hal: H,
        regs: R,
        device_id: u32,
        features: u64,
        queue_sizes: &[u16],
    ) -> Result<Self, VirtioError> {
        let transport = Transport::probe(regs)?;
        if transport.device_id() != device_id {
            return Err(TransportError::WrongDevice {
                expected: device_id,
                found: transport.device_id(),
            }
            .into());
        }
        let mut device = Device {
            hal,
            transport,
            queues: Vec::new(),
            stash: Vec::new(),
            wanted_features: features,
            broken: true,
            timeout_ns: DEFAULT_TIMEOUT_NS,
        };
        // From here on an error drops `device`, which resets it and frees the queues.
        device.transport.negotiate(features)?;
        for (index, &wanted) in queue_sizes.iter().enumerate() {
            let index = index as u16;
            let max = device.transport.queue_max(index).min(u32::from(wanted));
            if max == 0 {
                device.transport.fail();
                return Err(TransportError::QueueUnavailable { queue: index }.into());
            }
            // Largest power of two <= max (2.7: split queue sizes are powers of two).
            let size = 1u16 << (31 - max.leading_zeros()).min(15);
            let queue = SplitQueue::new(&device.hal, index, size)?;
            let at = queue.addresses();
            device.queues.push(queue);
            device
                .stash
                .push(VecDeque::with_capacity(usize::from(size)));
            if let Err(e) = device.transport.setup_queue(index, size, at) {
                device.transport.fail();
                return Err(e.into());
            }
        }
        device.transport.driver_ok();
        device.transport.check_needs_reset()?;
        device.broken = false;
        Ok(device)
    }

    pub fn hal(&self) -> &H {
        &self.hal
    }

    pub fn transport(&self) -> &Transport<R> {
        &self.transport
    }

    pub fn queue(&self, index: u16) -> Option<&SplitQueue> {
        self.queues.get(usize::from(index))
    }

    /// Change how long [`Device::request`] waits.
    pub fn set_timeout_ns(&mut self, timeout_ns: u64) {
        self.timeout_ns = timeout_ns;
    }

    pub fn timeout_ns(&self) -> u64 {
        self.timeout_ns
    }

    /// Whether an earlier failure left the device reset.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Reset the device and bring it up again: same features, same queues (their memory is
    /// zeroed and reused), DRIVER_OK.
    pub fn reset(&mut self) -> Result<(), VirtioError> {
        self.broken = true;
        self.stash.iter_mut().for_each(VecDeque::clear);
        self.transport.negotiate(self.wanted_features)?;
        for queue in &mut self.queues {
            queue.restart(&self.hal)?;
            let at = queue.addresses();
            if let Err(e) = self.transport.setup_queue(queue.index(), queue.size(), at) {
                self.transport.fail();
                return Err(e.into());
            }
        }
        self.transport.driver_ok();
        self.transport.check_needs_reset()?;
        self.broken = false;
        Ok(())
    }

    /// Stop the device: reset so it no longer uses any buffer, and refuse requests until
    /// [`Device::reset`]. If even the reset fails, FAILED at least tells it the driver
    /// gave up.
    pub fn halt(&mut self) {
        self.broken = true;
        self.stash.iter_mut().for_each(VecDeque::clear);
        if self.transport.reset().is_err() {
            self.transport.fail();
        }
    }

    /// Chains of `queue` handed to the device and not yet returned by
    /// [`Device::pop_used`] (stashed ones count as returned by the device, not yet by us).
    pub fn outstanding(&self, queue: u16) -> usize {
        let index = usize::from(queue);
        let in_ring = self.queues.get(index).map_or(0, SplitQueue::in_flight);
        in_ring + self.stash.get(index).map_or(0, VecDeque::len)
    }

    fn check_live(&mut self) -> Result<(), VirtioError> {
        if self.broken {
            return Err(VirtioError::Broken);
        }
        if let Err(e) = self.transport.check_needs_reset() {
            self.halt();
            return Err(e.into());
        }
        Ok(())
    }

    /// Put one chain on queue `queue` (readable buffers, then writable ones) and notify
    /// the device if it wants it; the chain comes back later through
    /// [`Device::pop_used`] under the returned token.
    pub fn submit(
        &mut self,
        queue: u16,
        readable: &[Buffer],
        writable: &[Buffer],
    ) -> Result<Token, VirtioError> {
        self.check_live()?;
        let q = self
            .queues
            .get_mut(usize::from(queue))
            .ok_or(TransportError::QueueUnavailable { queue })?;
        let token = q.add(&self.hal, readable, writable)?;
        if q.needs_notify(&self.hal)? {
            self.transport.notify(queue);
        }
        Ok(token)
    }

    /// The next chain of `queue` the device is done with (stashed ones first), or `None`.
    /// A used element the queue refuses resets the device (it can no longer be trusted
    /// with the buffers) and is returned as the error.
    pub fn pop_used(&mut self, queue: u16) -> Result<Option<Used>, VirtioError> {
        if self.broken {
            return Err(VirtioError::Broken);
        }
        let index = usize::from(queue);
        let q = self
            .queues
            .get_mut(index)
            .ok_or(TransportError::QueueUnavailable { queue })?;
        if let Some(used) = self.stash[index].pop_front() {
            return Ok(Some(used));
        }
        match q.pop_used(&self.hal) {
            Ok(used) => Ok(used),
            Err(e) => {
                self.halt();
                Err(e.into())
            }
        }
    }

    /// Whether any queue has a completion waiting (stashed or in the used ring).
    fn any_used(&self) -> Result<bool, VirtioError> {
        for (q, stash) in self.queues.iter().zip(&self.stash) {
            if !stash.is_empty() || q.has_used(&self.hal)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sleep until some queue has a completion (`Ok(true)`) or `timeout_ns` passed
    /// (`Ok(false)`; the device is left as it is). DEVICE_NEEDS_RESET resets it and is
    /// the error.
    pub fn wait_used(&mut self, timeout_ns: u64) -> Result<bool, VirtioError> {
        if self.broken {
            return Err(VirtioError::Broken);
        }
        let start = self.hal.now_ns();
        loop {
            let seen = self.hal.interrupt_count();
            if self.any_used()? {
                return Ok(true);
            }
            if self.transport.check_needs_reset().is_err() {
                self.halt();
                return Err(VirtioError::NeedsReset);
            }
            if self.hal.now_ns().saturating_sub(start) >= timeout_ns {
                return Ok(false);
            }
            self.hal.wait_for_interrupt(seen);
        }
    }

    /// Send one chain on queue `queue` and wait until the device gives it back. Returns
    /// the number of bytes the device wrote into `writable`. Other chains of the queue
    /// that complete meanwhile are stashed for [`Device::pop_used`].
    pub fn request(
        &mut self,
        queue: u16,
        readable: &[Buffer],
        writable: &[Buffer],
    ) -> Result<u32, VirtioError> {
        let token = self.submit(queue, readable, writable)?;
        match self.wait(queue, token) {
            Ok(used) => Ok(used.len),
            Err(e) => {
                self.halt();
                Err(e)
            }
        }
    }

    fn wait(&mut self, queue: u16, token: Token) -> Result<Used, VirtioError> {
        let start = self.hal.now_ns();
        let index = usize::from(queue);
        loop {
            let seen = self.hal.interrupt_count();
            // The queue checked each element names a chain in flight, so anything that
            // is not ours is another outstanding chain: keep it for `pop_used`.
            while let Some(used) = self.queues[index].pop_used(&self.hal)? {
                if used.token == token {
                    return Ok(used);
                }
                self.stash[index].push_back(used);
            }
            if self.transport.check_needs_reset().is_err() {
                return Err(VirtioError::NeedsReset);
            }
            let waited = self.hal.now_ns().saturating_sub(start);
            if waited >= self.timeout_ns {
                return Err(VirtioError::Timeout {
                    queue,
                    waited_ms: waited / 1_000_000,
                });
            }
            self.hal.wait_for_interrupt(seen);
        }
    }
}

impl<H: Hal, R: Registers> Drop for Device<H, R> {
    fn drop(&mut self) {
        // Reset first: after it the device touches no queue memory (2.4).
        if self.transport.reset().is_err() {
            self.transport.fail();
        }
        for queue in self.queues.drain(..) {
            // A Hal that refuses its own region has nothing we could do about it here.
            let _ = queue.free(&self.hal);
        }
    }
}
