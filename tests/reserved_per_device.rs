//! xtask-qemu: --dtb src/dt/testdata/reserved/per-device.virt.dtb
//!
//! Per-device regions: /video-codec has one CMA area at each end of RAM ("left"
//! bank-low@48000000, "right" bank-high@7c000000) and allocates from entry 0; /display has
//! a dynamic no-map framebuffer [0x7780_0000, 0x7800_0000), unmapped and out of the buddy.
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

fn per_device() -> Result<(), String> {
    area_count(2)?;
    expect_area("bank-low@48000000", 0x4800_0000, 32 << 20, false)?;
    expect_area("bank-high@7c000000", 0x7c00_0000, 32 << 20, false)?;
    device_area("/video-codec", Some("bank-low@48000000"))?;
    device_area("/display", None)?;
    let plan = kmem::plan().ok_or("no plan")?;
    let codec = plan
        .regions_of("/video-codec")
        .ok_or("codec has no regions")?;
    qemu_ensure!(
        codec.regions.len() == 2,
        "codec regions {:?}",
        codec.regions
    );
    not_in_buddy(0x7780_0000..0x7800_0000)?;
    unmapped(0x7780_0000..0x7800_0000)
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "reserved_per_device",
        &[TestCase {
            name: "per_device",
            run: per_device,
        }],
    )
}
