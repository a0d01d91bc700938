//! dma-buf objects (`drivers/dma-buf/dma-buf.c`): an exported buffer in a table, shared by
//! reference count, attached to devices and mapped for them.
//!
//! # Theory of operation
//!
//! [`BufTable::export`] wraps a heap [`Allocation`] as a buffer with one reference (the
//! fd `DMA_HEAP_IOCTL_ALLOC` returns), a unique inode number, the heap's name as
//! `exp_name`, the fd's `f_flags` and `f_mode`. [`BufTable::get`]/[`BufTable::put`] are
//! `get_dma_buf`/`dma_buf_put`: when the last reference goes the buffer leaves the table
//! and its allocation is handed back for the caller to return to its heap. Ids are never
//! reused, so a stale id is told apart from an unknown one: use after release and double
//! release are refused as [`BufError::Released`].
//!
//! `dma_buf_attach` ([`BufTable::attach`]) checks the device's [`DmaConstraints`] against
//! the buffer's pages, refusing with the reason: more segments than the device can take
//! (`max_segments`; 1 for a device that cannot scatter-gather), a segment the device cannot
//! reach through its `dma-ranges` or above its address limit, a segment not aligned as it
//! needs. Unlike Linux, an attachment holds a reference, so the pages cannot be freed
//! under a device that still has them; `detach` drops it (and refuses while mapped).
//! `dma_buf_map_attachment` ([`BufTable::map`]) gives the device addresses, one entry per
//! segment: bus address = CPU address minus the window's `dma-ranges` offset
//! (`phys_to_dma`); a contiguous buffer is one entry.
#![forbid(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::fence::Resv;
use super::heap::Allocation;
use super::{DeviceDma, DmaConstraints};

/// A buffer's handle (what an fd is to Linux).
pub type BufId = u32;
/// An attachment's handle, unique within its buffer.
pub type AttachId = u32;

/// `O_RDWR`: a heap fd is opened read-write (`O_CLOEXEC` is not kept in `f_flags`).
pub const O_RDWR: u32 = 0o2;
/// `f_mode` of a dma-buf file opened read-write: `FMODE_READ | FMODE_WRITE | FMODE_LSEEK`
/// (dma-buf files are seekable) `| FMODE_OPENED` (0x80000).
pub const FMODE_RDWR_LSEEK_OPENED: u32 = 0x1 | 0x2 | 0x4 | 0x80000;
/// `DMA_BUF_NAME_LEN`.
pub const DMA_BUF_NAME_LEN: usize = 32;

/// One device address range of a mapping (`sg_dma_address`, `sg_dma_len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaSegment {
    pub bus: u64,
    pub len: u64,
}

/// Why a device cannot take a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooManySegments {
        segments: usize,
        max: usize,
    },
    /// No `dma-ranges` window holds the segment.
    NotReachable {
        phys: u64,
    },
    /// The segment's last bus address is above the device's limit.
    AboveLimit {
        bus_last: u64,
        limit: u64,
    },
    Misaligned {
        bus: u64,
        alignment: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooManySegments { segments, max } => write!(
                f,
                "buffer has {segments} segments, device takes at most {max} (no scatter-gather)"
            ),
            Refusal::NotReachable { phys } => {
                write!(f, "{phys:#x} is outside every dma-ranges window")
            }
            Refusal::AboveLimit { bus_last, limit } => {
                write!(
                    f,
                    "bus address {bus_last:#x} is above the device limit {limit:#x}"
                )
            }
            Refusal::Misaligned { bus, alignment } => {
                write!(f, "bus address {bus:#x} is not {alignment:#x}-aligned")
            }
        }
    }
}

/// dma-buf failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufError {
    NoSuchBuf(BufId),
    /// The buffer was released (last reference dropped): use after release.
    Released(BufId),
    NoSuchAttachment {
        buf: BufId,
        attachment: AttachId,
    },
    Refused {
        buf: BufId,
        device: String,
        reason: Refusal,
    },
    AlreadyMapped {
        buf: BufId,
        attachment: AttachId,
    },
    NotMapped {
        buf: BufId,
        attachment: AttachId,
    },
    StillMapped {
        buf: BufId,
        attachment: AttachId,
    },
    NameTooLong {
        len: usize,
    },
}

