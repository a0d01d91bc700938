//! Host-test cache model: a write-back CPU data cache of lines over a byte "memory" that
//! the fake device reads and writes directly, bypassing the cache (a non-snooping DMA
//! master). Without the right maintenance, the CPU reads stale lines and the device reads
//! stale memory, so a missing operation shows up as wrong bytes.
#![forbid(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::CacheMaintenance;

struct Line {
    data: Vec<u8>,
    dirty: bool,
}

pub(crate) struct FakeCache {
    line: u64,
    memory: BTreeMap<u64, u8>,
    lines: BTreeMap<u64, Line>,
    ops: usize,
}

impl FakeCache {
    pub(crate) fn new(line: u64) -> FakeCache {
        FakeCache {
            line,
            memory: BTreeMap::new(),
            lines: BTreeMap::new(),
            ops: 0,
        }
    }

    /// Maintenance operations issued so far.
    pub(crate) fn ops(&self) -> usize {
        self.ops
    }

    fn mem(&self, addr: u64) -> u8 {
        self.memory.get(&addr).copied().unwrap_or(0)
    }

    fn fill(&mut self, base: u64) -> &mut Line {
        let data = (0..self.line).map(|i| self.mem(base + i)).collect();
        self.lines
            .entry(base)
            .or_insert(Line { data, dirty: false })
    }

    pub(crate) fn cpu_read(&mut self, addr: u64, len: usize) -> Vec<u8> {
        (addr..addr + len as u64)
            .map(|a| {
                let base = a & !(self.line - 1);
                self.fill(base).data[(a - base) as usize]
            })
            .collect()
    }

    pub(crate) fn cpu_write(&mut self, addr: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let a = addr + i as u64;
            let base = a & !(self.line - 1);
            let line = self.fill(base);
            line.data[(a - base) as usize] = *b;
            line.dirty = true;
        }
    }

    pub(crate) fn device_read(&self, addr: u64, len: usize) -> Vec<u8> {
        (addr..addr + len as u64).map(|a| self.mem(a)).collect()
    }

    pub(crate) fn device_write(&mut self, addr: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            self.memory.insert(addr + i as u64, *b);
        }
    }

    fn bases(&self, phys: u64, len: u64) -> Vec<u64> {
        let first = phys & !(self.line - 1);
        (first..phys + len).step_by(self.line as usize).collect()
    }

    fn write_back(&mut self, base: u64) {
        if let Some(line) = self.lines.get_mut(&base) {
            if line.dirty {
                line.dirty = false;
                let data = line.data.clone();
                for (i, b) in data.into_iter().enumerate() {
                    self.memory.insert(base + i as u64, b);
                }
            }
        }
    }
}

impl CacheMaintenance for FakeCache {
    fn line_size(&self) -> usize {
        self.line as usize
    }

    fn clean(&mut self, phys: u64, len: u64) {
        self.ops += 1;
        for base in self.bases(phys, len) {
            self.write_back(base);
        }
    }

    fn invalidate(&mut self, phys: u64, len: u64) {
        self.ops += 1;
        for base in self.bases(phys, len) {
            if base < phys || base + self.line > phys + len {
                self.write_back(base);
            }
            self.lines.remove(&base);
        }
    }

    fn clean_invalidate(&mut self, phys: u64, len: u64) {
        self.ops += 1;
        for base in self.bases(phys, len) {
            self.write_back(base);
            self.lines.remove(&base);
        }
    }
}

#[test]
fn the_model_shows_stale_data_without_maintenance() {
    let mut c = FakeCache::new(64);
    c.cpu_write(0x1000, &[7; 4]);
    assert_eq!(c.device_read(0x1000, 4), vec![0; 4]);
    c.clean_invalidate(0x1000, 64);
    assert_eq!(c.device_read(0x1000, 4), vec![7; 4]);
    let _ = c.cpu_read(0x1000, 1);
    c.device_write(0x1000, &[9]);
    assert_eq!(c.cpu_read(0x1000, 1), vec![7], "stale line");
    c.cpu_write(0x1040, &[1]);
    c.invalidate(0x1000, 64);
    assert_eq!(c.cpu_read(0x1000, 1), vec![9]);
    c.invalidate(0x1040, 64);
    assert_eq!(
        c.cpu_read(0x1040, 1),
        vec![0],
        "invalidate drops dirty lines fully inside"
    );
    assert_eq!(c.line_size(), 64);
}
