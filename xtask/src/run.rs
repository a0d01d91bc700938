//! `cargo xtask run`: build, then boot the firmware in QEMU on this terminal.
//!
//! Theory of operation
//! -------------------
//! The board (default `virt`) and the overrides become a [`Boot`]; QEMU then gets this
//! terminal (`-nographic`: serial console and monitor multiplexed, Ctrl-A X quits) and
//! xtask exits with QEMU's status. The exact QEMU command is printed first so a person can
//! rerun or tweak it by hand.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::build::{self, Profile};
use crate::qemu::{self, Boot, Console};
use crate::run_options::RunOptions;
use crate::setup;

/// `cargo xtask run [options]`: the boot options, plus which build to boot.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
#[command(args_override_self = true)]
pub struct Args {
    #[command(flatten)]
    pub options: RunOptions,
    /// Boot the debug build
    #[arg(long)]
    pub debug: bool,
}

pub fn verb(args: &Args) -> Result<ExitCode> {
    let tools = setup::ensure()?;
    let profile = if args.debug {
        Profile::Debug
    } else {
        Profile::Release
    };
    // The board first: a typo in --board should not cost a firmware build.
    let boot = Boot::resolve(&args.options, &tools)?;
    let firmware = build::firmware(&tools, profile)?;
    let mut command = boot.command(&tools, &firmware.elf, Console::Terminal, false)?;
    println!("== run: board {}", boot.machine.board.name);
    println!("{}", qemu::describe(&command));
    println!("(QEMU owns this terminal now: press Ctrl-A then X to quit, Ctrl-A H for help)");
    let status = command.status().context("cannot start QEMU")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
