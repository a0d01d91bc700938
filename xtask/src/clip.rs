//! The clip the firmware plays: made or checked on the host, loaded into guest RAM.
//!
//! Theory of operation
//! -------------------
//! QEMU's generic loader (`-device loader,file=F,addr=A,force-raw=on`) copies a file into
//! guest memory before the firmware starts. The place is [`CLIP_ADDR`], which
//! `boards/video.dtso` reserves as `/reserved-memory/video-clip@48000000`
//! (`compatible = "monolith,video-clip"`, reserved but mapped): the firmware finds it through the tree,
//! never through a constant of its own. The loaded image is a 16-byte header, `MNLCLIP1`
//! and the bitstream's length (u64, little-endian), then the Annex-B bitstream: the loader
//! tells the guest nothing about sizes.
//!
//! The default clip is made here, at build time, by the decoder device's `encode`
//! subcommand (the `openh264` encoder over a generated moving pattern), so the repository
//! holds no binary video; it is cached under `target/video/` by its parameters. A clip a
//! user brings (`--clip FILE`) is first checked by the device's `probe` subcommand, which
//! names the profile when it is not Constrained Baseline, so a bad file fails here with a
//! clear message rather than as a decode error in the guest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::paths::host_target_dir;

/// Guest-physical address of the clip image (`boards/video.dtso`).
pub const CLIP_ADDR: u64 = 0x4800_0000;
/// The reserved window's size (`boards/video.dtso`).
pub const CLIP_WINDOW: u64 = 32 << 20;
pub const CLIP_MAGIC: &[u8; 8] = b"MNLCLIP1";
const HEADER_BYTES: u64 = 16;
/// The largest bitstream that fits the window with its header.
pub const CLIP_MAX_BYTES: u64 = CLIP_WINDOW - HEADER_BYTES;

/// The default clip's shape: 720p, the size the pipeline's figures are quoted at.
pub const DEFAULT_SIZE: &str = "1280x720";
pub const DEFAULT_FRAMES: u32 = 120;
pub const DEFAULT_FPS: u32 = 30;

fn video_dir() -> PathBuf {
    host_target_dir().join("video")
}

