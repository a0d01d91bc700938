//! Console scripts for video: the clip decoded by our vhost-user decoder and shown on
//! virtio-gpu, checked frame by frame against a host-side decode of the same clip.
//!
//! Theory of operation
//! -------------------
//! Each script boots `virt-video` (the decoder device started beside QEMU by xtask) with
//! a clip, plays it with `video play crc`, and waits for the firmware's `video: finished`
//! (or `failed`). The firmware logs one `video: frame N WxH crc32 X` line per frame it
//! shows, the CRC-32 of the frame buffer's bytes read after the decoder's fence. The
//! oracle is the device binary's `decode` subcommand on the same file: openh264 decoding
//! is bit-exact, and the conversion is the device's own code, so every CRC must be equal,
//! in order, and the count too (no frame lost, none shown twice). The screen after the end
//! must equal the last frame exactly (it stays on screen until `video stop`).
//!
//! Leaks are measured as the DMA tests do: CMA `used` and MemFree after both drivers'
//! first use (their rings live as long as the drivers), and again after `video stop`;
//! they must be equal. The fault scripts boot the device with one injected fault (an
//! error response, an `ERROR` event, a stalled queue); the play must fail with nothing
//! leaked, and a second play on the same boot must run to the end.

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

use super::shell::{boot, check, debugfs, expect_output, meminfo, number_file, run};
use crate::expect::{Console, ExpectError};
use crate::screen::Image;

type Result<T> = std::result::Result<T, ExpectError>;

/// A whole clip may take this long to play (the default one has 120 frames of 720p, and
/// every frame's CRC is computed by the guest CPU).
const PLAY: Duration = Duration::from_secs(300);

/// The small clip the fault and stop scripts play.
pub const SMALL_CLIP: &str = "generated:320x240:30";
/// A clip that changes resolution midway.
pub const CHANGING_CLIP: &str = "generated:640x360:20,320x240:20";

/// One frame as the guest or the reference reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FrameCrc {
    number: u64,
    width: u32,
    height: u32,
    crc: String,
}

fn parse_frames(text: &str, prefix: &str) -> Vec<FrameCrc> {
    let re = Regex::new(&format!(
        r"(?m){prefix}frame (\d+) (\d+)x(\d+) crc32 ([0-9a-f]{{8}})"
    ))
    .unwrap();
    re.captures_iter(text)
        .map(|c| FrameCrc {
            number: c[1].parse().unwrap(),
            width: c[2].parse().unwrap(),
            height: c[3].parse().unwrap(),
            crc: c[4].to_string(),
        })
        .collect()
}

/// The clip file a `--clip` value (or the default) names, made if needed.
fn clip_file(spec: Option<&str>) -> anyhow::Result<PathBuf> {
    let device = crate::video_device::binary()?;
    match spec {
        Some(spec) => crate::clip::source(&device, std::path::Path::new(spec)),
        None => crate::clip::default_clip(&device),
    }
}

