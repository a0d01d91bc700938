//! xtask-qemu: --board virt --append "coherent_pool=4M"
//!
//! Benchmark image (run by `cargo xtask bench` under `-icount shift=0,sleep=off`): the
//! DMA layer's costs in guest instructions (PMU INST_RETIRED, exact under precise icount):
//! a full-screen virtio-gpu frame on a CMA dma-buf framebuffer, drawn in place and through
//! a staging copy; `begin_cpu_access`/`end_cpu_access` per MiB on a non-coherent
//! attachment against bare DC loops; allocation + free per heap and per
//! `dma_alloc_coherent` source against a memcpy of the same bytes. `coherent_pool=4M`
//! (the largest pool, one max-order block; the default on 1 GiB is 128 KiB) lets the pool
//! row reach 1 MiB. See `monolith::bench::dma` for the method. Prints tables; the only
//! failures are errors that stop a measurement.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;

use monolith::bench::dma;
use monolith::println;
use monolith::test_harness::{run_tests, TestCase};

const FRAMES: usize = 15;
const TRIALS: usize = 7;
/// The CPU-access buffer: 8 MiB, so fixed costs weigh little per MiB.
const ACCESS_BYTES: u64 = 8 << 20;

fn frames() -> Result<(), String> {
    dma::instret_init()?;
    let report = dma::frame_costs(FRAMES)?;
    println!();
    println!("{}", dma::format_frames(&report));
    Ok(())
}

fn cpu_access() -> Result<(), String> {
    dma::instret_init()?;
    let report = dma::cpu_access_costs(ACCESS_BYTES, TRIALS)?;
    println!();
    println!("{}", dma::format_access(&report));
    Ok(())
}

fn allocation() -> Result<(), String> {
    dma::instret_init()?;
    let report = dma::alloc_costs(&dma::ALLOC_SIZES, TRIALS)?;
    println!();
    println!("{}", dma::format_alloc(&report));
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "bench_dma",
        &[
            TestCase {
                name: "frame_cost",
                run: frames,
            },
            TestCase {
                name: "cpu_access_cost",
                run: cpu_access,
            },
            TestCase {
                name: "allocation_latency",
                run: allocation,
            },
        ],
    )
}
