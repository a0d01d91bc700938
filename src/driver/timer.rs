//! ARM generic timer: uptime from the virtual counter, a periodic tick from the EL1
//! virtual timer.
//!
//! Theory of operation: CNTVCT_EL0 counts at CNTFRQ_EL0 Hz from machine reset (CNTVOFF is
//! 0: boot.s clears it when entered at EL2), so it is the uptime clock and needs no
//! interrupt. The tick is a separate, optional service: the EL1 virtual timer fires when
//! CNTVCT reaches CNTV_CVAL_EL0, and the handler advances the compare value by one period.
//! Advancing the compare value rather than re-arming relative to "now" keeps the tick rate
//! exact however late the handler runs; after a long stall (a debugger, a masked section)
//! the handler skips ahead instead of firing a burst of catch-up ticks.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0};
use tock_registers::interfaces::{Readable, Writeable};

use super::gicv3;

/// Tick rate.
pub const HZ: u64 = 100;
/// The EL1 virtual timer is PPI 11 in every binding; used when the tree has no timer node.
pub const DEFAULT_VIRT_TIMER_INTID: u32 = 27;

static TICKS: AtomicU64 = AtomicU64::new(0);
static PERIOD: AtomicU64 = AtomicU64::new(0);

/// Counter frequency in Hz (never 0: firmware that leaves CNTFRQ unset gets 62.5 MHz,
/// QEMU's value, rather than a division by zero).
pub fn frequency() -> u64 {
    match CNTFRQ_EL0.get() & 0xffff_ffff {
        0 => 62_500_000,
        hz => hz,
    }
}

/// Current counter value. The ISB keeps the read from being hoisted above earlier code.
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

fn counts_to_duration(counts: u64) -> Duration {
    let hz = u128::from(frequency());
    let nanos = u128::from(counts) * 1_000_000_000 / hz;
    Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    )
}

fn duration_to_counts(duration: Duration) -> u64 {
    let counts = duration.as_nanos() * u128::from(frequency()) / 1_000_000_000;
    counts.min(u128::from(u64::MAX)) as u64
}

/// Time since the counter started (machine reset).
pub fn uptime() -> Duration {
    counts_to_duration(counter())
}

/// Timer ticks taken since [`init`].
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Busy-wait for at least `duration` (works with interrupts masked and before [`init`]).
pub fn spin_for(duration: Duration) {
    let deadline = counter().saturating_add(duration_to_counts(duration));
    while counter() < deadline {
        core::hint::spin_loop();
    }
}

fn on_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    let period = PERIOD.load(Ordering::Relaxed);
    let now = counter();
    let mut next = CNTV_CVAL_EL0.get().wrapping_add(period);
    if next <= now {
        next = now + period;
    }
    // A compare value in the future de-asserts the (level) timer interrupt.
    CNTV_CVAL_EL0.set(next);
}

/// Start the periodic tick on `intid` (the EL1 virtual timer PPI).
pub fn init(intid: u32) -> Result<(), gicv3::RegisterError> {
    let period = frequency() / HZ;
    PERIOD.store(period, Ordering::Relaxed);
    CNTV_CVAL_EL0.set(counter() + period);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    gicv3::register_handler(intid, on_tick)
}
