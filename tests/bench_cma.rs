//! xtask-qemu: --append "cma=256M"
//!
//! Benchmark image (run by `cargo xtask bench` under `-icount shift=0,sleep=off`):
//! `cma_alloc` latency against memcpy of the same bytes, idle and with the area full of
//! anonymous pages, and the success rate of large allocations under movable churn with
//! interleaved kernel-data and DMA-pin allocations, with CMA, with CMA and pins inside it
//! (long-term and short-term), and with the same memory as plain buddy. Prints tables; the
//! only failures are
//! errors that stop a measurement.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use monolith::bench::{self, ChurnMode};
use monolith::println;
use monolith::test_harness::{run_tests, TestCase};

const SIZES: [usize; 5] = [1, 64, 1024, 4096, 16384];

fn latency() -> Result<(), String> {
    let (area, rows) = bench::cma_latency(None, &SIZES, 7).map_err(|e| format!("{e}"))?;
    println!();
    println!("{}", bench::format_latency(&area, &rows, 7));
    let worst = rows.iter().map(|r| r.failures).sum::<usize>();
    println!("target: full-area cma_alloc within 2x memcpy; failed allocations: {worst}");
    Ok(())
}

fn churn() -> Result<(), String> {
    let mut results = alloc::vec::Vec::new();
    // Plain buddy first: later runs meet memory the earlier ones aged, so CMA gets the
    // hardest conditions, not the easiest.
    for mode in [
        ChurnMode::BuddyHighOrder,
        ChurnMode::ContigMovable,
        ChurnMode::Cma,
        ChurnMode::CmaPinsInCma,
    ] {
        results.push(
            bench::churn_success(None, mode, 1024, 200, 16, 0x5eed).map_err(|e| format!("{e}"))?,
        );
    }
    println!();
    println!("{}", bench::format_churn(1024, &results));
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "bench_cma",
        &[
            TestCase {
                name: "cma_alloc_latency",
                run: latency,
            },
            TestCase {
                name: "churn_success_rate",
                run: churn,
            },
        ],
    )
}
