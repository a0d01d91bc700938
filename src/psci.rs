//! PSCI: asking the firmware (QEMU's built-in PSCI here) to power off or reset.
//!
//! # Theory of operation
//!
//! PSCI calls are SMCCC fast calls: function ID in x0, result back in x0, made with HVC or
//! SMC as the device tree's `/psci` `method` says ([`crate::dtb::platform`]). Before
//! the tree is read (a fatal error during boot) the conduit is inferred: entered at EL2
//! we own the hypervisor level, so QEMU's PSCI must be behind SMC; entered at EL1 it is HVC.
//! An HVC from EL1 would land in our own empty EL2 when we were entered at EL2, so that
//! combination is refused rather than tried. SYSTEM_OFF and SYSTEM_RESET do not return
//! when they work; if one does, the core parks in `wfe`.

use crate::dt::platform::PsciConduit;

const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;

fn conduit() -> PsciConduit {
    let entered_at_el2 = crate::cpu::boot_exception_level() == 2;
    match crate::dtb::platform().and_then(|p| p.psci) {
        Some(conduit) => conduit,
        None if entered_at_el2 => PsciConduit::Smc,
        None => PsciConduit::Hvc,
    }
}

/// Make a PSCI call with no arguments; returns the PSCI status if the call came back.
fn call(function: u32) -> i64 {
    let mut result = function as u64;
    match conduit() {
        PsciConduit::Hvc if crate::cpu::boot_exception_level() == 2 => {
            crate::println!("PSCI: method is hvc but we own EL2; not calling");
            return -1;
        }
        // Safety: an SMCCC call; the firmware may clobber x0-x17 (declared by the C ABI
        // clobber) and touches no memory of ours for these functions.
        PsciConduit::Hvc => unsafe {
            core::arch::asm!("hvc #0", inout("x0") result, clobber_abi("C"), options(nostack));
        },
        // Safety: as above, through the secure monitor.
        PsciConduit::Smc => unsafe {
            core::arch::asm!("smc #0", inout("x0") result, clobber_abi("C"), options(nostack));
        },
    }
    result as i64
}

/// Power the machine off (QEMU exits).
pub fn system_off() -> ! {
    let status = call(PSCI_SYSTEM_OFF);
    crate::println!("PSCI SYSTEM_OFF returned {status}; halting this core");
    crate::cpu::wait_forever()
}

/// Reset the machine.
pub fn system_reset() -> ! {
    let status = call(PSCI_SYSTEM_RESET);
    crate::println!("PSCI SYSTEM_RESET returned {status}; halting this core");
    crate::cpu::wait_forever()
}
