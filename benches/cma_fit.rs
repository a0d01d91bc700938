//! Host benchmark: fragmentation of a CMA area under first fit and best fit, and with
//! movable device buffers that the area may move (defragmentation), on one replayed trace.
//!
//! A trace of device-buffer allocations and releases (sizes from 1 to 8192 pages, mostly
//! small, aligned as `dma_alloc_from_contiguous` aligns them: to the size's order, at most
//! order 8) is generated once per seed and replayed against a 256 MiB area under each
//! policy, with the occupancy held between 50% and 75%. Every 64 operations a large probe
//! (1024 to 8192 pages) asks for a contiguous range and gives it straight back: the request
//! a camera or decoder makes when it starts. The area is idle apart from its own buffers
//! (no movable tenants), so every failure is fragmentation alone: each one is counted only
//! where the area had the free pages. Reported per policy: probes that failed, ordinary
//! requests that failed, and the largest free chunk (mean and lowest over the samples).
//!
//! The defragmenting runs replay the same trace with every buffer a movable chunk
//! (`cma_alloc_movable`): `defrag-1/4` keeps one in four pinned for its whole life (a
//! device streaming into it), the others unpinned between uses, so the area may move them;
//! `defrag-0` pins none. The pages copied are counted. At the end of each replay the area's
//! largest free chunk and the largest request it then serves (found by bisection) are
//! printed. Run with `cargo bench --bench cma_fit`.

use monolith::mm::{
    cma_activate_area, cma_alloc, cma_alloc_movable, cma_init_reserved_mem, cma_pin, cma_release,
    cma_release_movable, cma_unpin, zone_metadata_size, ChunkId, CmaArea, CmaFit, MigrateError,
    Migrator, Owner, Page, Pfn, Zone,
};

const BASE: Pfn = 0x40000;
/// 1 GiB zone, the first 256 MiB of it the area.
const PAGES: usize = 1 << 18;
const AREA_PAGES: usize = 1 << 16;
const SLOTS: usize = 512;
const OPS: usize = 20_000;
const PROBE_EVERY: usize = 64;
const SEEDS: [u64; 3] = [
    0x2545_f491_4f6c_dd1d,
    0x9e37_79b9_7f4a_7c15,
    0xd1b5_4a32_d192_ed03,
];

#[path = "common/xorshift.rs"]
mod xorshift;
use xorshift::XorShift;

#[derive(Clone, Copy)]
enum Op {
    /// Allocate `pages` into a free slot if the area is under its high mark, else free.
    Step {
        pick: u64,
        pages: usize,
    },
    Probe {
        pages: usize,
    },
}

/// `dma_alloc_from_contiguous`'s alignment: the size's order, capped at 8.
fn align_order(pages: usize) -> usize {
    (pages.next_power_of_two().trailing_zeros() as usize).min(8)
}

/// The area holds device buffers only: nothing to migrate or reclaim, but it can copy a
/// movable chunk (and counts what it copied).
#[derive(Default)]
struct Copier {
    pages: usize,
}

impl Migrator for Copier {
    fn migrate(&mut self, _: Pfn, _: Pfn, _: usize, _: Owner) -> Result<(), MigrateError> {
        Err(MigrateError::Busy)
    }

    fn reclaim(&mut self, _: Pfn, _: usize, _: Owner) -> bool {
        false
    }

    fn move_chunk(&mut self, _: Pfn, _: Pfn, count: usize) -> Result<(), MigrateError> {
        self.pages += count;
        Ok(())
    }
}

/// One device buffer from the area, aligned as the DMA layer aligns it.
fn allocate(area: &mut CmaArea, zone: &mut Zone<'_>, m: &mut Copier, pages: usize) -> Option<Pfn> {
    cma_alloc(area, zone, m, pages, align_order(pages)).ok()
}

/// A buffer of the trace: a plain allocation, or a movable chunk (pinned or not).
#[derive(Clone, Copy)]
enum Buffer {
    Plain(Pfn, usize),
    Movable(ChunkId, bool),
}

/// How the trace's buffers are allocated.
#[derive(Clone, Copy)]
struct Config {
    fit: CmaFit,
    movable: bool,
    /// Of every four movable buffers, how many stay pinned for their whole life.
    pinned_of_4: u64,
}

impl Config {
    const ALL: [Config; 4] = [
        Config {
            fit: CmaFit::FirstFit,
            movable: false,
            pinned_of_4: 0,
        },
        Config {
            fit: CmaFit::BestFit,
            movable: false,
            pinned_of_4: 0,
        },
        Config {
            fit: CmaFit::FirstFit,
            movable: true,
            pinned_of_4: 1,
        },
        Config {
            fit: CmaFit::FirstFit,
            movable: true,
            pinned_of_4: 0,
        },
    ];

    fn name(self) -> &'static str {
        match (self.fit, self.movable, self.pinned_of_4) {
            (CmaFit::FirstFit, false, _) => "first-fit",
            (CmaFit::BestFit, false, _) => "best-fit",
            (_, true, 0) => "defrag-0",
            (_, true, _) => "defrag-1/4",
        }
    }
}

fn buffer_pages(rng: &mut XorShift) -> usize {
    // Mostly small buffers with a tail of large ones.
    let base = [
        1, 1, 1, 2, 4, 4, 8, 16, 16, 32, 64, 128, 256, 512, 1024, 4096,
    ][(rng.next() % 16) as usize];
    1 + (rng.next() as usize) % (2 * base)
}

fn trace(seed: u64) -> Vec<Op> {
    let mut rng = XorShift(seed);
    (0..OPS)
        .map(|i| {
            if i % PROBE_EVERY == PROBE_EVERY - 1 {
                Op::Probe {
                    pages: 1024 + (rng.next() as usize) % 7169,
                }
            } else {
                Op::Step {
                    pick: rng.next(),
                    pages: buffer_pages(&mut rng),
                }
            }
        })
        .collect()
}

