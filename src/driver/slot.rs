//! One driver instance kept for the whole run: probed on first use, lent to one call at a
//! time, released on shutdown. The virtio-gpu and virtio-video instances (and any later
//! device) share this instead of each keeping its own copy of the state machine.
//!
//! # Theory of operation
//!
//! The instance lives in a static, but a call takes it *out* for its duration and puts it
//! back after: virtio requests sleep in WFI until the device's interrupt, which must be
//! able to run, so no IRQ-masking lock may be held across them. The lock only guards the
//! three-state slot (`Unprobed`, `Ready`, `InUse`); a second caller while one is inside
//! (an interrupt handler, say) gets [`Unavailable::Busy`] rather than a deadlock. A failed
//! probe leaves the slot `Unprobed`, so the next call tries again.

use alloc::boxed::Box;

use crate::cpu::IrqSafeLock;

/// Why a call could not have the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Probing found no device (the caller's error type says which).
    NoDevice,
    /// Another call is using it.
    Busy,
}

enum Slot<T> {
    /// Not looked for yet (or shut down).
    Unprobed,
    /// Boxed: drivers (queues, their Hal's DMA description) are large.
    Ready(Box<T>),
    /// Taken out by a call in progress.
    InUse,
}

/// A driver instance behind a probe-once, lend-one-at-a-time slot.
pub struct DriverSlot<T> {
    slot: IrqSafeLock<Slot<T>>,
}

impl<T> DriverSlot<T> {
    pub const fn new() -> DriverSlot<T> {
        DriverSlot {
            slot: IrqSafeLock::new(Slot::Unprobed),
        }
    }

    /// Bring the instance up with `bring_up` unless it is up already.
    pub fn probe<E: From<Unavailable>>(
        &self,
        bring_up: impl FnOnce() -> Result<T, E>,
    ) -> Result<(), E> {
        let state = self.slot.lock(|slot| match slot {
            Slot::Unprobed => {
                *slot = Slot::InUse;
                None
            }
            Slot::Ready(_) => Some(Ok(())),
            Slot::InUse => Some(Err(Unavailable::Busy)),
        });
        if let Some(result) = state {
            return result.map_err(E::from);
        }
        match bring_up() {
            Ok(driver) => {
                self.slot.lock(|slot| *slot = Slot::Ready(Box::new(driver)));
                Ok(())
            }
            Err(e) => {
                self.slot.lock(|slot| *slot = Slot::Unprobed);
                Err(e)
            }
        }
    }

    /// Run `f` on the instance (probing first with `bring_up` if needed), with interrupts
    /// as the caller has them and no lock held.
    pub fn with<R, E: From<Unavailable>>(
        &self,
        bring_up: impl FnOnce() -> Result<T, E>,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, E> {
        self.probe(bring_up)?;
        let taken = self
            .slot
            .lock(|slot| match core::mem::replace(slot, Slot::InUse) {
                Slot::Ready(driver) => Ok(driver),
                other => {
                    let error = match other {
                        Slot::Unprobed => Unavailable::NoDevice,
                        _ => Unavailable::Busy,
                    };
                    *slot = other;
                    Err(error)
                }
            });
        let mut driver = taken.map_err(E::from)?;
        let result = f(&mut driver);
        self.slot.lock(|slot| *slot = Slot::Ready(driver));
        Ok(result)
    }

    /// Take the instance out for good (`None` if it was never brought up); the next call
    /// probes again. Refused while a call is using it.
    pub fn take(&self) -> Result<Option<Box<T>>, Unavailable> {
        self.slot
            .lock(|slot| match core::mem::replace(slot, Slot::Unprobed) {
                Slot::Ready(driver) => Ok(Some(driver)),
                Slot::Unprobed => Ok(None),
                Slot::InUse => {
                    *slot = Slot::InUse;
                    Err(Unavailable::Busy)
                }
            })
    }
}

impl<T> Default for DriverSlot<T> {
    fn default() -> Self {
        DriverSlot::new()
    }
}