/// The host's decode of the clip: every frame's CRC, and the last frame's bytes.
fn reference(spec: Option<&str>) -> anyhow::Result<(Vec<FrameCrc>, Vec<u8>)> {
    let device = crate::video_device::binary()?;
    let clip = clip_file(spec)?;
    let last =
        std::env::temp_dir().join(format!("monolith-last-frame-{}.bgra", std::process::id()));
    let output = std::process::Command::new(&device)
        .args(["decode", "--clip"])
        .arg(&clip)
        .args(["--format", "argb8888", "--dump-last"])
        .arg(&last)
        .output()?;
    if !output.status.success() {
        anyhow::bail!(
            "reference decode of {} failed: {}",
            clip.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let frames = parse_frames(&String::from_utf8_lossy(&output.stdout), "");
    let bytes = std::fs::read(&last)?;
    let _ = std::fs::remove_file(&last);
    Ok((frames, bytes))
}

/// Frame bytes B, G, R, A as the screen shows them (RGB).
fn image_of(bgra: &[u8], width: u32, height: u32) -> Image {
    let mut image = Image::new(width, height, [0, 0, 0]);
    for (i, px) in bgra.chunks_exact(4).enumerate() {
        let (x, y) = (i as u32 % width, i as u32 / width);
        image.set_pixel(x, y, [px[2], px[1], px[0]]);
    }
    image
}

/// CMA `used` and MemFree, after both drivers' first use.
fn baseline(console: &mut Console) -> Result<(u64, u64)> {
    expect_output(console, "gpu info", r"(?m)^scanout 0: \d+x\d+")?;
    expect_output(console, "video info", r"(?m)^decoder monolith-h264 at /")?;
    Ok((
        number_file(console, &debugfs("used"))?,
        meminfo(console)?["MemFree"],
    ))
}

fn expect_back_to(console: &mut Console, before: (u64, u64), after_what: &str) -> Result<()> {
    let now = (
        number_file(console, &debugfs("used"))?,
        meminfo(console)?["MemFree"],
    );
    check(console, now == before, || {
        format!(
            "after {after_what} every page must be back: CMA used {} -> {}, MemFree {} -> {} kB",
            before.0, now.0, before.1, now.1
        )
    })
}

/// Plays with CRCs to the end; returns the frames the guest showed.
fn play_to_the_end(console: &mut Console, spec: Option<&str>) -> Result<Vec<FrameCrc>> {
    let start = console.transcript().len();
    expect_output(console, "video play crc", r"^playing \d+ access units")?;
    console.expect(r"video: (finished|failed)[^\n]*\n", PLAY)?;
    let played = console.transcript()[start..].to_string();
    if let Some(failed) = Regex::new(r"video: failed[^\n]*").unwrap().find(&played) {
        return Err(console.error(format!("the play failed: {}", failed.as_str())));
    }
    let shown = parse_frames(&played, "video: ");
    let (expected, _) = reference(spec).map_err(|e| console.error(format!("{e:#}")))?;
    check(console, !expected.is_empty() && shown == expected, || {
        let first_bad = shown
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .map_or(String::from("none"), |i| {
                format!("{i}: {:?} vs {:?}", shown[i], expected[i])
            });
        format!(
            "the guest showed {} frames, the reference decoded {}; first difference: {first_bad}",
            shown.len(),
            expected.len()
        )
    })?;
    Ok(shown)
}

/// The default clip: every frame's CRC, the screen equals the last frame, 0 copies,
/// everything back after `video stop`.
pub fn plays_every_frame(console: &mut Console) -> Result<()> {
    boot(console)?;
    let before = baseline(console)?;
    let shown = play_to_the_end(console, None)?;
    let info = run(console, "video info")?;
    check(
        console,
        info.contains(&format!("frames {} shown", shown.len()))
            && info.contains("copies per frame 0.00 (0 CPU writes into frame buffers)")
            && info.contains("format ARGB8888"),
        || format!("`video info` after the play: {info:?}"),
    )?;
    let (_, last) = reference(None).map_err(|e| console.error(format!("{e:#}")))?;
    let frame = shown.last().cloned().unwrap_or(FrameCrc {
        number: 0,
        width: 0,
        height: 0,
        crc: String::new(),
    });
    let expected = image_of(&last, frame.width, frame.height);
    let screen = console.screendump()?;
    console.compare_screen(&screen, &expected)?;
    expect_output(console, "video stop", r"^last frame released")?;
    expect_back_to(console, before, "the play and `video stop`")
}

/// A clip whose second half has another size: every frame still equals the reference,
/// and the frame buffers were made again once.
pub fn resolution_change(console: &mut Console) -> Result<()> {
    boot(console)?;
    let before = baseline(console)?;
    let shown = play_to_the_end(console, Some(CHANGING_CLIP))?;
    let sizes: Vec<(u32, u32)> = shown.iter().map(|f| (f.width, f.height)).collect();
    check(
        console,
        sizes.first() == Some(&(640, 360)) && sizes.last() == Some(&(320, 240)),
        || format!("sizes shown: {sizes:?}"),
    )?;
    expect_output(console, "video info", r"(?m)^resolution changes 1$")?;
    expect_output(console, "video stop", r"^last frame released")?;
    expect_back_to(console, before, "a play with a resolution change")
}

/// One injected fault: the first play fails cleanly, the second plays to the end.
fn fault_then_recovery(console: &mut Console, what: &str) -> Result<()> {
    boot(console)?;
    let before = baseline(console)?;
    let start = console.transcript().len();
    expect_output(console, "video play", r"^playing \d+ access units")?;
    console.expect(r"video: (finished|failed)[^\n]*\n", PLAY)?;
    let outcome = console.transcript()[start..].to_string();
    check(console, outcome.contains("video: failed"), || {
        format!("with {what} the play must fail, not finish: {outcome:?}")
    })?;
    expect_output(console, "video info", r"(?m)^last play failed")?;
    expect_back_to(console, before, &format!("a play failed by {what}"))?;
    play_to_the_end(console, Some(SMALL_CLIP))?;
    expect_output(console, "video stop", r"^last frame released")?;
    expect_back_to(console, before, "the recovered play")
}

pub fn error_response(console: &mut Console) -> Result<()> {
    fault_then_recovery(console, "an error response to the 5th RESOURCE_QUEUE")
}

pub fn error_event(console: &mut Console) -> Result<()> {
    fault_then_recovery(console, "an ERROR event after frame 10")
}

pub fn stalled_queue(console: &mut Console) -> Result<()> {
    fault_then_recovery(console, "a command queue that stalls after frame 10")
}

/// `video stop` in the middle of a looping play frees everything; playing again works.
pub fn stop_mid_play(console: &mut Console) -> Result<()> {
    boot(console)?;
    let before = baseline(console)?;
    expect_output(
        console,
        "video play loop",
        r"^playing \d+ access units \(\d+ bytes\), looping",
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let info = run(console, "video info")?;
    let shown = Regex::new(r"(?m)^frames (\d+) shown")
        .unwrap()
        .captures(&info)
        .map(|c| c[1].parse::<u64>().unwrap());
    check(console, shown.is_some_and(|n| n > 0), || {
        format!("after 3 s of play some frames must be shown: {info:?}")
    })?;
    expect_output(console, "video stop", r"^stopped\n")?;
    expect_back_to(console, before, "stopping mid-play")?;
    play_to_the_end(console, Some(SMALL_CLIP))?;
    expect_output(console, "video stop", r"^last frame released")?;
    expect_back_to(console, before, "the second play")
}

/// Frames shown so far, from `video info`.
fn frames_shown(console: &mut Console) -> Result<(u64, String)> {
    let info = run(console, "video info")?;
    let shown = Regex::new(r"(?m)^frames (\d+) shown")
        .unwrap()
        .captures(&info)
        .map_or(0, |c| c[1].parse::<u64>().unwrap());
    Ok((shown, info))
}

/// The default `virt` board with the decoder, booted as `cargo xtask run` boots it
/// (`monolith.display=map monolith.video=loop`): the clip plays from boot on, looping,
/// the screen shows frames rather than the map, and `video stop` gives the map back.
pub fn plays_at_boot(console: &mut Console) -> Result<()> {
    let booted = console.expect(&regex::escape(super::shell::PROMPT), super::shell::BOOT)?;
    check(
        console,
        Regex::new(r"video: playing \d+ access units \(\d+ bytes\), looping")
            .unwrap()
            .is_match(&booted),
        || String::from("the boot must start the clip (monolith.video=loop)"),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let (first, info) = frames_shown(console)?;
    check(console, first > 0 && info.contains("playing"), || {
        format!("3 s after boot frames must be on screen: {info:?}")
    })?;
    let gpu = run(console, "gpu info")?;
    check(console, gpu.contains("showing: nothing"), || {
        format!("while the clip plays the map must make way: {gpu:?}")
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let (later, _) = frames_shown(console)?;
    check(console, later > first, || {
        format!("the play must go on: {first} frames, then {later}")
    })?;
    // The map's return logs a line, which may land before the verdict.
    expect_output(console, "video stop", r"(?m)^stopped$")?;
    expect_output(console, "gpu info", r"(?m)^showing: memory map \(live\)")?;
    Ok(())
}

/// The two-bank board: bitstream buffers come from bank 0's region and frames from bank
/// 1's (`memory-region-names`), and both come back after `video stop`. (The board has no
/// default CMA area.)
pub fn two_banks(console: &mut Console) -> Result<()> {
    boot(console)?;
    expect_output(console, "gpu info", r"(?m)^scanout 0: \d+x\d+")?;
    expect_output(console, "video info", r"(?m)^decoder monolith-h264 at /")?;
    let used = |console: &mut Console| -> Result<(u64, u64, u64)> {
        Ok((
            number_file(console, "/sys/kernel/debug/cma/video@50000000/used")?,
            number_file(console, "/sys/kernel/debug/cma/video@90000000/used")?,
            meminfo(console)?["MemFree"],
        ))
    };
    let before = used(console)?;
    expect_output(
        console,
        "video play loop",
        r"^playing \d+ access units \(\d+ bytes\), looping",
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let (shown, info) = frames_shown(console)?;
    check(console, shown > 0, || {
        format!("frames must be shown: {info:?}")
    })?;
    let during = used(console)?;
    let (bitstream, frames) = (
        during.0.saturating_sub(before.0),
        during.1.saturating_sub(before.1),
    );
    // Frames are the big buffers: bank 1's region must hold more than bank 0's.
    check(console, bitstream > 0 && frames > bitstream, || {
        format!(
            "while playing, bank 0's region must hold the bitstream and bank 1's the frames: \
             used {} -> {} and {} -> {}",
            before.0, during.0, before.1, during.1
        )
    })?;
    expect_output(console, "video stop", r"(?m)^stopped$")?;
    let after = used(console)?;
    check(console, after == before, || {
        format!("after `video stop` both regions and MemFree must be back: {after:?} vs {before:?}")
    })?;
    play_to_the_end(console, Some(SMALL_CLIP))?;
    expect_output(console, "video stop", r"^last frame released")?;
    let after = used(console)?;
    check(console, after == before, || {
        format!("after the second play: {after:?} vs {before:?}")
    })
}

/// A board without the decoder: `video` says why and nothing changes.
pub fn without_decoder(console: &mut Console) -> Result<()> {
    boot(console)?;
    expect_output(
        console,
        "video info",
        r"(?m)^decoder: no virtio-video decoder",
    )?;
    expect_output(
        console,
        "video play",
        r"^video: no `monolith,video-clip` region in the device tree",
    )?;
    expect_output(console, "video stop", r"^video: no clip is playing")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lines_parse_from_the_guest_log_and_the_reference() {
        let guest = "[ 1.0] INFO video: frame 0 640x360 crc32 0123abcd\nnoise\n\
                     [ 1.1] INFO video: frame 1 320x240 crc32 ffffffff\n";
        let frames = parse_frames(guest, "video: ");
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[1],
            FrameCrc {
                number: 1,
                width: 320,
                height: 240,
                crc: "ffffffff".into()
            }
        );
        assert_eq!(
            parse_frames("frame 0 16x16 crc32 00000000\n", ""),
            parse_frames("video: frame 0 16x16 crc32 00000000", "video: ")
        );
        assert!(parse_frames("video: frame x 1x1 crc32 0", "video: ").is_empty());
    }

    #[test]
    fn frame_bytes_become_the_screens_rgb() {
        let image = image_of(&[1, 2, 3, 255, 4, 5, 6, 255], 2, 1);
        assert_eq!(image.pixel(0, 0), Some([3, 2, 1]));
        assert_eq!(image.pixel(1, 0), Some([6, 5, 4]));
    }
}
