//! `cargo xtask test`: every test the project has, one total.
//!
//! Theory of operation
//! -------------------
//! Six sections, each under a `== ` header: setup; host unit tests (`cargo test
//! --workspace` with rustup's cargo: the library's unit tests and proptests, xtask's own);
//! clippy over the workspace with warnings as errors; a bounded pass of the device-tree
//! fuzz target ([`crate::fuzz`]); in-QEMU test images (`tests/*.rs` built for bare metal, booted with `-semihosting` so
//! each exits QEMU with its verdict); console tests ([`crate::console_tests`]). Every
//! section adds to one [`Tally`]; whatever could not run (a setup that failed, a build that
//! broke, an image that died before its summary line) counts as one failure, so a broken
//! step can never look like a smaller green run. The last line is `N passed, N failed`
//! alone, and the exit code is non-zero unless nothing failed.
//!
//! QEMU runs go two at a time (the machines have two cores); each run's report is printed
//! whole when it ends, so parallel output never interleaves. A failed image shows its
//! entire serial log; a failed console test shows its transcript.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use regex::Regex;

use anyhow::{anyhow, Context, Result};

use crate::build::{self, Profile, TestImage};
use crate::console_tests::{ConsoleTest, CONSOLE_TESTS};
use crate::expect::Console;
use crate::qemu::{self, Boot};
use crate::run_options::{split_words, RunOptions};
use crate::setup::{self, Tools};
use crate::test_header::{expected_stop, qemu_header_options};

/// `cargo xtask test [--host-only | --qemu-only] [FILTER]`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
#[command(args_override_self = true)]
pub struct Args {
    /// Only the host unit tests
    #[arg(long, conflicts_with = "qemu_only")]
    pub host_only: bool,
    /// Only the in-QEMU test images and the console tests
    #[arg(long)]
    pub qemu_only: bool,
    /// Substring that test names must contain (host tests get it as cargo's filter)
    pub filter: Option<String>,
}

impl Args {
    /// Whether the host unit tests run.
    pub fn host(&self) -> bool {
        !self.qemu_only
    }

    /// Whether the in-QEMU images and console tests run.
    pub fn qemu(&self) -> bool {
        !self.host_only
    }
}

const IMAGE_TIMEOUT: Duration = Duration::from_secs(120);
const PARALLEL_QEMUS: usize = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
    const ONE_FAILURE: Tally = Tally {
        passed: 0,
        failed: 1,
    };
    const ONE_PASS: Tally = Tally {
        passed: 1,
        failed: 0,
    };
}

/// Sum of libtest's `test result: ok. N passed; M failed; ...` lines.
pub fn parse_libtest_results(output: &str) -> Option<Tally> {
    let pattern =
        Regex::new(r"(?m)^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed").ok()?;
    let mut found = None;
    for captures in pattern.captures_iter(output) {
        let tally: &mut Tally = found.get_or_insert_with(Tally::default);
        tally.passed += captures[1].parse::<u64>().unwrap_or(0);
        tally.failed += captures[2].parse::<u64>().unwrap_or(0);
    }
    found
}

/// The last `N passed, N failed` line a test image printed (an optional `word:` may stand
/// before it, and `, N skipped` may follow).
pub fn parse_image_summary(output: &str) -> Option<Tally> {
    let pattern =
        Regex::new(r"(?m)^\s*(?:\w+:\s*)?(\d+) passed, (\d+) failed(?:, \d+ skipped)?\s*$").ok()?;
    pattern.captures_iter(output).last().map(|captures| Tally {
        passed: captures[1].parse().unwrap_or(0),
        failed: captures[2].parse().unwrap_or(1),
    })
}

/// An image's verdict from its output and QEMU's exit. The exit code is the image's own
/// verdict through semihosting; a summary saying 0 failed does not outvote it.
pub fn image_verdict(output: &str, exit_code: Option<i32>) -> Tally {
    let mut tally = parse_image_summary(output).unwrap_or(Tally::ONE_FAILURE);
    if exit_code != Some(0) && tally.failed == 0 {
        tally.failed = 1;
    }
    tally
}

