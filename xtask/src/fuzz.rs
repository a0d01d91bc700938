//! `cargo xtask fuzz [--target dt|video] [--seconds N] [--jobs N]`: a coverage-guided fuzz
//! target; `dt` (the default) is the device tree, `video` the vhost-user video device's
//! protocol core (`qemu/video-device/fuzz`, seeds in its `seeds/`).
//!
//! Theory of operation
//! -------------------
//! `fuzz/` is a libFuzzer target (`libfuzzer-sys`) that runs every input through the one
//! device-tree entry point and every reader of the tree (`monolith::fuzz::exercise`). It
//! is built with the stable compiler's sanitizer-coverage pass (`-Cpasses=sancov-module`
//! plus the `-sanitizer-coverage-*` LLVM options cargo-fuzz uses, for an explicit
//! `--target` so build scripts stay uninstrumented), so no nightly toolchain and no
//! cargo-fuzz install are needed.
//!
//! Seeds ([`write_seeds`]): every `.dtb` under `src/dt/testdata/` (QEMU's own tree, the
//! board-shaped reserved-memory fixtures, the legal variants) and every board's generated
//! DTB, each also as a version-16 copy. libFuzzer keeps what it learns in
//! `target/fuzz/corpus/dt`, so later runs start where earlier ones stopped.
//!
//! The verdict: libFuzzer's exit status (a panic is a crash, saved under
//! `target/fuzz/artifacts/`), the number of inputs it ran (its `Done N runs` line, summed
//! over jobs), and the slowest input by thread CPU time, which the target reports on
//! stderr. CPU time still grows when the other core thrashes the shared caches, so an
//! input over the limit is saved by the target and replayed afterwards, alone, a few
//! times: its figure is the fastest replay, and only an input that is slow every time
//! fails the run. `cargo xtask test` runs a short bounded pass of the same
//! ([`bounded_pass`]).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::board::{self, MachineConfig};
use crate::paths;
use crate::setup::{self, Tools};

/// Which fuzz target.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// The device tree (`fuzz/`).
    #[default]
    Dt,
    /// The video device's protocol core (`qemu/video-device/fuzz/`).
    Video,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Dt => "dt",
            Target::Video => "video",
        }
    }

    fn fuzz_dir(self) -> PathBuf {
        match self {
            Target::Dt => paths::repo_root().join("fuzz"),
            Target::Video => paths::repo_root().join("qemu/video-device/fuzz"),
        }
    }
}

/// `cargo xtask fuzz [--target dt|video] [--seconds N] [--jobs N]`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(args_override_self = true)]
pub struct Args {
    /// The fuzz target
    #[arg(long, value_enum, default_value_t = Target::Dt)]
    pub target: Target,
    /// How long to fuzz, in seconds (per job)
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Parallel fuzzing processes sharing the corpus
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
}

/// The slowest input may take at most this much CPU time (the goal: 10 ms).
pub const SLOWEST_INPUT_LIMIT_US: u64 = 10_000;
/// Inputs are kept at most this long: a device tree bigger than 64 KiB finds no new paths
/// (the fixtures are 8 KiB), and longer inputs only slow the search down.
const MAX_LEN: usize = 65_536;
/// The pass `cargo xtask test` runs.
pub const TEST_PASS_SECONDS: u64 = 30;

/// Replays of each input that ran over the limit while fuzzing.
const SLOW_REPLAYS: u32 = 5;

/// What a fuzzing run found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Inputs run, over all jobs.
    pub runs: u64,
    /// CPU time of the slowest input, in microseconds: while fuzzing, or for an input
    /// that went over the limit then, its fastest replay alone.
    pub slowest_us: u64,
    /// Inputs over the limit while fuzzing (each replayed).
    pub slow_while_fuzzing: u32,
    /// Did libFuzzer stop on a crash (panic) or a timeout?
    pub crashed: bool,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.crashed && self.runs > 0 && self.slowest_us <= SLOWEST_INPUT_LIMIT_US
    }

    pub fn summary(&self) -> String {
        format!(
            "{} inputs, slowest {} us (limit {} us; {} over it while fuzzing, replayed), {}",
            self.runs,
            self.slowest_us,
            SLOWEST_INPUT_LIMIT_US,
            self.slow_while_fuzzing,
            if self.crashed { "CRASHED" } else { "no panic" }
        )
    }
}

