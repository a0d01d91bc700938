//! `cargo xtask build`: the firmware ELF, its raw binary, and the in-QEMU test images.
//!
//! Theory of operation
//! -------------------
//! xtask itself runs under rustup's cargo, which leaves its own variables in our
//! environment. Those must not reach the firmware's cargo: `RUSTUP_TOOLCHAIN` would make a
//! rustup proxy pick the host toolchain, `RUSTC`/`RUSTDOC`/`CARGO` would name the wrong
//! compiler, wrappers and `RUSTFLAGS` meant for the host would apply to bare metal, and
//! `CARGO_TARGET_DIR` would mix firmware and host artifacts. So [`firmware_cargo`] removes
//! them all (and every `CARGO_*` that `cargo run` sets for a program: `CARGO_PKG_*`,
//! `CARGO_MANIFEST_*`, ...), keeping only the user's cargo settings (`CARGO_HOME`,
//! `CARGO_TERM_*`, `CARGO_NET_*`, `CARGO_HTTP_*`, `CARGO_REGISTRIES_*`), then sets
//! `RUSTC_BOOTSTRAP=1` (build-std needs `-Z`), `RUSTC=<chosen rustc>` and an explicit
//! `--target-dir` ([`crate::paths::firmware_target_dir`]).
//!
//! Test images are the `tests/*.rs` targets built with `--features qemu-test`; cargo's JSON
//! messages name each executable, so nothing guesses at hashed file names.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};

use crate::paths;
use crate::setup::{self, Tools};

/// `cargo xtask build [--debug]`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(args_override_self = true)]
pub struct Args {
    /// Build the debug profile instead of release
    #[arg(long, overrides_with = "release")]
    debug: bool,
    /// Build the release profile (the default)
    #[arg(long, overrides_with = "debug", hide = true)]
    release: bool,
}

impl Args {
    pub fn profile(&self) -> Profile {
        if self.debug {
            Profile::Debug
        } else {
            Profile::Release
        }
    }
}

/// `cargo xtask build`: check the tools, build the firmware.
pub fn verb(args: &Args) -> Result<ExitCode> {
    let tools = setup::ensure()?;
    firmware(&tools, args.profile()).map(|_| ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Release,
    Debug,
}

impl Profile {
    /// The directory cargo puts this profile's output in.
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

pub const TARGET: &str = "aarch64-unknown-none";
const BUILD_STD: [&str; 2] = [
    "-Zbuild-std=core,alloc",
    "-Zbuild-std-features=compiler-builtins-mem",
];

/// Which outer variables the firmware's cargo may keep.
pub fn keep_env_var(name: &str) -> bool {
    const DROP: [&str; 10] = [
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ];
    const KEEP_PREFIXES: [&str; 6] = [
        "CARGO_HOME",
        "CARGO_TERM_",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
    ];
    if DROP.contains(&name) {
        return false;
    }
    if name.starts_with("CARGO_") {
        return KEEP_PREFIXES.iter().any(|prefix| name.starts_with(prefix));
    }
    true
}

/// The firmware toolchain's cargo with a clean environment, in the repository root.
pub fn firmware_cargo(tools: &Tools) -> Command {
    let mut command = Command::new(&tools.firmware.cargo);
    command.env_clear();
    command.envs(std::env::vars_os().filter(|(name, _)| keep_env_var(&name.to_string_lossy())));
    command.env("RUSTC_BOOTSTRAP", "1");
    command.env("RUSTC", &tools.firmware.rustc);
    command.current_dir(paths::repo_root());
    command
}

/// Clippy over the bare-metal crate (library, image, in-QEMU test images) with every
/// warning an error: the firmware toolchain's `cargo check` with its clippy driver as the
/// workspace rustc wrapper (what `cargo clippy` does), in a target directory of its own so
/// the lint flags never invalidate the real build.
pub fn firmware_clippy(tools: &Tools) -> Command {
    let mut command = firmware_cargo(tools);
    command
        .env("RUSTC_WORKSPACE_WRAPPER", &tools.firmware.clippy_driver)
        .env("RUSTFLAGS", "-D warnings")
        .args(["check", "--release", "--target", TARGET])
        .args(BUILD_STD)
        .arg("--target-dir")
        .arg(paths::host_target_dir().join("firmware-clippy"))
        .args(["--lib", "--bins", "--test", "*", "--features", "qemu-test"]);
    command
}

fn common_build_args(command: &mut Command, profile: Profile) {
    command.arg("build");
    if profile == Profile::Release {
        command.arg("--release");
    }
    command.args(["--target", TARGET]).args(BUILD_STD);
    command
        .arg("--target-dir")
        .arg(paths::firmware_target_dir());
}

pub struct Firmware {
    pub elf: PathBuf,
}

pub fn output_dir(profile: Profile) -> PathBuf {
    paths::firmware_target_dir()
        .join(TARGET)
        .join(profile.dir_name())
}

/// Build the `monolith` binary and write `monolith.bin` next to it.
pub fn firmware(tools: &Tools, profile: Profile) -> Result<Firmware> {
    println!(
        "== build: firmware ({}, {:?} toolchain)",
        profile.dir_name(),
        tools.firmware.origin
    );
    let mut command = firmware_cargo(tools);
    common_build_args(&mut command, profile);
    command.args(["--bin", "monolith"]);
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {}", tools.firmware.cargo.display()))?;
    if !status.success() {
        bail!("firmware build failed ({status})");
    }
    let elf = output_dir(profile).join("monolith");
    let bin = elf.with_extension("bin");
    let elf_bytes = std::fs::read(&elf).with_context(|| format!("reading {}", elf.display()))?;
    let (base, raw) =
        crate::image::raw_binary(&elf_bytes).with_context(|| elf.display().to_string())?;
    std::fs::write(&bin, &raw).with_context(|| format!("writing {}", bin.display()))?;
    println!("build: {} ({} bytes)", elf.display(), elf_bytes.len());
    println!(
        "build: {} ({} bytes, loads at {base:#x})",
        bin.display(),
        raw.len()
    );
    Ok(Firmware { elf })
}

/// One `tests/<name>.rs` image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestImage {
    pub name: String,
    pub executable: PathBuf,
    pub source: PathBuf,
}

/// Images named `bench_*` print figures instead of verdicts: `cargo xtask bench` runs them
/// under `-icount`, `cargo xtask test` leaves them out.
pub const BENCH_IMAGE_PREFIX: &str = "bench_";
/// Images named `profile_*` exist to be traced: `cargo xtask profile` runs them under
/// QEMU's execution log; `test` and `bench` leave them out (their verdict is incidental and
/// their figures would only repeat a benchmark's).
pub const PROFILE_IMAGE_PREFIX: &str = "profile_";

impl TestImage {
    pub fn is_benchmark(&self) -> bool {
        self.name.starts_with(BENCH_IMAGE_PREFIX)
    }

    pub fn is_profile(&self) -> bool {
        self.name.starts_with(PROFILE_IMAGE_PREFIX)
    }
}

/// The test-file sources in `tests/`, whether or not cargo knows them as targets yet.
pub fn test_sources() -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(paths::repo_root().join("tests"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
                .collect()
        })
        .unwrap_or_default();
    sources.sort();
    sources
}

