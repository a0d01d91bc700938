//! xtask-qemu: --board virt-pasr
//!
//! Profile image (run by `cargo xtask profile`, never by `cargo xtask test`): the vacating
//! pass on `bench_pasr`'s workload (`kmem::pasr::VacateWorkload::bench`: 384 MiB of
//! anonymous pages thinned to one in 64 outside the image's bank), with the whole pass
//! before sleep between the profile markers, so the profile shows where its instructions
//! per MiB moved go.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use monolith::bench::{monolith_profile_begin, monolith_profile_end};
use monolith::kmem::pasr::{Meter, VacateWorkload};
use monolith::println;
use monolith::test_harness::{run_tests, TestCase};

fn vacate() -> Result<(), String> {
    monolith::cpu::pmu::count_instructions().map_err(String::from)?;
    let cost = monolith::kmem::pasr::vacate_cost(
        VacateWorkload::bench(monolith::pasr_service::VACATE_BUDGET),
        Meter {
            count: monolith::cpu::pmu::instructions_retired,
            begin: || monolith_profile_begin(),
            end: || monolith_profile_end(),
        },
    )
    .map_err(|e| format!("{e}"))?;
    println!();
    println!("{cost}");
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "profile_vacate",
        &[TestCase {
            name: "vacate_bench_workload",
            run: vacate,
        }],
    )
}
