//! xtask-qemu: --dtb src/dt/testdata/reserved/per-device.virt.dtb --append "cma=64M"
//!
//! "Never fail while memory exists", in the guest: a seeded campaign of `cma_alloc` calls
//! (1..=16384 pages, with alignments) over the three CMA areas of this image (the
//! per-device tree's two 32 MiB areas and the 64 MiB default area from `cma=`), under
//! anonymous-memory and page-cache churn (reads, writes, write-back) and kernel data and
//! long-term pins outside CMA. It is the host campaign (`mm::campaign_tests`) on the real
//! zone, the real movable clients (which copy pages through their mappings) and kmem's
//! direct reclaim.
//!
//! Every failure is proven in the state the call left: every candidate window of the
//! area (every position the size and alignment allow) holds a CMA allocation or a frame
//! that is neither free nor movable, or more pages that must move (anonymous and dirty
//! cache pages; clean cache is dropped instead) than there are free pages outside the
//! window's isolated pageblocks above the zone's `min` watermark (a migration target must
//! leave the watermark). Every page of both clients is checked against its pattern
//! (migrated ones included) every 250 calls and at the end: none may be corrupted.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use monolith::bench::campaign::request;
use monolith::kmem::{self, anon, pagecache, KmemError, KmemState, PinKind};
use monolith::mm::{CmaBalance, CmaError, MigrateType, OwnerKind, PageState, Pfn, Zone, MAX_ORDER};
use monolith::test_harness::{run_tests, TestCase};
use monolith::util::rng::SplitMix64 as Rng;
use monolith::{qemu_ensure, qemu_ensure_eq};

const CALLS: usize = 1500;
const SEED: u64 = 0x6361_6d70_6169_676e;
const PAGEBLOCK: usize = 512;
/// Page-cache blocks the campaign reads and writes.
const CACHE_BLOCKS: usize = 24_576;

fn e(err: KmemError) -> String {
    format!("{err}")
}

struct Area {
    name: String,
    base: Pfn,
    count: usize,
    order_per_bit: usize,
}

/// The free or allocated block `pfn` belongs to: (head, order, free).
fn block_at(z: &Zone<'_>, pfn: Pfn) -> Option<(Pfn, usize, bool)> {
    let page = z.page(pfn)?;
    match page.state() {
        PageState::Buddy => Some((pfn, page.order(), true)),
        PageState::Head => Some((pfn, page.order(), false)),
        PageState::Tail => (1..=MAX_ORDER).find_map(|o| {
            let head = pfn & !((1 << o) - 1);
            let p = z.page(head)?;
            let block = matches!(p.state(), PageState::Buddy | PageState::Head) && p.order() >= o;
            block.then(|| (head, p.order(), p.state() == PageState::Buddy))
        }),
        _ => None,
    }
}

/// What one frame of an area means for a window: free, must move, dropped, or blocked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    Free,
    Move,
    Dropped,
    Blocked,
}

/// Prove that a failed `cma_alloc(area, count, align)` had to fail (see the module docs).
fn prove_failure(
    z: &Zone<'_>,
    area: &Area,
    bitmap: &[u64],
    dirty: &BTreeSet<u64>,
    count: usize,
    align: usize,
) -> Result<(), String> {
    let (base, end) = (area.base, area.base + area.count);
    let opb = area.order_per_bit;
    let nbits = count.div_ceil(1 << opb);
    let bits = area.count >> opb;
    let n = area.count;
    let mut frames = alloc::vec![Frame::Blocked; n];
    // Free pages per pageblock of the area.
    let mut pb_free = alloc::vec![0usize; n / PAGEBLOCK + 1];
    let mut pfn = base;
    while pfn < end {
        let Some((head, order, free)) = block_at(z, pfn) else {
            pfn += 1;
            continue;
        };
        let what = if free {
            Frame::Free
        } else {
            let owner = z.owner(head).ok_or("allocated block without owner")?;
            match owner.kind() {
                OwnerKind::Anon => Frame::Move,
                OwnerKind::PageCache if dirty.contains(&owner.id()) => Frame::Move,
                OwnerKind::PageCache => Frame::Dropped,
                _ => Frame::Blocked,
            }
        };
        if what == Frame::Move && order != 0 {
            return Err(format!("movable block of order {order} at {head:#x}"));
        }
        let stop = (head + (1 << order)).min(end).max(pfn + 1);
        for p in pfn..stop {
            frames[p - base] = what;
            if what == Frame::Free {
                pb_free[(p - base) / PAGEBLOCK] += 1;
            }
        }
        pfn = stop;
    }
    let mut blocked = alloc::vec![0u32; n + 1];
    let mut moving = alloc::vec![0u32; n + 1];
    for (i, f) in frames.iter().enumerate() {
        blocked[i + 1] = blocked[i] + u32::from(*f == Frame::Blocked);
        moving[i + 1] = moving[i] + u32::from(*f == Frame::Move);
    }
    let mut used = alloc::vec![0u32; bits + 1];
    for b in 0..bits {
        used[b + 1] = used[b] + (bitmap[b / 64] >> (b % 64) & 1) as u32;
    }
    let mut pb_pre = alloc::vec![0usize; pb_free.len() + 1];
    for (i, f) in pb_free.iter().enumerate() {
        pb_pre[i + 1] = pb_pre[i] + f;
    }
    let c = z.counters();
    let min = c.watermarks.min;
    let first = base.next_multiple_of(1 << align);
    let step = if align > opb { 1 << (align - opb) } else { 1 };
    if first >= end {
        return Ok(());
    }
    let mut b = (first - base) >> opb;
    while b + nbits <= bits {
        let (s, t) = (b << opb, (b << opb) + count);
        if used[b + nbits] == used[b] && blocked[t] == blocked[s] {
            let need = (moving[t] - moving[s]) as usize;
            let (pl, ph) = (s / PAGEBLOCK, (t - 1) / PAGEBLOCK + 1);
            let outside = c.free_pages - (pb_pre[ph] - pb_pre[pl]);
            if need == 0 || need + min <= outside {
                return Err(format!(
                    "{}: window {:#x}+{count} (align order {align}) could be emptied: {need} \
                     pages to move, {outside} free outside its pageblocks, min {min}",
                    area.name,
                    base + s
                ));
            }
        }
        b += step;
    }
    Ok(())
}

