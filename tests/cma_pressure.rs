//! xtask-qemu: --board virt
//!
//! In-QEMU tests of CMA under memory pressure: all free memory, CMA included, is filled
//! with movable anonymous pages and page-cache pages (some dirty), then every CMA area is
//! taken whole in chunks of several sizes. Every allocation must succeed (migrating anon
//! and dirty cache pages, reclaiming clean cache), every page must still hold its pattern
//! afterwards, the zone's invariants must hold, and long-term pins must never sit in CMA
//! pageblocks. Bad requests must fail with an error and change nothing.
//!
//! Pins inside CMA: a long-term pin of a page in CMA moves it out first, so the areas can
//! still be taken whole; a short-term (I/O) pin in an area makes `cma_alloc` wait for the
//! I/O (bounded back-off) and succeed once it completes, and one never released makes it
//! fail cleanly, the area as before, until the pin goes.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use core::time::Duration;

use monolith::kmem::anon_pins::IO_BACKOFF_MAX_RETRIES;
use monolith::kmem::{self, anon, pagecache, KmemError, PinKind};
use monolith::mm::{CmaBalance, CmaError, MigrateType, OwnerKind, Pfn, Zone};
use monolith::test_harness::{run_tests, TestCase};
use monolith::{qemu_ensure, qemu_ensure_eq};

const CHUNKS: [usize; 6] = [1, 3, 64, 512, 1024, 4096];

fn areas() -> Result<Vec<String>, String> {
    let names = kmem::cma_area_names();
    qemu_ensure!(
        !names.is_empty(),
        "no CMA area (boot with cma= or the board overlay)"
    );
    Ok(names)
}

fn e(err: KmemError) -> String {
    format!("{err}")
}

fn zone_built_with_areas() -> Result<(), String> {
    kmem::check_invariants().map_err(e)?;
    let memmap = kmem::memmap_range().map_err(e)?;
    let image = kmem::image_range();
    qemu_ensure!(
        memmap.start >= image.end,
        "memmap {memmap:x?} overlaps image {image:x?}"
    );
    for name in areas()? {
        let st = kmem::cma_state(&name).map_err(e)?;
        qemu_ensure!(st.count > 0 && st.used == 0, "{name}: {st:?}");
        let (base, end) = (st.base_pfn, st.base_pfn + st.count);
        let all_cma = kmem::with_zone(|z| {
            (base..end)
                .step_by(512)
                .all(|p| z.pageblock_migratetype(p) == Some(MigrateType::Cma))
        })
        .map_err(e)?;
        qemu_ensure!(all_cma, "{name}: not every pageblock is Cma");
    }
    let info = kmem::meminfo().map_err(e)?;
    qemu_ensure!(info.contains("CmaTotal:"), "meminfo: {info}");
    Ok(())
}

fn bad_requests_fail_cleanly() -> Result<(), String> {
    let name = areas()?.remove(0);
    let count = kmem::cma_state(&name).map_err(e)?.count;
    qemu_ensure_eq!(
        kmem::cma_alloc("no-such-area", 1, 0),
        Err(KmemError::NoSuchArea(String::from("no-such-area")))
    );
    qemu_ensure_eq!(
        kmem::cma_alloc(&name, 0, 0),
        Err(KmemError::CmaZeroPages { area: name.clone() })
    );
    qemu_ensure_eq!(
        kmem::cma_alloc(&name, count + 1, 0),
        Err(KmemError::CmaTooLarge {
            area: name.clone(),
            requested: count + 1,
            available: count
        })
    );
    let before = kmem::cma_state(&name).map_err(e)?;
    let pfn = kmem::cma_alloc(&name, 8, 3).map_err(e)?;
    qemu_ensure_eq!(pfn % 8, 0);
    let wrong: [(Pfn, usize); 5] = [(pfn + 1, 8), (pfn, 9), (pfn - 8, 8), (pfn, 0), (0, 1)];
    for (p, n) in wrong {
        qemu_ensure!(
            kmem::cma_release(&name, p, n)
                == Err(KmemError::CmaNotHandedOut {
                    area: name.clone(),
                    pfn: p,
                    count: n
                }),
            "release of {p:#x}+{n} accepted"
        );
    }
    qemu_ensure!(matches!(
        kmem::cma_release("no-such-area", pfn, 8),
        Err(KmemError::NoSuchArea(_))
    ));
    let mid = kmem::cma_state(&name).map_err(e)?;
    qemu_ensure_eq!(mid.used, 8);
    qemu_ensure_eq!(
        mid.stats.release_pages_success,
        before.stats.release_pages_success
    );
    kmem::cma_release(&name, pfn, 8).map_err(e)?;
    qemu_ensure!(
        kmem::cma_release(&name, pfn, 8).is_err(),
        "double release accepted"
    );
    let after = kmem::cma_state(&name).map_err(e)?;
    qemu_ensure_eq!(after.used, 0);
    qemu_ensure_eq!(
        after.stats.release_pages_success,
        before.stats.release_pages_success + 8
    );
    kmem::check_invariants().map_err(e)
}

