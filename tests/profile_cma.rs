//! xtask-qemu: --append "cma=16M"
//!
//! Profile image (run by `cargo xtask profile`, never by `cargo xtask test`): fills a
//! 16 MiB CMA area with anonymous pages, then makes one 1024-page `cma_alloc` between the
//! profile markers, so the profile shows where a full-area allocation spends its
//! instructions.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use monolith::bench;
use monolith::test_harness::{run_tests, TestCase};

fn full_area_alloc() -> Result<(), String> {
    bench::profile_cma_alloc(None, 1024, bench::AreaFill::FullOfAnon).map_err(|e| format!("{e}"))
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "profile_cma",
        &[TestCase {
            name: "full_area_alloc_1024",
            run: full_area_alloc,
        }],
    )
}
