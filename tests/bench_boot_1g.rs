//! xtask-qemu: --board virt --mem 1G
//!
//! Benchmark image (run by `cargo xtask bench` under `-icount shift=0,sleep=off`): the
//! instructions from reset to where the firmware hands the console to the shell, with
//! 1G of RAM. Under precise icount the generic counter's time is one nanosecond per
//! retired instruction, so the uptime at `kernel_init` (which a test image reaches
//! after the same boot as the firmware: exceptions, heap, device tree, MMU, drivers, the
//! zone and its CMA areas) is the instruction count. `bench_boot_1g` and
//! `bench_boot_8g` differ only in the memory size, so their difference is what boot
//! pays per GiB (the per-frame metadata and the free lists).
#![no_std]
#![no_main]

use monolith::bench::boot::boot_to_prompt;
use monolith::test_harness::{run_tests, TestCase};

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "bench_boot_1g",
        &[TestCase {
            name: "boot_to_prompt",
            run: || boot_to_prompt("1G"),
        }],
    )
}
