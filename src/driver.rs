//! Device drivers: PL011 UART, GICv3, generic timer, virtio-mmio (identification, the
//! hardware half of our virtio layer, the virtio-gpu instance) (hardware layer).
//!
//! Theory of operation: drivers are the bottom of the stack. They know their hardware and
//! the platform description, and call nothing above them (no console, no logger set-up,
//! no runtime): [`crate::runtime`] starts them in dependency order and wires them to
//! their users (the console registers its own receive handler). What this module adds
//! to the individual drivers is the bring-up of the interrupt plumbing as the platform
//! describes it: [`init_interrupt_controller`] and [`start_tick`]. A
//! device missing from the tree, or one that fails to come up, is logged and skipped.
//! [`handle_irq`] is the single entry the exception vectors call for an IRQ.

pub mod gicv3;
pub mod pasr_ctrl;
pub mod pl011;
pub mod slot;
pub mod timer;
pub mod virtio_gpu;
pub mod virtio_mmio;
pub mod virtio_mmio_regs;
pub mod virtio_probe;
pub mod virtio_video;

use crate::dt::platform::Platform;

/// Bring up the platform's interrupt controller (GICv3 only). Returns whether it is
/// ready; if not, the reason is logged and interrupts stay off.
pub fn init_interrupt_controller(platform: &Platform) -> bool {
    match &platform.gic {
        Some(gic) if gic.version == 3 => {
            let redistributor_len = (gic.redistributor.end - gic.redistributor.start) as usize;
            // Safety: both windows come from the GIC node of the device tree and are
            // identity-mapped as device memory by the boot code before this runs; IRQs
            // are still masked and this is the boot CPU.
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
    }
}

/// Start the periodic timer tick on the platform's virtual-timer INTID (the binding's
/// default without a timer node). A failure is logged; uptime works without the tick.
pub fn start_tick(platform: &Platform) {
    let intid = platform
        .timer
        .as_ref()
        .map_or(timer::DEFAULT_VIRT_TIMER_INTID, |t| t.virt_intid);
    if let Err(e) = timer::init(intid) {
        log::error!("timer tick on INTID {intid}: {e:?}");
    }
}

/// IRQ entry point for the exception vectors.
pub fn handle_irq() {
    gicv3::handle_irq();
}

pub use gicv3::register_handler;
