//! xtask-qemu: --board virt-pasr
//!
//! Profile image (run by `cargo xtask profile`, never by `cargo xtask test`): the order-0
//! loop of `tests/bench_pasr.rs` as single pairs (allocate a frame, free it, 8192 times,
//! the pcp on as at boot) between the profile markers, so the profile shows where an
//! order-0 allocation and free spend their instructions.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use monolith::bench::{monolith_profile_begin, monolith_profile_end};
use monolith::test_harness::{run_tests, TestCase};

const BATCH: usize = 1;
const ROUNDS: usize = 8192;

fn order0_loop() -> Result<(), String> {
    monolith::kmem::pasr::order0_profiled(
        BATCH,
        ROUNDS,
        || monolith_profile_begin(),
        || monolith_profile_end(),
    )
    .map(|_| ())
    .map_err(|e| format!("{e}"))
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "profile_order0",
        &[TestCase {
            name: "order0_alloc_free",
            run: order0_loop,
        }],
    )
}
