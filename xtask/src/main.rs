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
//! Modules: [`args`] parses the command line (and the `//! xtask-qemu:` headers of in-QEMU
//! tests, which use the same syntax); [`board`] turns a `boards/NAME.toml` into QEMU options
//! and a device tree; [`qemu`] assembles and runs QEMU command lines; [`expect`] drives a
//! serial console for [`console_tests`]; [`image`] turns the ELF into a raw binary;
//! [`profile`] counts a marked guest region's instructions by function from QEMU's log.

mod args;
mod bench;
mod board;
mod build;
mod console_tests;
mod expect;
mod image;
mod paths;
mod profile;
mod qemu;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

use args::Command;

/// Errors are messages for a person: each says what failed and, where it can, what to do.
pub type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse_command(&argv) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("xtask: {message}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        Command::Help => {
            println!("{}", args::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Setup => setup::ensure().map(|_| ExitCode::SUCCESS),
        Command::Build(options) => {
            setup::ensure().and_then(|tools| build::build_verb(&tools, options.profile))
        }
        Command::Run(options) => setup::ensure().and_then(|tools| run::run(&tools, &options)),
        Command::Test(options) => test::test(&options),
        Command::Bench => bench::bench(),
        Command::Profile(options) => profile::profile(&options),
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}