impl fmt::Display for BufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BufError::NoSuchBuf(id) => write!(f, "no dma-buf {id}"),
            BufError::Released(id) => write!(f, "dma-buf {id} was already released"),
            BufError::NoSuchAttachment { buf, attachment } => {
                write!(f, "dma-buf {buf} has no attachment {attachment}")
            }
            BufError::Refused {
                buf,
                device,
                reason,
            } => {
                write!(f, "dma-buf {buf} cannot attach to {device}: {reason}")
            }
            BufError::AlreadyMapped { buf, attachment } => {
                write!(f, "dma-buf {buf} attachment {attachment} is already mapped")
            }
            BufError::NotMapped { buf, attachment } => {
                write!(f, "dma-buf {buf} attachment {attachment} is not mapped")
            }
            BufError::StillMapped { buf, attachment } => {
                write!(
                    f,
                    "dma-buf {buf} attachment {attachment} is still mapped: unmap first"
                )
            }
            BufError::NameTooLong { len } => {
                write!(
                    f,
                    "name of {len} bytes is over DMA_BUF_NAME_LEN ({DMA_BUF_NAME_LEN})"
                )
            }
        }
    }
}

impl core::error::Error for BufError {}

/// `struct dma_buf_attachment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: AttachId,
    pub device: DeviceDma,
    /// The device addresses while mapped.
    pub mapping: Option<Vec<DmaSegment>>,
    /// A dynamic importer's (`dma_buf_dynamic_attach`): it pins the buffer itself around
    /// each use and re-maps when the buffer moved, so attaching does not pin a movable
    /// buffer.
    pub dynamic: bool,
}

/// `struct dma_buf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmaBuf {
    pub id: BufId,
    pub ino: u64,
    pub size: u64,
    pub exp_name: String,
    pub name: Option<String>,
    pub flags: u32,
    pub mode: u32,
    refs: usize,
    pub allocation: Allocation,
    attachments: Vec<Attachment>,
    next_attachment: AttachId,
    pub resv: Resv,
    /// CPU-access brackets opened for writing (`TO_DEVICE`, `BIDIRECTIONAL`): how often
    /// the CPU wrote into the buffer, e.g. copied a frame.
    pub cpu_writes: u64,
}

impl DmaBuf {
    /// `file_count`: references held.
    pub fn count(&self) -> usize {
        self.refs
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }
}

/// Every live buffer. See the module documentation.
#[derive(Debug, Default)]
pub struct BufTable {
    bufs: BTreeMap<BufId, DmaBuf>,
    next_id: BufId,
    next_ino: u64,
}

fn check(buf: &DmaBuf, c: &DmaConstraints, device: &DeviceDma) -> Result<Vec<DmaSegment>, Refusal> {
    let segments = &buf.allocation.segments;
    if segments.len() > c.max_segments {
        return Err(Refusal::TooManySegments {
            segments: segments.len(),
            max: c.max_segments,
        });
    }
    segments
        .iter()
        .map(|s| {
            let bus = device
                .bus_address(s.phys(), s.len())
                .ok_or(Refusal::NotReachable { phys: s.phys() })?;
            let bus_last = bus.saturating_add(s.len().saturating_sub(1));
            if bus_last > c.addr_limit {
                return Err(Refusal::AboveLimit {
                    bus_last,
                    limit: c.addr_limit,
                });
            }
            if bus % c.alignment != 0 {
                return Err(Refusal::Misaligned {
                    bus,
                    alignment: c.alignment,
                });
            }
            Ok(DmaSegment { bus, len: s.len() })
        })
        .collect()
}

impl BufTable {
    pub fn new() -> BufTable {
        BufTable {
            bufs: BTreeMap::new(),
            next_id: 1,
            next_ino: 1,
        }
    }

