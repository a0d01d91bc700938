//! xtask-qemu: --board virt
//!
//! In-QEMU test of movable device buffers (issue 12, the seeds' `cma_pin`/`cma_unpin`): the
//! default CMA area is filled with 1 MiB movable dma-bufs, each written with its own
//! pattern through `vmap`, and every other one is given back, so half the area is free in
//! 1 MiB holes. A 16 MiB request then fails with defragmentation off (plain CMA cannot
//! cross device buffers) and succeeds with it on: the area copied the unpinned buffers in
//! its way elsewhere (the firmware's `move_chunk`, through the identity map). Every
//! buffer still holds its pattern wherever it now lives, the ones that moved say so at
//! their next pin, an attached buffer is pinned for the attachment's life, and every page
//! comes back at the end. Last, the display's framebuffer (a movable buffer the display
//! pins only per frame) is moved out of the way of a request that needs its place: its
//! bytes arrive intact, and the next frame re-attaches the GPU resource's backing there.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use monolith::display_service::{self as display, Showing};
use monolith::dma_service::{self as dma, BufId, DmaError};
use monolith::driver::virtio_gpu as gpu;
use monolith::kmem;
use monolith::test_harness::{run_tests, TestCase};
use monolith::{qemu_ensure, qemu_ensure_eq};

const AREA: &str = "linux,cma@50000000";
const MIB: u64 = 1 << 20;
/// One word per 64-byte line is checked: enough to see a copy that missed or shifted data.
const STRIDE_WORDS: usize = 8;

fn e(err: DmaError) -> String {
    format!("{err}")
}

fn state() -> Result<monolith::mm::CmaState, String> {
    kmem::cma_state(AREA).map_err(|err| format!("{err}"))
}

fn word(buf: usize, i: usize) -> u64 {
    ((buf as u64) << 40) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn fill(id: BufId, n: usize) -> Result<(), String> {
    dma::vmap(id, |bytes| {
        for (i, chunk) in bytes.chunks_exact_mut(8 * STRIDE_WORDS).enumerate() {
            chunk[..8].copy_from_slice(&word(n, i).to_le_bytes());
        }
    })
    .map_err(e)
}

fn check(id: BufId, n: usize) -> Result<(), String> {
    let bad = dma::vmap(id, |bytes| {
        bytes
            .chunks_exact(8 * STRIDE_WORDS)
            .enumerate()
            .position(|(i, chunk)| chunk[..8] != word(n, i).to_le_bytes())
    })
    .map_err(e)?;
    match bad {
        None => Ok(()),
        Some(line) => Err(format!("buffer {n} lost its data at line {line}")),
    }
}

fn a_fragmented_area_serves_a_large_buffer_by_moving_unpinned_ones() -> Result<(), String> {
    let before = state()?;
    let free_before = kmem::with_zone(|z| z.counters().free_pages).map_err(|x| format!("{x}"))?;
    let mut bufs = Vec::new();
    while let Ok(id) = dma::heap_alloc_movable(AREA, MIB) {
        bufs.push(id);
    }
    qemu_ensure!(bufs.len() >= 128, "only {} movable buffers fit", bufs.len());
    for (n, &id) in bufs.iter().enumerate() {
        fill(id, n)?;
    }
    let mut kept = Vec::new();
    for (n, id) in bufs.into_iter().enumerate() {
        if n % 2 == 0 {
            kept.push((n, id));
        } else {
            dma::buf_put(id).map_err(e)?;
        }
    }
    qemu_ensure_eq!(state()?.movable_chunks, before.movable_chunks + kept.len());

    kmem::cma_set_defrag(AREA, false).map_err(|x| format!("{x}"))?;
    qemu_ensure!(
        dma::heap_alloc(AREA, 16 * MIB).is_err(),
        "plain CMA found 16 MiB among 1 MiB holes"
    );
    qemu_ensure_eq!(state()?.stats.chunks_moved, before.stats.chunks_moved);
    kmem::cma_set_defrag(AREA, true).map_err(|x| format!("{x}"))?;
    let big = dma::heap_alloc(AREA, 16 * MIB).map_err(e)?;
    let moved_chunks = state()?.stats.chunks_moved - before.stats.chunks_moved;
    qemu_ensure!(moved_chunks >= 8, "{moved_chunks} buffers moved");

    let (big_phys, big_len) = dma::buf_phys(big).map_err(e)?;
    let mut moved = 0;
    for &(n, id) in &kept {
        let pin = dma::buf_pin(id).map_err(e)?;
        dma::buf_unpin(id).map_err(e)?;
        moved += u64::from(pin.moved);
        qemu_ensure!(
            pin.phys + pin.len <= big_phys || big_phys + big_len <= pin.phys,
            "buffer {n} overlaps the new allocation"
        );
        check(id, n)?;
    }
    qemu_ensure_eq!(moved, moved_chunks);

    // A device's attachment pins its buffer for as long as it lasts.
    let device = dma::device("/virtio_mmio@a000000").map_err(e)?;
    let (_, first) = kept[0];
    let attachment = dma::attach(first, &device).map_err(e)?;
    qemu_ensure_eq!(state()?.pinned_chunks, before.pinned_chunks + 1);
    dma::detach(first, attachment).map_err(e)?;
    qemu_ensure_eq!(state()?.pinned_chunks, before.pinned_chunks);

    dma::buf_put(big).map_err(e)?;
    for (_, id) in kept {
        dma::buf_put(id).map_err(e)?;
    }
    let after = state()?;
    qemu_ensure_eq!(after.used, before.used);
    qemu_ensure_eq!(after.movable_chunks, before.movable_chunks);
    let free_after = kmem::with_zone(|z| z.counters().free_pages).map_err(|x| format!("{x}"))?;
    qemu_ensure_eq!(free_after, free_before);
    Ok(())
}

fn bad_requests_are_refused_with_a_reason() -> Result<(), String> {
    let refused = dma::heap_alloc_movable("system", MIB).map_err(e);
    qemu_ensure!(
        refused
            .as_ref()
            .is_err_and(|m| m.contains("not a CMA heap")),
        "system heap: {refused:?}"
    );
    let id = dma::heap_alloc_movable(AREA, MIB).map_err(e)?;
    let unpin = dma::buf_unpin(id).map_err(e);
    qemu_ensure!(
        unpin.as_ref().is_err_and(|m| m.contains("not pinned")),
        "unpin of an unpinned buffer: {unpin:?}"
    );
    dma::buf_put(id).map_err(e)?;
    Ok(())
}

fn checksum(id: BufId) -> Result<u64, String> {
    dma::vmap(id, |bytes| {
        bytes.chunks_exact(8).fold(0u64, |h, w| {
            (h ^ u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))).wrapping_mul(0x100_0000_01b3)
        })
    })
    .map_err(e)
}