/// The verdict on an image that must stop the machine (see [`expected_stop`]): QEMU exited
/// by itself with a failure status, the output matches `pattern`, and the stop was
/// announced once (a fault loop would repeat it).
pub fn stop_verdict(pattern: &str, output: &str, exit_code: Option<i32>) -> Result<Tally> {
    let regex = regex::Regex::new(pattern).context("`//! xtask-expect-stop:` pattern")?;
    let stops =
        output.matches("*** Unhandled exception").count() + output.matches("FATAL:").count();
    let stopped_with_failure = matches!(exit_code, Some(code) if code != 0);
    Ok(
        if stopped_with_failure && regex.is_match(output) && stops == 1 {
            Tally::ONE_PASS
        } else {
            Tally::ONE_FAILURE
        },
    )
}

fn section(title: &str) {
    println!("\n== {title}");
}

/// Run `job` over `items`, at most `PARALLEL_QEMUS` at once; results in input order.
fn two_at_a_time<T: Sync, R: Send>(items: &[T], job: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_QEMUS.min(items.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(index) else { break };
                let result = job(item);
                if let Ok(mut results) = results.lock() {
                    results[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Clippy with every warning an error, twice: the host build (`cargo clippy --workspace
/// --all-targets`: the library, its tests and benches, xtask) and the bare-metal build
/// ([`build::firmware_clippy`]: the hardware layer, the image, the in-QEMU test images),
/// which the host build never compiles. One test each, so a lint regression turns the
/// run red.
fn clippy(tools: Option<&Tools>) -> Tally {
    section("clippy (host and bare-metal, warnings are errors)");
    let mut host = Command::new(setup::host_cargo());
    host.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])
    .current_dir(crate::paths::repo_root());
    without_xtask_package_vars(&mut host);
    let mut total = lint_run("clippy host", host);
    match tools {
        Some(tools) => total.add(lint_run("clippy firmware", build::firmware_clippy(tools))),
        None => {
            println!("clippy firmware ... FAILED: setup failed");
            total.add(Tally::ONE_FAILURE);
        }
    }
    total
}

fn lint_run(name: &str, mut command: Command) -> Tally {
    command.stdin(Stdio::null());
    println!("{}", qemu::describe(&command));
    match command.status() {
        Ok(status) if status.success() => {
            println!("{name} ... ok");
            Tally {
                passed: 1,
                failed: 0,
            }
        }
        Ok(status) => {
            println!("{name} ... FAILED ({status})");
            Tally::ONE_FAILURE
        }
        Err(e) => {
            println!("{name} ... FAILED: cannot start cargo: {e}");
            Tally::ONE_FAILURE
        }
    }
}

/// Variables `cargo run` set for xtask itself describe xtask, not the crates under test.
fn without_xtask_package_vars(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name);
        }
    }
}

fn host_tests(filter: Option<&str>) -> Tally {
    section("host unit tests (cargo test --workspace)");
    let mut command = Command::new(setup::host_cargo());
    command.args(["test", "--workspace"]);
    if let Some(filter) = filter {
        command.args(["--", filter]);
    }
    without_xtask_package_vars(&mut command);
    command
        .current_dir(crate::paths::repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    println!("{}", qemu::describe(&command));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            println!("FAILED: cannot start cargo: {e}");
            return Tally::ONE_FAILURE;
        }
    };
    let mut output = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            println!("{line}");
            output.push_str(&line);
            output.push('\n');
        }
    }
    let success = child.wait().map(|status| status.success()).unwrap_or(false);
    let mut tally = parse_libtest_results(&output).unwrap_or_default();
    if !success && tally.failed == 0 {
        println!("FAILED: cargo test did not finish cleanly (build error?)");
        tally.failed = 1;
    }
    println!(
        "host tests total: {} passed, {} failed",
        tally.passed, tally.failed
    );
    tally
}

