//! xtask-qemu: --append "cma=16M"
//!
//! Profile image (run by `cargo xtask profile`, never by `cargo xtask test`):
//! leaves a 16 MiB CMA area idle, then makes one 64-page `cma_alloc` between the
//! profile markers, so the profile shows the fixed and per-frame costs of an allocation that needs
//! no migration.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use monolith::bench;
use monolith::test_harness::{run_tests, TestCase};

fn profiled_alloc() -> Result<(), String> {
    bench::profile_cma_alloc(None, 64, bench::AreaFill::Idle).map_err(|e| format!("{e}"))
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "profile_cma_idle_64",
        &[TestCase {
            name: "cma_alloc_64",
            run: profiled_alloc,
        }],
    )
}
