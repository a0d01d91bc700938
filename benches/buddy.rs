//! Host benchmark: the mm buddy allocator against `buddy_system_allocator::FrameAllocator`
//! on identical operation traces.
//!
//! Each trace is generated once from a fixed seed as a list of (alloc order into slot /
//! free slot) operations, then replayed against each allocator, so both see exactly the
//! same request stream. Reported: million operations per second (one alloc or one free is
//! one operation) and our speed-up. Run with `cargo bench --bench buddy`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use buddy_system_allocator::FrameAllocator;
use monolith::mm::{zone_metadata_size, Gfp, Page, Pfn, Zone};

const BASE: Pfn = 0x40000;
/// 1 GiB of 4 KiB frames.
const PAGES: usize = 1 << 18;
const SLOTS: usize = 1 << 14;

#[derive(Clone, Copy)]
enum Op {
    Alloc { slot: usize, order: usize },
    Free { slot: usize },
}

#[path = "common/xorshift.rs"]
mod xorshift;
use xorshift::XorShift;

/// Slots start empty; each step allocates into an empty slot or frees a full one, keeping
/// about half the slots full so the allocator works with fragmented free lists.
fn trace(len: usize, seed: u64, order_of: impl Fn(u64) -> usize) -> Vec<Op> {
    let mut rng = XorShift(seed);
    let mut full = vec![false; SLOTS];
    let mut ops = Vec::with_capacity(len);
    while ops.len() < len {
        let slot = (rng.next() as usize) % SLOTS;
        if full[slot] {
            ops.push(Op::Free { slot });
        } else {
            ops.push(Op::Alloc {
                slot,
                order: order_of(rng.next()),
            });
        }
        full[slot] = !full[slot];
    }
    ops
}

/// Alloc then immediately free, the hot path of a page cache / per-CPU refill.
fn lifo_trace(len: usize) -> Vec<Op> {
    (0..len)
        .map(|i| {
            if i % 2 == 0 {
                Op::Alloc { slot: 0, order: 0 }
            } else {
                Op::Free { slot: 0 }
            }
        })
        .collect()
}

trait Allocator {
    fn alloc(&mut self, order: usize) -> Option<Pfn>;
    fn free(&mut self, pfn: Pfn, order: usize);
}

struct Ours<'a>(Zone<'a>);

impl Allocator for Ours<'_> {
    #[inline]
    fn alloc(&mut self, order: usize) -> Option<Pfn> {
        self.0.alloc_pages(order, Gfp::MOVABLE).ok()
    }
    #[inline]
    fn free(&mut self, pfn: Pfn, order: usize) {
        let _ = self.0.free_pages(pfn, order);
    }
}

struct Theirs(FrameAllocator<32>);

impl Allocator for Theirs {
    #[inline]
    fn alloc(&mut self, order: usize) -> Option<Pfn> {
        self.0.alloc(1 << order)
    }
    #[inline]
    fn free(&mut self, pfn: Pfn, order: usize) {
        self.0.dealloc(pfn, 1 << order)
    }
}

fn replay(a: &mut impl Allocator, ops: &[Op], slots: &mut [(Pfn, usize, bool)]) {
    for op in ops {
        match *op {
            Op::Alloc { slot, order } => {
                if let Some(pfn) = a.alloc(black_box(order)) {
                    slots[slot] = (pfn, order, true);
                }
            }
            Op::Free { slot } => {
                let (pfn, order, live) = slots[slot];
                if live {
                    a.free(black_box(pfn), order);
                    slots[slot].2 = false;
                }
            }
        }
    }
    // Leave the allocator empty for the next round.
    for s in slots.iter_mut().filter(|s| s.2) {
        a.free(s.0, s.1);
        s.2 = false;
    }
}

/// Best of several rounds, in operations per second.
fn measure(a: &mut impl Allocator, ops: &[Op]) -> f64 {
    let mut slots = vec![(0, 0, false); SLOTS];
    replay(a, ops, &mut slots); // warm-up
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        replay(a, ops, &mut slots);
        best = best.min(t.elapsed());
    }
    ops.len() as f64 / best.as_secs_f64()
}

fn main() {
    let size = zone_metadata_size(BASE, PAGES);
    let mut pages = vec![Page::HOLE; size.pages];
    let mut blocks = vec![0u8; size.pageblocks];
    let mut zone = Zone::new(BASE, &mut pages, &mut blocks).expect("zone");
    zone.free_range(BASE..BASE + PAGES).expect("free_range");
    let mut ours = Ours(zone);
    let mut theirs = Theirs(FrameAllocator::<32>::new());
    theirs.0.add_frame(BASE, BASE + PAGES);

    let traces: [(&str, Vec<Op>); 3] = [
        ("order-0 alloc+free (LIFO)", lifo_trace(2_000_000)),
        (
            "order-0 random churn",
            trace(2_000_000, 0x2545_f491_4f6c_dd1d, |_| 0),
        ),
        (
            "mixed orders 0-4 churn",
            trace(1_000_000, 0x9e37_79b9_7f4a_7c15, |r| {
                [0, 0, 0, 0, 1, 1, 2, 3, 4][(r % 9) as usize]
            }),
        ),
    ];
    println!(
        "{:<28} {:>14} {:>14} {:>8}",
        "trace", "mm Mops/s", "bsa Mops/s", "ratio"
    );
    for (name, ops) in &traces {
        let a = measure(&mut ours, ops);
        let b = measure(&mut theirs, ops);
        println!(
            "{:<28} {:>14.1} {:>14.1} {:>7.1}x",
            name,
            a / 1e6,
            b / 1e6,
            a / b
        );
    }
    if let Err(e) = ours.0.check_invariants() {
        eprintln!("zone invariants broken after the benchmark: {e}");
        std::process::exit(1);
    }
}
