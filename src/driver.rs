//! Device drivers: PL011 UART, GICv3, generic timer (hardware layer).
//!
//! Theory of operation: [`init`] runs once, after the MMU maps `platform.mmio`, in the
//! order each step depends on: the logger (so every later step can report), the GIC (so
//! handlers can be registered), the console UART with receive interrupts, the periodic
//! timer tick, and finally IRQs are unmasked (DAIF.I). A device missing from the tree, or
//! one that fails to come up, is logged and skipped: the console keeps working in polled
//! mode, which is enough to read the error. [`handle_irq`] is the single entry the
//! exception vectors call for an IRQ.

pub mod gicv3;
pub mod pl011;
pub mod timer;
pub mod virtio_probe;

use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::registers::DAIF;
use tock_registers::interfaces::ReadWriteable;

use crate::dt::platform::Platform;

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Bring up the interrupt controller, the console UART (with receive interrupts) and the
/// timer, as described by the platform. Later calls do nothing.
pub fn init(platform: &Platform) {
    if INITIALISED.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::logger::init();

    let gic_ready = match &platform.gic {
        Some(gic) if gic.version == 3 => {
            let redistributor_len = (gic.redistributor.end - gic.redistributor.start) as usize;
            // Safety: both windows come from the GIC node of the device tree and are
            // identity-mapped as device memory by the boot code before `init`; IRQs are
            // still masked and this is the boot CPU.
            match unsafe {
                gicv3::init(
                    gic.distributor.start as usize,
                    gic.redistributor.start as usize,
                    redistributor_len,
                )
            } {
                Ok(()) => true,
                Err(e) => {
                    log::error!("GICv3: {e}; interrupts stay off");
                    false
                }
            }
        }
        Some(gic) => {
            log::error!(
                "GICv{} is not supported (GICv3 only); interrupts stay off",
                gic.version
            );
            false
        }
        None => {
            log::error!("no interrupt controller in the device tree; interrupts stay off");
            false
        }
    };

    match &platform.uart {
        Some(uart) => {
            let clock = uart.clock_hz.unwrap_or(pl011::DEFAULT_UARTCLK_HZ);
            crate::console::init_uart(
                uart.base as usize,
                clock,
                gic_ready.then_some(uart.intid).flatten(),
            );
        }
        None => log::warn!("no PL011 in the device tree; console stays on the early UART"),
    }

    if gic_ready {
        let intid = platform
            .timer
            .as_ref()
            .map_or(timer::DEFAULT_VIRT_TIMER_INTID, |t| t.virt_intid);
        if let Err(e) = timer::init(intid) {
            log::error!("timer tick on INTID {intid}: {e:?}");
        }
        // Everything that can interrupt now has a handler: let IRQs in.
        DAIF.modify(DAIF::I::Unmasked);
    }
}

/// IRQ entry point for the exception vectors.
pub fn handle_irq() {
    gicv3::handle_irq();
}

pub use gicv3::register_handler;