/// Fill memory: anon to ~45% of free, cache until the watermark (1/16 of it dirtied), anon
/// again until the watermark.
fn fill_memory() -> Result<(usize, usize), String> {
    anon::start().map_err(e)?;
    let free = kmem::with_zone(|z| z.counters().free_pages).map_err(e)?;
    anon::grow(free * 45 / 100).map_err(e)?;
    let store = pagecache::status().store_blocks;
    let cached = pagecache::fill(store).map_err(e)?;
    for block in (0..cached).step_by(16) {
        pagecache::write(block, 1).map_err(e)?;
    }
    anon::grow(usize::MAX).map_err(e)?;
    let c = kmem::with_zone(|z| z.counters()).map_err(e)?;
    qemu_ensure!(
        c.free_pages <= c.watermarks.min + 1,
        "memory not full: {} free, min {}",
        c.free_pages,
        c.watermarks.min
    );
    Ok((anon::status().pages, pagecache::status().cached_pages))
}

fn verify_all(when: &str) -> Result<(), String> {
    let a = anon::verify().map_err(e)?;
    qemu_ensure!(a.bad_pages == 0, "{when}: anon {a:?}");
    let c = pagecache::verify().map_err(e)?;
    qemu_ensure!(c.bad_pages == 0, "{when}: cache {c:?}");
    kmem::check_invariants().map_err(|x| format!("{when}: {x}"))
}

fn pins_outside_cma() -> Result<(), String> {
    let mut pins = Vec::new();
    for i in 0..32 {
        let kind = if i % 2 == 0 {
            PinKind::Pinned
        } else {
            PinKind::Kernel
        };
        let pfn = kmem::alloc_pinned(0, kind).map_err(e)?;
        pins.push(pfn);
    }
    let in_cma = kmem::with_zone(|z| {
        pins.iter()
            .filter(|&&p| z.pageblock_migratetype(p) == Some(MigrateType::Cma))
            .count()
    })
    .map_err(e)?;
    for &p in &pins {
        kmem::free_pinned(p, 0).map_err(e)?;
    }
    qemu_ensure_eq!(in_cma, 0);
    qemu_ensure!(
        kmem::free_pinned(pins[0], 0).is_err(),
        "double free accepted"
    );
    Ok(())
}

fn take_every_area_whole(round: usize) -> Result<(), String> {
    let mut taken: Vec<(String, Pfn, usize)> = Vec::new();
    for name in areas()? {
        let count = kmem::cma_state(&name).map_err(e)?.count;
        let mut done = 0;
        let mut i = 0;
        while done < count {
            let chunk = CHUNKS[i % CHUNKS.len()].min(count - done);
            // Once the fixed sizes have run once, take the remainder in one go.
            let chunk = if i >= CHUNKS.len() {
                count - done
            } else {
                chunk
            };
            let pfn = kmem::cma_alloc(&name, chunk, 0).map_err(|x| {
                format!(
                    "round {round}: {name} chunk {i} of {chunk} pages ({done}/{count} taken): {x}"
                )
            })?;
            taken.push((name.clone(), pfn, chunk));
            done += chunk;
            i += 1;
        }
        qemu_ensure_eq!(kmem::cma_state(&name).map_err(e)?.used, count);
        qemu_ensure!(
            kmem::cma_alloc(&name, 1, 0).is_err(),
            "{name} full but gave more"
        );
    }
    verify_all("areas taken")?;
    pins_outside_cma()?;
    for (name, pfn, n) in taken {
        kmem::cma_release(&name, pfn, n).map_err(e)?;
    }
    for name in areas()? {
        qemu_ensure_eq!(kmem::cma_state(&name).map_err(e)?.used, 0);
    }
    verify_all("areas released")
}

/// The migration copy moves 512 bytes per main-loop pass and 128 per remainder pass: check
/// every length shape (remainder only, main loop only, both) copies exactly, with the
/// bytes around the destination untouched.
fn copy_bytes_copies_every_length_exactly() -> Result<(), String> {
    const GUARD: usize = 128;
    for len in [128usize, 256, 384, 512, 640, 1024 + 384, 4096, 8192 + 128] {
        let src: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let mut dst = alloc::vec![0xa5u8; len + 2 * GUARD];
        // Safety: `src` holds `len` bytes, `dst` holds `len` bytes after the guard, the two
        // do not overlap, and `len` is a non-zero multiple of 128 as copy_bytes requires.
        unsafe { kmem::copy_bytes(dst.as_mut_ptr().add(GUARD), src.as_ptr(), len) };
        qemu_ensure!(
            dst[GUARD..GUARD + len] == src[..],
            "copy of {len} bytes differs"
        );
        qemu_ensure!(
            dst[..GUARD]
                .iter()
                .chain(&dst[GUARD + len..])
                .all(|&b| b == 0xa5),
            "copy of {len} bytes wrote outside its destination"
        );
    }
    Ok(())
}

