//! `monolith-video-device`: the command line. `serve` runs the vhost-user device; `encode`,
//! `decode` and `probe` are the offline tools the tests use (see the crate docs).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use monolith_video_device::encode::{encode_clip, parse_size, Segment};
use monolith_video_device::faults::{Fault, Faults};
use monolith_video_device::frame::OutputFormat;
use monolith_video_device::openh264_codec::OpenH264;
use monolith_video_device::{reference, serve};

#[derive(Parser, Debug)]
#[command(
    name = "monolith-video-device",
    version,
    about = "vhost-user virtio-video H.264 decoder device"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Argb8888,
    Nv12,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve one QEMU connection on a vhost-user socket
    Serve {
        /// The socket to create (removed on exit)
        #[arg(long)]
        socket: PathBuf,
        /// error-response=CMD@N[/CODE], error-event@FRAME or stall@FRAME (repeatable)
        #[arg(long = "fault")]
        faults: Vec<Fault>,
    },
    /// Encode a deterministic Constrained Baseline test clip
    Encode {
        #[arg(long)]
        out: PathBuf,
        /// WxH
        #[arg(long, value_parser = parse_size)]
        size: (u32, u32),
        #[arg(long)]
        frames: u32,
        /// Change to WxH after --frames (a second encoder session)
        #[arg(long, value_parser = parse_size, requires = "then_frames")]
        then: Option<(u32, u32)>,
        #[arg(long, requires = "then")]
        then_frames: Option<u32>,
        #[arg(long, default_value_t = 30.0)]
        fps: f32,
    },
    /// Reference decode: one line per frame with the CRC-32 of the converted bytes
    Decode {
        #[arg(long)]
        clip: PathBuf,
        #[arg(long, value_enum)]
        format: FormatArg,
        /// Write the last frame's converted bytes here
        #[arg(long)]
        dump_last: Option<PathBuf>,
    },
    /// Check a clip is Annex-B H.264, Constrained Baseline; print its size
    Probe {
        #[arg(long)]
        clip: PathBuf,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { socket, faults } => serve::serve(&socket, Faults::new(faults)),
        Command::Encode {
            out,
            size,
            frames,
            then,
            then_frames,
            fps,
        } => {
            if frames == 0 {
                bail!("--frames must be at least 1");
            }
            let mut segments = vec![Segment {
                width: size.0,
                height: size.1,
                frames,
            }];
            if let (Some((w, h)), Some(n)) = (then, then_frames) {
                segments.push(Segment {
                    width: w,
                    height: h,
                    frames: n,
                });
            }
            let clip = encode_clip(&segments, fps)?;
            std::fs::write(&out, &clip).with_context(|| format!("writing {}", out.display()))?;
            println!("{}: {} bytes", out.display(), clip.len());
            Ok(())
        }
        Command::Decode {
            clip,
            format,
            dump_last,
        } => {
            let bytes =
                std::fs::read(&clip).with_context(|| format!("reading {}", clip.display()))?;
            let format = match format {
                FormatArg::Argb8888 => OutputFormat::Argb8888,
                FormatArg::Nv12 => OutputFormat::Nv12,
            };
            let mut decoder = OpenH264::new()?;
            let (frames, last) = reference::decode_clip(&mut decoder, &bytes, format)?;
            if frames.is_empty() {
                bail!("{}: no frame decoded", clip.display());
            }
            let mut out = std::io::stdout().lock();
            for (n, f) in frames.iter().enumerate() {
                writeln!(
                    out,
                    "frame {n} {}x{} crc32 {:08x}",
                    f.width, f.height, f.crc
                )
                .context("writing to stdout")?;
            }
            if let Some(path) = dump_last {
                std::fs::write(&path, &last)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::Probe { clip } => {
            let bytes =
                std::fs::read(&clip).with_context(|| format!("reading {}", clip.display()))?;
            let sps = reference::probe(&bytes).with_context(|| clip.display().to_string())?;
            println!(
                "{}: H.264 {} (profile_idc {}, level {}), {}x{}",
                clip.display(),
                sps.profile_name(),
                sps.profile_idc,
                sps.level_idc,
                sps.width,
                sps.height
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monolith-video-device: {e:#}");
            ExitCode::FAILURE
        }
    }
}
