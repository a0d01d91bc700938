//! Panic: print where and why, then stop the machine (test builds exit QEMU with failure,
//! so a panicking test never hangs its runner).

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    crate::println!("\n*** PANIC: {info}");
    crate::runtime::stop_failure()
}
