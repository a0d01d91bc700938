//! `cargo xtask bench`: print the project's performance figures.
//!
//! Theory of operation
//! -------------------
//! Benchmarks are a list of [`Bench`]es in two sections: host benchmarks (criterion benches
//! under `benches/`, run with rustup's cargo, each listed only while its file exists) and
//! in-guest benchmarks: the `tests/bench_*.rs` images, booted under `-icount
//! shift=0,sleep=off` so guest time counts instructions and every figure repeats exactly
//! from run to run; their serial output is the report). After them two sections that
//! boot the firmware themselves: the video pipeline ([`VIDEO_SECTION`]) and PASR
//! ([`PASR_SECTION`], which also reads the `bench_pasr` image's vacating row back). An
//! empty section says `(none yet)`. A benchmark that fails to run makes the verb fail, so
//! a broken benchmark is not mistaken for a missing one.
//!
//! `cargo xtask bench FILTER` runs only the benchmarks whose names contain FILTER: host
//! benches by [`Bench::name`], images by name (`bench_cma`, ...), the two sections by
//! theirs. A filter that matches nothing is an error listing every name.

use std::collections::HashMap;
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

/// The video pipeline's section, by name (for the filter).
pub const VIDEO_SECTION: &str = "bench_video";
/// The PASR section, by name: the same as its image's, so one filter selects both.
pub const PASR_SECTION: &str = "bench_pasr";

/// `cargo xtask bench [FILTER]`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Substring that the names of the benchmarks to run must contain (host benches such as
    /// `buddy`, images such as `bench_pasr`, the sections `bench_video` and `bench_pasr`)
    pub filter: Option<String>,
}

/// Whether a benchmark named `name` runs under `filter`.
fn wanted(filter: Option<&str>, name: &str) -> bool {
    filter.is_none_or(|f| name.contains(f))
}

/// Every benchmark name `cargo xtask bench` knows: the present host benches, the images
/// (from `tests/bench_*.rs`, whether built yet or not) and the two sections.
fn all_names() -> Vec<String> {
    let mut names: Vec<String> = present(HOST_BENCHES)
        .iter()
        .map(|b| b.name.to_string())
        .collect();
    names.extend(guest_bench_names(&build::test_sources()));
    names.extend([VIDEO_SECTION.to_string(), PASR_SECTION.to_string()]);
    names.sort();
    names.dedup();
    names
}

/// The image names of the benchmark sources among `sources` (`tests/bench_*.rs`).
fn guest_bench_names(sources: &[std::path::PathBuf]) -> Vec<String> {
    sources
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .filter(|name| name.starts_with(BENCH_IMAGE_PREFIX))
        .collect()
}

/// The names of `names` that run under `filter`; an error naming every one when none does.
fn select(names: &[String], filter: Option<&str>) -> Result<Vec<String>> {
    let chosen: Vec<String> = names
        .iter()
        .filter(|n| wanted(filter, n))
        .cloned()
        .collect();
    if chosen.is_empty() {
        bail!(
            "no benchmark name contains `{}`; the names are: {}",
            filter.unwrap_or(""),
            names.join(", ")
        );
    }
    Ok(chosen)
}

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

/// `cargo xtask bench [FILTER]`: every benchmark section (or those FILTER selects); fails if
/// any benchmark failed.
pub fn verb(args: &Args) -> Result<ExitCode> {
    let filter = args.filter.as_deref();
    let chosen = select(&all_names(), filter)?;
    let wanted = |name: &str| chosen.iter().any(|c| c == name);
    let mut failures: Vec<String> = Vec::new();
    let host: Vec<&Bench> = present(HOST_BENCHES)
        .into_iter()
        .filter(|b| wanted(b.name))
        .collect();
    if filter.is_none() || !host.is_empty() {
        println!("== host benchmarks");
        if host.is_empty() {
            println!("(none yet)");
        }
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
            failures.push(bench.name.to_string());
        }
    }
    let guest_wanted = guest_bench_names(&build::test_sources())
        .iter()
        .any(|name| wanted(name));
    let (video, pasr) = (wanted(VIDEO_SECTION), wanted(PASR_SECTION));
    if !guest_wanted && !video && !pasr {
        return finish(&failures);
    }
    let tools = setup::ensure()?;
    // Image name -> its serial output, for the sections that read an image's figures.
    let mut outputs: HashMap<String, String> = HashMap::new();
    if filter.is_none() || guest_wanted {
        println!("\n== in-guest benchmarks (tests/{BENCH_IMAGE_PREFIX}*.rs under -icount shift=0)");
        let images: Vec<TestImage> = build::test_images(&tools, Profile::Release, |name| {
            name.starts_with(BENCH_IMAGE_PREFIX) && wanted(name)
        })?
        .into_iter()
        .filter(|image| image.is_benchmark() && wanted(&image.name))
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
                failures.push(image.name.clone());
            }
            outputs.insert(image.name.clone(), captured.output);
        }
    }
    if video {
        if let Err(e) = crate::bench_video::run(&tools) {
            println!("video pipeline: {e:#}");
            failures.push("video pipeline".into());
        }
    }
    if pasr {
        let image = outputs.get(PASR_SECTION).map(String::as_str);
        if let Err(e) = crate::bench_pasr::run(&tools, image) {
            println!("PASR: {e:#}");
            failures.push("PASR".into());
        }
    }
    finish(&failures)
}

fn finish(failures: &[String]) -> Result<ExitCode> {
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("benchmarks failed: {}", failures.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_filter_keeps_names_that_contain_it() {
        let all = names(&["bench_cma", "bench_pasr", "bench_video", "buddy", "cma_fit"]);
        assert_eq!(select(&all, None).unwrap(), all);
        assert_eq!(
            select(&all, Some("bench_pasr")).unwrap(),
            names(&["bench_pasr"])
        );
        assert_eq!(
            select(&all, Some("cma")).unwrap(),
            names(&["bench_cma", "cma_fit"])
        );
        let none = select(&all, Some("gpu")).unwrap_err().to_string();
        assert!(none.contains("`gpu`"), "{none}");
        assert!(none.contains("bench_cma, bench_pasr"), "{none}");
    }

    #[test]
    fn guest_benchmarks_are_the_bench_sources() {
        let sources = [
            PathBuf::from("/r/tests/bench_pasr.rs"),
            PathBuf::from("/r/tests/dma.rs"),
            PathBuf::from("/r/tests/profile_cma.rs"),
            PathBuf::from("/r/tests/bench_boot_1g.rs"),
        ];
        assert_eq!(
            guest_bench_names(&sources),
            names(&["bench_pasr", "bench_boot_1g"])
        );
    }

    #[test]
    fn every_known_name_is_listed_once() {
        let all = all_names();
        for name in ["bench_pasr", VIDEO_SECTION, PASR_SECTION] {
            assert_eq!(all.iter().filter(|n| *n == name).count(), 1, "{all:?}");
        }
    }
}