/// Pick the test executables out of cargo's `--message-format=json` stream.
pub fn test_images_from_messages(messages: &str) -> Vec<TestImage> {
    let mut images = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_test = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "test"));
        let (Some(name), Some(executable), Some(source)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
            message["target"]["src_path"].as_str(),
        ) else {
            continue;
        };
        if is_test {
            images.push(TestImage {
                name: name.to_string(),
                executable: PathBuf::from(executable),
                source: PathBuf::from(source),
            });
        }
    }
    images.sort_by(|a, b| a.name.cmp(&b.name));
    images.dedup_by(|a, b| a.name == b.name);
    images
}

/// Build the in-QEMU test images whose names `wanted` accepts (none when `tests/` has no
/// `.rs` file or none is wanted): every image in one `--test '*'` build when all are
/// wanted, else one `--test NAME` per wanted image, so a filtered run does not link the
/// thirty-odd images it will not boot.
pub fn test_images(
    tools: &Tools,
    profile: Profile,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<TestImage>> {
    let sources = test_sources();
    let names: Vec<String> = sources
        .iter()
        .filter_map(|path| path.file_stem().and_then(|stem| stem.to_str()))
        .map(String::from)
        .collect();
    let chosen: Vec<&String> = names.iter().filter(|name| wanted(name)).collect();
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    if !manifest_has_feature("qemu-test")? {
        bail!(
            "tests/ holds {} file(s) but Cargo.toml has no `qemu-test` feature: add \
             `[features] qemu-test = []` and a `[[test]]` entry (harness = false, \
             required-features = [\"qemu-test\"]) per image",
            sources.len()
        );
    }
    let mut command = firmware_cargo(tools);
    common_build_args(&mut command, profile);
    command.args([
        "--features",
        "qemu-test",
        "--message-format=json-render-diagnostics",
    ]);
    if chosen.len() == names.len() {
        command.args(["--test", "*"]);
    } else {
        for name in chosen {
            command.args(["--test", name]);
        }
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", tools.firmware.cargo.display()))?;
    let mut messages = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            messages.push_str(&line);
            messages.push('\n');
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("building the in-QEMU test images failed ({status})");
    }
    Ok(test_images_from_messages(&messages))
}

fn manifest_has_feature(feature: &str) -> Result<bool> {
    let path = paths::repo_root().join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(manifest
        .get("features")
        .and_then(|features| features.as_table())
        .is_some_and(|features| features.contains_key(feature)))
}

/// Paths in test headers are relative to the repository root.
pub fn repo_relative(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        paths::repo_root().join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_cargo_and_rustup_variables_are_dropped() {
        for name in [
            "RUSTUP_TOOLCHAIN",
            "CARGO",
            "RUSTC",
            "RUSTC_WRAPPER",
            "RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
            "CARGO_BIN_NAME",
            "CARGO_ENCODED_RUSTFLAGS",
        ] {
            assert!(
                !keep_env_var(name),
                "{name} must not reach the firmware cargo"
            );
        }
        for name in [
            "PATH",
            "HOME",
            "RUSTUP_HOME",
            "CARGO_HOME",
            "CARGO_TERM_COLOR",
            "CARGO_NET_OFFLINE",
        ] {
            assert!(keep_env_var(name), "{name} must be kept");
        }
    }

    #[test]
    fn test_images_come_from_test_artifacts_only() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"monolith","src_path":"/r/src/lib.rs"},"executable":null}
not json at all
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"boot","src_path":"/r/tests/boot.rs"},"executable":"/t/deps/boot-abc"}
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"monolith","src_path":"/r/src/main.rs"},"executable":"/t/monolith"}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"alloc","src_path":"/r/tests/alloc.rs"},"executable":"/t/deps/alloc-def"}
{"reason":"build-finished","success":true}"#;
        let images = test_images_from_messages(messages);
        assert_eq!(
            images,
            vec![
                TestImage {
                    name: "alloc".into(),
                    executable: "/t/deps/alloc-def".into(),
                    source: "/r/tests/alloc.rs".into()
                },
                TestImage {
                    name: "boot".into(),
                    executable: "/t/deps/boot-abc".into(),
                    source: "/r/tests/boot.rs".into()
                },
            ]
        );
    }
}