fn pressure_rounds() -> Result<(), String> {
    for round in 0..2 {
        let (anon_pages, cache_pages) = fill_memory()?;
        let in_cma = anon::status().pages_in_cma;
        qemu_ensure!(
            anon_pages > 0 && cache_pages > 0 && in_cma > 0,
            "round {round}: anon {anon_pages} cache {cache_pages} in cma {in_cma}"
        );
        verify_all("filled")?;
        let migr_before = anon::status().migrations + pagecache::status().migrations;
        let reclaimed_before = pagecache::status().reclaimed;
        take_every_area_whole(round)?;
        let st = pagecache::status();
        monolith::println!(
            "  round {round}: anon {anon_pages} pages ({in_cma} in CMA), cache {cache_pages}; migrated {}, reclaimed {}, cache now {} ({} dirty)",
            anon::status().migrations + st.migrations - migr_before,
            st.reclaimed - reclaimed_before,
            st.cached_pages,
            st.dirty_pages
        );
        qemu_ensure!(
            anon::status().migrations + st.migrations > migr_before,
            "nothing migrated"
        );
    }
    // Re-reading dropped blocks comes back from the store, counted.
    let rereads = pagecache::status().rereads;
    pagecache::drop_caches().map_err(e)?;
    anon::shrink(usize::MAX).map_err(e)?;
    pagecache::fill(64).map_err(e)?;
    qemu_ensure!(pagecache::status().rereads > rereads, "no re-read counted");
    verify_all("end")
}

fn in_area_pfn(base: Pfn, count: usize, pfn: Pfn) -> bool {
    (base..base + count).contains(&pfn)
}

fn in_cma(z: &Zone<'_>, pfn: Pfn) -> bool {
    z.pageblock_migratetype(pfn) == Some(MigrateType::Cma)
}

/// Put `pages` anonymous pages in CMA before [`fill_memory`] (the CMA balance set to prefer
/// CMA while they are added), so the pins tests find pages to pin there whatever share of
/// CMA the fill itself gives anonymous memory.
fn anon_in_cma_first(pages: usize) -> Result<(), String> {
    anon::start().map_err(e)?;
    let prefer_cma = CmaBalance::new(0, 1).ok_or("no CMA-first balance")?;
    let balance = kmem::with_state(|s| {
        let old = s.cma_balance();
        s.set_cma_balance(prefer_cma);
        old
    })
    .map_err(e)?;
    let before = anon::status().pages_in_cma;
    let grown = anon::grow(pages);
    kmem::with_state(|s| s.set_cma_balance(balance)).map_err(e)?;
    qemu_ensure_eq!(grown.map_err(e)?, pages);
    qemu_ensure_eq!(anon::status().pages_in_cma, before + pages);
    Ok(())
}

/// Everything the pins tests added goes again: anon pages, cached pages.
fn empty_memory() -> Result<(), String> {
    anon::shrink(usize::MAX).map_err(e)?;
    pagecache::drop_caches().map_err(e)?;
    verify_all("emptied")
}

fn longterm_pins_in_cma_move_out_and_never_block_the_areas() -> Result<(), String> {
    anon_in_cma_first(64)?;
    let (anon_pages, _) = fill_memory()?;
    let cma_pages = anon::status().pages_in_cma;
    qemu_ensure!(cma_pages >= 16, "only {cma_pages} anonymous pages in CMA");
    let mut pins = Vec::new();
    for _ in 0..16 {
        pins.push(anon::pin_longterm(in_cma).map_err(e)?);
    }
    let misplaced = kmem::with_zone(|z| {
        pins.iter()
            .filter(|&&p| in_cma(z, p) || !z.owner(p).is_some_and(|o| o.is(OwnerKind::Pinned)))
            .count()
    })
    .map_err(e)?;
    qemu_ensure_eq!(misplaced, 0);
    let st = anon::status();
    qemu_ensure_eq!(st.pages, anon_pages - 16);
    qemu_ensure_eq!(st.pages_in_cma, cma_pages - 16);
    verify_all("pinned")?;
    // Every area can be taken whole with the pins held: none sits in CMA.
    take_every_area_whole(0)?;
    for &p in &pins {
        kmem::free_pinned(p, 0).map_err(e)?;
    }
    empty_memory()
}

