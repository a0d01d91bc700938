//! xtask-qemu: --board virt-pasr
//!
//! Benchmark image (run by `cargo xtask bench` under `-icount shift=0,sleep=off`): what
//! PASR's hooks in the buddy cost on the order-0 allocation path, in guest instructions
//! (PMU INST_RETIRED, exact under precise icount): the same loop of order-0 allocations
//! and frees (batches of 2048 pages, so every round splits and merges MAX_ORDER blocks,
//! where the hooks are) with PASR attached and detached, on the same zone, the pcp off so
//! every pair reaches the buddy. Goal: under 5%. Then the order-0 cost as the firmware
//! runs, pcp on: the same loop, and single allocate-free pairs (issue 12's goal: at most
//! 200 instructions a pair).
//! And the vacating pass's cost per MiB moved against a memcpy of the same bytes in the same
//! run: 384 MiB of anonymous pages (steering packs them into the lowest banks), thinned to
//! one page in 64 outside the image's bank and halved inside it, then the pass before sleep
//! with `suspend`'s budget (`kmem::pasr::vacate_cost`). Its `vacate_cost:` line is what
//! `cargo xtask bench` reads back into the PASR section.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use monolith::println;
use monolith::test_harness::{run_tests, TestCase};

const BATCH: usize = 2048;
const ROUNDS: usize = 16;

fn hook_cost() -> Result<(), String> {
    monolith::cpu::pmu::count_instructions().map_err(String::from)?;
    let cost = monolith::kmem::pasr::order0_hook_cost(
        BATCH,
        ROUNDS,
        monolith::cpu::pmu::instructions_retired,
    )
    .map_err(|e| format!("{e}"))?;
    let per = |total: u64| total as f64 / cost.pairs as f64;
    println!();
    println!(
        "order-0 alloc+free, {} pairs: {:.1} instructions per pair with PASR ({}), {:.1} without: {:+.2}%",
        cost.pairs,
        per(cost.with_pasr),
        cost.mode.name(),
        per(cost.without_pasr),
        100.0 * (cost.with_pasr as f64 / cost.without_pasr as f64 - 1.0)
    );
    println!(
        "order-0 alloc+free with the pcp, {} pairs: {:.1} instructions per pair one at a time, {:.1} in batches of {}",
        cost.pairs,
        per(cost.pcp_single),
        per(cost.pcp_batches),
        BATCH
    );
    Ok(())
}

fn vacate_cost() -> Result<(), String> {
    use monolith::kmem::pasr::{Meter, VacateWorkload};
    monolith::cpu::pmu::count_instructions().map_err(String::from)?;
    let cost = monolith::kmem::pasr::vacate_cost(
        VacateWorkload::bench(monolith::pasr_service::VACATE_BUDGET),
        Meter {
            count: monolith::cpu::pmu::instructions_retired,
            begin: || {},
            end: || {},
        },
    )
    .map_err(|e| format!("{e}"))?;
    let (Some(pass), Some(copy), Some(ratio)) = (
        cost.per_mib(cost.vacate_instructions),
        cost.per_mib(cost.memcpy_instructions),
        cost.ratio(),
    ) else {
        return Err(format!("the pass moved nothing: {cost}"));
    };
    println!();
    println!(
        "vacating pass: {} pages moved, {} banks vacated, {} of {} masked, {} pages kept: \
         {pass:.0} instructions per MiB moved, memcpy {copy:.0}: {ratio:.2}x",
        cost.pages_moved, cost.units_vacated, cost.units_masked, cost.units, cost.pages_kept
    );
    println!("{cost}");
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "bench_pasr",
        &[
            TestCase {
                name: "order0_hook_cost",
                run: hook_cost,
            },
            TestCase {
                name: "vacate_cost",
                run: vacate_cost,
            },
        ],
    )
}