    /// `dma_buf_export`: the buffer starts with one reference.
    pub fn export(&mut self, allocation: Allocation) -> BufId {
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        let ino = self.next_ino.max(1);
        self.next_ino = ino + 1;
        let buf = DmaBuf {
            id,
            ino,
            size: allocation.pages() as u64 * crate::util::PAGE_SIZE,
            exp_name: allocation.heap.clone(),
            name: None,
            flags: O_RDWR,
            mode: FMODE_RDWR_LSEEK_OPENED,
            refs: 1,
            allocation,
            attachments: Vec::new(),
            next_attachment: 1,
            resv: Resv::default(),
            cpu_writes: 0,
        };
        self.bufs.insert(id, buf);
        id
    }

    fn missing(&self, id: BufId) -> BufError {
        if id != 0 && id < self.next_id {
            BufError::Released(id)
        } else {
            BufError::NoSuchBuf(id)
        }
    }

    pub fn buf(&self, id: BufId) -> Result<&DmaBuf, BufError> {
        self.bufs.get(&id).ok_or_else(|| self.missing(id))
    }

    pub fn buf_mut(&mut self, id: BufId) -> Result<&mut DmaBuf, BufError> {
        let missing = self.missing(id);
        self.bufs.get_mut(&id).ok_or(missing)
    }

    /// Live buffers in export order.
    pub fn iter(&self) -> impl Iterator<Item = &DmaBuf> {
        self.bufs.values()
    }

    /// `get_dma_buf`.
    pub fn get(&mut self, id: BufId) -> Result<(), BufError> {
        self.buf_mut(id)?.refs += 1;
        Ok(())
    }

    /// `dma_buf_put`: the allocation comes back when this was the last reference.
    pub fn put(&mut self, id: BufId) -> Result<Option<Allocation>, BufError> {
        let buf = self.buf_mut(id)?;
        buf.refs -= 1;
        if buf.refs > 0 {
            return Ok(None);
        }
        Ok(self.bufs.remove(&id).map(|b| b.allocation))
    }

    /// `DMA_BUF_SET_NAME`.
    pub fn set_name(&mut self, id: BufId, name: &str) -> Result<(), BufError> {
        if name.len() >= DMA_BUF_NAME_LEN {
            return Err(BufError::NameTooLong { len: name.len() });
        }
        self.buf_mut(id)?.name = Some(name.to_string());
        Ok(())
    }

    /// `dma_buf_attach`, refused with the reason when the device cannot take the buffer.
    pub fn attach(&mut self, id: BufId, device: &DeviceDma) -> Result<AttachId, BufError> {
        self.attach_as(id, device, false)
    }

    /// `dma_buf_dynamic_attach`: as [`BufTable::attach`], for an importer that pins.
    pub fn attach_dynamic(&mut self, id: BufId, device: &DeviceDma) -> Result<AttachId, BufError> {
        self.attach_as(id, device, true)
    }

    fn attach_as(
        &mut self,
        id: BufId,
        device: &DeviceDma,
        dynamic: bool,
    ) -> Result<AttachId, BufError> {
        let buf = self.buf_mut(id)?;
        check(buf, &device.constraints, device).map_err(|reason| BufError::Refused {
            buf: id,
            device: device.name.clone(),
            reason,
        })?;
        let attachment = buf.next_attachment;
        buf.next_attachment += 1;
        buf.attachments.push(Attachment {
            id: attachment,
            device: device.clone(),
            mapping: None,
            dynamic,
        });
        buf.refs += 1;
        Ok(attachment)
    }

    fn attachment(&mut self, id: BufId, attachment: AttachId) -> Result<&mut Attachment, BufError> {
        self.buf_mut(id)?
            .attachments
            .iter_mut()
            .find(|a| a.id == attachment)
            .ok_or(BufError::NoSuchAttachment {
                buf: id,
                attachment,
            })
    }