fn run_image(tools: &Tools, image: &TestImage) -> (Tally, String) {
    let attempt = || -> Result<(Tally, String)> {
        let source = std::fs::read_to_string(&image.source)
            .with_context(|| format!("reading {}", image.source.display()))?;
        let options = qemu_header_options(&source)?;
        let boot = Boot::resolve(&options, tools)?;
        let mut launch = boot.launch(&image.executable, qemu::Console::Pipes, true)?;
        let command = &mut launch.command;
        let captured = qemu::run_captured(command, IMAGE_TIMEOUT)?;
        let code = captured.status.and_then(|status| status.code());
        let tally = match expected_stop(&source) {
            Some(pattern) => stop_verdict(&pattern, &captured.output, code)?,
            None => image_verdict(&captured.output, code),
        };
        let mut report = String::new();
        let verdict = match (captured.timed_out(), tally.failed) {
            (true, _) => format!("TIMED OUT after {IMAGE_TIMEOUT:?}"),
            (false, 0) => "ok".to_string(),
            (false, _) => format!("FAILED (QEMU exit {code:?})"),
        };
        report.push_str(&format!(
            "image {} ... {verdict} ({} passed, {} failed)\n",
            image.name, tally.passed, tally.failed
        ));
        if tally.failed > 0 || captured.timed_out() {
            report.push_str(&format!(
                "----- serial log of {} -----\n$ {}\n{}\n----- end of log -----\n",
                image.name,
                qemu::describe(command),
                captured.output.trim_end()
            ));
        }
        let tally = if captured.timed_out() && tally.failed == 0 {
            Tally::ONE_FAILURE
        } else {
            tally
        };
        Ok((tally, report))
    };
    attempt().unwrap_or_else(|message| {
        (
            Tally::ONE_FAILURE,
            format!("image {} ... FAILED: {message:#}\n", image.name),
        )
    })
}

fn qemu_images(tools: &Tools, filter: Option<&str>) -> Tally {
    section("in-QEMU test images (tests/*.rs)");
    let images = match build::test_images(tools, Profile::Release, |name| {
        filter.is_none_or(|f| name.contains(f))
    }) {
        Ok(images) => images,
        Err(message) => {
            println!("FAILED: {message:#}");
            return Tally::ONE_FAILURE;
        }
    };
    let sources = build::test_sources();
    if images.is_empty() {
        let matching = sources.iter().any(|path| {
            path.file_stem()
                .and_then(|stem| stem.to_str())
                .is_some_and(|name| filter.is_none_or(|f| name.contains(f)))
        });
        if !sources.is_empty() && !matching {
            println!("(no in-QEMU test image matches)");
            return Tally::default();
        }
        if sources.is_empty() {
            println!("(no in-QEMU test images yet: tests/ has no .rs file)");
            return Tally::default();
        }
        println!(
            "FAILED: tests/ holds {} file(s) but cargo built no test image: each needs a \
             [[test]] entry with harness = false and required-features = [\"qemu-test\"]",
            sources.len()
        );
        return Tally::ONE_FAILURE;
    }
    let selected: Vec<TestImage> = images
        .into_iter()
        .filter(|image| !image.is_benchmark() && !image.is_profile())
        .filter(|image| filter.is_none_or(|f| image.name.contains(f)))
        .collect();
    println!(
        "{} image(s), {PARALLEL_QEMUS} at a time, {IMAGE_TIMEOUT:?} each",
        selected.len()
    );
    let mut tally = Tally::default();
    for (image_tally, _) in two_at_a_time(&selected, |image| {
        let (image_tally, report) = run_image(tools, image);
        print!("{report}");
        (image_tally, ())
    }) {
        tally.add(image_tally);
    }
    tally
}

