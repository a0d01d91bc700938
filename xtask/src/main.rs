//! `cargo xtask`: every developer verb for Monolith, one module per verb (Hubris style).
//!
//! Theory of operation
//! -------------------
//! `cargo xtask VERB` (an alias in `.cargo/config.toml`) builds and runs this host program
//! with rustup's stable toolchain. Each verb that needs outside tools first calls
//! [`setup::ensure`], which only checks when everything is present and installs what is
//! missing on a Debian 12 machine where it runs as root. The firmware itself is built by a
//! second cargo (the one [`setup`] chose: rustup's with rust-src, or Debian's rustc-web)
//! with `-Zbuild-std`, into a target directory of its own so the host and bare-metal builds
//! never invalidate each other.
//!
//! This file only parses the command line (`clap`: [`Cli`], one [`Verb`] per subcommand)
//! and hands the verb to its module: `setup`, `build`, `run`, `test`, `bench`, `profile`,
//! `fuzz`, `screendump`, `qemu` (module [`qemu_build`]: the patched QEMU that hosts our
//! vhost-user devices),
//! each with its options (`Args`) and its entry point (`verb`). Adding a verb is one
//! variant here plus one module. Errors are `anyhow` chains; the one that reaches `main`
//! is printed once, whole (`{:#}`), and the exit code is non-zero.
//!
//! Other modules: [`run_options`] is the boot option language of `run` and of the
//! `//! xtask-qemu:` headers ([`test_header`]) of in-QEMU tests; [`board`] turns a
//! `boards/NAME.toml` into QEMU options and a device tree; [`qemu`] assembles and runs QEMU
//! command lines; [`qmp`] talks to a running QEMU and [`screen`] decodes and compares its
//! screendumps; [`expect`] drives a serial console for [`console_tests`]; [`image`] turns
//! the ELF into a raw binary; [`size`] reads and writes RAM sizes.

mod bench;
mod bench_pasr;
mod bench_video;
mod board;
mod build;
mod child;
mod clip;
mod console_tests;
mod expect;
mod fuzz;
mod image;
mod pasr_device;
mod paths;
mod profile;
mod qemu;
mod qemu_build;
mod qmp;
mod run;
mod run_options;
mod screen;
mod screendump;
mod setup;
mod size;
mod test;
mod test_header;
mod vhost_device;
mod video_device;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Every developer verb for Monolith.
#[derive(Parser, Debug, PartialEq, Eq)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    after_help = "`cargo xtask help VERB` shows a verb's options."
)]
struct Cli {
    #[command(subcommand)]
    verb: Option<Verb>,
}

#[derive(Subcommand, Debug, PartialEq, Eq)]
enum Verb {
    /// Check the tools, install what is missing (Debian 12, as root)
    Setup,
    /// Build the firmware ELF and raw binary (release by default)
    Build(build::Args),
    /// Build, then boot the firmware in QEMU on this terminal
    Run(run::Args),
    /// Host unit tests, in-QEMU test images, console tests
    Test(test::Args),
    /// Host benchmarks and in-guest benchmarks (only those whose names contain FILTER)
    Bench(bench::Args),
    /// Instructions by function between the profile markers of the tests/profile_*.rs
    /// images (QEMU execution log)
    Profile(profile::Args),
    /// Fuzz the device-tree reader (libFuzzer, coverage-guided)
    Fuzz(fuzz::Args),
    /// Save what the running firmware's screen shows as a PNG (QMP screendump)
    Screendump(screendump::Args),
    /// Build the patched QEMU (vhost-user-device user-creatable) into the user's cache
    Qemu(qemu_build::Args),
}

