//! Console output: `print!`/`println!` over the PL011.

use core::fmt::{self, Write};

struct EarlyUart;

impl Write for EarlyUart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put_byte(b'\r');
            }
            put_byte(b);
        }
        Ok(())
    }
}

fn put_byte(b: u8) {
    let base = crate::bsp::EARLY_UART_BASE;
    // Safety: the PL011 on `virt` is at this fixed address, identity-mapped as device
    // memory (or MMU off); FR (offset 0x18) bit 5 is TXFF, DR (offset 0) takes the byte.
    unsafe {
        while core::ptr::read_volatile((base + 0x18) as *const u32) & (1 << 5) != 0 {}
        core::ptr::write_volatile(base as *mut u32, b as u32);
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let _ = EarlyUart.write_fmt(args);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ({ $crate::console::_print(format_args!($($arg)*)); $crate::print!("\n"); });
}
