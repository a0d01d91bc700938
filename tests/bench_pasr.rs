//! xtask-qemu: --board virt-pasr
//!
//! Benchmark image (run by `cargo xtask bench` under `-icount shift=0,sleep=off`): what
//! PASR's hooks in the buddy cost on the order-0 allocation path, in guest instructions
//! (PMU INST_RETIRED, exact under precise icount): the same loop of order-0 allocations
//! and frees (batches of 2048 pages, so every round splits and merges MAX_ORDER blocks,
//! where the hooks are) with PASR attached and detached, on the same zone. Goal: under 5%.
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
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "bench_pasr",
        &[TestCase {
            name: "order0_hook_cost",
            run: hook_cost,
        }],
    )
}
