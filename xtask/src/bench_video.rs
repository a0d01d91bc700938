//! `cargo xtask bench`'s video figures: the decode-to-display pipeline against the bare
//! decoder, the guest's instructions per frame, and the CPU copies per frame.
//!
//! Theory of operation
//! -------------------
//! Three measurements of the default clip (1280x720, made by the encoder at build time):
//! - **bare decoder**: the device binary's `decode` subcommand on the host, which runs the
//!   device's own decode and conversion to ARGB8888 with no guest and no virtio; frames
//!   over wall-clock seconds;
//! - **pipeline**: `virt-video` booted without `-icount` (guest time is real time, so
//!   the firmware's own fps figure is comparable with the host's), `video play` to the
//!   end, `video info`'s fps: bitstream copied into CMA buffers, decoded by the device
//!   into frame dma-bufs, each frame scanned out by virtio-gpu. The ratio of the two is the
//!   pipeline's cost (goal: at least 0.9). The two alternate, [`PAIRS`] times, so a busy
//!   moment of the machine weighs on both sides of one ratio alike; the median ratio is
//!   the figure, with the lowest and highest beside it;
//! - **instructions**: the same boot under `-icount shift=0,sleep=on`, where the PMU
//!   counts guest instructions: `video info`'s instructions per frame (the player, both
//!   drivers and the fences), and its copies per frame (CPU-access brackets for writing on
//!   frame buffers: the CPU touched no frame byte if 0).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

use crate::build::{self, Profile};
use crate::expect::Console;
use crate::qemu::{self, Boot};
use crate::run_options::RunOptions;
use crate::setup::Tools;
use crate::{clip, video_device};

const PROMPT: &str = "monolith> ";
const PLAY: Duration = Duration::from_secs(900);
/// Bare-decoder and pipeline runs, alternating.
const PAIRS: usize = 3;

/// Frames per second of the host-side decode of `clip`, best of `runs`.
fn bare_decoder_fps(device: &Path, clip: &Path, runs: usize) -> Result<(f64, usize)> {
    let mut best: Option<(f64, usize)> = None;
    for _ in 0..runs {
        let started = Instant::now();
        let output = std::process::Command::new(device)
            .args(["decode", "--clip"])
            .arg(clip)
            .args(["--format", "argb8888"])
            .output()
            .context("running the reference decode")?;
        let seconds = started.elapsed().as_secs_f64();
        if !output.status.success() {
            bail!("decode failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let frames = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.starts_with("frame "))
            .count();
        let fps = frames as f64 / seconds;
        if best.is_none_or(|(b, _)| fps > b) {
            best = Some((fps, frames));
        }
    }
    best.context("no run")
}

/// Boots `virt-video`, plays the default clip to the end, returns `video info`.
fn play(tools: &Tools, kernel: &Path, icount: bool) -> Result<String> {
    let options = RunOptions::from_words(&["--board".into(), "virt-video".into()])?;
    let boot = Boot::resolve(&options, tools)?;
    let launch = boot.launch(kernel, qemu::Console::Pipes, false)?;
    let mut command = launch.command;
    let _beside = launch.beside;
    if icount {
        // sleep=on: while the guest waits in WFI its clock follows real time, as the
        // device beside QEMU does; with sleep=off guest time would race ahead of the
        // decoder and the player would see a stall. Instructions still count exactly.
        command.args(["-icount", "shift=0,sleep=on"]);
    }
    let mut console = Console::spawn(command).map_err(|e| anyhow::anyhow!("{e}"))?;
    let fail = |e: crate::expect::ExpectError| anyhow::anyhow!("{e}");
    console
        .expect(&regex::escape(PROMPT), Duration::from_secs(60))
        .map_err(fail)?;
    console.send_line("video play").map_err(fail)?;
    let outcome = console
        .expect(r"video: (finished|failed)[^\n]*\n", PLAY)
        .map_err(fail)?;
    if outcome.contains("video: failed") {
        bail!(
            "the play failed: {}",
            outcome.lines().last().unwrap_or_default()
        );
    }
    console
        .expect(&regex::escape(PROMPT), Duration::from_secs(5))
        .ok();
    console.send_line("video info").map_err(fail)?;
    let info = console
        .expect(&regex::escape(PROMPT), Duration::from_secs(30))
        .map_err(fail)?;
    Ok(info)
}

/// The median bare and pipeline fps of `(bare, pipeline)` pairs, and every pair's ratio
/// in ascending order.
fn medians(pairs: &[(f64, f64)]) -> (f64, f64, Vec<f64>) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let mut ratios: Vec<f64> = pairs.iter().map(|(b, p)| p / b).collect();
    ratios.sort_by(f64::total_cmp);
    (
        median(pairs.iter().map(|p| p.0).collect()),
        median(pairs.iter().map(|p| p.1).collect()),
        ratios,
    )
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    let re = Regex::new(&format!(r"(?m)^{name} (\S+)")).ok()?;
    re.captures(info).and_then(|c| c.get(1)).map(|m| m.as_str())
}

/// Prints the video section of `cargo xtask bench`.
pub fn run(tools: &Tools) -> Result<()> {
    println!("\n== video pipeline (board virt-video, the default 1280x720 clip)");
    let device = video_device::binary()?;
    let clip = clip::default_clip(&device)?;
    let firmware = build::firmware(tools, Profile::Release)?;
    let mut pairs = Vec::new();
    let mut frames = 0;
    for _ in 0..PAIRS {
        let (bare, decoded) = bare_decoder_fps(&device, &clip, 1)?;
        frames = decoded;
        let real_time = play(tools, &firmware.elf, false)?;
        let fps: f64 = field(&real_time, "fps")
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no fps in `video info`: {real_time}"))?;
        pairs.push((bare, fps));
    }
    let (bare, fps, ratios) = medians(&pairs);
    let counted = play(tools, &firmware.elf, true)?;
    let instructions = field(&counted, "guest instructions per frame").unwrap_or("?");
    let copies = field(&counted, "copies per frame").unwrap_or("?");
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| bare decoder (host, decode + convert to ARGB8888), {frames} frames, median | {bare:.1} fps |"
    );
    println!("| decode to display (guest, real time), median | {fps:.1} fps |");
    println!(
        "| ratio (goal at least 0.9), median of {PAIRS} alternating pairs | {:.2} (lowest {:.2}, highest {:.2}) |",
        ratios[PAIRS / 2],
        ratios[0],
        ratios[PAIRS - 1]
    );
    println!("| guest instructions per frame (player, decoder and GPU drivers, fences; -icount) | {instructions} |");
    println!("| CPU copies per frame | {copies} |");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_each_run_with_its_neighbour() {
        let (bare, pipeline, ratios) = medians(&[(100.0, 90.0), (50.0, 50.0), (80.0, 60.0)]);
        assert_eq!((bare, pipeline), (80.0, 60.0));
        assert_eq!(ratios, vec![0.75, 0.9, 1.0]);
    }

    #[test]
    fn fields_are_read_from_video_info() {
        let info =
            "decoder monolith-h264 at /x\nfps 87.500\ncopies per frame 0.00 (0 CPU writes)\n\
                    guest instructions per frame 12345\n";
        assert_eq!(field(info, "fps"), Some("87.500"));
        assert_eq!(field(info, "copies per frame"), Some("0.00"));
        assert_eq!(field(info, "guest instructions per frame"), Some("12345"));
        assert_eq!(field(info, "missing"), None);
    }
}
