//! xtask-qemu: --board virt --append "coherent_pool=256K"
//!
//! In-QEMU tests of the DMA service on the real zone and CMA area: every heap allocates
//! and gives every page back (the zone's free count and the area's `used` return to where
//! they were), a scattered system buffer is refused by a device that cannot
//! scatter-gather while a CMA buffer is taken, the CPU-access brackets run the real DC
//! instructions on mapped buffers and keep the data, coherent allocations come from the
//! default area or (for callers that cannot wait) the atomic pool sized by
//! `coherent_pool=`, and a job runs as soon as its fence signals.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use monolith::dma::access::DmaDirection;
use monolith::dma::buf::{BufError, Refusal};
use monolith::dma::fence::{FenceError, FenceStatus, Usage};
use monolith::dma_service::{self as dma, DeviceDma, DmaError};
use monolith::kmem;
use monolith::test_harness::{run_tests, TestCase};
use monolith::{qemu_ensure, qemu_ensure_eq};

const AREA: &str = "linux,cma@50000000";

fn e(err: DmaError) -> String {
    format!("{err}")
}

fn free_pages() -> Result<usize, String> {
    kmem::with_zone(|z| z.counters().free_pages).map_err(|err| format!("{err}"))
}

fn cma_used() -> Result<usize, String> {
    Ok(kmem::cma_state(AREA).map_err(|err| format!("{err}"))?.used)
}

fn heaps_are_linuxs() -> Result<(), String> {
    qemu_ensure_eq!(dma::heap_names(), ["system", "default_cma_region", AREA]);
    qemu_ensure_eq!(
        dma::dev_dma_heap(),
        format!("system\ndefault_cma_region\n{AREA}\n")
    );
    Ok(())
}

fn devices_read_from_the_boot_tree() -> Result<(), String> {
    let virtio = dma::device("/virtio_mmio@a000000").map_err(e)?;
    qemu_ensure_eq!(virtio.name, "a000000.virtio_mmio");
    qemu_ensure!(
        virtio.constraints.coherent,
        "QEMU marks the root and virtio-mmio dma-coherent"
    );
    qemu_ensure_eq!(virtio.cma_area.as_deref(), Some(AREA));
    qemu_ensure_eq!(virtio.constraints.addr_limit, u64::MAX);
    qemu_ensure!(dma::device("/no-such-node").is_err());
    Ok(())
}

fn every_heap_gives_every_page_back() -> Result<(), String> {
    let (free0, used0) = (free_pages()?, cma_used()?);
    for heap in dma::heap_names() {
        let id = dma::heap_alloc(&heap, 300 * 1024 + 5).map_err(e)?;
        let segments = dma::buf_segments(id).map_err(e)?;
        let pages: u64 = segments.iter().map(|s| s.1 / 4096).sum();
        qemu_ensure_eq!(pages, 76);
        if heap == "system" {
            qemu_ensure_eq!(segments.len(), 76);
            qemu_ensure_eq!(free_pages()?, free0 - 76);
            qemu_ensure_eq!(cma_used()?, used0);
        } else {
            let (phys, len) = dma::buf_phys(id).map_err(e)?;
            qemu_ensure!(
                (0x5000_0000..0x6000_0000).contains(&phys),
                "{heap}: {phys:#x}"
            );
            qemu_ensure_eq!(len, 76 * 4096);
            qemu_ensure_eq!(cma_used()?, used0 + 76);
        }
        dma::buf_put(id).map_err(e)?;
        qemu_ensure_eq!(free_pages()?, free0);
        qemu_ensure_eq!(cma_used()?, used0);
        qemu_ensure_eq!(dma::buf_put(id), Err(DmaError::Buf(BufError::Released(id))));
    }
    kmem::check_invariants().map_err(|err| format!("{err}"))
}