#[derive(Default)]
struct Figures {
    ok: usize,
    no_space: usize,
    busy: usize,
    no_memory: usize,
    too_large: usize,
    proven: usize,
    releases: usize,
}

/// Tenant churn for one step, under the held lock: anonymous pages and cache reads,
/// writes and write-back, towards `pressure` percent of the zone in use.
fn churn(s: &mut KmemState, rng: &mut Rng, dirty: &mut BTreeSet<u64>, pressure: usize) {
    let c = s.zone().counters();
    let want_used = c.managed_pages * pressure / 100;
    let used = c.managed_pages - c.free_pages;
    for _ in 0..1 + rng.below(4) {
        let grow = used < want_used;
        match rng.below(6) {
            0 | 1 if grow => {
                let _ = s.anon_grow(1 + rng.below(2048));
            }
            0 | 1 => {
                s.anon_shrink(1 + rng.below(256));
            }
            2 | 3 if grow => {
                let first = rng.below(CACHE_BLOCKS);
                for block in first..(first + 1 + rng.below(64)).min(CACHE_BLOCKS) {
                    if !matches!(s.cache_read(block), Ok(true)) {
                        break;
                    }
                }
            }
            2 | 3 => {
                // Memory pressure drops clean cache.
                if rng.below(8) == 0 {
                    s.cache_drop_clean();
                }
                s.anon_shrink(1 + rng.below(64));
            }
            4 => {
                let block = rng.below(CACHE_BLOCKS);
                if matches!(s.cache_write(block), Ok(true)) {
                    dirty.insert(block as u64);
                }
            }
            _ => {
                if rng.below(4) == 0 {
                    s.cache_writeback();
                    dirty.clear();
                }
            }
        }
    }
}

fn verify_all(when: &str) -> Result<usize, String> {
    let a = anon::verify().map_err(e)?;
    qemu_ensure!(a.bad_pages == 0, "{when}: anonymous pages corrupted: {a:?}");
    let c = pagecache::verify().map_err(e)?;
    qemu_ensure!(c.bad_pages == 0, "{when}: cache pages corrupted: {c:?}");
    kmem::check_invariants().map_err(|x| format!("{when}: {x}"))?;
    Ok(a.pages_checked + c.pages_checked)
}

