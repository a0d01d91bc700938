//! Architectural boot code: the assembly entry and the first Rust function.

core::arch::global_asm!(
    include_str!("boot.s"),
    EXCEPTION_STACK_SIZE = const crate::exception::EXCEPTION_STACK_SIZE,
);

/// The first Rust code to run, on the boot stack (SP_EL0) with BSS zeroed, at EL1, MMU off.
///
/// # Safety
/// Called once, from `_start` only.
#[no_mangle]
pub unsafe extern "C" fn _start_rust(dtb_from_x0: usize, boot_exception_level: u64) -> ! {
    super::arch_cpu::record_boot_exception_level(boot_exception_level as u8);
    // Safety: single-threaded boot, called exactly once.
    unsafe { crate::runtime::runtime_init(dtb_from_x0) }
}
