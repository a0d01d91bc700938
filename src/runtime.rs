//! From the first Rust instruction to `kernel_init`, and how the machine stops.
//!
//! # Theory of operation
//!
//! [`runtime_init`] brings the machine up in dependency order:
//! 1. exception vectors, so any fault from here on is reported rather than a silent hang;
//! 2. the kernel heap, which the device-tree parser and the page tables allocate from;
//! 3. the platform description from the device tree, kept for the whole run ([`platform`]);
//! 4. the reserved-memory plan (`kmem::prepare`), so `no-map` carveouts stay unmapped;
//!    then the MMU: identity map built from that description, caches on;
//! 5. the drivers (interrupt controller, console, timer);
//! 6. the kernel memory service (`kmem::init`): zone, CMA areas, movable clients;
//! 7. `kernel_init`, provided by the binary: the firmware or an in-QEMU test image.
//!
//! A step that cannot complete prints `FATAL: ...` and stops through [`stop_failure`]:
//! semihosting exit with failure in test builds (QEMU exits 1), PSCI SYSTEM_OFF otherwise.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::dt::platform::Platform;

extern "Rust" {
    /// Provided by the binary: the firmware's `main.rs`, or each in-QEMU test image.
    fn kernel_init() -> !;
}

/// The platform description, once the device tree has been read (always, for anything
/// running from `kernel_init` on). The boot tree in [`crate::dtb`] is its only home.
pub fn try_platform() -> Option<&'static Platform> {
    crate::dtb::platform()
}

/// The platform description. Everything from `kernel_init` on may rely on it; calling it
/// earlier is a boot-order bug and stops the machine with a message.
pub fn platform() -> &'static Platform {
    match try_platform() {
        Some(platform) => platform,
        None => fatal(format_args!(
            "platform() called before the device tree was read"
        )),
    }
}

/// # Safety
/// Called once by the architectural boot code, on the boot stack, BSS zeroed.
pub unsafe fn runtime_init(dtb_from_x0: usize) -> ! {
    crate::exception::init();
    // Safety: first and only call, before any allocation.
    unsafe { crate::heap::init() };

    let platform = match crate::dtb::boot_platform(dtb_from_x0) {
        Ok(platform) => platform,
        Err(err) => fatal(format_args!("device tree: {err}")),
    };

    // The reserved-memory plan comes before the MMU: `no-map` carveouts stay out of the
    // identity map.
    let reserved = crate::kmem::prepare(platform);
    if let Err(err) = crate::memory::mmu::init_excluding(platform, &reserved.not_mapped()) {
        fatal(format_args!("MMU: {err}"));
    }
    crate::driver::init(platform);
    // A zone that cannot be built leaves the firmware running without a page allocator
    // (the kmem API then answers "not initialised"); the console still works to say why.
    if let Err(err) = crate::kmem::init(platform) {
        crate::println!("kmem: {err}");
    }

    // Safety: `kernel_init` is defined exactly once by the binary linked with us.
    unsafe { kernel_init() }
}

/// Print `FATAL: message` and stop (see [`stop_failure`]).
pub fn fatal(message: core::fmt::Arguments) -> ! {
    crate::println!("FATAL: {message}");
    stop_failure()
}

static STOPPING: AtomicBool = AtomicBool::new(false);

/// Stop the machine after a failure: semihosting exit 1 in test builds, PSCI SYSTEM_OFF
/// otherwise. A second failure on the way down (say, the shutdown call itself faults)
/// parks the core instead of looping through the fault path.
pub fn stop_failure() -> ! {
    if STOPPING.swap(true, Ordering::SeqCst) {
        crate::cpu::wait_forever();
    }
    #[cfg(feature = "qemu-test")]
    crate::test_harness::exit_failure();
    #[cfg(not(feature = "qemu-test"))]
    crate::psci::system_off();
}
