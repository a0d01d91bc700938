//! xtask-qemu: --board virt
//!
//! In-QEMU tests of exception entry and return: expected faults are reported precisely
//! and resumed with the interrupted registers intact, and IRQs reach the driver layer
//! and return. (The fatal path, a decoded dump then exit failure, ends the run, so it is
//! an image of its own: `tests/fatal_fault.rs`.)
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use core::arch::asm;
use core::time::Duration;

use monolith::exception::expect_fault;
use monolith::exception::syndrome::{FaultStatus, EC_DATA_ABORT_CURRENT_EL};
use monolith::memory::mmu;
use monolith::test_harness::{run_tests, TestCase};
use monolith::{qemu_ensure, qemu_ensure_eq};

fn unmapped_address() -> usize {
    mmu::movable_window().start + 0x7_0000_0000
}

fn no_fault_means_none() -> Result<(), String> {
    let mut ran = false;
    qemu_ensure_eq!(expect_fault(|| ran = true), None);
    qemu_ensure!(ran);
    Ok(())
}

fn fault_reports_instruction_and_address_then_resumes() -> Result<(), String> {
    let bad = unmapped_address() + 0x18;
    let mut faulting_pc: usize = 0;
    let mut resumed: u64 = 0;
    let fault = expect_fault(|| {
        // Safety: the store targets an unmapped address; the armed handler skips it and
        // execution continues at the `mov`.
        unsafe {
            asm!(
                "adr {pc}, 1f",
                "1: str xzr, [{bad}]",
                "mov {resumed}, #1",
                pc = out(reg) faulting_pc,
                bad = in(reg) bad,
                resumed = out(reg) resumed,
                options(nostack)
            )
        };
    })
    .ok_or_else(|| String::from("store to an unmapped address did not fault"))?;
    qemu_ensure_eq!(fault.exception_class(), EC_DATA_ABORT_CURRENT_EL);
    qemu_ensure_eq!(fault.elr, faulting_pc as u64);
    qemu_ensure_eq!(fault.far, bad as u64);
    qemu_ensure!(fault.is_write());
    qemu_ensure!(
        matches!(fault.status(), Some(FaultStatus::Translation { .. })),
        "got {fault}"
    );
    qemu_ensure_eq!(resumed, 1);
    Ok(())
}

fn registers_survive_an_exception() -> Result<(), String> {
    let bad = unmapped_address();
    let (mut a, mut b, mut c, mut d): (u64, u64, u64, u64) = (0, 0, 0, 0);
    let fault = expect_fault(|| {
        // Safety: as above; x9-x15 and x17 are caller-saved scratch registers the Rust
        // handler is free to use, so they only survive if the vector code restores them.
        unsafe {
            asm!(
                "movz x9, #0x1111",
                "movz x12, #0x2222",
                "movz x15, #0x3333",
                "movz x17, #0x4444",
                "ldr x10, [{bad}]",
                "mov {a}, x9",
                "mov {b}, x12",
                "mov {c}, x15",
                "mov {d}, x17",
                bad = in(reg) bad,
                a = out(reg) a,
                b = out(reg) b,
                c = out(reg) c,
                d = out(reg) d,
                out("x9") _, out("x10") _, out("x12") _, out("x15") _, out("x17") _,
                options(nostack)
            )
        };
    });
    qemu_ensure!(
        fault.is_some(),
        "load from an unmapped address did not fault"
    );
    qemu_ensure_eq!((a, b, c, d), (0x1111, 0x2222, 0x3333, 0x4444));
    Ok(())
}

fn consecutive_expected_faults_are_independent() -> Result<(), String> {
    let bad = unmapped_address();
    for i in 0..3u64 {
        let address = bad + (i as usize) * 0x1000;
        let fault = expect_fault(|| {
            // Safety: an unmapped address inside expect_fault.
            unsafe { asm!("ldr {t}, [{a}]", a = in(reg) address, t = out(reg) _, options(nostack, readonly)) };
        })
        .ok_or_else(|| alloc::format!("fault {i} not seen"))?;
        qemu_ensure_eq!(fault.far, address as u64);
        qemu_ensure!(!fault.is_write());
    }
    qemu_ensure_eq!(expect_fault(|| {}), None);
    Ok(())
}

fn timer_irqs_arrive_and_return() -> Result<(), String> {
    let before = monolith::driver::timer::ticks();
    monolith::driver::timer::spin_for(Duration::from_millis(50));
    let after = monolith::driver::timer::ticks();
    qemu_ensure!(
        after > before,
        "no timer tick in 50 ms (ticks {before} -> {after})"
    );
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "exceptions",
        &[
            TestCase {
                name: "no_fault_means_none",
                run: no_fault_means_none,
            },
            TestCase {
                name: "fault_reports_instruction_and_address_then_resumes",
                run: fault_reports_instruction_and_address_then_resumes,
            },
            TestCase {
                name: "registers_survive_an_exception",
                run: registers_survive_an_exception,
            },
            TestCase {
                name: "consecutive_expected_faults_are_independent",
                run: consecutive_expected_faults_are_independent,
            },
            TestCase {
                name: "timer_irqs_arrive_and_return",
                run: timer_irqs_arrive_and_return,
            },
        ],
    )
}
