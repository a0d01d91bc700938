//! CPU access brackets: `DMA_BUF_IOCTL_SYNC` / `dma_buf_begin_cpu_access` and
//! `dma_buf_end_cpu_access` as Linux's heaps implement them, through a cache-maintenance
//! seam.
//!
//! # Theory of operation
//!
//! `cma_heap_dma_buf_begin_cpu_access` (and the system heap's twin) runs
//! `dma_sync_sgtable_for_cpu(dev, table, dir)` on every attachment that is mapped; the end
//! bracket runs `dma_sync_sgtable_for_device`. For a device that is `dma-coherent`,
//! dma-direct does nothing. For a non-coherent one on arm64
//! (`arch/arm64/mm/dma-mapping.c`):
//!
//! | bracket | `DMA_TO_DEVICE` | `DMA_FROM_DEVICE` | `DMA_BIDIRECTIONAL` |
//! | --- | --- | --- | --- |
//! | begin (`arch_sync_dma_for_cpu`) | nothing | invalidate (`dcache_inval_poc`) | invalidate |
//! | end (`arch_sync_dma_for_device`) | clean (`dcache_clean_poc`) | clean | clean |
//!
//! Begin invalidates so the CPU does not read lines it cached before the device wrote
//! memory; `TO_DEVICE` skips it because the device wrote nothing, and invalidating would
//! throw away CPU stores not yet written back. End cleans so the device reads what the CPU
//! wrote. The operations act on each segment's CPU physical range (the firmware's linear
//! map is the identity); `dcache_inval_poc` cleans and invalidates lines only partly in the
//! range, which is the [`CacheMaintenance::invalidate`] contract too.
//!
//! A buffer the CPU cannot map (a `no-map` carveout) is refused: it has no cached lines
//! and no CPU access.
#![forbid(unsafe_code)]

use core::fmt;

use super::buf::{BufId, DmaBuf};

/// `enum dma_data_direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaDirection {
    Bidirectional = 0,
    ToDevice = 1,
    FromDevice = 2,
}

/// Data-cache maintenance by physical range, to the point of coherency.
pub trait CacheMaintenance {
    fn line_size(&self) -> usize;
    /// Write dirty lines back (DC CVAC).
    fn clean(&mut self, phys: u64, len: u64);
    /// Drop lines (DC IVAC); lines only partly inside are cleaned first (DC CIVAC).
    fn invalidate(&mut self, phys: u64, len: u64);
    /// Write back and drop (DC CIVAC).
    fn clean_invalidate(&mut self, phys: u64, len: u64);
}

/// Why a CPU access bracket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessError {
    /// The buffer is not in the CPU's map (a `no-map` carveout).
    NotCpuMapped(BufId),
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::NotCpuMapped(id) => {
                write!(f, "dma-buf {id} is a no-map carveout: no CPU access")
            }
        }
    }
}

/// Run `op` on every segment of every mapped attachment of a non-coherent device.
fn each_noncoherent_segment(
    buf: &DmaBuf,
    mut op: impl FnMut(u64, u64),
) -> Result<usize, AccessError> {
    if !buf.allocation.cpu_mapped {
        return Err(AccessError::NotCpuMapped(buf.id));
    }
    let mut synced = 0;
    for a in buf.attachments() {
        if a.mapping.is_none() || a.device.constraints.coherent {
            continue;
        }
        for s in &buf.allocation.segments {
            op(s.phys(), s.len());
        }
        synced += 1;
    }
    Ok(synced)
}

/// `dma_buf_begin_cpu_access`: returns how many attachments were synced.
pub fn begin_cpu_access(
    buf: &DmaBuf,
    dir: DmaDirection,
    cache: &mut dyn CacheMaintenance,
) -> Result<usize, AccessError> {
    each_noncoherent_segment(buf, |phys, len| match dir {
        // arch_sync_dma_for_cpu: `if (dir == DMA_TO_DEVICE) return;`
        DmaDirection::ToDevice => {}
        // ... else dcache_inval_poc(start, start + size).
        DmaDirection::FromDevice | DmaDirection::Bidirectional => cache.invalidate(phys, len),
    })
}

/// `dma_buf_end_cpu_access`: returns how many attachments were synced.
pub fn end_cpu_access(
    buf: &DmaBuf,
    dir: DmaDirection,
    cache: &mut dyn CacheMaintenance,
) -> Result<usize, AccessError> {
    // arch_sync_dma_for_device: dcache_clean_poc(start, start + size) for every direction.
    let _ = dir;
    each_noncoherent_segment(buf, |phys, len| cache.clean(phys, len))
}

#[cfg(test)]
pub(crate) mod fakecache;

#[cfg(test)]
mod tests {
    use super::fakecache::FakeCache;
    use super::*;
    use crate::dma::buf::BufTable;
    use crate::dma::heap::Allocation;
    use crate::dma::{DeviceDma, Segment};
    use alloc::vec;