fn gpu_backing() -> Result<u64, String> {
    gpu::with(|g| Ok(g.framebuffer().map(|fb| fb.paddr)))
        .map_err(|x| format!("{x}"))?
        .ok_or_else(|| String::from("no framebuffer attached"))
}

fn the_display_follows_its_framebuffer_when_it_moves() -> Result<(), String> {
    let before = state()?;
    display::show(Showing::Pattern).map_err(|x| format!("{x}"))?;
    let (fb, moves) = display::framebuffer().ok_or("display did not come up")?;
    let fb_phys = gpu_backing()?;
    let (phys, fb_len) = dma::buf_phys(fb).map_err(e)?;
    qemu_ensure_eq!(phys, fb_phys);
    // Fill the area with plain 4 MiB buffers (aligned to 1 MiB, as the heap aligns).
    let mut plain = Vec::new();
    while let Ok(id) = dma::heap_alloc(AREA, 4 * MIB) {
        plain.push(id);
    }
    qemu_ensure!(plain.len() >= 8, "only {} plain buffers fit", plain.len());
    // Free the one right after the framebuffer and the last one: 8 MiB from the
    // framebuffer's start are then free but for the framebuffer, and its new home waits
    // at the end.
    let next = (fb_phys + fb_len).next_multiple_of(MIB);
    let mut after = None;
    for &id in &plain {
        if dma::buf_phys(id).map_err(e)?.0 == next {
            after = Some(id);
        }
    }
    let after = after.ok_or("no buffer right after the framebuffer")?;
    let last = *plain.last().ok_or("no plain buffer")?;
    plain.retain(|&id| id != after && id != last);
    dma::buf_put(after).map_err(e)?;
    dma::buf_put(last).map_err(e)?;

    let drawn = checksum(fb)?;
    let big = dma::heap_alloc(AREA, 8 * MIB).map_err(e)?;
    qemu_ensure_eq!(dma::buf_phys(big).map_err(e)?.0, fb_phys);
    qemu_ensure_eq!(checksum(fb)?, drawn);
    let (moved_to, _) = dma::buf_phys(fb).map_err(e)?;
    qemu_ensure!(moved_to != fb_phys, "the framebuffer did not move");

    // The next frame pins it where it is now and re-attaches the backing there.
    display::show(Showing::Pattern).map_err(|x| format!("{x}"))?;
    qemu_ensure_eq!(gpu_backing()?, moved_to);
    qemu_ensure_eq!(display::framebuffer().map(|f| f.1), Some(moves + 1));
    display::show(Showing::Map).map_err(|x| format!("{x}"))?;
    qemu_ensure_eq!(display::framebuffer().map(|f| f.1), Some(moves + 1));

    dma::buf_put(big).map_err(e)?;
    for id in plain {
        dma::buf_put(id).map_err(e)?;
    }
    display::off().map_err(|x| format!("{x}"))?;
    // The driver's rings and command page too: every page back.
    gpu::shutdown().map_err(|x| format!("{x}"))?;
    qemu_ensure_eq!(state()?.used, before.used);
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "cma_defrag",
        &[
            TestCase {
                name: "a_fragmented_area_serves_a_large_buffer_by_moving_unpinned_ones",
                run: a_fragmented_area_serves_a_large_buffer_by_moving_unpinned_ones,
            },
            TestCase {
                name: "bad_requests_are_refused_with_a_reason",
                run: bad_requests_are_refused_with_a_reason,
            },
            TestCase {
                name: "the_display_follows_its_framebuffer_when_it_moves",
                run: the_display_follows_its_framebuffer_when_it_moves,
            },
        ],
    )
}
