//! The one per-input wrapper of our libFuzzer targets (`/fuzz` and `qemu/video-device/fuzz`).
//!
//! Each input's thread CPU time is measured (CPU time, not wall time, so waiting for the
//! other core does not count). Whenever an input is the slowest so far, one line
//! `monolith-fuzz: slowest input N us (L bytes)` goes to stderr. An input over the limit
//! (`MONOLITH_FUZZ_SLOW_US`) is also written to `MONOLITH_FUZZ_SLOW_DIR`, so that
//! `cargo xtask fuzz` can replay it on a quiet core and tell a slow input from a busy
//! machine. With `MONOLITH_FUZZ_REPLAY` set, every run prints `monolith-fuzz: input N us`.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SLOWEST_NS: AtomicU64 = AtomicU64::new(0);
static SLOW_SAVED: AtomicU64 = AtomicU64::new(0);
/// Slow inputs saved per process: a handful is enough to replay, a flood would only fill
/// the disk.
const MAX_SAVED: u64 = 32;

struct Settings {
    slow_ns: u64,
    slow_dir: Option<std::path::PathBuf>,
    replay: bool,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        slow_ns: std::env::var("MONOLITH_FUZZ_SLOW_US")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(u64::MAX, |us| us.saturating_mul(1000)),
        slow_dir: std::env::var_os("MONOLITH_FUZZ_SLOW_DIR").map(Into::into),
        replay: std::env::var_os("MONOLITH_FUZZ_REPLAY").is_some(),
    })
}

/// Runs `exercise` on `data`, timed and reported as the module header says.
pub fn measured(data: &[u8], exercise: impl FnOnce(&[u8])) {
    let settings = settings();
    let start = cpu_time::ThreadTime::now();
    exercise(data);
    let spent = start.elapsed().as_nanos() as u64;
    if settings.replay {
        eprintln!("monolith-fuzz: input {} us", spent / 1000);
    }
    if spent > SLOWEST_NS.fetch_max(spent, Ordering::Relaxed) {
        eprintln!(
            "monolith-fuzz: slowest input {} us ({} bytes)",
            spent / 1000,
            data.len()
        );
    }
    if spent > settings.slow_ns {
        if let Some(dir) = &settings.slow_dir {
            let n = SLOW_SAVED.fetch_add(1, Ordering::Relaxed);
            if n < MAX_SAVED {
                let path = dir.join(format!("slow-{}-{n}", std::process::id()));
                let _ = std::fs::write(path, data);
            }
        }
    }
}