    const BUF: u64 = 0x5000_0000;

    /// A two-page scattered buffer mapped for a non-coherent device (and, if asked, a
    /// coherent one).
    fn mapped(coherent: bool) -> (BufTable, u32) {
        let mut t = BufTable::new();
        let id = t.export(Allocation::system_pages(&[0x50000, 0x50001]));
        let mut dev = DeviceDma::new("dev", None);
        dev.constraints.coherent = coherent;
        let a = t.attach(id, &dev).unwrap();
        t.map(id, a).unwrap();
        (t, id)
    }

    /// The device wrote `0xdd` after the CPU had cached the old contents: begin must make
    /// the CPU see the device's data.
    fn device_write_is_seen_after_begin(dir: DmaDirection) -> (u8, usize) {
        let (t, id) = mapped(false);
        let mut cache = FakeCache::new(64);
        cache.cpu_write(BUF, &[0x11; 8192]);
        cache.clean(BUF, 8192);
        let _ = cache.cpu_read(BUF + 4096, 1); // the CPU caches the old line
        cache.device_write(BUF + 4096, &[0xdd; 64]);
        let synced = begin_cpu_access(t.buf(id).unwrap(), dir, &mut cache).unwrap();
        (cache.cpu_read(BUF + 4096, 1)[0], synced)
    }

    #[test]
    fn begin_from_device_invalidates() {
        assert_eq!(
            device_write_is_seen_after_begin(DmaDirection::FromDevice),
            (0xdd, 1)
        );
    }

    #[test]
    fn begin_bidirectional_invalidates() {
        assert_eq!(
            device_write_is_seen_after_begin(DmaDirection::Bidirectional),
            (0xdd, 1)
        );
    }

    #[test]
    fn begin_to_device_keeps_unwritten_cpu_stores() {
        // The CPU wrote but has not ended its access yet; an invalidate here would drop
        // those dirty lines (Linux skips it for TO_DEVICE).
        let (t, id) = mapped(false);
        let mut cache = FakeCache::new(64);
        cache.cpu_write(BUF, &[0x42; 128]);
        begin_cpu_access(t.buf(id).unwrap(), DmaDirection::ToDevice, &mut cache).unwrap();
        assert_eq!(cache.cpu_read(BUF, 128), vec![0x42; 128]);
        assert_eq!(cache.ops(), 0, "no maintenance at all for TO_DEVICE");
    }

    fn cpu_write_reaches_device_after_end(dir: DmaDirection) {
        let (t, id) = mapped(false);
        let mut cache = FakeCache::new(64);
        cache.cpu_write(BUF + 4096 + 64, &[0x5a; 64]);
        assert_eq!(
            cache.device_read(BUF + 4096 + 64, 1),
            vec![0],
            "still only in the cache"
        );
        end_cpu_access(t.buf(id).unwrap(), dir, &mut cache).unwrap();
        assert_eq!(
            cache.device_read(BUF + 4096 + 64, 64),
            vec![0x5a; 64],
            "{dir:?}"
        );
    }

    #[test]
    fn end_to_device_cleans() {
        cpu_write_reaches_device_after_end(DmaDirection::ToDevice);
    }

    #[test]
    fn end_from_device_cleans() {
        cpu_write_reaches_device_after_end(DmaDirection::FromDevice);
    }

    #[test]
    fn end_bidirectional_cleans() {
        cpu_write_reaches_device_after_end(DmaDirection::Bidirectional);
    }

    #[test]
    fn coherent_or_unmapped_attachments_get_no_maintenance() {
        let (t, id) = mapped(true);
        let mut cache = FakeCache::new(64);
        assert_eq!(
            begin_cpu_access(t.buf(id).unwrap(), DmaDirection::FromDevice, &mut cache),
            Ok(0)
        );
        assert_eq!(
            end_cpu_access(t.buf(id).unwrap(), DmaDirection::ToDevice, &mut cache),
            Ok(0)
        );
        assert_eq!(cache.ops(), 0);

        let (mut t, id) = mapped(false);
        t.unmap(id, 1).unwrap();
        assert_eq!(
            begin_cpu_access(t.buf(id).unwrap(), DmaDirection::FromDevice, &mut cache),
            Ok(0)
        );
        assert_eq!(cache.ops(), 0, "Linux syncs mapped attachments only");
    }

    #[test]
    fn no_map_carveouts_refuse_cpu_access() {
        let mut t = BufTable::new();
        let id = t.export(Allocation {
            heap: "fb".into(),
            bytes: 4096,
            segments: vec![Segment {
                pfn: 0x53000,
                pages: 1,
            }],
            cpu_mapped: false,
            cma_area: None,
            chunk: None,
        });
        let mut cache = FakeCache::new(64);
        assert_eq!(
            begin_cpu_access(t.buf(id).unwrap(), DmaDirection::FromDevice, &mut cache),
            Err(AccessError::NotCpuMapped(id))
        );
    }
}
