//! Console: `print!`/`println!` and byte input over the PL011.
//!
//! Theory of operation: output is polled and works from the first instruction: until
//! [`init_uart`] runs, bytes go to the PL011 QEMU `virt` always has
//! ([`crate::bsp::EARLY_UART_BASE`]); afterwards to the UART the device tree names. A flag
//! serialises whole `print!` calls so lines from thread context do not interleave, but it
//! is only ever *tried*: a writer that finds it held (an IRQ handler or a fault dump that
//! interrupted a print) writes anyway rather than waiting for a holder that cannot run
//! again until it returns. Output can then interleave; it can never deadlock.
//!
//! Input is interrupt driven once the GIC is up (bytes collected by the PL011 RX handler
//! into a ring, [`read_byte`] takes from it), and polled from the FIFO before that.
//! [`wait_byte`] sleeps in WFI between bytes, checking the ring with IRQs masked so a byte
//! arriving between the check and the WFI still wakes it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::driver::pl011::{ByteRing, Pl011};

static UART_BASE: AtomicUsize = AtomicUsize::new(crate::bsp::EARLY_UART_BASE);
static RX_RING: ByteRing = ByteRing::new();
static RX_BY_IRQ: AtomicBool = AtomicBool::new(false);
static WRITING: AtomicBool = AtomicBool::new(false);

fn uart() -> Pl011 {
    // Safety: UART_BASE holds either the PL011 every QEMU `virt` has at a fixed address, or
    // the device tree's PL011 that the boot code identity-maps before `init_uart`.
    unsafe { Pl011::new(UART_BASE.load(Ordering::Acquire)) }
}

/// Switch the console to the device tree's PL011, program it, and (with `rx_intid`) take
/// input by interrupt. Called once by the runtime, after the interrupt controller is up.
pub fn init_uart(base: usize, uartclk_hz: u32, rx_intid: Option<u32>) {
    UART_BASE.store(base, Ordering::Release);
    let uart = uart();
    uart.init(uartclk_hz);
    if let Some(intid) = rx_intid {
        match crate::driver::register_handler(intid, on_rx_irq) {
            Ok(()) => RX_BY_IRQ.store(true, Ordering::Release),
            Err(e) => log::error!("console RX interrupt {intid}: {e:?}; input is polled"),
        }
    }
}

fn on_rx_irq() {
    uart().drain_rx(&RX_RING);
}

struct UartWriter;

impl Write for UartWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let uart = uart();
        for b in s.bytes() {
            if b == b'\n' {
                uart.write_byte(b'\r');
            }
            uart.write_byte(b);
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let owner = WRITING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_ok();
    let _ = UartWriter.write_fmt(args);
    if owner {
        WRITING.store(false, Ordering::Release);
    }
}

/// Raw bytes to the console (no newline translation): for echoing input byte by byte.
pub fn write_bytes(bytes: &[u8]) {
    let uart = uart();
    for &b in bytes {
        uart.write_byte(b);
    }
}

/// A received byte, if one is waiting. Never blocks.
pub fn read_byte() -> Option<u8> {
    if RX_BY_IRQ.load(Ordering::Acquire) {
        RX_RING.pop()
    } else {
        uart().try_read_byte()
    }
}

/// The next received byte, sleeping (WFI) until one arrives. With IRQs masked or receive
/// interrupts unavailable it polls instead.
pub fn wait_byte() -> u8 {
    loop {
        if let Some(b) = wait_byte_until(None) {
            return b;
        }
    }
}

/// The next received byte, or `None` once `timeout` has passed without one. Sleeps like
/// [`wait_byte`]; the timer tick wakes it, so the timeout is kept to a tick.
pub fn wait_byte_timeout(timeout: core::time::Duration) -> Option<u8> {
    let deadline = crate::driver::timer::uptime().saturating_add(timeout);
    wait_byte_until(Some(deadline))
}

/// One wait for a byte: until it arrives, or until `deadline` (uptime) has passed.
fn wait_byte_until(deadline: Option<core::time::Duration>) -> Option<u8> {
    loop {
        if !RX_BY_IRQ.load(Ordering::Acquire) || !crate::cpu::irqs_enabled() {
            // Poll the FIFO too: with IRQs masked the handler cannot fill the ring.
            if let Some(b) = RX_RING.pop().or_else(|| uart().try_read_byte()) {
                return Some(b);
            }
            core::hint::spin_loop();
        } else {
            let saved = crate::cpu::mask_interrupts();
            if let Some(b) = RX_RING.pop() {
                crate::cpu::restore_interrupts(saved);
                return Some(b);
            }
            // WFI wakes on a pending interrupt even while it is masked; unmasking then
            // takes it.
            aarch64_cpu::asm::wfi();
            crate::cpu::restore_interrupts(saved);
        }
        if deadline.is_some_and(|d| crate::driver::timer::uptime() >= d) {
            return None;
        }
    }
}

/// Bytes received but dropped because the ring was full.
pub fn rx_dropped() -> usize {
    RX_RING.dropped()
}

/// Whether input arrives by interrupt (false: polled).
pub fn rx_interrupt_driven() -> bool {
    RX_BY_IRQ.load(Ordering::Acquire)
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ({ $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))); });
}