fn run_console_test(tools: &Tools, kernel: &Path, test: &ConsoleTest) -> (Tally, String) {
    let attempt = || -> Result<()> {
        let options = RunOptions::from_words(&split_words(test.qemu)?)?;
        let boot = Boot::resolve(&options, tools)?;
        let launch = boot.launch(kernel, qemu::Console::Pipes, false)?;
        let mut command = launch.command;
        let _beside = launch.beside;
        let socket = crate::console_tests::add_qmp(&mut command, test.name)?;
        let shown = qemu::describe(&command);
        let mut console = Console::spawn(command)
            .map_err(|e| anyhow!("{e}"))?
            .with_display(test.name, socket);
        (test.script)(&mut console).map_err(|e| anyhow!("{e}\n(QEMU: {shown})"))
    };
    match attempt() {
        Ok(()) => (Tally::ONE_PASS, format!("console {} ... ok\n", test.name)),
        Err(message) => (
            Tally::ONE_FAILURE,
            format!("console {} ... FAILED: {message:#}\n", test.name),
        ),
    }
}

fn console_tests(tools: &Tools, filter: Option<&str>) -> Tally {
    section("console tests");
    let selected: Vec<&ConsoleTest> = CONSOLE_TESTS
        .iter()
        .filter(|t| filter.is_none_or(|f| t.name.contains(f)))
        .collect();
    if selected.is_empty() {
        println!("(no console test matches)");
        return Tally::default();
    }
    let firmware = match build::firmware(tools, Profile::Release) {
        Ok(firmware) => firmware,
        Err(message) => {
            println!("FAILED: {message:#}");
            return Tally::ONE_FAILURE;
        }
    };
    let mut tally = Tally::default();
    for result in two_at_a_time(&selected, |test| {
        let (test_tally, report) = run_console_test(tools, &firmware.elf, test);
        print!("{report}");
        test_tally
    }) {
        tally.add(result);
    }
    tally
}

/// What `run --clip` refuses, checked without booting.
fn clip_checks(tools: &Tools, filter: Option<&str>) -> Tally {
    const NAME: &str = "video_clip_other_profile";
    if !filter.is_none_or(|f| NAME.contains(f)) {
        return Tally::default();
    }
    section("clip checks");
    match crate::clip::check_refuses_other_profiles(tools) {
        Ok(()) => {
            println!("check {NAME} ... ok");
            Tally {
                passed: 1,
                failed: 0,
            }
        }
        Err(error) => {
            println!("check {NAME} ... FAILED: {error:#}");
            Tally::ONE_FAILURE
        }
    }
}

/// The bounded fuzz pass: one test, passed when no input panicked and none was slow.
fn fuzz_pass(tools: &Tools) -> Tally {
    println!(
        "\n== fuzz (device tree, {} s)",
        crate::fuzz::TEST_PASS_SECONDS
    );
    match crate::fuzz::bounded_pass(tools) {
        Ok(report) if report.passed() => {
            println!("fuzz dt ... ok ({})", report.summary());
            Tally {
                passed: 1,
                failed: 0,
            }
        }
        Ok(report) => {
            println!("fuzz dt ... FAILED ({})", report.summary());
            Tally::ONE_FAILURE
        }
        Err(error) => {
            println!("fuzz dt ... FAILED: {error:#}");
            Tally::ONE_FAILURE
        }
    }
}

