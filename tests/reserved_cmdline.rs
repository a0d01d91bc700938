//! xtask-qemu: --append "cma=64M"
//!
//! `cma=64M` on the command line: the default area "reserved", 64 MiB placed top-down
//! below 4 GiB, i.e. at the top of the 1 GiB of RAM: [0x7c00_0000, 0x8000_0000). It replaces
//! any default area from the tree.
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

fn cmdline_area() -> Result<(), String> {
    expect_area("reserved", 0x7c00_0000, 64 << 20, true)?;
    let plan = kmem::plan().ok_or("no plan")?;
    qemu_ensure!(
        plan.cma_areas.iter().filter(|a| a.is_default).count() == 1,
        "more than one default area"
    );
    device_area("/any-device", Some("reserved"))
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "reserved_cmdline",
        &[TestCase {
            name: "cmdline_area",
            run: cmdline_area,
        }],
    )
}
