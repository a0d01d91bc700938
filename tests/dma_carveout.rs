//! xtask-qemu: --dtb src/dt/testdata/reserved/carveout-heap.virt.dtb
//!
//! The carveout heap on a real boot: a `no-map` `shared-dma-pool` region (4 MiB at
//! 0x6200_0000, used by `/vpu`) becomes a DMA-BUF heap named after the region. Buffers
//! come from inside the carveout, first fit, one contiguous run each, and cost the buddy
//! nothing; the CPU cannot touch them (no CPU-access bracket, no CPU mapping), a device
//! can (attach and map give one bus range); freeing gives the run back, so the next
//! buffer takes the same place; what does not fit is refused with the reason.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use monolith::dma::access::{AccessError, DmaDirection};
use monolith::dma::buf::BufError;
use monolith::dma::heap::HeapError;
use monolith::dma_service::{self as dma, DmaError};
use monolith::kmem;
use monolith::test_harness::{run_tests, TestCase};
use monolith::{qemu_ensure, qemu_ensure_eq};

const HEAP: &str = "vpu-carveout@62000000";
const CARVEOUT: core::ops::Range<u64> = 0x6200_0000..0x6240_0000;

fn e(err: DmaError) -> String {
    format!("{err}")
}

fn free_pages() -> Result<usize, String> {
    kmem::with_zone(|z| z.counters().free_pages).map_err(|err| format!("{err}"))
}

fn the_carveout_is_a_heap() -> Result<(), String> {
    qemu_ensure_eq!(dma::heap_names(), ["system", HEAP]);
    qemu_ensure_eq!(dma::dev_dma_heap(), format!("system\n{HEAP}\n"));
    Ok(())
}

fn buffers_come_from_inside_first_fit_and_go_back() -> Result<(), String> {
    let free0 = free_pages()?;
    let a = dma::heap_alloc(HEAP, 1 << 20).map_err(e)?;
    let b = dma::heap_alloc(HEAP, 64 * 1024).map_err(e)?;
    let (a_phys, a_len) = dma::buf_phys(a).map_err(e)?;
    let (b_phys, b_len) = dma::buf_phys(b).map_err(e)?;
    qemu_ensure_eq!((a_phys, a_len), (CARVEOUT.start, 1 << 20));
    qemu_ensure_eq!((b_phys, b_len), (CARVEOUT.start + (1 << 20), 64 * 1024));
    // A carveout buffer costs the buddy nothing.
    qemu_ensure_eq!(free_pages()?, free0);
    // The CPU has no mapping of the carveout: no bracket, no vmap.
    qemu_ensure!(matches!(
        dma::begin_cpu_access(a, DmaDirection::FromDevice),
        Err(DmaError::Access(AccessError::NotCpuMapped(_)))
    ));
    qemu_ensure!(matches!(
        dma::vmap(a, |_| ()),
        Err(DmaError::NotMapped { .. })
    ));
    // A device reaches it: one bus range.
    let vpu = dma::device("/vpu")
        .map_err(e)?
        .with_max_segments(1)
        .map_err(|x| format!("{x}"))?;
    let attachment = dma::attach(a, &vpu).map_err(e)?;
    let map = dma::map(a, attachment).map_err(e)?;
    qemu_ensure_eq!(map.len(), 1);
    qemu_ensure_eq!((map[0].bus, map[0].len), (CARVEOUT.start, 1 << 20));
    dma::unmap(a, attachment).map_err(e)?;
    dma::detach(a, attachment).map_err(e)?;
    // Freed runs are taken again, first fit.
    dma::buf_put(a).map_err(e)?;
    qemu_ensure!(matches!(
        dma::buf_put(a),
        Err(DmaError::Buf(BufError::Released(_)))
    ));
    let c = dma::heap_alloc(HEAP, 512 * 1024).map_err(e)?;
    qemu_ensure_eq!(dma::buf_phys(c).map_err(e)?.0, CARVEOUT.start);
    dma::buf_put(c).map_err(e)?;
    dma::buf_put(b).map_err(e)?;
    qemu_ensure_eq!(free_pages()?, free0);
    Ok(())
}

fn what_does_not_fit_is_refused() -> Result<(), String> {
    let whole = dma::heap_alloc(HEAP, CARVEOUT.end - CARVEOUT.start).map_err(e)?;
    let refused = dma::heap_alloc(HEAP, 4096);
    qemu_ensure!(
        matches!(refused, Err(DmaError::Heap(HeapError::CarveoutFull { .. }))),
        "a full carveout: {refused:?}"
    );
    dma::buf_put(whole).map_err(e)?;
    let too_big = dma::heap_alloc(HEAP, 2 * (CARVEOUT.end - CARVEOUT.start));
    qemu_ensure!(too_big.is_err(), "more than the carveout: {too_big:?}");
    let again = dma::heap_alloc(HEAP, CARVEOUT.end - CARVEOUT.start).map_err(e)?;
    dma::buf_put(again).map_err(e)?;
    qemu_ensure!(dma::buf_list().is_empty());
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "dma_carveout",
        &[
            TestCase {
                name: "the_carveout_is_a_heap",
                run: the_carveout_is_a_heap,
            },
            TestCase {
                name: "buffers_come_from_inside_first_fit_and_go_back",
                run: buffers_come_from_inside_first_fit_and_go_back,
            },
            TestCase {
                name: "what_does_not_fit_is_refused",
                run: what_does_not_fit_is_refused,
            },
        ],
    )
}
