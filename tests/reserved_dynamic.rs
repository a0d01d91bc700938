//! xtask-qemu: --dtb src/dt/testdata/reserved/dynamic-cma.virt.dtb
//!
//! Dynamic default CMA area: "linux,cma" placed top-down, 16 MiB aligned, inside its
//! alloc-ranges: [0x5d00_0000, 0x6100_0000); every device without its own area uses it.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "reserved_support/mod.rs"]
mod reserved_support;

use alloc::string::String;
use monolith::test_harness::{run_tests, TestCase};
use reserved_support::*;

fn dynamic_area() -> Result<(), String> {
    area_count(1)?;
    expect_area("linux,cma", 0x5d00_0000, 64 << 20, true)?;
    device_area("/any-device", Some("linux,cma"))
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "reserved_dynamic",
        &[TestCase {
            name: "dynamic_area",
            run: dynamic_area,
        }],
    )
}
