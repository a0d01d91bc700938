//! From the first Rust instruction to `kernel_init`.

extern "Rust" {
    /// Provided by the binary: the firmware's `main.rs`, or each in-QEMU test image.
    fn kernel_init(dtb_from_x0: usize) -> !;
}

/// # Safety
/// Called once by the architectural boot code, on the boot stack, BSS zeroed.
pub unsafe fn runtime_init(dtb_from_x0: usize) -> ! {
    // Safety: first and only call, before any allocation.
    unsafe { crate::heap::init() };
    // Safety: `kernel_init` is defined exactly once by the binary linked with us.
    unsafe { kernel_init(dtb_from_x0) }
}
