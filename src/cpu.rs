//! Processor code: interrupt masking, a lock safe against our own IRQ handlers, cache
//! maintenance, the instruction counter benchmarks read, idling. The architecture half is in `_arch/aarch64/cpu*`; the boot entry
//! belongs to [`crate::runtime`].

#[path = "_arch/aarch64/cpu.rs"]
mod arch_cpu;

#[path = "_arch/aarch64/cpu/cache.rs"]
pub mod cache;

#[path = "_arch/aarch64/cpu/pmu.rs"]
pub mod pmu;

pub(crate) use arch_cpu::record_boot_exception_level;
pub use arch_cpu::{
    boot_exception_level, enable_irqs, irqs_enabled, mask_interrupts, restore_interrupts,
    wait_forever, InterruptState, IrqSafeLock,
};
