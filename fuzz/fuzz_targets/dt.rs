//! libFuzzer target: any bytes through the device-tree entry point and every reader of the
//! tree (`monolith::fuzz::exercise`). A panic anywhere is a crash libFuzzer reports.
//!
//! Each input's thread CPU time is measured (CPU time, not wall time, so a busy machine
//! does not make inputs look slow); whenever an input is the slowest so far, one line
//! `monolith-fuzz: slowest input N us (L bytes)` goes to stderr, which `cargo xtask fuzz`
//! reads back for its "slowest input" figure.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

static SLOWEST_NS: AtomicU64 = AtomicU64::new(0);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let start = cpu_time::ThreadTime::now();
    monolith::fuzz::exercise(data);
    let spent = start.elapsed().as_nanos() as u64;
    if spent > SLOWEST_NS.fetch_max(spent, Ordering::Relaxed) {
        eprintln!(
            "monolith-fuzz: slowest input {} us ({} bytes)",
            spent / 1000,
            data.len()
        );
    }
});
