//! From the first Rust instruction to `kernel_init`.
//!
//! # Theory of operation
//!
//! This is the one place that starts things: every lower layer (drivers, console, logger,
//! MMU, exceptions) only offers its pieces, and [`runtime_init`] calls them in dependency
//! order:
//! 1. exception vectors, so any fault from here on is reported rather than a silent hang;
//! 2. the kernel heap, which the device-tree parser and the page tables allocate from;
//! 3. the platform description from the device tree, kept for the whole run ([`platform`]);
//! 4. the reserved-memory plan (`kmem::prepare`), so `no-map` carveouts stay unmapped;
//!    then the MMU: identity map built from that description, caches on;
//! 5. the devices ([`start_devices`]): the logger (so every later step can report), the
//!    interrupt controller (so handlers can be registered), the console UART with receive
//!    interrupts, the periodic timer tick, and finally IRQs are unmasked;
//! 6. the kernel memory service (`kmem::init`): zone, CMA areas, movable clients; then
//!    the DMA service on top of it (`dma_service::init`: heaps, atomic pool), and the PASR
//!    service (`pasr_service::init`: the DRAM controller model, on boards that have one);
//! 7. `kernel_init`, provided by the binary: the firmware or an in-QEMU test image.
//!
//! A step that cannot complete prints `FATAL: ...` and stops through
//! [`crate::panic::stop_failure`]: semihosting exit with failure in test builds (QEMU
//! exits 1), PSCI SYSTEM_OFF otherwise. The assembly entry that calls [`runtime_init`] is
//! this module's architecture half (`_arch/aarch64/boot.rs`).

#[path = "_arch/aarch64/boot.rs"]
mod boot;

use crate::dt::platform::Platform;
use crate::panic::fatal;

extern "Rust" {
    /// Provided by the binary: the firmware's `main.rs`, or each in-QEMU test image.
    fn kernel_init() -> !;
}

/// The platform description, once the device tree has been read (always, for anything
/// running from `kernel_init` on). The boot tree in [`crate::dtb`] is its only home.
pub fn try_platform() -> Option<&'static Platform> {
    crate::dtb::platform()
}

/// The platform description. Everything from `kernel_init` on may rely on it; calling it
/// earlier is a boot-order bug and stops the machine with a message.
pub fn platform() -> &'static Platform {
    match try_platform() {
        Some(platform) => platform,
        None => fatal(format_args!(
            "platform() called before the device tree was read"
        )),
    }
}

/// # Safety
/// Called once by the architectural boot code, on the boot stack, BSS zeroed.
pub unsafe fn runtime_init(dtb_from_x0: usize) -> ! {
    crate::exception::init();
    // Safety: first and only call, before any allocation.
    unsafe { crate::heap::init() };

    let platform = match crate::dtb::boot_platform(dtb_from_x0) {
        Ok(platform) => platform,
        Err(err) => fatal(format_args!("device tree: {err}")),
    };

    // The reserved-memory plan comes before the MMU: `no-map` carveouts stay out of the
    // identity map.
    let reserved = crate::kmem::prepare(platform);
    if let Err(err) = crate::memory::mmu::init_excluding(platform, &reserved.not_mapped()) {
        fatal(format_args!("MMU: {err}"));
    }
    start_devices(platform);
    // A zone that cannot be built leaves the firmware running without a page allocator
    // (the kmem API then answers "not initialised"); the console still works to say why.
    if let Err(err) = crate::kmem::init(platform) {
        crate::println!("kmem: {err}");
    }
    // DMA heaps, dma-bufs and the atomic pool sit on kmem.
    if let Err(err) = crate::dma_service::init(platform) {
        crate::println!("dma: {err}");
    }
    // The DRAM controller model, when the board describes its banks.
    crate::pasr_service::init();

    // Safety: `kernel_init` is defined exactly once by the binary linked with us.
    unsafe { kernel_init() }
}

/// Step 5: the devices `platform.mmio` describes, which the MMU now maps. A device missing
/// from the tree, or one that fails to come up, is logged and skipped: the console keeps
/// working in polled mode, which is enough to read the error.
fn start_devices(platform: &Platform) {
    crate::logger::init();
    let gic_ready = crate::driver::init_interrupt_controller(platform);
    match &platform.uart {
        Some(uart) => {
            let clock = uart
                .clock_hz
                .unwrap_or(crate::driver::pl011::DEFAULT_UARTCLK_HZ);
            crate::console::init_uart(
                uart.base as usize,
                clock,
                gic_ready.then_some(uart.intid).flatten(),
            );
        }
        None => log::warn!("no PL011 in the device tree; console stays on the early UART"),
    }
    if gic_ready {
        crate::driver::start_tick(platform);
        // Everything that can interrupt now has a handler: let IRQs in.
        crate::cpu::enable_irqs();
    }
}
