//! `cargo xtask run`: build, then boot the firmware in QEMU on this terminal.
//!
//! Theory of operation
//! -------------------
//! The board (default `virt`) and the overrides become a [`Boot`]; QEMU then gets this
//! terminal (`-nographic`: serial console and monitor multiplexed, Ctrl-A X quits) and
//! xtask exits with QEMU's status. The exact QEMU command is printed first so a person can
//! rerun or tweak it by hand.

use std::process::ExitCode;

use crate::args::{Profile, RunOptions};
use crate::build;
use crate::qemu::{self, Boot, Console};
use crate::setup::Tools;
use crate::Result;

pub fn run(tools: &Tools, options: &RunOptions) -> Result<ExitCode> {
    let profile = if options.debug {
        Profile::Debug
    } else {
        Profile::Release
    };
    // The board first: a typo in --board should not cost a firmware build.
    let boot = Boot::resolve(options, tools)?;
    let firmware = build::firmware(tools, profile)?;
    let mut command = boot.command(tools, &firmware.elf, Console::Terminal, false)?;
    println!("== run: board {}", boot.machine.board.name);
    println!("{}", qemu::describe(&command));
    println!("(QEMU owns this terminal now: press Ctrl-A then X to quit, Ctrl-A H for help)");
    let status = command
        .status()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
