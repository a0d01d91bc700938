//! Architecture half of [`crate::cpu`]: DAIF masking, the IRQ-safe lock, idling.
//!
//! # Theory of operation
//!
//! Only the boot core runs (secondaries stay parked), so the one real hazard for shared
//! kernel state is an IRQ handler running in the middle of an update. [`IrqSafeLock`]
//! masks IRQs and FIQs for the critical section and restores the previous mask after; it
//! also spins on an atomic flag so it stays correct once secondary cores are started.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use aarch64_cpu::registers::DAIF;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

static BOOT_EXCEPTION_LEVEL: AtomicU8 = AtomicU8::new(0);

pub(crate) fn record_boot_exception_level(level: u8) {
    BOOT_EXCEPTION_LEVEL.store(level, Ordering::Relaxed);
}

/// The exception level the image was entered at (2 under `virtualization=on`, else 1).
/// Tells which PSCI conduit can work before the device tree is read.
pub fn boot_exception_level() -> u8 {
    BOOT_EXCEPTION_LEVEL.load(Ordering::Relaxed)
}

/// Park this core for good. Used after a failed shutdown, so it must not fault.
pub fn wait_forever() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

/// Saved DAIF bits from [`mask_interrupts`].
#[derive(Debug, Clone, Copy)]
pub struct InterruptState(u64);

/// Mask IRQ and FIQ; returns the previous state for [`restore_interrupts`].
pub fn mask_interrupts() -> InterruptState {
    let daif = DAIF.get();
    // aarch64-cpu has no DAIFSet (the immediate form that sets mask bits in one
    // instruction), so that one stays raw.
    // Safety: sets the I and F mask bits; no memory is touched.
    unsafe { core::arch::asm!("msr DAIFSet, #3", options(nomem, nostack, preserves_flags)) };
    InterruptState(daif)
}

pub fn restore_interrupts(state: InterruptState) {
    DAIF.set(state.0);
}

/// Let IRQs in on this core (clear DAIF.I).
pub fn enable_irqs() {
    DAIF.modify(DAIF::I::Unmasked);
}

/// Whether IRQs are unmasked on this core (DAIF.I clear).
pub fn irqs_enabled() -> bool {
    DAIF.matches_all(DAIF::I::Unmasked)
}

/// A spin lock that keeps IRQs masked while held, so an interrupt handler on this core
/// can never deadlock on a lock the interrupted code holds.
pub struct IrqSafeLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// Safety: access to `value` is serialised by `locked` (and IRQ masking on this core), so
// sharing the lock between contexts is sound whenever `T` can move between them.
unsafe impl<T: Send> Sync for IrqSafeLock<T> {}

impl<T> IrqSafeLock<T> {
    pub const fn new(value: T) -> Self {
        IrqSafeLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Run `f` with exclusive access to the value.
    pub fn lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let interrupts = mask_interrupts();
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // Safety: `locked` is ours until the release store below, so no other reference to
        // the value exists; IRQs are masked so no handler on this core can re-enter.
        let result = f(unsafe { &mut *self.value.get() });
        self.locked.store(false, Ordering::Release);
        restore_interrupts(interrupts);
        result
    }
}
