//! QEMU `virt` machine facts used before the device tree is read.

/// The PL011 QEMU `virt` always has; used for output before the DTB is parsed.
pub const EARLY_UART_BASE: usize = 0x0900_0000;
/// Start of RAM on `virt`; QEMU places the DTB here for an ELF kernel.
pub const RAM_BASE: usize = 0x4000_0000;