fn no_scatter_gather_device_refuses_system_buffers() -> Result<(), String> {
    let codec = DeviceDma::new("codec", None)
        .with_max_segments(1)
        .map_err(|err| format!("{err}"))?;
    let sg = dma::heap_alloc("system", 4 * 4096).map_err(e)?;
    let refused = dma::attach(sg, &codec);
    qemu_ensure_eq!(
        refused,
        Err(DmaError::Buf(BufError::Refused {
            buf: sg,
            device: String::from("codec"),
            reason: Refusal::TooManySegments {
                segments: 4,
                max: 1
            }
        }))
    );
    let contiguous = dma::heap_alloc("default_cma_region", 4 * 4096).map_err(e)?;
    let a = dma::attach(contiguous, &codec).map_err(e)?;
    let map = dma::map(contiguous, a).map_err(e)?;
    qemu_ensure_eq!(map.len(), 1);
    qemu_ensure_eq!(map[0].bus, dma::buf_phys(contiguous).map_err(e)?.0);
    dma::unmap(contiguous, a).map_err(e)?;
    dma::detach(contiguous, a).map_err(e)?;
    dma::buf_put(contiguous).map_err(e)?;
    dma::buf_put(sg).map_err(e)
}

fn write_pattern(phys: u64, words: usize, seed: u64) {
    for i in 0..words {
        // Safety: `phys` is the first byte of a live dma-buf this test allocated (pages
        // owned by the DMA layer for this test alone), identity-mapped and cacheable, and
        // `words` 8-byte words fit inside it.
        unsafe { core::ptr::write_volatile((phys as *mut u64).add(i), seed ^ i as u64) };
    }
}

fn check_pattern(phys: u64, words: usize, seed: u64) -> Result<(), String> {
    for i in 0..words {
        // Safety: as in `write_pattern`.
        let got = unsafe { core::ptr::read_volatile((phys as *const u64).add(i)) };
        qemu_ensure_eq!(got, seed ^ i as u64);
    }
    Ok(())
}

fn cpu_access_runs_real_cache_ops() -> Result<(), String> {
    let dev = DeviceDma::new("noncoherent", None);
    let id = dma::heap_alloc("default_cma_region", 64 * 1024).map_err(e)?;
    let (phys, _) = dma::buf_phys(id).map_err(e)?;
    qemu_ensure!(
        dma::begin_cpu_access(id, DmaDirection::FromDevice) == Ok(0),
        "nothing mapped yet"
    );
    let a = dma::attach(id, &dev).map_err(e)?;
    dma::map(id, a).map_err(e)?;
    write_pattern(phys, 8192, 0x5eed);
    qemu_ensure_eq!(dma::end_cpu_access(id, DmaDirection::ToDevice), Ok(1));
    qemu_ensure_eq!(dma::begin_cpu_access(id, DmaDirection::FromDevice), Ok(1));
    check_pattern(phys, 8192, 0x5eed)?;
    qemu_ensure_eq!(
        dma::begin_cpu_access(id, DmaDirection::Bidirectional),
        Ok(1)
    );
    qemu_ensure_eq!(dma::begin_cpu_access(id, DmaDirection::ToDevice), Ok(1));
    check_pattern(phys, 8192, 0x5eed)?;
    let mut coherent = DeviceDma::new("coherent", None);
    coherent.constraints.coherent = true;
    let c = dma::attach(id, &coherent).map_err(e)?;
    dma::map(id, c).map_err(e)?;
    qemu_ensure!(
        dma::end_cpu_access(id, DmaDirection::Bidirectional) == Ok(1),
        "only the non-coherent one"
    );
    for att in [a, c] {
        dma::unmap(id, att).map_err(e)?;
        dma::detach(id, att).map_err(e)?;
    }
    dma::buf_put(id).map_err(e)
}

fn coherent_allocations_use_the_area_then_the_pool() -> Result<(), String> {
    let dev = DeviceDma::new("dev", Some(AREA));
    let (size, used) = dma::pool_pages().map_err(e)?;
    qemu_ensure!(
        (size, used) == (64, 0),
        "coherent_pool=256K: {size} pages, {used} used"
    );
    let used0 = cma_used()?;
    let waiting = dma::dma_alloc_coherent(&dev, 20_000, true).map_err(e)?;
    qemu_ensure_eq!(cma_used()?, used0 + 5);
    qemu_ensure_eq!(waiting.dma, waiting.phys);
    let atomic = dma::dma_alloc_coherent(&dev, 8192, false).map_err(e)?;
    qemu_ensure_eq!(dma::pool_pages().map_err(e)?.1, 2);
    qemu_ensure!(cma_used()? == used0 + 5, "the atomic one did not touch CMA");
    let too_big = dma::dma_alloc_coherent(&dev, 512 * 1024, false);
    qemu_ensure!(matches!(too_big, Err(DmaError::Pool(_))), "{too_big:?}");
    dma::dma_free_coherent(&atomic).map_err(e)?;
    dma::dma_free_coherent(&waiting).map_err(e)?;
    qemu_ensure!(
        dma::dma_free_coherent(&waiting).is_err(),
        "double free refused"
    );
    qemu_ensure_eq!(dma::pool_pages().map_err(e)?.1, 0);
    qemu_ensure_eq!(cma_used()?, used0);
    Ok(())
}

