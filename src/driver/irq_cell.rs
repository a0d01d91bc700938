//! Interior mutability for driver state shared between thread and IRQ context.
//!
//! Theory of operation: Monolith runs drivers on one CPU (the secondaries stay parked), so
//! the only concurrency is an interrupt arriving in the middle of thread code. Masking IRQs
//! (DAIF.I) for the duration of an access makes it exclusive; the IRQ handler itself runs
//! with IRQs masked by the exception entry. This is Linux's `local_irq_save()` without a
//! spinlock, which is all a uniprocessor needs. Accesses must not nest on the same cell.

use core::cell::UnsafeCell;

use aarch64_cpu::registers::DAIF;
use tock_registers::interfaces::{Readable, Writeable};

pub struct IrqSafeCell<T> {
    value: UnsafeCell<T>,
}

// Safety: every access goes through `with`, which masks IRQs on the only CPU that runs
// this code, so no two accesses overlap; `with` is not re-entered for one cell (documented
// contract, and none of its callers do).
unsafe impl<T> Sync for IrqSafeCell<T> {}

impl<T> IrqSafeCell<T> {
    pub const fn new(value: T) -> Self {
        IrqSafeCell {
            value: UnsafeCell::new(value),
        }
    }

    /// Run `f` with exclusive access, IRQs masked, restoring the previous mask afterwards.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let saved = DAIF.get();
        // Bit 7 is DAIF.I: mask IRQs before touching the value.
        DAIF.set(saved | (1 << 7));
        // Safety: IRQs are masked on the single CPU running drivers and `with` does not
        // nest for one cell (see the type's contract), so this is the only live reference.
        let result = f(unsafe { &mut *self.value.get() });
        DAIF.set(saved);
        result
    }
}

/// Mask IRQs and return the previous DAIF value for [`irq_restore`].
pub fn irq_save() -> u64 {
    let saved = DAIF.get();
    DAIF.set(saved | (1 << 7));
    saved
}

pub fn irq_restore(saved: u64) {
    DAIF.set(saved);
}

/// Whether IRQs are currently unmasked.
pub fn irqs_enabled() -> bool {
    DAIF.get() & (1 << 7) == 0
}
