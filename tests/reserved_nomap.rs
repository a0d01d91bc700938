//! xtask-qemu: --dtb src/dt/testdata/reserved/nomap-carveout.virt.dtb
//!
//! A `no-map` carveout with two ranges: neither is in the buddy nor in the identity map
//! (the hardware cannot translate them), and no CMA area exists.
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

fn carveouts() -> Result<(), String> {
    area_count(0)?;
    let plan = kmem::plan().ok_or("no plan")?;
    qemu_ensure!(
        plan.not_mapped().len() == 2,
        "carveouts {:x?}",
        plan.not_mapped()
    );
    for range in [0x6000_0000..0x6020_0000u64, 0x6100_0000..0x6110_0000] {
        not_in_buddy(range.clone())?;
        unmapped(range)?;
    }
    device_area("/secure-firmware", None)?;
    kmem::check_invariants().map_err(e)
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "reserved_nomap",
        &[TestCase {
            name: "carveouts",
            run: carveouts,
        }],
    )
}