fn short_term_pins_in_cma_are_waited_for_or_fail_cleanly() -> Result<(), String> {
    anon_in_cma_first(64)?;
    fill_memory()?;
    let name = areas()?.remove(0);
    let st = kmem::cma_state(&name).map_err(e)?;
    let (base, count) = (st.base_pfn, st.count);
    let in_area = move |_: &Zone<'_>, p: Pfn| in_area_pfn(base, count, p);

    // I/O that completes 8 ms from now (within the 10 ms the allocation waits at most):
    // the first attempt meets the pin (completions are looked at when the call starts and
    // when it waits), the back-off wakes at its completion (or at once if the attempt took
    // longer), the retry takes the whole area with the page moved out.
    let before = anon::status();
    let pin = anon::pin_io(in_area, Some(Duration::from_millis(8))).map_err(e)?;
    let got = kmem::cma_alloc(&name, count, 0);
    qemu_ensure!(in_area_pfn(base, count, pin.pfn), "pinned {:#x}", pin.pfn);
    let pfn = got.map_err(|x| format!("whole area with I/O completing in 8 ms: {x}"))?;
    qemu_ensure_eq!(pfn, base);
    let after = anon::status();
    qemu_ensure!(
        after.io_waits > before.io_waits,
        "the allocation never waited for the I/O"
    );
    qemu_ensure_eq!(after.io_pins, 0);
    qemu_ensure_eq!(after.io_pins_completed, before.io_pins_completed + 1);
    qemu_ensure!(
        anon::unpin_io(pin.slot).is_err(),
        "a pin its completion released was released again"
    );
    verify_all("I/O waited for")?;
    kmem::cma_release(&name, pfn, count).map_err(e)?;

    // I/O never completing by itself: the allocation waits its bounded back-off, then fails
    // with the area as it was and the page under I/O in place, intact. (The area was
    // emptied above: anonymous pages go back into it first.)
    anon_in_cma_first(64)?;
    let pin = anon::pin_io(in_area, None).map_err(e)?;
    let waits = anon::status().io_waits;
    let free_before = kmem::with_zone(|z| z.counters().free_pages).map_err(e)?;
    let err = kmem::cma_alloc(&name, count, 0);
    qemu_ensure_eq!(
        err,
        Err(KmemError::CmaAllocFailed {
            area: name.clone(),
            count,
            error: CmaError::Busy
        })
    );
    let waited = anon::status().io_waits - waits;
    qemu_ensure!(
        waited >= 1 && waited <= u64::from(IO_BACKOFF_MAX_RETRIES),
        "waited {waited} times"
    );
    qemu_ensure_eq!(kmem::cma_state(&name).map_err(e)?.used, 0);
    qemu_ensure_eq!(anon::status().io_pins_in_cma, 1);
    let (all_cma, pinned_owned, free_after) = kmem::with_zone(|z| {
        (
            (base..base + count).step_by(512).all(|p| in_cma(z, p)),
            z.owner(pin.pfn)
                .is_some_and(|o| o.is(OwnerKind::Anon) && o.id() == pin.slot as u64),
            z.counters().free_pages,
        )
    })
    .map_err(e)?;
    qemu_ensure!(all_cma, "{name}: pageblocks not restored to Cma");
    qemu_ensure!(pinned_owned, "the page under I/O moved or lost its owner");
    qemu_ensure!(
        free_after >= free_before,
        "{} pages leaked",
        free_before - free_after
    );
    verify_all("gave up on the I/O")?;
    // A smaller request goes around the pin at once.
    let small = kmem::cma_alloc(&name, 64, 0).map_err(e)?;
    qemu_ensure!(
        !(small..small + 64).contains(&pin.pfn),
        "allocation over a page under I/O"
    );
    kmem::cma_release(&name, small, 64).map_err(e)?;
    // The I/O ends: the whole area comes.
    anon::unpin_io(pin.slot).map_err(e)?;
    let pfn = kmem::cma_alloc(&name, count, 0).map_err(e)?;
    verify_all("I/O done")?;
    kmem::cma_release(&name, pfn, count).map_err(e)?;
    empty_memory()
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "cma_pressure",
        &[
            TestCase {
                name: "zone_built_with_areas",
                run: zone_built_with_areas,
            },
            TestCase {
                name: "bad_requests_fail_cleanly",
                run: bad_requests_fail_cleanly,
            },
            TestCase {
                name: "copy_bytes_copies_every_length_exactly",
                run: copy_bytes_copies_every_length_exactly,
            },
            TestCase {
                name: "pressure_rounds",
                run: pressure_rounds,
            },
            TestCase {
                name: "longterm_pins_in_cma_move_out_and_never_block_the_areas",
                run: longterm_pins_in_cma_move_out_and_never_block_the_areas,
            },
            TestCase {
                name: "short_term_pins_in_cma_are_waited_for_or_fail_cleanly",
                run: short_term_pins_in_cma_are_waited_for_or_fail_cleanly,
            },
        ],
    )
}