/// `cargo xtask test`: the sections the options select, one `N passed, N failed` total.
pub fn verb(options: &Args) -> Result<ExitCode> {
    let filter = options.filter.as_deref();
    let mut total = Tally::default();
    let tools = match setup::ensure() {
        Ok(tools) => Some(tools),
        Err(message) => {
            println!("FAILED: setup: {message:#}");
            total.add(Tally::ONE_FAILURE);
            None
        }
    };
    if options.host() {
        total.add(host_tests(filter));
        if filter.is_none_or(|f| "clippy host clippy firmware".contains(f)) {
            total.add(clippy(tools.as_ref()));
        }
        match &tools {
            Some(tools) if filter.is_none_or(|f| "fuzz dt".contains(f)) => {
                total.add(fuzz_pass(tools));
            }
            Some(_) => {}
            None => println!("\n(fuzz pass skipped: setup failed)"),
        }
    }
    if options.qemu() {
        match &tools {
            Some(tools) => {
                total.add(qemu_images(tools, filter));
                total.add(clip_checks(tools, filter));
                total.add(console_tests(tools, filter));
            }
            None => println!("\n(in-QEMU and console tests skipped: setup failed)"),
        }
    }
    println!();
    println!("{} passed, {} failed", total.passed, total.failed);
    Ok(if total.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_lines_are_summed() {
        let output = "\
running 3 tests
test a ... ok
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s

test result: FAILED. 5 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out
   Doc-tests monolith
test result: ok. 0 passed; 0 failed; 0 ignored
";
        assert_eq!(
            parse_libtest_results(output),
            Some(Tally {
                passed: 8,
                failed: 2
            })
        );
        assert_eq!(
            parse_libtest_results("error[E0425]: cannot find value"),
            None
        );
    }

    #[test]
    fn image_summary_takes_the_last_line() {
        let log = "test alloc_order0 ... ok\n3 passed, 0 failed\nrerun\n4 passed, 1 failed\n";
        assert_eq!(
            parse_image_summary(log),
            Some(Tally {
                passed: 4,
                failed: 1
            })
        );
        assert_eq!(
            parse_image_summary("tests: 2 passed, 0 failed, 1 skipped\r\n".trim_end()),
            Some(Tally {
                passed: 2,
                failed: 0
            })
        );
        assert_eq!(
            parse_image_summary("said 2 passed, 0 failed in the middle of a line"),
            None
        );
        assert_eq!(parse_image_summary(""), None);
    }

    #[test]
    fn stop_verdicts() {
        let dump = "*** Unhandled exception: Synchronous, from EL1\nESR_EL1  Data Abort\n";
        assert_eq!(
            stop_verdict("Data Abort", dump, Some(1)).unwrap(),
            Tally::ONE_PASS
        );
        // Exiting with success, timing out, the wrong text or a repeated dump all fail.
        assert_eq!(
            stop_verdict("Data Abort", dump, Some(0)).unwrap(),
            Tally::ONE_FAILURE
        );
        assert_eq!(
            stop_verdict("Data Abort", dump, None).unwrap(),
            Tally::ONE_FAILURE
        );
        assert_eq!(
            stop_verdict("SVC64", dump, Some(1)).unwrap(),
            Tally::ONE_FAILURE
        );
        let looping = format!("{dump}{dump}");
        assert_eq!(
            stop_verdict("Data Abort", &looping, Some(1)).unwrap(),
            Tally::ONE_FAILURE
        );
        assert!(stop_verdict("(", dump, Some(1)).is_err());
    }

    #[test]
    fn image_verdicts() {
        assert_eq!(
            image_verdict("2 passed, 0 failed\n", Some(0)),
            Tally {
                passed: 2,
                failed: 0
            }
        );
        assert_eq!(
            image_verdict("1 passed, 1 failed\n", Some(1)),
            Tally {
                passed: 1,
                failed: 1
            }
        );
        // Died without its summary line: one failure.
        assert_eq!(
            image_verdict("*** PANIC: oops\n", Some(1)),
            Tally {
                passed: 0,
                failed: 1
            }
        );
        assert_eq!(
            image_verdict("", Some(0)),
            Tally {
                passed: 0,
                failed: 1
            }
        );
        // Summary claims success but QEMU says otherwise (or was killed).
        assert_eq!(
            image_verdict("3 passed, 0 failed\n", Some(1)),
            Tally {
                passed: 3,
                failed: 1
            }
        );
        assert_eq!(
            image_verdict("3 passed, 0 failed\n", None),
            Tally {
                passed: 3,
                failed: 1
            }
        );
    }

    #[test]
    fn parallel_runner_keeps_order_and_runs_everything() {
        let items: Vec<u64> = (0..7).collect();
        assert_eq!(
            two_at_a_time(&items, |n| n * 10),
            vec![0, 10, 20, 30, 40, 50, 60]
        );
        assert!(two_at_a_time(&Vec::<u64>::new(), |n| *n).is_empty());
    }
}
