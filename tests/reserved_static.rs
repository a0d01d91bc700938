//! xtask-qemu: --dtb src/dt/testdata/reserved/static-cma.virt.dtb
//!
//! Static CMA pool for one device: "video@50000000" [0x5000_0000, 0x5400_0000), not the
//! default area, used by /video-codec.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "reserved_support/mod.rs"]
mod reserved_support;

use alloc::string::String;
use monolith::test_harness::{run_tests, TestCase};
use reserved_support::*;

fn static_area() -> Result<(), String> {
    area_count(1)?;
    expect_area("video@50000000", 0x5000_0000, 64 << 20, false)?;
    device_area("/video-codec", Some("video@50000000"))?;
    device_area("/nobody", None)
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "reserved_static",
        &[TestCase {
            name: "static_area",
            run: static_area,
        }],
    )
}
