//! One queue's resources: a bounded table keyed by the driver's resource ids, and the
//! RESOURCE_CREATE checks that make every entry a safe place to read or write.
//!
//! # Theory of operation
//!
//! The device does not offer `RESOURCE_NON_CONTIG`, so a resource is exactly one guest
//! range: [`Resource::new`] refuses a request with other than one memory entry, an entry of
//! length 0 or outside guest memory (as the memory table stands at creation; every later
//! write checks again, since QEMU may replace the table), and planes that the entry does
//! not cover. An output resource remembers the frame layout it was created for (the
//! format and decoded size current then, at the driver's plane offsets); a frame is only
//! ever written into a resource whose layout is the current one, so frames of a new size
//! never land in old-size buffers.
#![forbid(unsafe_code)]

use monolith::virtio::video::wire::{
    planes_layout, ErrorCode, MemEntry, QueueType, ResourceCreate,
};
use vm_memory::{GuestAddress, GuestMemory, Permissions};

use crate::frame::FrameLayout;

/// Resources per queue of a stream.
pub const MAX_RESOURCES: usize = 32;

/// One resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: u32,
    pub addr: GuestAddress,
    pub len: u32,
    /// Input: where the bitstream starts inside the range.
    pub data_offset: u32,
    /// Output: the layout it was created for (`None` before the decoded size is known:
    /// such a resource is never written, the driver recreates it after the event).
    pub layout: Option<FrameLayout>,
    /// On the device's queue (a RESOURCE_QUEUE chain is pending for it).
    pub queued: bool,
}

impl Resource {
    /// Check a RESOURCE_CREATE against guest memory and the queue's current layout.
    pub fn new<M: GuestMemory>(
        mem: &M,
        create: &ResourceCreate,
        entries: &[MemEntry],
        current: Option<FrameLayout>,
    ) -> Result<Resource, ErrorCode> {
        if create.planes_layout != planes_layout::SINGLE_BUFFER {
            return Err(ErrorCode::InvalidParameter);
        }
        let [entry] = entries else {
            return Err(ErrorCode::InvalidParameter);
        };
        let len = usize::try_from(entry.length).map_err(|_| ErrorCode::InvalidParameter)?;
        let addr = GuestAddress(entry.addr);
        if len == 0 || !mem.check_range(addr, len, Permissions::ReadWrite) {
            return Err(ErrorCode::InvalidParameter);
        }
        let planes = create.num_planes as usize;
        let offsets = create
            .plane_offsets
            .get(..planes)
            .ok_or(ErrorCode::InvalidParameter)?;
        let (data_offset, layout) = match create.queue_type {
            QueueType::Input => {
                // One bitstream plane that starts inside the range.
                match offsets {
                    [offset] if *offset < entry.length => (*offset, None),
                    _ => return Err(ErrorCode::InvalidParameter),
                }
            }
            QueueType::Output => match current {
                Some(mut layout) => {
                    if planes != layout.num_planes {
                        return Err(ErrorCode::InvalidParameter);
                    }
                    for (plane, &offset) in layout.planes.iter_mut().zip(offsets) {
                        plane.offset = offset as usize;
                        if plane
                            .offset
                            .checked_add(plane.size)
                            .is_none_or(|end| end > len)
                        {
                            return Err(ErrorCode::InvalidParameter);
                        }
                    }
                    (0, Some(layout))
                }
                None => (0, None),
            },
        };
        Ok(Resource {
            id: create.resource_id,
            addr,
            len: entry.length,
            data_offset,
            layout,
            queued: false,
        })
    }
}

/// A queue's resources, at most [`MAX_RESOURCES`].
#[derive(Debug, Clone, Default)]
pub struct ResourceTable {
    resources: Vec<Resource>,
}

impl ResourceTable {
    /// Add a resource: a used id is 0x303, a full table 0x301.
    pub fn insert(&mut self, resource: Resource) -> Result<(), ErrorCode> {
        if self.get(resource.id).is_some() {
            return Err(ErrorCode::InvalidResourceId);
        }
        if self.resources.len() >= MAX_RESOURCES {
            return Err(ErrorCode::OutOfMemory);
        }
        self.resources.push(resource);
        Ok(())
    }

    pub fn get(&self, id: u32) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Resource> {
        self.resources.iter_mut().find(|r| r.id == id)
    }

    pub fn clear(&mut self) {
        self.resources.clear();
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}
