//! Architecture half of [`crate::runtime`]: the assembly entry (`boot.s`) and the first
//! Rust function, which hands over to [`crate::runtime::runtime_init`].
//!
//! It is a child of the runtime rather than of `cpu` so that the one upward call of the
//! hardware layer (boot code starting the machine) stays inside the module that starts
//! things: `cpu` never names `runtime`.

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
    crate::cpu::record_boot_exception_level(boot_exception_level as u8);
    // Safety: single-threaded boot, called exactly once.
    unsafe { super::runtime_init(dtb_from_x0) }
}
