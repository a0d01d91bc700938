//! Panic: print where and why, then stop the machine.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    crate::println!("\n*** PANIC: {info}");
    loop {
        aarch64_cpu::asm::wfe();
    }
}
