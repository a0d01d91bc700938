//! `log` backend: kernel-log lines on the console, stamped with the uptime.
//!
//! Theory of operation: one static logger writes `[    1.234567] LEVEL target: message`
//! through the console, so it inherits the console's properties: usable before the drivers
//! are up (early UART), and from IRQ or fault context (try-lock, never waits). The
//! timestamp is the generic timer's counter, which runs from reset and needs no interrupt.
//! The level filter is `log`'s global maximum, so disabled levels cost one comparison at
//! the call site; it starts at Info and can be changed at run time.

use core::time::Duration;

use log::{LevelFilter, Log, Metadata, Record};

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

/// The level in force when nothing has set one.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::Info;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let up: Duration = crate::driver::timer::uptime();
        crate::println!(
            "[{:>5}.{:06}] {:<5} {}: {}",
            up.as_secs(),
            up.subsec_micros(),
            record.level(),
            record.target(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Install the logger (idempotent) at [`DEFAULT_LEVEL`] unless a level was already set.
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(DEFAULT_LEVEL);
    }
}

/// Change the level at run time.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// The level in force.
pub fn level() -> LevelFilter {
    log::max_level()
}
