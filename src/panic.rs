//! How the machine stops after a failure: Rust panics, `FATAL:` errors, fatal exceptions.
//!
//! # Theory of operation
//!
//! Every failure path ends in [`stop_failure`]: semihosting exit with failure in test
//! builds (QEMU exits 1, so a broken test never hangs its runner), PSCI SYSTEM_OFF
//! otherwise. A second failure on the way down (say, the shutdown call itself faults)
//! parks the core instead of looping through the fault path. The panic handler and
//! [`fatal`] print their message first; the exception vectors print their own report.
//! This module sits below everything that can fail, so boot, the exception vectors and
//! the panic handler all reach it without going through the runtime.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    crate::println!("\n*** PANIC: {info}");
    stop_failure()
}

/// Print `FATAL: message` and stop (see [`stop_failure`]).
pub fn fatal(message: core::fmt::Arguments) -> ! {
    crate::println!("FATAL: {message}");
    stop_failure()
}

static STOPPING: AtomicBool = AtomicBool::new(false);

/// Stop the machine after a failure: semihosting exit 1 in test builds, PSCI SYSTEM_OFF
/// otherwise; a second call parks the core.
pub fn stop_failure() -> ! {
    if STOPPING.swap(true, Ordering::SeqCst) {
        crate::cpu::wait_forever();
    }
    #[cfg(feature = "qemu-test")]
    crate::test_harness::exit_failure();
    #[cfg(not(feature = "qemu-test"))]
    crate::psci::system_off();
}