pub fn verb(args: &Args) -> Result<ExitCode> {
    let tools = setup::ensure()?;
    let report = run(&tools, args.target, args.seconds, args.jobs)?;
    println!("fuzz {}: {}", args.target.name(), report.summary());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The short pass of `cargo xtask test`: one job, [`TEST_PASS_SECONDS`].
pub fn bounded_pass(tools: &Tools) -> Result<Report> {
    run(tools, Target::Dt, TEST_PASS_SECONDS, 1)
}

fn work_dir() -> PathBuf {
    paths::host_target_dir().join("fuzz")
}

/// The coverage instrumentation libFuzzer needs, as cargo-fuzz passes it.
const SANCOV_FLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
];
const HOST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// Build the fuzz target; returns the binary.
fn build_target(target: Target) -> Result<PathBuf> {
    // Each target its own build directory: their crate graphs share nothing worth a lock.
    let target_dir = work_dir().join(match target {
        Target::Dt => "build",
        Target::Video => "build-video",
    });
    let name = target.name();
    println!("fuzz: building the {name} target (sanitizer coverage) ...");
    let status = Command::new(setup::host_cargo())
        .args(["build", "--release", "--bin", name, "--target", HOST_TRIPLE])
        .arg("--manifest-path")
        .arg(target.fuzz_dir().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", SANCOV_FLAGS.join(" "))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .status()
        .context("starting cargo for the fuzz target")?;
    if !status.success() {
        bail!("building the fuzz target failed ({status})");
    }
    Ok(target_dir.join(HOST_TRIPLE).join("release").join(name))
}

/// The video target's seeds: the files committed under `qemu/video-device/fuzz/seeds/`.
fn write_video_seeds(dir: &Path) -> Result<usize> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let source = Target::Video.fuzz_dir().join("seeds");
    let mut count = 0;
    for entry in
        std::fs::read_dir(&source).with_context(|| format!("reading {}", source.display()))?
    {
        let path = entry?.path();
        if let Some(name) = path.file_name().filter(|_| path.is_file()) {
            std::fs::copy(&path, dir.join(name))
                .with_context(|| format!("copying {}", path.display()))?;
            count += 1;
        }
    }
    Ok(count)
}

/// Every seed, fresh: test fixtures and board DTBs, and a version-16 copy of each.
fn write_seeds(tools: &Tools, dir: &Path) -> Result<usize> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut sources: Vec<PathBuf> = Vec::new();
    collect_dtbs(&paths::repo_root().join("src/dt/testdata"), &mut sources)?;
    for name in board::available_boards() {
        let config = MachineConfig::new(board::load_board(&name)?, None, None)?;
        if let Some(dtb) = config.device_tree(tools)? {
            sources.push(dtb);
        }
    }
    let mut count = 0;
    for (index, source) in sources.iter().enumerate() {
        let blob =
            std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
        let stem = source
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("seed");
        let seed = dir.join(format!("{index:02}-{stem}.dtb"));
        std::fs::write(&seed, &blob).with_context(|| format!("writing {}", seed.display()))?;
        count += 1;
        if blob.len() <= MAX_LEN {
            let v16 = dir.join(format!("{index:02}-{stem}.v16.dtb"));
            let status = Command::new(&tools.dtc)
                .args(["-q", "-I", "dtb", "-O", "dtb", "-V", "16", "-o"])
                .arg(&v16)
                .arg(&seed)
                .stdin(Stdio::null())
                .status()
                .context("starting dtc")?;
            if status.success() {
                count += 1;
            }
        }
    }
    Ok(count)
}

fn collect_dtbs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_dtbs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "dtb") {
            out.push(path);
        }
    }
    Ok(())
}