    /// `dma_buf_map_attachment`: the device addresses, one entry per segment.
    pub fn map(&mut self, id: BufId, attachment: AttachId) -> Result<Vec<DmaSegment>, BufError> {
        let buf = self.buf(id)?;
        let a = buf.attachments.iter().find(|a| a.id == attachment).ok_or(
            BufError::NoSuchAttachment {
                buf: id,
                attachment,
            },
        )?;
        if a.mapping.is_some() {
            return Err(BufError::AlreadyMapped {
                buf: id,
                attachment,
            });
        }
        // Checked at attach against the pages as they are now: a buffer that is not movable
        // has not changed since, a movable one is pinned by the caller where it is now.
        let mapping =
            check(buf, &a.device.constraints, &a.device).map_err(|reason| BufError::Refused {
                buf: id,
                device: a.device.name.clone(),
                reason,
            })?;
        self.attachment(id, attachment)?.mapping = Some(mapping.clone());
        Ok(mapping)
    }

    /// `dma_buf_unmap_attachment`.
    pub fn unmap(&mut self, id: BufId, attachment: AttachId) -> Result<(), BufError> {
        let a = self.attachment(id, attachment)?;
        a.mapping.take().map(|_| ()).ok_or(BufError::NotMapped {
            buf: id,
            attachment,
        })
    }

