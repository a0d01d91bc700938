//! Guest RAM as the controller model touches it: whether a masked unit's bytes are all in
//! the guest's memory table, and overwriting them (what losing refresh does to a DRAM cell,
//! made deterministic).
//!
//! The memory table is QEMU's (VHOST_USER_SET_MEM_TABLE: memfd regions mapped shared), so a
//! write here is a write the guest sees. Every range is checked before anything is written,
//! so a refused entry changes no byte.
#![forbid(unsafe_code)]

use std::ops::Range;

use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

/// Bytes per `write_slice`: 64 calls for a 64 MiB bank, from one 1 MiB buffer per entry.
const CHUNK: usize = 1 << 20;

/// Whether every byte of every range is in `mem` and writable.
pub fn all_in_ram<M: GuestMemory>(mem: &M, ranges: &[Range<u64>]) -> bool {
    ranges.iter().all(|r| {
        let Some(len) = r
            .end
            .checked_sub(r.start)
            .and_then(|l| usize::try_from(l).ok())
        else {
            return false;
        };
        len == 0 || mem.check_range(GuestAddress(r.start), len, Permissions::Write)
    })
}

/// Overwrite every byte of `ranges` with `pattern`; the bytes written. Call
/// [`all_in_ram`] first: an error here means the table changed underneath.
pub fn overwrite<M: GuestMemory>(
    mem: &M,
    ranges: &[Range<u64>],
    pattern: u8,
) -> Result<u64, vm_memory::GuestMemoryError> {
    let buf = vec![pattern; CHUNK];
    let mut written = 0u64;
    for r in ranges {
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(CHUNK as u64) as usize;
            mem.write_slice(&buf[..n], GuestAddress(at))?;
            at += n as u64;
            written += n as u64;
        }
    }
    Ok(written)
}

#[cfg(test)]
// A slice of one range is what the functions take, not a mistaken `vec![a..b]`.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap {
        // Two regions with a hole between them.
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0x1000), 0x3000),
            (GuestAddress(0x8000), 0x2000),
        ])
        .unwrap()
    }

    #[test]
    fn ranges_must_lie_wholly_in_ram() {
        let m = mem();
        assert!(all_in_ram(&m, &[0x1000..0x4000, 0x8000..0xa000]));
        assert!(all_in_ram(&m, &[]));
        assert!(!all_in_ram(&m, &[0x3000..0x5000]), "runs into the hole");
        assert!(!all_in_ram(&m, &[0x9000..0xb000]), "runs past the end");
        assert!(!all_in_ram(&m, &[0x0..0x1000]), "below RAM");
        #[allow(clippy::reversed_empty_ranges)] // what a hostile extent could look like
        let backwards = 0x2000..0x1000;
        assert!(!all_in_ram(&m, &[backwards]), "backwards");
        assert!(!all_in_ram(&m, &[u64::MAX - 1..u64::MAX]));
    }

    #[test]
    fn overwrite_writes_exactly_the_ranges() {
        let m = mem();
        m.write_slice(&[0x11; 0x3000], GuestAddress(0x1000))
            .unwrap();
        let n = overwrite(&m, &[0x1800..0x2800], 0x5a).unwrap();
        assert_eq!(n, 0x1000);
        let mut all = [0u8; 0x3000];
        m.read_slice(&mut all, GuestAddress(0x1000)).unwrap();
        assert!(all[..0x800].iter().all(|&b| b == 0x11));
        assert!(all[0x800..0x1800].iter().all(|&b| b == 0x5a));
        assert!(all[0x1800..].iter().all(|&b| b == 0x11));
    }
}