/// Fuzz `target` for `seconds` with `jobs` processes; the report of the whole run.
pub fn run(tools: &Tools, target: Target, seconds: u64, jobs: u32) -> Result<Report> {
    let binary = build_target(target)?;
    let work = match target {
        Target::Dt => work_dir(),
        Target::Video => work_dir().join("video"),
    };
    let seeds = work.join("seeds");
    let corpus = work.join("corpus").join(target.name());
    let artifacts = work.join("artifacts");
    let slow = work.join("slow");
    let _ = std::fs::remove_dir_all(&slow);
    for dir in [&corpus, &artifacts, &slow] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let seed_count = match target {
        Target::Dt => write_seeds(tools, &seeds)?,
        Target::Video => write_video_seeds(&seeds)?,
    };
    println!(
        "fuzz: {seed_count} seeds, corpus {}, {jobs} job(s) x {seconds} s",
        corpus.display()
    );
    let started = Instant::now();
    let children: Vec<_> = (0..jobs)
        .map(|job| {
            let log = work.join(format!("job-{job}.log"));
            let file = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let child = Command::new(&binary)
                .arg(&corpus)
                .arg(&seeds)
                .arg(format!("-max_total_time={seconds}"))
                .arg(format!("-max_len={MAX_LEN}"))
                .arg("-timeout=2")
                .arg("-rss_limit_mb=1024")
                .arg("-print_final_stats=1")
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .arg(format!("-seed={}", 1 + job))
                .env("MONOLITH_FUZZ_SLOW_US", SLOWEST_INPUT_LIMIT_US.to_string())
                .env("MONOLITH_FUZZ_SLOW_DIR", &slow)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            Ok((child, log))
        })
        .collect::<Result<_>>()?;
    let mut report = Report::default();
    let mut fuzzing_slowest = 0;
    for (mut child, log) in children {
        let status = child.wait().context("waiting for the fuzzer")?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let job = parse_log(&text);
        report.runs += job.runs;
        // Inputs over the limit are judged by their replays below.
        fuzzing_slowest = fuzzing_slowest.max(slowest_within_limit(&text));
        if !status.success() || job.crashed {
            report.crashed = true;
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            println!("fuzz: job failed ({status}); the end of {}:", log.display());
            for line in tail.iter().rev() {
                println!("  {line}");
            }
        }
    }
    println!(
        "fuzz: {} inputs in {:.0} s",
        report.runs,
        started.elapsed().as_secs_f64()
    );
    let mut slow_inputs: Vec<PathBuf> = std::fs::read_dir(&slow)
        .with_context(|| format!("reading {}", slow.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    slow_inputs.sort();
    report.slow_while_fuzzing = slow_inputs.len() as u32;
    report.slowest_us = fuzzing_slowest;
    for input in &slow_inputs {
        let fastest = replay(&binary, input)?;
        println!(
            "fuzz: {} was over {SLOWEST_INPUT_LIMIT_US} us while fuzzing; alone, its fastest of {SLOW_REPLAYS} runs took {fastest} us",
            input.display()
        );
        report.slowest_us = report.slowest_us.max(fastest);
    }
    Ok(report)
}

/// The fastest of [`SLOW_REPLAYS`] runs of one input, alone, in microseconds of CPU time.
fn replay(binary: &Path, input: &Path) -> Result<u64> {
    let output = Command::new(binary)
        .arg(input)
        .arg(format!("-runs={SLOW_REPLAYS}"))
        .env("MONOLITH_FUZZ_REPLAY", "1")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("replaying {}", input.display()))?;
    let text = String::from_utf8_lossy(&output.stderr);
    fastest_replay(&text).with_context(|| format!("no timing in the replay of {}", input.display()))
}

/// The slowest input of a job's log that stayed within [`SLOWEST_INPUT_LIMIT_US`].
pub fn slowest_within_limit(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.strip_prefix("monolith-fuzz: slowest input "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|&us| us <= SLOWEST_INPUT_LIMIT_US)
        .max()
        .unwrap_or(0)
}

/// The smallest `monolith-fuzz: input N us` of a replay's output.
pub fn fastest_replay(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix("monolith-fuzz: input "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .min()
}

/// One job's log: its `Done N runs` line, the target's slowest-input lines, a crash.
pub fn parse_log(text: &str) -> Report {
    let mut report = Report::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Done ") {
            if let Some(runs) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                report.runs = runs;
            }
        } else if let Some(rest) = line.strip_prefix("monolith-fuzz: slowest input ") {
            if let Some(us) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                report.slowest_us = report.slowest_us.max(us);
            }
        } else if line.contains("==ERROR: libFuzzer")
            || line.contains("deadly signal")
            || line.starts_with("==") && line.contains("ERROR")
            || line.contains("panicked at")
        {
            report.crashed = true;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "INFO: Seed: 1\n\
        monolith-fuzz: slowest input 120 us (8095 bytes)\n\
        #2 INITED cov: 10\n\
        monolith-fuzz: slowest input 4706 us (12555 bytes)\n\
        #64734 DONE cov: 1649 ft: 4352\n\
        Done 64734 runs in 21 second(s)\n";

    #[test]
    fn a_clean_log_gives_runs_and_the_slowest_input() {
        let report = parse_log(CLEAN);
        assert_eq!(
            report,
            Report {
                runs: 64734,
                slowest_us: 4706,
                slow_while_fuzzing: 0,
                crashed: false
            }
        );
        assert!(report.passed());
    }

    #[test]
    fn a_panic_or_a_slow_input_or_no_runs_fails() {
        let panicked = format!(
            "{CLEAN}thread '<unnamed>' panicked at src/dt/tree/blob.rs:1:1:\n==1== ERROR: libFuzzer: deadly signal\n"
        );
        assert!(parse_log(&panicked).crashed);
        assert!(!parse_log(&panicked).passed());
        let slow = CLEAN.replace("4706 us", "10001 us");
        assert!(!parse_log(&slow).passed());
        assert!(
            !parse_log("INFO: Seed: 1\n").passed(),
            "no runs is not a pass"
        );
    }

    #[test]
    fn target_defaults_to_dt_and_takes_video() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |line: &str| {
            <Cli as clap::Parser>::try_parse_from(
                std::iter::once("fuzz").chain(line.split_whitespace()),
            )
            .map(|c| c.args)
        };
        assert_eq!(parse("").unwrap().target, Target::Dt);
        let video = parse("--target video --seconds 5").unwrap();
        assert_eq!((video.target, video.seconds), (Target::Video, 5));
        assert!(parse("--target gpu").is_err());
        assert_eq!(Target::Video.fuzz_dir().file_name().unwrap(), "fuzz");
    }

    #[test]
    fn a_replay_counts_its_fastest_run() {
        let text = "Running: slow-1-0\nmonolith-fuzz: input 11671 us\n\
            monolith-fuzz: slowest input 11671 us (8286 bytes)\n\
            monolith-fuzz: input 2301 us\nmonolith-fuzz: input 2290 us\n";
        assert_eq!(fastest_replay(text), Some(2290));
        assert_eq!(slowest_within_limit(text), 0, "11671 us is over the limit");
        assert_eq!(slowest_within_limit(CLEAN), 4706);
        assert_eq!(fastest_replay("Running: x\n"), None);
    }
}