#[derive(Default)]
struct Outcome {
    probes: usize,
    probe_failures: usize,
    requests: usize,
    request_failures: usize,
    maxchunk_sum: usize,
    maxchunk_min: usize,
    samples: usize,
    pages_copied: usize,
    /// After the trace: the area's largest free chunk, and the largest request it serves.
    end_maxchunk: usize,
    end_largest: usize,
}

fn replay(config: Config, ops: &[Op]) -> Outcome {
    let size = zone_metadata_size(BASE, PAGES);
    let mut pages = vec![Page::HOLE; size.pages];
    let mut blocks = vec![0u8; size.pageblocks];
    let mut zone = Zone::new(BASE, &mut pages, &mut blocks).expect("zone");
    zone.free_range(BASE..BASE + PAGES).expect("free_range");
    let mut area: CmaArea = cma_init_reserved_mem(BASE, AREA_PAGES, 0, "bench").expect("area");
    cma_activate_area(&mut area, &mut zone).expect("activate");
    area.set_fit(config.fit);
    let mut copier = Copier::default();
    let mut slots: Vec<Option<Buffer>> = vec![None; SLOTS];
    let mut out = Outcome {
        maxchunk_min: usize::MAX,
        ..Outcome::default()
    };
    for op in ops {
        match *op {
            Op::Step { pick, pages } => {
                let used = area.used_pages();
                let slot = (pick as usize) % SLOTS;
                let grow = used < AREA_PAGES / 2 || (used < AREA_PAGES * 3 / 4 && pick % 5 < 3);
                if grow && slots[slot].is_none() {
                    out.requests += 1;
                    let free = AREA_PAGES - used;
                    let buffer = if config.movable {
                        let align = align_order(pages);
                        cma_alloc_movable(&mut area, &mut zone, &mut copier, pages, align)
                            .ok()
                            .map(|id| {
                                // Some stream for their whole life: pinned throughout.
                                let pinned = (pick >> 32) % 4 < config.pinned_of_4;
                                if pinned {
                                    cma_pin(&mut area, id).expect("pin a new chunk");
                                }
                                Buffer::Movable(id, pinned)
                            })
                    } else {
                        allocate(&mut area, &mut zone, &mut copier, pages)
                            .map(|pfn| Buffer::Plain(pfn, pages))
                    };
                    match buffer {
                        Some(b) => slots[slot] = Some(b),
                        None if free >= pages => out.request_failures += 1,
                        None => {}
                    }
                } else if let Some(buffer) = slots[slot].take() {
                    match buffer {
                        Buffer::Plain(pfn, n) => assert!(
                            cma_release(&mut area, &mut zone, pfn, n),
                            "release {pfn:#x}+{n}"
                        ),
                        Buffer::Movable(id, pinned) => {
                            if pinned {
                                cma_unpin(&mut area, id).expect("unpin");
                            }
                            cma_release_movable(&mut area, &mut zone, id).expect("release chunk");
                        }
                    }
                }
            }
            Op::Probe { pages } => {
                let chunk = area.maxchunk_pages();
                out.maxchunk_sum += chunk;
                out.maxchunk_min = out.maxchunk_min.min(chunk);
                out.samples += 1;
                if AREA_PAGES - area.used_pages() < pages {
                    continue;
                }
                out.probes += 1;
                match allocate(&mut area, &mut zone, &mut copier, pages) {
                    Some(pfn) => assert!(cma_release(&mut area, &mut zone, pfn, pages)),
                    None => out.probe_failures += 1,
                }
            }
        }
    }
    out.end_maxchunk = area.maxchunk_pages();
    // The largest request the area serves now (binary search; each success given back).
    let (mut lo, mut hi) = (0, AREA_PAGES - area.used_pages());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        match allocate(&mut area, &mut zone, &mut copier, mid) {
            Some(pfn) => {
                assert!(cma_release(&mut area, &mut zone, pfn, mid));
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    out.end_largest = lo;
    out.pages_copied = copier.pages;
    out
}

fn main() {
    println!(
        "{:<10} {:>10} {:>16} {:>18} {:>20} {:>18} {:>14} {:>22}",
        "fit",
        "seed",
        "probes failed",
        "requests failed",
        "maxchunk mean MiB",
        "maxchunk min MiB",
        "copied MiB",
        "at end: chunk/largest"
    );
    let mib = |pages: usize| pages as f64 * 4096.0 / (1 << 20) as f64;
    for config in Config::ALL {
        let mut total = Outcome::default();
        for seed in SEEDS {
            let o = replay(config, &trace(seed));
            println!(
                "{:<10} {:>#10x} {:>9} of {:<5} {:>10} of {:<6} {:>20.1} {:>18.1} {:>14.1} {:>11.1} / {:<8.1}",
                config.name(),
                seed & 0xffff,
                o.probe_failures,
                o.probes,
                o.request_failures,
                o.requests,
                mib(o.maxchunk_sum / o.samples.max(1)),
                mib(o.maxchunk_min),
                mib(o.pages_copied),
                mib(o.end_maxchunk),
                mib(o.end_largest)
            );
            total.probes += o.probes;
            total.probe_failures += o.probe_failures;
            total.requests += o.requests;
            total.request_failures += o.request_failures;
        }
        println!(
            "{:<10} {:>10} {:>9} of {:<5} {:>10} of {:<6}  ({:.1}% of probes failed)",
            config.name(),
            "all",
            total.probe_failures,
            total.probes,
            total.request_failures,
            total.requests,
            100.0 * total.probe_failures as f64 / total.probes.max(1) as f64
        );
    }
}
