//! xtask-qemu: --dtb src/dt/testdata/reserved/broken.virt.dtb
//!
//! Broken reserved-memory nodes: boot goes on, one message per broken item (9), and the
//! one good region "good@78000000" [0x7800_0000, 0x7a00_0000) is a working CMA area that
//! /user allocates from.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "reserved_support/mod.rs"]
mod reserved_support;

use alloc::string::String;
use monolith::kmem;
use monolith::qemu_ensure;
use monolith::test_harness::{run_tests, TestCase};
use reserved_support::*;

fn broken_nodes() -> Result<(), String> {
    let plan = kmem::plan().ok_or("no plan")?;
    qemu_ensure!(plan.messages.len() == 9, "messages: {:#?}", plan.messages);
    area_count(1)?;
    expect_area("good@78000000", 0x7800_0000, 32 << 20, false)?;
    device_area("/user", Some("good@78000000"))?;
    kmem::check_invariants().map_err(e)
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "reserved_broken",
        &[TestCase {
            name: "broken_nodes",
            run: broken_nodes,
        }],
    )
}
