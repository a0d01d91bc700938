//! One split virtqueue (virtio 1.x section 2.7), driver side.
//!
//! # Theory of operation
//!
//! The three parts live in one [`DmaRegion`] from the Hal: the descriptor table (16 bytes a
//! descriptor, 16-byte aligned, 2.7.5), the available ring (`flags`, `idx`, `ring[N]`,
//! `used_event`; 2-byte aligned, 2.7.6) and the used ring (`flags`, `idx`,
//! `ring[N]` of `{id u32, len u32}`, `avail_event`; 4-byte aligned, 2.7.8).
//!
//! The driver keeps its own copy of every descriptor and the free list (linked through
//! the copies' `next`), and remembers for each chain in flight how many descriptors it has
//! and how many bytes of it are writable. The device only ever writes the used ring, and
//! everything read from it is checked against that memory: an id outside the table or not
//! the head of a chain in flight, a length larger than the chain's writable part, a used
//! index more than the queue size ahead of the last one seen. Each is a [`QueueError`];
//! nothing the device writes can make the driver index out of bounds or free a
//! descriptor twice.
//!
//! Ordering (2.7.13): descriptors and the ring entry are written, then a write barrier,
//! then the available index (2.7.13.2); a full barrier before reading the used ring's
//! `flags` to decide on a notification (2.7.13.4, 2.7.10); on the way back, the used index
//! is read, then a read barrier, then the used element (2.7.13.3, "the driver reads idx
//! before the ring entries"). Without VIRTIO_F_EVENT_IDX, notifications follow
//! VIRTQ_USED_F_NO_NOTIFY in the used ring's flags (2.7.10).
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::hal::{Barrier, DmaRegion, Hal, HalError};
use super::transport::QueueAddresses;
use crate::util::size::PAGE_SIZE;

/// Descriptor flags (2.7.5).
const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Used ring flag: the device does not want notifications (2.7.10).
const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;
const DESC_SIZE: usize = 16;
/// The largest split queue (2.7: Queue Size is at most 32768).
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// One device-visible buffer: a physical address and a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub paddr: u64,
    pub len: u32,
}

/// A chain the device gave back: the token [`SplitQueue::add`] returned, and how many
/// bytes the device says it wrote into the writable part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    pub token: u16,
    pub len: u32,
}

/// What went wrong with a queue, on either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// Queue size 0, above 32768 or not a power of two (2.7).
    BadSize(u16),
    /// A chain with no buffer.
    EmptyChain,
    /// A buffer of length 0.
    ZeroLength,
    /// The writable part of a chain exceeds 4 GiB.
    TooLong,
    /// Not enough free descriptors.
    Full {
        needed: usize,
        free: usize,
    },
    /// The device's used element names a descriptor outside the table.
    UsedIdOutOfRange {
        id: u32,
        size: u16,
    },
    /// The device's used element names a descriptor that is not the head of a chain in
    /// flight.
    UsedIdNotInFlight {
        id: u32,
    },
    /// The device says it wrote more than the chain's writable part.
    UsedLengthTooLong {
        id: u32,
        len: u32,
        writable: u32,
    },
    /// The used index moved further than the queue size since the last read.
    UsedIndexJump {
        last: u16,
        now: u16,
        size: u16,
    },
    Hal(HalError),
}

