//! xtask-qemu: --board virt
//! xtask-expect-stop: (?s)\*\*\* Unhandled exception.*Data Abort, current EL.*translation fault.*FAR_EL1\s+0x0*400700000018
//!
//! The fatal path: an unexpected data abort (nobody armed `expect_fault`) prints a
//! decoded register dump (exception class by name, fault status, FAR, ELR) and stops the
//! machine cleanly: in test builds a semihosting exit with failure status. xtask passes
//! this image when QEMU exits by itself with a failure status, the dump matches the
//! pattern above, and the dump appears exactly once (a fault loop would repeat it).
#![no_std]
#![no_main]

use monolith::memory::mmu;

#[no_mangle]
fn kernel_init() -> ! {
    let unmapped = mmu::movable_window().start + 0x7_0000_0018;
    monolith::println!("fatal_fault: storing to unmapped {unmapped:#x}");
    // Safety: deliberately not sound to complete: the address lies in the movable window
    // where nothing is mapped, so the store faults; the point of this image is that the
    // unarmed fault is reported and the machine stops.
    unsafe { core::ptr::write_volatile(unmapped as *mut u64, 0xdead) };
    monolith::println!("fatal_fault: the store did not fault");
    // Exit with success so the verdict (which wants a failure status) fails.
    monolith::test_harness::exit_success()
}
