//! Architectural boot code: the assembly entry and the first Rust function.

core::arch::global_asm!(include_str!("boot.s"));

/// The first Rust code to run, on the boot stack with BSS zeroed, at EL1, MMU off.
///
/// # Safety
/// Called once, from `_start` only.
#[no_mangle]
pub unsafe extern "C" fn _start_rust(dtb_from_x0: usize) -> ! {
    // Safety: single-threaded boot, called exactly once.
    unsafe { crate::runtime::runtime_init(dtb_from_x0) }
}