/// Runs the device binary's offline subcommand `args`, returning stdout or its message.
fn device_tool(device: &Path, args: &[String]) -> Result<String> {
    let output = Command::new(device)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", device.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("{}", stderr.trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// An encoded clip of `frames` frames at `size`, then (if given) `then_frames` more at
/// `then_size`: made once, then taken from `target/video/`.
pub fn generated(
    device: &Path,
    size: &str,
    frames: u32,
    then: Option<(&str, u32)>,
) -> Result<PathBuf> {
    let name = match then {
        None => format!("pattern-{size}-{frames}f-{DEFAULT_FPS}fps.h264"),
        Some((s2, f2)) => format!("pattern-{size}-{frames}f-then-{s2}-{f2}f-{DEFAULT_FPS}fps.h264"),
    };
    let path = video_dir().join(name);
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(video_dir())?;
    let partial = path.with_extension(format!("part-{}", std::process::id()));
    let mut args: Vec<String> = vec![
        "encode".into(),
        "--out".into(),
        partial.display().to_string(),
        "--size".into(),
        size.into(),
        "--frames".into(),
        frames.to_string(),
        "--fps".into(),
        DEFAULT_FPS.to_string(),
    ];
    if let Some((s2, f2)) = then {
        args.extend([
            "--then".into(),
            s2.into(),
            "--then-frames".into(),
            f2.to_string(),
        ]);
    }
    device_tool(device, &args).context("encoding the clip")?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// `--clip` as given: a file, or `generated:SIZE:FRAMES[,SIZE:FRAMES]` for a pattern clip
/// made on the spot (the second part: a resolution change midway).
pub fn source(device: &Path, spec: &Path) -> Result<PathBuf> {
    let text = spec.to_string_lossy();
    let Some(generated_spec) = text.strip_prefix("generated:") else {
        return Ok(crate::build::repo_relative(spec));
    };
    let (first, then) = parse_generated(generated_spec)?;
    generated(
        device,
        &first.0,
        first.1,
        then.as_ref().map(|(s, f)| (s.as_str(), *f)),
    )
}

type Part = (String, u32);

/// `SIZE:FRAMES[,SIZE:FRAMES]`, SIZE as `WxH`.
pub fn parse_generated(spec: &str) -> Result<(Part, Option<Part>)> {
    let part = |text: &str| -> Result<Part> {
        let (size, frames) = text
            .split_once(':')
            .with_context(|| format!("`{text}`: expected SIZE:FRAMES, e.g. 640x360:30"))?;
        let (w, h) = size
            .split_once('x')
            .with_context(|| format!("`{size}`: expected WIDTHxHEIGHT"))?;
        let (w, h): (u32, u32) = (
            w.parse().with_context(|| format!("width `{w}`"))?,
            h.parse().with_context(|| format!("height `{h}`"))?,
        );
        if !(16..=1920).contains(&w)
            || !(16..=1088).contains(&h)
            || !w.is_multiple_of(2)
            || !h.is_multiple_of(2)
        {
            bail!("{w}x{h}: the decoder takes even sizes from 16x16 to 1920x1088");
        }
        let frames: u32 = frames
            .parse()
            .with_context(|| format!("frame count `{frames}`"))?;
        if frames == 0 || frames > 10_000 {
            bail!("{frames} frames: give 1 to 10000");
        }
        Ok((format!("{w}x{h}"), frames))
    };
    let mut parts = spec.split(',');
    let first = part(parts.next().unwrap_or_default())?;
    let then = parts.next().map(part).transpose()?;
    if parts.next().is_some() {
        bail!("`{spec}`: at most two parts (one resolution change)");
    }
    Ok((first, then))
}

/// The default clip.
pub fn default_clip(device: &Path) -> Result<PathBuf> {
    generated(device, DEFAULT_SIZE, DEFAULT_FRAMES, None)
}

/// The header the firmware looks for at [`CLIP_ADDR`].
pub fn image_bytes(bitstream: &[u8]) -> Result<Vec<u8>> {
    let len = bitstream.len() as u64;
    if len == 0 {
        bail!("the clip is empty");
    }
    if len > CLIP_MAX_BYTES {
        bail!(
            "the clip is {len} bytes; the window at {CLIP_ADDR:#x} holds at most \
             {CLIP_MAX_BYTES} ({} MiB with its header)",
            CLIP_WINDOW >> 20
        );
    }
    let mut bytes = Vec::with_capacity(bitstream.len() + HEADER_BYTES as usize);
    bytes.extend_from_slice(CLIP_MAGIC);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(bitstream);
    Ok(bytes)
}

/// Checks `clip` with the device's `probe` and writes the image QEMU loads.
pub fn prepare(device: &Path, clip: &Path) -> Result<PathBuf> {
    let clip_arg = clip.display().to_string();
    device_tool(device, &["probe".into(), "--clip".into(), clip_arg.clone()])
        .with_context(|| format!("--clip {clip_arg}"))?;
    let bitstream = std::fs::read(clip).with_context(|| format!("--clip {clip_arg}"))?;
    let image = image_bytes(&bitstream).with_context(|| format!("--clip {clip_arg}"))?;
    std::fs::create_dir_all(video_dir())?;
    let key = crate::board::cache_key("clip", &[], &image);
    let path = video_dir().join(format!("loaded-{key:016x}.bin"));
    if !path.is_file() {
        let partial = path.with_extension(format!("part-{}", std::process::id()));
        std::fs::write(&partial, &image)?;
        std::fs::rename(&partial, &path)?;
    }
    Ok(path)
}

/// The loader arguments that put `image` at [`CLIP_ADDR`].
pub fn loader_args(image: &Path) -> Vec<String> {
    let file = image.display().to_string().replace(',', ",,");
    vec![
        "-device".into(),
        format!("loader,file={file},addr={CLIP_ADDR:#x},force-raw=on"),
    ]
}

/// `bitstream` with its first SPS's `profile_idc` replaced: a clip the decoder must refuse
/// (for `cargo xtask test`'s check of `--clip` with another profile). Main (77) has the
/// same SPS syntax as Baseline, so the rest of the header still parses.
pub fn with_profile(bitstream: &[u8], profile_idc: u8) -> Result<Vec<u8>> {
    let sps = monolith::video::annexb::nal_units(bitstream)
        .into_iter()
        .find(|n| n.nal_type == monolith::video::annexb::nal_type::SPS && n.payload.len() > 3)
        .context("the clip has no sequence parameter set")?;
    let mut bytes = bitstream.to_vec();
    bytes[sps.payload.start + 1] = profile_idc;
    Ok(bytes)
}

/// What `cargo xtask run --clip FILE` says about a Main-profile clip: it must refuse it
/// before anything boots, naming the file, the profile and what the decoder takes.
pub fn check_refuses_other_profiles(tools: &crate::setup::Tools) -> Result<()> {
    let device = crate::video_device::binary()?;
    let baseline = std::fs::read(default_clip(&device)?)?;
    let main = video_dir().join("main-profile.h264");
    std::fs::write(&main, with_profile(&baseline, 77)?)?;
    let options = crate::run_options::RunOptions {
        board: Some("virt-video".into()),
        clip: Some(main.clone()),
        ..Default::default()
    };
    let refused = match crate::qemu::Boot::resolve(&options, tools) {
        Ok(_) => bail!("a Main-profile clip was accepted"),
        Err(error) => format!("{error:#}"),
    };
    let _ = std::fs::remove_file(&main);
    for part in [
        main.display().to_string().as_str(),
        "Main profile (77)",
        "the decoder supports Constrained Baseline only",
    ] {
        if !refused.contains(part) {
            bail!("the refusal must name `{part}`; it said: {refused}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_has_magic_length_and_bytes() {
        let image = image_bytes(b"\0\0\0\x01\x67").unwrap();
        assert_eq!(&image[..8], b"MNLCLIP1");
        assert_eq!(u64::from_le_bytes(image[8..16].try_into().unwrap()), 5);
        assert_eq!(&image[16..], b"\0\0\0\x01\x67");
        assert!(image_bytes(b"").is_err());
        let too_big = vec![0u8; (CLIP_MAX_BYTES + 1) as usize];
        assert!(format!("{:#}", image_bytes(&too_big).unwrap_err()).contains("at most"));
    }

    #[test]
    fn the_overlay_reserves_the_window_the_loader_fills() {
        let text = std::fs::read_to_string(crate::paths::boards_dir().join("video.dtso")).unwrap();
        let reg = format!("reg = <0x0 {CLIP_ADDR:#x} 0x0 {CLIP_WINDOW:#x}>");
        assert!(text.contains(&reg), "boards/video.dtso must hold `{reg}`");
        assert!(text.contains(&format!("video-clip@{CLIP_ADDR:x}")));
        assert!(text.contains("\"monolith,video-clip\""));
        // Mapped, so the firmware can read it: a plain reserved region.
        assert!(!text.contains("no-map;"));
    }

    #[test]
    fn generated_clip_specs() {
        assert_eq!(
            parse_generated("640x360:30").unwrap(),
            (("640x360".into(), 30), None)
        );
        assert_eq!(
            parse_generated("640x360:20,320x240:10").unwrap(),
            (("640x360".into(), 20), Some(("320x240".into(), 10)))
        );
        for bad in [
            "640x360",
            "640:30",
            "641x360:3",
            "640x360:0",
            "a,b,c",
            "8x8:1",
            "640x360:1,2x2:1,3x3:1",
        ] {
            assert!(parse_generated(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loader_arguments() {
        assert_eq!(
            loader_args(Path::new("/t/c.bin")),
            [
                "-device",
                "loader,file=/t/c.bin,addr=0x48000000,force-raw=on"
            ]
        );
    }
}