    /// `dma_buf_detach`: drops the attachment's reference (the allocation comes back if it
    /// was the last).
    pub fn detach(
        &mut self,
        id: BufId,
        attachment: AttachId,
    ) -> Result<Option<Allocation>, BufError> {
        if self.attachment(id, attachment)?.mapping.is_some() {
            return Err(BufError::StillMapped {
                buf: id,
                attachment,
            });
        }
        self.buf_mut(id)?.attachments.retain(|a| a.id != attachment);
        self.put(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::{DmaRange, Segment};
    use alloc::vec;

    fn alloc_of(heap: &str, segments: Vec<Segment>) -> Allocation {
        let pages: usize = segments.iter().map(|s| s.pages).sum();
        Allocation {
            heap: heap.into(),
            bytes: pages as u64 * 4096,
            segments,
            cpu_mapped: true,
            cma_area: None,
            chunk: None,
        }
    }

    fn scattered() -> Allocation {
        alloc_of(
            "system",
            vec![
                Segment {
                    pfn: 0x50000,
                    pages: 1,
                },
                Segment {
                    pfn: 0x50007,
                    pages: 1,
                },
            ],
        )
    }

    fn contiguous(pfn: usize, pages: usize) -> Allocation {
        alloc_of("default_cma_region", vec![Segment { pfn, pages }])
    }

    #[test]
    fn references_release_once_and_stale_ids_are_refused() {
        let mut t = BufTable::new();
        let id = t.export(scattered());
        let b = t.buf(id).unwrap();
        assert_eq!(
            (b.size, b.count(), b.exp_name.as_str(), b.flags, b.mode),
            (8192, 1, "system", 2, 0x80007)
        );
        let other = t.export(scattered());
        assert_ne!(
            t.buf(other).unwrap().ino,
            t.buf(id).unwrap().ino,
            "inode numbers are unique"
        );
        t.get(id).unwrap();
        assert_eq!(t.put(id), Ok(None));
        let released = t
            .put(id)
            .unwrap()
            .expect("last reference hands the pages back");
        assert_eq!(released.segments.len(), 2);
        assert_eq!(t.put(id), Err(BufError::Released(id)), "double release");
        assert_eq!(t.get(id), Err(BufError::Released(id)), "use after release");
        assert_eq!(
            t.attach(id, &DeviceDma::new("d", None)),
            Err(BufError::Released(id))
        );
        assert_eq!(t.get(999), Err(BufError::NoSuchBuf(999)));
        assert_eq!(
            format!("{}", BufError::Released(id)),
            format!("dma-buf {id} was already released")
        );
        assert_eq!(t.iter().count(), 1);
    }

    #[test]
    fn attach_refuses_what_the_device_cannot_take_with_the_reason() {
        let mut t = BufTable::new();
        let sg = t.export(scattered());
        let no_sg = DeviceDma::new("codec", None).with_max_segments(1).unwrap();
        let err = t.attach(sg, &no_sg).unwrap_err();
        assert_eq!(
            err,
            BufError::Refused {
                buf: sg,
                device: "codec".into(),
                reason: Refusal::TooManySegments {
                    segments: 2,
                    max: 1
                }
            }
        );
        assert!(format!("{err}").contains("no scatter-gather"), "{err}");
        assert_eq!(
            t.buf(sg).unwrap().count(),
            1,
            "a refused attach takes no reference"
        );

        let mut dev32 = DeviceDma::new("dev32", None);
        dev32.ranges = vec![DmaRange {
            cpu_start: 0x4000_0000,
            bus_start: 0,
            size: 0x4000_0000,
        }];
        dev32.constraints.addr_limit = 0x0fff_ffff;
        let high = t.export(contiguous(0x50000, 16));
        assert_eq!(
            t.attach(high, &dev32).unwrap_err(),
            BufError::Refused {
                buf: high,
                device: "dev32".into(),
                reason: Refusal::AboveLimit {
                    bus_last: 0x1000_ffff,
                    limit: 0x0fff_ffff
                }
            }
        );
        let outside = t.export(contiguous(0x90000, 1));
        assert!(matches!(
            t.attach(outside, &dev32),
            Err(BufError::Refused {
                reason: Refusal::NotReachable { phys: 0x9000_0000 },
                ..
            })
        ));
        let aligned = DeviceDma::new("mb", None).with_alignment(1 << 20).unwrap();
        let odd = t.export(contiguous(0x50001, 1));
        assert!(matches!(
            t.attach(odd, &aligned),
            Err(BufError::Refused {
                reason: Refusal::Misaligned { .. },
                ..
            })
        ));
    }

    #[test]
    fn map_gives_bus_addresses_and_detach_drops_the_reference() {
        let mut t = BufTable::new();
        let mut dev = DeviceDma::new("dev", None).with_max_segments(1).unwrap();
        dev.ranges = vec![DmaRange {
            cpu_start: 0x4000_0000,
            bus_start: 0x1000,
            size: 0x4000_0000,
        }];
        let id = t.export(contiguous(0x50000, 16));
        let a = t.attach(id, &dev).unwrap();
        assert_eq!(t.buf(id).unwrap().count(), 2);
        assert_eq!(
            t.unmap(id, a),
            Err(BufError::NotMapped {
                buf: id,
                attachment: a
            })
        );
        let map = t.map(id, a).unwrap();
        assert_eq!(
            map,
            vec![DmaSegment {
                bus: 0x5000_0000 - 0x4000_0000 + 0x1000,
                len: 65536
            }],
            "one entry, offset applied"
        );
        assert_eq!(
            t.map(id, a),
            Err(BufError::AlreadyMapped {
                buf: id,
                attachment: a
            })
        );
        assert_eq!(t.put(id), Ok(None), "the attachment keeps the buffer alive");
        assert_eq!(
            t.detach(id, a),
            Err(BufError::StillMapped {
                buf: id,
                attachment: a
            })
        );
        t.unmap(id, a).unwrap();
        assert!(
            t.detach(id, a).unwrap().is_some(),
            "last reference was the attachment's"
        );
        assert_eq!(t.detach(id, a), Err(BufError::Released(id)));

        let sg = t.export(scattered());
        let any = DeviceDma::new("any", None);
        let a = t.attach(sg, &any).unwrap();
        assert_eq!(t.map(sg, a).unwrap().len(), 2, "one entry per segment");
        assert_eq!(
            t.map(sg, 77),
            Err(BufError::NoSuchAttachment {
                buf: sg,
                attachment: 77
            })
        );
        assert_eq!(
            t.set_name(sg, &"x".repeat(40)),
            Err(BufError::NameTooLong { len: 40 })
        );
        t.set_name(sg, "frame0").unwrap();
        assert_eq!(t.buf(sg).unwrap().name.as_deref(), Some("frame0"));
    }
}
