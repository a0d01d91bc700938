//! `monolith-pasr-device`: the command line. `serve` runs the vhost-user controller model
//! for the board whose device tree it is given; a DTB without a usable `monolith,pasr-dram`
//! node is refused before the socket exists, with the reason.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use monolith_pasr_device::board::{geometry_from_file, TEMPERATURE_RANGE_C};
use monolith_pasr_device::controller::Controller;
use monolith_pasr_device::serve;

#[derive(Parser, Debug)]
#[command(
    name = "monolith-pasr-device",
    version,
    about = "vhost-user PASR DRAM-controller model (registers in virtio config space)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve one QEMU connection on a vhost-user socket
    Serve {
        /// The socket to create (removed on exit)
        #[arg(long)]
        socket: PathBuf,
        /// The board's device tree blob, with its monolith,pasr-dram node
        #[arg(long)]
        dtb: PathBuf,
        /// Die temperature in degrees C (the guest reads it; the power model uses it)
        #[arg(long, default_value_t = 45, allow_negative_numbers = true)]
        temperature: i32,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            socket,
            dtb,
            temperature,
        } => {
            if !TEMPERATURE_RANGE_C.contains(&temperature) {
                bail!(
                    "--temperature {temperature}: must be {} to {} degrees C",
                    TEMPERATURE_RANGE_C.start(),
                    TEMPERATURE_RANGE_C.end()
                );
            }
            let geometry = geometry_from_file(&dtb)?;
            log::info!(
                "{} dies of {} {}s ({} MiB each), {}, window {:#x}..{:#x}, {temperature} C",
                geometry.dies(),
                geometry.units_per_die(),
                geometry.kind().name(),
                geometry.unit_bytes() >> 20,
                match geometry.interleave() {
                    Some(g) => format!("interleaved every {g} bytes"),
                    None => "not interleaved".to_string(),
                },
                geometry.window().start,
                geometry.window().end
            );
            serve::serve(&socket, Controller::new(geometry, temperature))
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monolith-pasr-device: {e:#}");
            ExitCode::FAILURE
        }
    }
}