fn main() -> ExitCode {
    // Bad arguments: clap prints the error and the verb's usage, and exits with status 2.
    let cli = Cli::parse();
    let outcome = match cli.verb {
        None => Cli::command()
            .print_help()
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Some(Verb::Setup) => setup::verb(),
        Some(Verb::Build(args)) => build::verb(&args),
        Some(Verb::Run(args)) => run::verb(&args),
        Some(Verb::Test(args)) => test::verb(&args),
        Some(Verb::Bench(args)) => bench::verb(&args),
        Some(Verb::Profile(args)) => profile::verb(&args),
        Some(Verb::Fuzz(args)) => fuzz::verb(&args),
        Some(Verb::Screendump(args)) => screendump::verb(&args),
        Some(Verb::Qemu(args)) => qemu_build::verb(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::error::ErrorKind;

    use super::*;
    use crate::build::Profile;
    use crate::run_options::{split_words, RunOptions};

    fn parse(text: &str) -> Result<Option<Verb>, clap::Error> {
        let words = std::iter::once("cargo-xtask".to_string()).chain(split_words(text).unwrap());
        Cli::try_parse_from(words).map(|cli| cli.verb)
    }

    fn verb(text: &str) -> Verb {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_verb_means_help() {
        assert_eq!(parse("").unwrap(), None);
        let help = parse("help").unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        let text = help.to_string();
        for name in [
            "setup",
            "build",
            "run",
            "test",
            "bench",
            "profile",
            "fuzz",
            "screendump",
            "qemu",
            "help",
        ] {
            assert!(
                text.contains(&format!("  {name} ")),
                "{name} missing:\n{text}"
            );
        }
    }

    #[test]
    fn unknown_verb_and_option_are_errors() {
        assert!(parse("frobnicate")
            .unwrap_err()
            .to_string()
            .contains("frobnicate"));
        assert!(parse("run --bogus")
            .unwrap_err()
            .to_string()
            .contains("--bogus"));
        assert!(parse("setup now").is_err());
        assert!(parse("bench a b").is_err());
        assert!(parse("bench --fast").is_err());
        assert!(parse("build --fast").is_err());
    }

    #[test]
    fn build_defaults_to_release() {
        let profile = |text: &str| match verb(text) {
            Verb::Build(args) => args.profile(),
            other => panic!("{other:?}"),
        };
        assert_eq!(profile("build"), Profile::Release);
        assert_eq!(profile("build --debug"), Profile::Debug);
        assert_eq!(profile("build --debug --release"), Profile::Release);
        assert_eq!(profile("build --release --debug"), Profile::Debug);
    }

    #[test]
    fn run_options_both_spellings() {
        assert_eq!(
            verb("run --board virt-2bank --append 'cma=64M loglevel=7' --mem=2G --smp 4 --debug --dtb x.dtb --trace t.bin"),
            Verb::Run(run::Args {
                options: RunOptions {
                    board: Some("virt-2bank".into()),
                    dtb: Some(PathBuf::from("x.dtb")),
                    append: Some("cma=64M loglevel=7".into()),
                    mem_bytes: Some(2 << 30),
                    smp: Some(4),
                    trace: Some(PathBuf::from("t.bin")),
                    ..RunOptions::default()
                },
                debug: true,
            })
        );
    }

    #[test]
    fn a_repeated_option_takes_its_last_value() {
        match verb("run --smp 1 --smp 2 --debug --debug") {
            Verb::Run(args) => assert_eq!((args.options.smp, args.debug), (Some(2), true)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(verb("build --debug --debug"), Verb::Build(_)));
        assert!(matches!(
            verb("test --host-only --host-only"),
            Verb::Test(_)
        ));
        match verb("profile --top 5 --top 7") {
            Verb::Profile(args) => assert_eq!(args.top, 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn run_option_missing_value() {
        let missing = parse("run --board").unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::InvalidValue);
        assert!(missing
            .to_string()
            .contains("a value is required for '--board"));
        assert!(parse("run --smp 0").is_err());
        assert!(parse("run --smp many").is_err());
        assert!(parse("run --board ../etc/passwd").is_err());
    }

    #[test]
    fn test_verb_modes_and_filter() {
        let modes = |text: &str| match verb(text) {
            Verb::Test(args) => (args.host(), args.qemu(), args.filter),
            other => panic!("{other:?}"),
        };
        assert_eq!(modes("test"), (true, true, None));
        assert_eq!(
            modes("test --qemu-only boot"),
            (false, true, Some("boot".into()))
        );
        assert_eq!(modes("test --host-only"), (true, false, None));
        assert!(parse("test --host-only --qemu-only").is_err());
        assert!(parse("test a b").is_err());
        assert!(parse("test --fast").is_err());
    }

    #[test]
    fn fuzz_verb_seconds_and_jobs() {
        assert_eq!(
            verb("fuzz"),
            Verb::Fuzz(fuzz::Args {
                target: fuzz::Target::Dt,
                seconds: 60,
                jobs: 1
            })
        );
        assert_eq!(
            verb("fuzz --seconds 600 --jobs 2"),
            Verb::Fuzz(fuzz::Args {
                target: fuzz::Target::Dt,
                seconds: 600,
                jobs: 2
            })
        );
        assert!(parse("fuzz --seconds 0").is_err());
        assert!(parse("fuzz --seconds soon").is_err());
        assert!(parse("fuzz --jobs 0").is_err());
        assert!(parse("fuzz corpus").is_err());
    }

    #[test]
    fn qemu_verb_force() {
        assert_eq!(verb("qemu"), Verb::Qemu(qemu_build::Args { force: false }));
        assert_eq!(
            verb("qemu --force"),
            Verb::Qemu(qemu_build::Args { force: true })
        );
        assert!(parse("qemu now").is_err());
    }

    #[test]
    fn screendump_verb_takes_one_file() {
        assert_eq!(
            verb("screendump out.png"),
            Verb::Screendump(screendump::Args {
                file: PathBuf::from("out.png")
            })
        );
        assert!(parse("screendump").is_err());
        assert!(parse("screendump a.png b.png").is_err());
    }

    #[test]
    fn bench_verb_filter() {
        assert_eq!(verb("bench"), Verb::Bench(bench::Args { filter: None }));
        assert_eq!(
            verb("bench bench_pasr"),
            Verb::Bench(bench::Args {
                filter: Some("bench_pasr".into())
            })
        );
    }

    #[test]
    fn profile_verb_filter_and_top() {
        assert_eq!(
            verb("profile"),
            Verb::Profile(profile::Args {
                filter: None,
                top: profile::DEFAULT_TOP
            })
        );
        let expected = Verb::Profile(profile::Args {
            filter: Some("cma".into()),
            top: 10,
        });
        assert_eq!(verb("profile cma --top 10"), expected);
        assert_eq!(verb("profile --top=10 cma"), expected);
        let missing = parse("profile --top").unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::InvalidValue);
        assert!(missing
            .to_string()
            .contains("a value is required for '--top"));
        assert!(parse("profile --top 0").is_err());
        assert!(parse("profile --top=many").is_err());
        assert!(parse("profile --fast").is_err());
        assert!(parse("profile a b").is_err());
    }
}