impl From<HalError> for QueueError {
    fn from(e: HalError) -> Self {
        QueueError::Hal(e)
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::BadSize(n) => {
                write!(f, "queue size {n} is not a power of two in 1..=32768")
            }
            QueueError::EmptyChain => write!(f, "a chain needs at least one buffer"),
            QueueError::ZeroLength => write!(f, "a buffer of length 0"),
            QueueError::TooLong => write!(f, "the writable part of a chain exceeds 4 GiB"),
            QueueError::Full { needed, free } => {
                write!(f, "{needed} descriptor(s) needed, {free} free")
            }
            QueueError::UsedIdOutOfRange { id, size } => {
                write!(f, "device returned descriptor {id} of a {size}-entry queue")
            }
            QueueError::UsedIdNotInFlight { id } => {
                write!(f, "device returned descriptor {id}, which is not in flight")
            }
            QueueError::UsedLengthTooLong { id, len, writable } => write!(
                f,
                "device wrote {len} byte(s) into chain {id}, which has {writable} writable"
            ),
            QueueError::UsedIndexJump { last, now, size } => write!(
                f,
                "used index jumped from {last} to {now} in a {size}-entry queue"
            ),
            QueueError::Hal(e) => write!(f, "{e}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    descriptors: u16,
    writable: u32,
}

/// Byte offsets of the three parts inside the region.
#[derive(Debug, Clone, Copy)]
struct Layout {
    avail: usize,
    used: usize,
    total: usize,
}

impl Layout {
    fn new(size: u16) -> Self {
        let n = usize::from(size);
        let avail = DESC_SIZE * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(4);
        Layout {
            avail,
            used,
            total: used + 6 + 8 * n,
        }
    }
}

/// A split virtqueue and its DMA memory.
pub struct SplitQueue {
    index: u16,
    size: u16,
    region: DmaRegion,
    layout: Layout,
    shadow: Vec<Desc>,
    in_flight: Vec<Option<InFlight>>,
    free_head: u16,
    num_free: usize,
    avail_idx: u16,
    last_used: u16,
}

impl SplitQueue {
    /// A queue of `size` entries (a power of two) for queue number `index`, in fresh DMA
    /// memory from `hal`.
    pub fn new<H: Hal>(hal: &H, index: u16, size: u16) -> Result<Self, QueueError> {
        if size == 0 || size > MAX_QUEUE_SIZE || !size.is_power_of_two() {
            return Err(QueueError::BadSize(size));
        }
        let layout = Layout::new(size);
        let pages = layout.total.div_ceil(PAGE_SIZE as usize);
        let region = hal.dma_alloc(pages)?;
        let mut queue = SplitQueue {
            index,
            size,
            region,
            layout,
            shadow: vec![Desc::default(); usize::from(size)],
            in_flight: vec![None; usize::from(size)],
            free_head: 0,
            num_free: 0,
            avail_idx: 0,
            last_used: 0,
        };
        queue.forget_all();
        Ok(queue)
    }

    /// Back to the state of a new queue (after a device reset: the device holds nothing).
    /// The region is zeroed too, so the device sees empty rings.
    pub fn restart<H: Hal>(&mut self, hal: &H) -> Result<(), QueueError> {
        let zeros = vec![0u8; self.layout.total];
        hal.write(&self.region, 0, &zeros)?;
        self.forget_all();
        Ok(())
    }

    fn forget_all(&mut self) {
        for (i, d) in self.shadow.iter_mut().enumerate() {
            *d = Desc {
                next: (i as u16).wrapping_add(1),
                ..Desc::default()
            };
        }
        self.in_flight.iter_mut().for_each(|f| *f = None);
        self.free_head = 0;
        self.num_free = usize::from(self.size);
        self.avail_idx = 0;
        self.last_used = 0;
    }

    /// Give the memory back. The device must be reset first (it may still read it).
    pub fn free<H: Hal>(self, hal: &H) -> Result<(), HalError> {
        hal.dma_free(self.region)
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn free_descriptors(&self) -> usize {
        self.num_free
    }

    /// Chains handed to the device and not yet popped.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().filter(|f| f.is_some()).count()
    }

    /// The physical addresses for QueueDesc/QueueDriver/QueueDevice.
    pub fn addresses(&self) -> QueueAddresses {
        let base = self.region.paddr();
        QueueAddresses {
            desc: base,
            driver: base + self.layout.avail as u64,
            device: base + self.layout.used as u64,
        }
    }

    /// Put a chain on the available ring: `readable` buffers first, then `writable` ones
    /// (2.7.4.2: device-writable descriptors come after the readable ones). Returns the
    /// chain's token (its head descriptor). The device is not notified: see
    /// [`SplitQueue::needs_notify`].
    pub fn add<H: Hal>(
        &mut self,
        hal: &H,
        readable: &[Buffer],
        writable: &[Buffer],
    ) -> Result<u16, QueueError> {
        let needed = readable.len() + writable.len();
        if needed == 0 {
            return Err(QueueError::EmptyChain);
        }
        if needed > self.num_free {
            return Err(QueueError::Full {
                needed,
                free: self.num_free,
            });
        }
        if readable.iter().chain(writable).any(|b| b.len == 0) {
            return Err(QueueError::ZeroLength);
        }
        let writable_len = writable
            .iter()
            .try_fold(0u32, |sum, b| sum.checked_add(b.len))
            .ok_or(QueueError::TooLong)?;

        let head = self.free_head;
        let mut id = head;
        let buffers = readable
            .iter()
            .map(|b| (b, 0))
            .chain(writable.iter().map(|b| (b, VIRTQ_DESC_F_WRITE)));
        for (n, (buffer, write)) in buffers.enumerate() {
            let next_free = self.shadow[usize::from(id)].next;
            let last = n + 1 == needed;
            let desc = Desc {
                addr: buffer.paddr,
                len: buffer.len,
                flags: write | if last { 0 } else { VIRTQ_DESC_F_NEXT },
                next: if last { 0 } else { next_free },
            };
            self.write_desc(hal, id, desc)?;
            // The shadow keeps the free-list link past the chain's last descriptor, so
            // freeing the chain later can splice it back in front.
            self.shadow[usize::from(id)] = Desc {
                next: next_free,
                ..desc
            };
            self.free_head = next_free;
            id = next_free;
        }
        self.num_free -= needed;
        self.in_flight[usize::from(head)] = Some(InFlight {
            descriptors: needed as u16,
            writable: writable_len,
        });

        let slot = usize::from(self.avail_idx % self.size);
        hal.write_u16(&self.region, self.layout.avail + 4 + 2 * slot, head)?;
        // 2.7.13.2: the ring entry (and the descriptors) before the index that shows it.
        hal.barrier(Barrier::Write);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        hal.write_u16(&self.region, self.layout.avail + 2, self.avail_idx)?;
        Ok(head)
    }

    fn write_desc<H: Hal>(&self, hal: &H, id: u16, d: Desc) -> Result<(), HalError> {
        let mut bytes = [0u8; DESC_SIZE];
        bytes[0..8].copy_from_slice(&d.addr.to_le_bytes());
        bytes[8..12].copy_from_slice(&d.len.to_le_bytes());
        bytes[12..14].copy_from_slice(&d.flags.to_le_bytes());
        bytes[14..16].copy_from_slice(&d.next.to_le_bytes());
        hal.write(&self.region, DESC_SIZE * usize::from(id), &bytes)
    }

    /// Whether the device wants a notification now (2.7.10 without EVENT_IDX): the full
    /// barrier orders the available index before the read of the used ring's flags
    /// (2.7.13.4).
    pub fn needs_notify<H: Hal>(&self, hal: &H) -> Result<bool, QueueError> {
        hal.barrier(Barrier::Full);
        let flags = hal.read_u16(&self.region, self.layout.used)?;
        Ok(flags & VIRTQ_USED_F_NO_NOTIFY == 0)
    }

    /// Whether the device has returned something not yet popped (no validation).
    pub fn has_used<H: Hal>(&self, hal: &H) -> Result<bool, QueueError> {
        Ok(hal.read_u16(&self.region, self.layout.used + 2)? != self.last_used)
    }

    /// Take the next used chain, if any, after checking it.
    pub fn pop_used<H: Hal>(&mut self, hal: &H) -> Result<Option<Used>, QueueError> {
        let now = hal.read_u16(&self.region, self.layout.used + 2)?;
        let pending = now.wrapping_sub(self.last_used);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(QueueError::UsedIndexJump {
                last: self.last_used,
                now,
                size: self.size,
            });
        }
        // 2.7.13.3: the index before the element it covers.
        hal.barrier(Barrier::Read);
        let slot = usize::from(self.last_used % self.size);
        let at = self.layout.used + 4 + 8 * slot;
        let id = hal.read_u32(&self.region, at)?;
        let len = hal.read_u32(&self.region, at + 4)?;
        if id >= u32::from(self.size) {
            return Err(QueueError::UsedIdOutOfRange {
                id,
                size: self.size,
            });
        }
        let head = id as u16;
        let flight =
            self.in_flight[usize::from(head)].ok_or(QueueError::UsedIdNotInFlight { id })?;
        if len > flight.writable {
            return Err(QueueError::UsedLengthTooLong {
                id,
                len,
                writable: flight.writable,
            });
        }
        // Splice the chain back onto the front of the free list: the shadow links run
        // through the chain in order, so walk to its last descriptor and link that to the
        // current free head.
        let mut last = head;
        for _ in 1..flight.descriptors {
            last = self.shadow[usize::from(last)].next;
        }
        self.shadow[usize::from(last)].next = self.free_head;
        self.free_head = head;
        self.num_free += usize::from(flight.descriptors);
        self.in_flight[usize::from(head)] = None;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some(Used { token: head, len }))
    }
}