fn jobs_run_when_their_fences_signal() -> Result<(), String> {
    let ctx = dma::fence_context("virtio_video", "dec0").map_err(e)?;
    let id = dma::heap_alloc("system", 4096).map_err(e)?;
    let decoded = dma::fence_create(ctx, 1_000_000).map_err(e)?;
    dma::buf_add_fence(id, decoded, Usage::Write).map_err(e)?;
    let ran = Arc::new(AtomicUsize::new(0));
    let seen = ran.clone();
    let waits = dma::buf_waits(id, false).map_err(e)?;
    qemu_ensure_eq!(waits, [decoded]);
    let (_, out) = dma::job_submit(
        ctx,
        &waits,
        1_000_000,
        alloc::boxed::Box::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        }),
    )
    .map_err(e)?;
    qemu_ensure_eq!(ran.load(Ordering::SeqCst), 0);
    dma::fence_signal(decoded).map_err(e)?;
    qemu_ensure!(ran.load(Ordering::SeqCst) == 1, "ran inside fence_signal");
    dma::buf_add_fence(id, out, Usage::Read).map_err(e)?;
    let info = dma::bufinfo();
    qemu_ensure!(
        info.contains("\twrite fence:virtio_video dec0 seq 1 signalled\n"),
        "{info}"
    );
    qemu_ensure!(
        info.contains("\tread fence:virtio_video dec0 seq 2 unsignalled\n"),
        "{info}"
    );
    qemu_ensure!(info.contains("\tsystem\t"), "{info}");

    let late = dma::fence_create(ctx, 1000).map_err(e)?;
    monolith::driver::timer::spin_for(core::time::Duration::from_millis(2));
    dma::fence_poll().map_err(e)?;
    let status = dma::fence_status(late).map_err(e)?;
    qemu_ensure!(
        matches!(status, FenceStatus::Failed(FenceError::Timeout { .. })),
        "{status:?}"
    );
    dma::fence_fail_context(ctx, None).map_err(e)?;
    qemu_ensure_eq!(
        dma::fence_status(out).map_err(e)?,
        FenceStatus::Failed(FenceError::Reset { context: ctx })
    );
    dma::buf_put(id).map_err(e)?;
    dma::fence_retire().map_err(e)?;
    qemu_ensure!(
        dma::fence_status(decoded).is_err(),
        "retired: no buffer names it any more"
    );
    let live: Vec<_> = dma::buf_list();
    qemu_ensure!(live.is_empty(), "{live:?}");
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "dma",
        &[
            TestCase {
                name: "heaps_are_linuxs",
                run: heaps_are_linuxs,
            },
            TestCase {
                name: "devices_read_from_the_boot_tree",
                run: devices_read_from_the_boot_tree,
            },
            TestCase {
                name: "every_heap_gives_every_page_back",
                run: every_heap_gives_every_page_back,
            },
            TestCase {
                name: "no_scatter_gather_device_refuses_system_buffers",
                run: no_scatter_gather_device_refuses_system_buffers,
            },
            TestCase {
                name: "cpu_access_runs_real_cache_ops",
                run: cpu_access_runs_real_cache_ops,
            },
            TestCase {
                name: "coherent_allocations_use_the_area_then_the_pool",
                run: coherent_allocations_use_the_area_then_the_pool,
            },
            TestCase {
                name: "jobs_run_when_their_fences_signal",
                run: jobs_run_when_their_fences_signal,
            },
        ],
    )
}
