//! `cargo xtask bench`: print the project's performance figures.
//!
//! Theory of operation
//! -------------------
//! Benchmarks are a list of [`Bench`]es in two sections: host benchmarks (criterion benches
//! under `benches/`, run with rustup's cargo, each listed only while its file exists) and
//! in-guest benchmarks: the `tests/bench_*.rs` images, booted under `-icount
//! shift=0,sleep=off` so guest time counts instructions and every figure repeats exactly
//! from run to run; their serial output is the report). An empty
//! section says `(none yet)`. A benchmark that fails to run makes the verb fail, so a
//! broken benchmark is not mistaken for a missing one.

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::build::{self, Profile, TestImage, BENCH_IMAGE_PREFIX};
use crate::paths;
use crate::qemu::{self, Boot};
use crate::setup;
use crate::test_header::qemu_header_options;

pub struct Bench {
    pub name: &'static str,
    /// A file that must exist for the bench to be listed (relative to the repository root).
    pub source: &'static str,
    pub host_args: &'static [&'static str],
}

pub const HOST_BENCHES: &[Bench] = &[
    Bench {
        name: "buddy",
        source: "benches/buddy.rs",
        host_args: &["bench", "--bench", "buddy"],
    },
    Bench {
        name: "cma_fit",
        source: "benches/cma_fit.rs",
        host_args: &["bench", "--bench", "cma_fit"],
    },
];

/// Deterministic guest time: one counter tick per instruction, no sleeping on idle.
const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// A benchmark image may take long: full-memory migration under emulation.
const GUEST_BENCH_TIMEOUT: Duration = Duration::from_secs(1800);

fn present(benches: &[Bench]) -> Vec<&Bench> {
    benches
        .iter()
        .filter(|bench| paths::repo_root().join(bench.source).is_file())
        .collect()
}

/// `cargo xtask bench`: every benchmark section; fails if any benchmark failed.
pub fn verb() -> Result<ExitCode> {
    let mut failures: Vec<&str> = Vec::new();
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
            .context("cannot start cargo")?;
        if !status.success() {
            failures.push(bench.name);
        }
    }
    println!("\n== in-guest benchmarks (tests/{BENCH_IMAGE_PREFIX}*.rs under -icount shift=0)");
    let tools = setup::ensure()?;
    let images: Vec<TestImage> = build::test_images(&tools, Profile::Release)?
        .into_iter()
        .filter(TestImage::is_benchmark)
        .collect();
    if images.is_empty() {
        println!("(none yet)");
    }
    for image in &images {
        println!("-- {}", image.name);
        let source = std::fs::read_to_string(&image.source)
            .with_context(|| format!("reading {}", image.source.display()))?;
        let boot = Boot::resolve(&qemu_header_options(&source)?, &tools)?;
        let launch = boot.launch(&image.executable, qemu::Console::Pipes, true)?;
        let mut command = launch.command;
        let _beside = launch.beside;
        command.args(ICOUNT);
        let captured = qemu::run_captured(&mut command, GUEST_BENCH_TIMEOUT)?;
        println!("{}", captured.output.trim_end());
        if !captured.status.is_some_and(|status| status.success()) {
            println!(
                "({} did not finish cleanly: $ {})",
                image.name,
                qemu::describe(&command)
            );
            failures.push(image.name.as_str());
        }
    }
    if let Err(e) = crate::bench_video::run(&tools) {
        println!("video pipeline: {e:#}");
        failures.push("video pipeline");
    }
    if let Err(e) = crate::bench_pasr::run(&tools) {
        println!("PASR: {e:#}");
        failures.push("PASR");
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("benchmarks failed: {}", failures.join(", "))
    }
}
