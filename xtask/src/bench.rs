//! `cargo xtask bench`: print the project's performance figures.
//!
//! Theory of operation
//! -------------------
//! Benchmarks are a list of [`Bench`]es in two sections: host benchmarks (criterion benches
//! under `benches/`, run with rustup's cargo, each listed only while its file exists) and
//! in-guest benchmarks (images that print figures from inside QEMU; none yet). An empty
//! section says `(none yet)`. A benchmark that fails to run makes the verb fail, so a
//! broken benchmark is not mistaken for a missing one.

use std::process::{Command, ExitCode, Stdio};

use crate::paths;
use crate::setup;
use crate::Result;

pub struct Bench {
    pub name: &'static str,
    /// A file that must exist for the bench to be listed (relative to the repository root).
    pub source: &'static str,
    pub host_args: &'static [&'static str],
}

pub const HOST_BENCHES: &[Bench] = &[Bench {
    name: "buddy",
    source: "benches/buddy.rs",
    host_args: &["bench", "--bench", "buddy"],
}];

/// In-guest benchmarks: none yet. They will boot an image under `-icount shift=0,sleep=off`
/// (repeatable instruction-count time) and collect the figures it prints.
pub const GUEST_BENCHES: &[Bench] = &[];

fn present(benches: &[Bench]) -> Vec<&Bench> {
    benches
        .iter()
        .filter(|bench| paths::repo_root().join(bench.source).is_file())
        .collect()
}

pub fn bench() -> Result<ExitCode> {
    let mut failures = Vec::new();
    println!("== host benchmarks");
    let host = present(HOST_BENCHES);
    if host.is_empty() {
        println!("(none yet)");
    }
    for bench in host {
        println!("-- {}", bench.name);
        let status = Command::new(setup::host_cargo())
            .args(bench.host_args)
            .current_dir(paths::repo_root())
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot start cargo: {e}"))?;
        if !status.success() {
            failures.push(bench.name);
        }
    }
    println!("\n== in-guest benchmarks");
    let guest = present(GUEST_BENCHES);
    if guest.is_empty() {
        println!("(none yet)");
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("benchmarks failed: {}", failures.join(", ")))
    }
}