fn campaign() -> Result<(), String> {
    let names = kmem::cma_area_names();
    qemu_ensure_eq!(names.len(), 3);
    let areas: Vec<Area> = names
        .iter()
        .map(|name| {
            kmem::cma_state(name).map(|st| Area {
                name: name.clone(),
                base: st.base_pfn,
                count: st.count,
                order_per_bit: st.order_per_bit,
            })
        })
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let cma_total: usize = areas.iter().map(|a| a.count).sum();
    anon::start().map_err(e)?;
    let mut rng = Rng::new(SEED);
    let mut dirty = BTreeSet::new();
    let mut held: Vec<(usize, Pfn, usize)> = Vec::new();
    let mut held_pages = 0;
    let mut pins: Vec<(Pfn, usize)> = Vec::new();
    let mut fig = Figures::default();
    let migrations_before = kmem::with_state(|s| s.migrations()).map_err(e)?;
    let (mut pressure, mut cma_share) = (60, 50);
    let mut checked = 0;
    for step in 0..CALLS {
        if step % 50 == 0 {
            // Every other stretch of 150 calls runs with memory full.
            pressure = if (step / 150) % 2 == 1 {
                100
            } else {
                40 + rng.below(50)
            };
            cma_share = (cma_share + rng.below(41)).saturating_sub(20).clamp(5, 95);
            // Movable pages into CMA first, or only once the rest is full (Linux's rule).
            let balance = if rng.below(2) == 0 {
                CmaBalance::new(0, 1).ok_or("balance")?
            } else {
                CmaBalance::LINUX
            };
            kmem::with_state(|s| s.set_cma_balance(balance)).map_err(e)?;
        }
        // Kernel data and long-term pins outside CMA come and go.
        match rng.below(20) {
            0 => {
                let kind = if rng.below(2) == 0 {
                    PinKind::Kernel
                } else {
                    PinKind::Pinned
                };
                let order = rng.below(4);
                if let Ok(pfn) = kmem::alloc_pinned(order, kind) {
                    pins.push((pfn, order));
                }
            }
            1 if !pins.is_empty() => {
                let (pfn, order) = pins.swap_remove(rng.below(pins.len()));
                kmem::free_pinned(pfn, order).map_err(e)?;
            }
            _ => {}
        }
        let (a, (count, align)) = (rng.below(areas.len()), request(&mut rng));
        let result = kmem::with_state(|s| {
            churn(s, &mut rng, &mut dirty, pressure);
            while !held.is_empty() && held_pages * 100 > cma_total * cma_share {
                let (area, pfn, n) = held.swap_remove(rng.below(held.len()));
                let id = s.area(Some(&areas[area].name))?;
                if !s.cma_release(id, pfn, n) {
                    return Err(KmemError::CmaNotHandedOut {
                        area: areas[area].name.clone(),
                        pfn,
                        count: n,
                    });
                }
                held_pages -= n;
                fig.releases += 1;
            }
            let id = s.area(Some(&areas[a].name))?;
            Ok(s.cma_alloc(id, count, align as u32))
        })
        .map_err(e)?
        .map_err(e)?;
        match result {
            Ok(pfn) => {
                let ar = &areas[a];
                qemu_ensure!(
                    pfn % (1 << align) == 0 && pfn >= ar.base && pfn + count <= ar.base + ar.count,
                    "step {step}: {pfn:#x}+{count} align {align} outside or misaligned in {}",
                    ar.name
                );
                held.push((a, pfn, count));
                held_pages += count;
                fig.ok += 1;
            }
            Err(err) => {
                match &err {
                    KmemError::CmaTooLarge { .. } => fig.too_large += 1,
                    KmemError::CmaAllocFailed { error, .. } => match error {
                        CmaError::NoSpace => fig.no_space += 1,
                        CmaError::Busy => fig.busy += 1,
                        CmaError::NoMemory => fig.no_memory += 1,
                        other => return Err(format!("step {step}: unexpected {other}")),
                    },
                    other => return Err(format!("step {step}: unexpected {other}")),
                }
                let (bitmap, _) = kmem::cma_bitmap(&areas[a].name).map_err(e)?;
                let proof =
                    kmem::with_zone(|z| prove_failure(z, &areas[a], &bitmap, &dirty, count, align))
                        .map_err(e)?;
                if let Err(why) = proof {
                    return Err(format!(
                        "step {step}: cma_alloc({}, {count}, align {align}) failed ({err}) \
                         while memory existed: {why}",
                        areas[a].name
                    ));
                }
                fig.proven += 1;
            }
        }
        if step % 250 == 249 {
            checked += verify_all(&format!("step {step}"))?;
        }
    }
    checked += verify_all("end")?;
    let migrations = kmem::with_state(|s| s.migrations()).map_err(e)? - migrations_before;
    let failed = CALLS - fig.ok;
    monolith::println!(
        "  cma campaign seed {SEED:#x}: {CALLS} calls, {} ok, {failed} failed ({} NoSpace, {} Busy, \
         {} NoMemory, {} too large), {} proven; {} releases; {migrations} pages migrated, \
         {checked} page checks, 0 corrupted",
        fig.ok,
        fig.no_space,
        fig.busy,
        fig.no_memory,
        fig.too_large,
        fig.proven,
        fig.releases
    );
    qemu_ensure_eq!(fig.proven, failed);
    qemu_ensure!(migrations > 0, "nothing migrated");
    qemu_ensure!(
        fig.no_memory > 0,
        "never short of memory: nothing proven about it"
    );
    // Half the calls run with memory full: a third must still succeed.
    qemu_ensure!(fig.ok > CALLS / 3, "only {} of {CALLS} succeeded", fig.ok);
    // Everything back: the areas are empty and the clients' data intact.
    for (area, pfn, n) in held {
        kmem::cma_release(&areas[area].name, pfn, n).map_err(e)?;
    }
    for (pfn, order) in pins {
        kmem::free_pinned(pfn, order).map_err(e)?;
    }
    for ar in &areas {
        qemu_ensure_eq!(kmem::cma_state(&ar.name).map_err(e)?.used, 0);
    }
    let cma_pageblocks = kmem::with_zone(|z| {
        areas
            .iter()
            .flat_map(|ar| (ar.base..ar.base + ar.count).step_by(PAGEBLOCK))
            .all(|p| z.pageblock_migratetype(p) == Some(MigrateType::Cma))
    })
    .map_err(e)?;
    qemu_ensure!(cma_pageblocks, "a CMA pageblock changed type");
    verify_all("released").map(|_| ())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "cma_campaign",
        &[TestCase {
            name: "campaign_never_fails_while_memory_exists",
            run: campaign,
        }],
    )
}
