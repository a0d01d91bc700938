//! Processor code: boot entry, interrupt masking, a lock safe against our own IRQ
//! handlers, cache maintenance. The architecture half is in `_arch/aarch64/cpu*`.

#[path = "_arch/aarch64/cpu/boot.rs"]
mod boot;

#[path = "_arch/aarch64/cpu.rs"]
mod arch_cpu;

#[path = "_arch/aarch64/cpu/cache.rs"]
pub mod cache;

pub use arch_cpu::{
    boot_exception_level, irqs_enabled, mask_interrupts, restore_interrupts, wait_forever,
    InterruptState, IrqSafeLock,
};
