//! What the integration tests share: a board device tree with a `monolith,pasr-dram` node
//! (the binding of `monolith::pasr::geometry`), scratch files, and waits on the device
//! process.
#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use vm_fdt::FdtWriter;

/// The `monolith,pasr-dram` node's shape.
pub struct Board {
    pub base: u64,
    /// Die densities in megabits.
    pub densities: Vec<u32>,
    pub unit: &'static str,
    pub units_per_die: Option<u32>,
    pub interleave: Option<u32>,
    /// Leave the node out altogether.
    pub pasr_node: bool,
}

impl Board {
    /// Two 256 Mbit (32 MiB) dies of eight 4 MiB banks at 0x4000_0000, not interleaved.
    pub fn small() -> Board {
        Board {
            base: 0x4000_0000,
            densities: vec![256, 256],
            unit: "bank",
            units_per_die: Some(8),
            interleave: None,
            pasr_node: true,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.densities.iter().map(|&d| u64::from(d) << 17).sum()
    }

    pub fn blob(&self) -> Vec<u8> {
        let mut f = FdtWriter::new().unwrap();
        let root = f.begin_node("").unwrap();
        f.property_u32("#address-cells", 2).unwrap();
        f.property_u32("#size-cells", 2).unwrap();
        let memory = f.begin_node(&format!("memory@{:x}", self.base)).unwrap();
        f.property_string("device_type", "memory").unwrap();
        f.property_array_u64("reg", &[self.base, self.total_bytes()])
            .unwrap();
        f.end_node(memory).unwrap();
        let channel = f.begin_node("lpddr-channel0").unwrap();
        f.property_string("compatible", "jedec,lpddr-channel")
            .unwrap();
        f.property_u32("#address-cells", 1).unwrap();
        f.property_u32("#size-cells", 0).unwrap();
        for (i, density) in self.densities.iter().enumerate() {
            let rank = f.begin_node(&format!("rank@{i}")).unwrap();
            f.property_string("compatible", "jedec,lpddr4").unwrap();
            f.property_u32("reg", i as u32).unwrap();
            f.property_u32("density", *density).unwrap();
            f.property_u32("io-width", 16).unwrap();
            f.property_u32("phandle", 10 + i as u32).unwrap();
            f.end_node(rank).unwrap();
        }
        f.end_node(channel).unwrap();
        if self.pasr_node {
            let dram = f.begin_node(&format!("dram@{:x}", self.base)).unwrap();
            f.property_string("compatible", "monolith,pasr-dram")
                .unwrap();
            f.property_array_u64("reg", &[self.base, self.total_bytes()])
                .unwrap();
            let phandles: Vec<u32> = (0..self.densities.len() as u32).map(|i| 10 + i).collect();
            f.property_array_u32("monolith,dies", &phandles).unwrap();
            f.property_string("monolith,pasr-unit", self.unit).unwrap();
            if let Some(n) = self.units_per_die {
                f.property_u32("monolith,units-per-die", n).unwrap();
            }
            if let Some(g) = self.interleave {
                f.property_u32("monolith,interleave-bytes", g).unwrap();
            }
            f.end_node(dram).unwrap();
        }
        f.end_node(root).unwrap();
        f.finish().unwrap()
    }
}

/// A scratch path for this test process.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `board`'s DTB written to a scratch file.
pub fn dtb_file(name: &str, board: &Board) -> PathBuf {
    let path = tmp(name);
    std::fs::write(&path, board.blob()).unwrap();
    path
}

/// Wait until `path` exists (the device created its socket), at most 10 s.
pub fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait at most `limit` for `child` to exit; kill it and fail with `what` if it does not.
pub fn wait_exit(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
