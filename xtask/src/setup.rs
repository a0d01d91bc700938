//! `cargo xtask setup`: find the tools, and install the missing ones without a person.
//!
//! Theory of operation
//! -------------------
//! Every verb that needs QEMU, dtc or the firmware toolchain calls [`ensure`] first. It
//! probes (runs `--version`, looks for files) and, when everything is there, returns at once
//! with no apt call: a warm machine pays a few process spawns. When something is missing it
//! makes an install plan ([`Step`]s) and, on Debian 12 as root, carries it out with apt
//! (non-interactive, stdin closed, output streamed), then probes again. Anywhere else it
//! stops with the exact commands to run, so CI and a person see the same recipe.
//!
//! Firmware toolchain: `aarch64-unknown-none` needs `core`/`alloc` built from source
//! (`-Zbuild-std`), which needs the standard library's source. Detect, don't assume:
//! - the active rustup toolchain, if it has the `rust-src` component (its sysroot holds
//!   `lib/rustlib/src/rust/library/core/Cargo.toml`); rustc then finds its own rust-lld;
//! - otherwise Debian's `rustc-web` 1.9x with `rust-web-src` (source under
//!   `/usr/lib/rustlib/src`), `cargo-web`, `rust-web-clippy` (clippy for the bare-metal
//!   code), and `rust-lld` from `rust-web-llvm` (a link to `lld-22`). Rustup cannot download rust-src on machines without network access to its
//!   servers, while Debian's archive is reachable.
//!
//! Both are stable compilers; `RUSTC_BOOTSTRAP=1` (set by [`crate::build`]) unlocks `-Z`.
//!
//! QEMU's UI modules (the GTK window `cargo xtask run` opens on a desktop) are a package
//! of their own on Debian, `qemu-system-gui`; it must be the same version as
//! `qemu-system-arm` (QEMU loads only modules of its own build), so it comes from
//! bookworm-backports too, and an older one counts as missing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{anyhow, bail, Context, Result};

pub const BACKPORTS_SOURCE_PATH: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";
pub const BACKPORTS_SOURCE: &str = "\
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";
const MIN_QEMU_MAJOR: u32 = 10;
const QEMU_DATA_DIR: &str = "/usr/share/qemu";
const DEBIAN_SYSROOT: &str = "/usr";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolchainOrigin {
    Rustup,
    Debian,
}

/// The cargo and rustc that build the firmware.
#[derive(Debug, Clone)]
pub struct FirmwareToolchain {
    pub cargo: PathBuf,
    pub rustc: PathBuf,
    /// The same toolchain's clippy, run as the workspace rustc wrapper to lint the
    /// bare-metal code (the host clippy never sees `target_os = "none"` code).
    pub clippy_driver: PathBuf,
    pub origin: ToolchainOrigin,
}

/// Everything the other verbs run, found and checked.
#[derive(Debug, Clone)]
pub struct Tools {
    pub firmware: FirmwareToolchain,
    pub qemu: PathBuf,
    /// First line of `qemu-system-aarch64 --version` (part of the DTB cache key).
    pub qemu_version: String,
    pub qemu_data_dir: PathBuf,
    pub dtc: PathBuf,
    pub fdtoverlay: PathBuf,
}

/// The cargo that runs host builds and tests: the one running xtask (cargo sets `CARGO`
/// for `cargo run`), i.e. rustup's stable.
pub fn host_cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    AddBackportsSource,
    AptUpdate,
    AptInstall {
        packages: Vec<&'static str>,
        from_backports: bool,
    },
}

/// What a probe found missing, in terms of Debian packages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    /// QEMU absent, older than 10, or without its data directory.
    pub qemu: bool,
    /// Debian's QEMU UI modules (`qemu-system-gui`: the GTK window of `cargo xtask run`)
    /// absent, or not the same version as `qemu-system-arm` (QEMU refuses a module from
    /// another build).
    pub qemu_gui: bool,
    pub dtc: bool,
    /// `nasm`: the video decoder device's `openh264` build assembles its SIMD kernels with
    /// it, and silently falls back to plain C (a half to a third the speed) without it.
    pub nasm: bool,
    /// Debian firmware-toolchain packages to install (empty when rustup's toolchain fits).
    pub rust_packages: Vec<&'static str>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        !self.qemu && !self.qemu_gui && !self.dtc && !self.nasm && self.rust_packages.is_empty()
    }
}

pub fn install_plan(missing: &Missing, backports_configured: bool) -> Vec<Step> {
    if missing.is_empty() {
        return Vec::new();
    }
    let mut plan = Vec::new();
    if (missing.qemu || missing.qemu_gui) && !backports_configured {
        plan.push(Step::AddBackportsSource);
    }
    // A bare machine's package lists may be empty or stale: always refresh before installing.
    plan.push(Step::AptUpdate);
    // QEMU and its UI modules come from the same suite, so their versions agree.
    let mut backports = Vec::new();
    if missing.qemu {
        backports.extend(["qemu-system-arm", "qemu-system-data"]);
    }
    if missing.qemu_gui {
        backports.push("qemu-system-gui");
    }
    if !backports.is_empty() {
        plan.push(Step::AptInstall {
            packages: backports,
            from_backports: true,
        });
    }
    let mut packages = Vec::new();
    if missing.dtc {
        packages.push("device-tree-compiler");
    }
    if missing.nasm {
        packages.push("nasm");
    }
    packages.extend(missing.rust_packages.iter().copied());
    if !packages.is_empty() {
        plan.push(Step::AptInstall {
            packages,
            from_backports: false,
        });
    }
    plan
}

fn apt_install_words(packages: &[&str], from_backports: bool) -> Vec<String> {
    let mut words: Vec<String> = ["apt-get", "install", "-y", "--no-install-recommends"]
        .map(String::from)
        .to_vec();
    if from_backports {
        words.push("-t".into());
        words.push("bookworm-backports".into());
    }
    words.extend(packages.iter().map(|p| p.to_string()));
    words
}

/// The plan as shell lines a person pastes, for when xtask may not run it itself.
pub fn manual_instructions(reason: &str, plan: &[Step]) -> String {
    format!(
        "setup cannot install the missing tools: {reason}.\n\
         Run these commands, then run `cargo xtask setup` again:\n\n{}",
        plan_commands(plan)
    )
}

/// The plan's steps as shell lines, two spaces in, one per line (also used by
/// [`crate::qemu_build`] for its build dependencies).
pub fn plan_commands(plan: &[Step]) -> String {
    let mut text = String::new();
    for step in plan {
        match step {
            Step::AddBackportsSource => {
                let _ = writeln!(
                    text,
                    "  sudo tee {BACKPORTS_SOURCE_PATH} >/dev/null <<'EOF'"
                );
                for line in BACKPORTS_SOURCE.lines() {
                    let _ = writeln!(text, "  {line}");
                }
                let _ = writeln!(text, "  EOF");
            }
            Step::AptUpdate => {
                let _ = writeln!(text, "  sudo apt-get update");
            }
            Step::AptInstall {
                packages,
                from_backports,
            } => {
                let _ = writeln!(
                    text,
                    "  sudo DEBIAN_FRONTEND=noninteractive {}",
                    apt_install_words(packages, *from_backports).join(" ")
                );
            }
        }
    }
    text
}

/// Why this machine cannot run the plan itself, if it cannot.
pub fn refusal_reason(euid: Option<u32>, os_release: Option<&str>) -> Option<String> {
    if let Err(name) = debian_12(os_release) {
        return Some(format!(
            "this machine is {name}, not Debian 12; the commands below are Debian 12's: \
             elsewhere install QEMU >= {MIN_QEMU_MAJOR} (qemu-system-aarch64), dtc and \
             fdtoverlay, and `rustup component add rust-src`"
        ));
    }
    root_refusal(euid)
}

/// `Ok` on Debian 12, else the OS's name (`/etc/os-release` text, if readable).
pub fn debian_12(os_release: Option<&str>) -> Result<(), String> {
    let os = os_release.map(parse_os_release).unwrap_or_default();
    if os.id == "debian" && os.version_id == "12" {
        return Ok(());
    }
    Err(if os.pretty_name.is_empty() {
        "unknown OS".to_string()
    } else {
        os.pretty_name
    })
}

/// Why apt may not be run by this user (`euid` from [`effective_uid`]), if it may not.
pub fn root_refusal(euid: Option<u32>) -> Option<String> {
    match euid {
        Some(0) => None,
        Some(uid) => Some(format!("not running as root (uid {uid})")),
        None => Some("cannot tell the user id (`id -u` failed)".to_string()),
    }
}

#[derive(Debug, Default)]
struct OsRelease {
    id: String,
    version_id: String,
    pretty_name: String,
}

fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        match key.trim() {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    os
}

/// Major version from `QEMU emulator version 10.0.2 (Debian ...)`.
pub fn parse_qemu_major(version_line: &str) -> Option<u32> {
    let rest = version_line.split("version").nth(1)?.trim_start();
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Whether `qemu-system-gui` must be installed, from dpkg's view (`dpkg`: dpkg-query
/// exists; `arm`/`gui`: the installed versions of qemu-system-arm and qemu-system-gui). A
/// QEMU that is not Debian's (no qemu-system-arm package) is not given Debian's modules;
/// a QEMU about to be installed gets them with it.
pub fn qemu_gui_missing(
    dpkg: bool,
    qemu_missing: bool,
    arm: Option<&str>,
    gui: Option<&str>,
) -> bool {
    if !dpkg {
        return false;
    }
    match arm {
        Some(arm) => gui != Some(arm),
        None => qemu_missing,
    }
}

/// The installed version of Debian package `package`, if it is installed.
pub fn dpkg_version(package: &str) -> Option<String> {
    let line = first_line_of(
        Path::new("dpkg-query"),
        &["-W", "-f=${db:Status-Abbrev} ${Version}", package],
    )?;
    let (status, version) = line.split_once(' ')?;
    (status.starts_with("ii") && !version.trim().is_empty()).then(|| version.trim().to_string())
}

/// `MONOLITH_QEMU=/path/to/qemu-system-aarch64`: the QEMU every verb runs instead of the
/// one in PATH (for example the patched build of `cargo xtask qemu`). It is checked like
/// the stock one (version >= 10); its data directory is still Debian's, which matches a
/// build of the same version. Unset or empty: PATH.
pub const QEMU_OVERRIDE_VAR: &str = "MONOLITH_QEMU";

fn qemu_override() -> Option<PathBuf> {
    std::env::var_os(QEMU_OVERRIDE_VAR)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// Look `program` up in PATH (what `Command::new` would run), without running it.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn first_line_of(program: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(|line| line.trim().to_string())
}

fn has_rust_src(sysroot: &Path) -> bool {
    sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
}

struct Probe {
    lines: Vec<String>,
    missing: Missing,
    tools: Option<Tools>,
}

fn probe() -> Probe {
    let mut lines = Vec::new();
    let mut missing = Missing::default();

    let qemu = qemu_override().or_else(|| which("qemu-system-aarch64"));
    let qemu_version = qemu
        .as_deref()
        .and_then(|q| first_line_of(q, &["--version"]));
    let qemu_major = qemu_version.as_deref().and_then(parse_qemu_major);
    let data_dir = PathBuf::from(QEMU_DATA_DIR);
    match (&qemu, qemu_major) {
        (Some(path), Some(major)) if major >= MIN_QEMU_MAJOR => lines.push(format!(
            "{} ({})",
            qemu_version.clone().unwrap_or_default(),
            path.display()
        )),
        (Some(_), _) => {
            missing.qemu = true;
            lines.push(format!(
                "QEMU too old or unreadable: `{}`; need >= {MIN_QEMU_MAJOR} from bookworm-backports",
                qemu_version.clone().unwrap_or_default()
            ));
        }
        (None, _) => {
            missing.qemu = true;
            lines.push("qemu-system-aarch64 missing".to_string());
        }
    }
    if !data_dir.is_dir() {
        missing.qemu = true;
        lines.push(format!("QEMU data directory {QEMU_DATA_DIR} missing"));
    }
    let arm = dpkg_version("qemu-system-arm");
    let gui = dpkg_version("qemu-system-gui");
    missing.qemu_gui = qemu_gui_missing(
        which("dpkg-query").is_some(),
        missing.qemu,
        arm.as_deref(),
        gui.as_deref(),
    );
    match (&gui, missing.qemu_gui) {
        (Some(gui), false) => lines.push(format!("QEMU UI modules: qemu-system-gui {gui}")),
        (_, true) => lines.push(format!(
            "qemu-system-gui (QEMU's GTK window) missing or not at qemu-system-arm's version {}",
            arm.as_deref().unwrap_or("(to be installed)")
        )),
        (None, false) => {}
    }

    let dtc = which("dtc");
    let fdtoverlay = which("fdtoverlay");
    match (&dtc, &fdtoverlay) {
        (Some(dtc), Some(_)) => lines.push(format!(
            "dtc {} and fdtoverlay ({})",
            first_line_of(dtc, &["--version"])
                .unwrap_or_default()
                .trim_start_matches("Version: "),
            dtc.display()
        )),
        _ => {
            missing.dtc = true;
            lines.push("dtc/fdtoverlay missing".to_string());
        }
    }

    match which("nasm") {
        Some(nasm) => lines.push(format!("nasm ({})", nasm.display())),
        None => {
            missing.nasm = true;
            lines.push("nasm missing (the video device's openh264 build)".to_string());
        }
    }

    let firmware = detect_firmware_toolchain(&mut lines, &mut missing);

    let tools = match (qemu, qemu_version, dtc, fdtoverlay, firmware) {
        (Some(qemu), Some(qemu_version), Some(dtc), Some(fdtoverlay), Some(firmware))
            if missing.is_empty() =>
        {
            Some(Tools {
                firmware,
                qemu,
                qemu_version,
                qemu_data_dir: data_dir,
                dtc,
                fdtoverlay,
            })
        }
        _ => None,
    };
    Probe {
        lines,
        missing,
        tools,
    }
}

fn detect_firmware_toolchain(
    lines: &mut Vec<String>,
    missing: &mut Missing,
) -> Option<FirmwareToolchain> {
    let rustup_sysroot = first_line_of(Path::new("rustc"), &["--print", "sysroot"])
        .map(PathBuf::from)
        .filter(|sysroot| sysroot != Path::new(DEBIAN_SYSROOT));
    if let Some(sysroot) = rustup_sysroot.filter(|s| has_rust_src(s)) {
        let cargo = sysroot.join("bin/cargo");
        let rustc = sysroot.join("bin/rustc");
        let clippy_driver = sysroot.join("bin/clippy-driver");
        if cargo.is_file() && rustc.is_file() && clippy_driver.is_file() {
            lines.push(format!(
                "firmware toolchain: rustup with rust-src ({})",
                sysroot.display()
            ));
            return Some(FirmwareToolchain {
                cargo,
                rustc,
                clippy_driver,
                origin: ToolchainOrigin::Rustup,
            });
        }
    }
    let debian = Path::new(DEBIAN_SYSROOT);
    let rustc = debian.join("bin/rustc");
    let cargo = debian.join("bin/cargo");
    let clippy_driver = debian.join("bin/clippy-driver");
    let wanted: [(&[&'static str], bool); 5] = [
        (&["rustc-web"], rustc.is_file()),
        (&["cargo-web"], cargo.is_file()),
        (&["rust-web-src"], has_rust_src(debian)),
        (&["rust-web-clippy"], clippy_driver.is_file()),
        // rust-lld is rust-web-llvm's link to lld-22's binary; `exists` follows the link.
        (
            &["rust-web-llvm", "lld-22"],
            debian.join("bin/rust-lld").exists(),
        ),
    ];
    for (packages, present) in wanted {
        if !present {
            missing.rust_packages.extend_from_slice(packages);
        }
    }
    if missing.rust_packages.is_empty() {
        let version = first_line_of(&rustc, &["--version"]).unwrap_or_default();
        lines.push(format!(
            "firmware toolchain: Debian {version} with rust-web-src"
        ));
        Some(FirmwareToolchain {
            cargo,
            rustc,
            clippy_driver,
            origin: ToolchainOrigin::Debian,
        })
    } else {
        lines.push(format!(
            "firmware toolchain: rustup has no rust-src, Debian's is incomplete (missing {})",
            missing.rust_packages.join(", ")
        ));
        None
    }
}

fn apt_source_texts() -> Vec<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(entries.flatten().map(|entry| entry.path()));
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect()
}

pub fn backports_configured() -> bool {
    apt_source_texts().iter().any(|text| {
        text.lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .any(|line| line.contains("bookworm-backports"))
    })
}

/// Whether apt can download bookworm-backports *source* packages (`apt-get source`, for
/// [`crate::qemu_build`]): some sources file has a `deb-src` entry for the suite.
pub fn backports_deb_src_configured() -> bool {
    apt_source_texts()
        .iter()
        .any(|text| has_backports_deb_src(text))
}

/// [`backports_deb_src_configured`] for one file's text: a one-line `deb-src URI
/// bookworm-backports ...` entry, or a deb822 stanza whose `Types:` has `deb-src` and whose
/// `Suites:` has `bookworm-backports` (and is not `Enabled: no`).
pub fn has_backports_deb_src(text: &str) -> bool {
    let lines = || {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
    };
    let one_line = lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("deb-src") && words.any(|word| word == "bookworm-backports")
    });
    let deb822 = text.split("\n\n").any(|stanza| {
        let mut types = false;
        let mut suite = false;
        let mut enabled = true;
        for line in stanza
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
        {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let mut words = value.split_whitespace();
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types = words.any(|w| w == "deb-src"),
                "suites" => suite = words.any(|w| w == "bookworm-backports"),
                "enabled" => enabled = value.trim() != "no",
                _ => {}
            }
        }
        types && suite && enabled
    });
    one_line || deb822
}

pub fn effective_uid() -> Option<u32> {
    first_line_of(Path::new("id"), &["-u"])?.parse().ok()
}

/// Carry out one step as root, its output streamed, each action announced as `label: ...`.
pub fn run_step(label: &str, step: &Step) -> Result<()> {
    let words: Vec<String> = match step {
        Step::AddBackportsSource => {
            println!("{label}: writing {BACKPORTS_SOURCE_PATH}");
            return std::fs::write(BACKPORTS_SOURCE_PATH, BACKPORTS_SOURCE)
                .with_context(|| format!("writing {BACKPORTS_SOURCE_PATH}"));
        }
        Step::AptUpdate => vec!["apt-get".into(), "update".into()],
        Step::AptInstall {
            packages,
            from_backports,
        } => apt_install_words(packages, *from_backports),
    };
    println!("{label}: running `{}`", words.join(" "));
    let status = Command::new(&words[0])
        .args(&words[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {}", words[0]))?;
    if status.success() {
        Ok(())
    } else {
        bail!("`{}` failed ({status})", words.join(" "))
    }
}

/// `cargo xtask setup`: check the tools, install what is missing.
pub fn verb() -> Result<ExitCode> {
    ensure().map(|_| ExitCode::SUCCESS)
}

/// Check the tools; install what is missing where that is allowed. Idempotent.
pub fn ensure() -> Result<Tools> {
    println!("== setup");
    if let Some(qemu) = qemu_override() {
        // Installing Debian's QEMU would not help a QEMU named by hand: say so instead.
        let major = first_line_of(&qemu, &["--version"]).and_then(|v| parse_qemu_major(&v));
        if major.is_none_or(|major| major < MIN_QEMU_MAJOR) {
            bail!(
                "{QEMU_OVERRIDE_VAR}={} is not a QEMU >= {MIN_QEMU_MAJOR} (`--version` failed \
                 or is older); unset it, or point it at a qemu-system-aarch64 (`cargo xtask \
                 qemu` builds one)",
                qemu.display()
            );
        }
    }
    let first = probe();
    for line in &first.lines {
        println!("setup: {line}");
    }
    if let Some(tools) = first.tools {
        return Ok(tools);
    }
    let plan = install_plan(&first.missing, backports_configured());
    let os_release = std::fs::read_to_string("/etc/os-release").ok();
    if let Some(reason) = refusal_reason(effective_uid(), os_release.as_deref()) {
        bail!(manual_instructions(&reason, &plan));
    }
    for step in &plan {
        run_step("setup", step)?;
    }
    let second = probe();
    for line in &second.lines {
        println!("setup: {line}");
    }
    second.tools.ok_or_else(|| {
        anyhow!(
            "tools still missing after installing: {:?}; see README.md, Troubleshooting",
            second.missing
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_12: &str =
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

    fn everything_missing() -> Missing {
        Missing {
            qemu: true,
            qemu_gui: false,
            dtc: true,
            nasm: true,
            rust_packages: vec![
                "rustc-web",
                "cargo-web",
                "rust-web-src",
                "rust-web-clippy",
                "rust-web-llvm",
                "lld-22",
            ],
        }
    }

    #[test]
    fn qemu_ui_modules_follow_qemu() {
        let v = "1:10.0.2+ds-2+deb13u1~bpo12+1";
        assert!(!qemu_gui_missing(true, false, Some(v), Some(v)));
        assert!(qemu_gui_missing(true, false, Some(v), None));
        assert!(
            qemu_gui_missing(true, false, Some(v), Some("1:7.2+dfsg-7+deb12u18+b3")),
            "Debian 12's own UI modules do not load into backports' QEMU"
        );
        assert!(
            qemu_gui_missing(true, true, None, None),
            "installed along with QEMU"
        );
        assert!(
            !qemu_gui_missing(true, false, None, None),
            "a QEMU that is not Debian's"
        );
        assert!(
            !qemu_gui_missing(false, true, None, None),
            "no dpkg: not Debian"
        );
        // Only the UI missing: from backports, the same suite as QEMU.
        let plan = install_plan(
            &Missing {
                qemu_gui: true,
                ..Default::default()
            },
            false,
        );
        assert_eq!(
            plan,
            vec![
                Step::AddBackportsSource,
                Step::AptUpdate,
                Step::AptInstall {
                    packages: vec!["qemu-system-gui"],
                    from_backports: true
                }
            ]
        );
        let both = install_plan(
            &Missing {
                qemu: true,
                qemu_gui: true,
                ..Default::default()
            },
            true,
        );
        assert_eq!(
            both[1],
            Step::AptInstall {
                packages: vec!["qemu-system-arm", "qemu-system-data", "qemu-system-gui"],
                from_backports: true
            }
        );
    }

    #[test]
    fn nothing_missing_means_no_apt_at_all() {
        assert!(install_plan(&Missing::default(), false).is_empty());
    }

    #[test]
    fn bare_machine_plan() {
        let plan = install_plan(&everything_missing(), false);
        assert_eq!(plan[0], Step::AddBackportsSource);
        assert_eq!(plan[1], Step::AptUpdate);
        assert_eq!(
            plan[2],
            Step::AptInstall {
                packages: vec!["qemu-system-arm", "qemu-system-data"],
                from_backports: true
            }
        );
        match &plan[3] {
            Step::AptInstall {
                packages,
                from_backports: false,
            } => {
                assert!(packages.contains(&"device-tree-compiler"));
                assert!(packages.contains(&"rust-web-src"));
            }
            other => panic!("unexpected step {other:?}"),
        }
    }

    #[test]
    fn backports_source_not_rewritten_when_present() {
        let plan = install_plan(
            &Missing {
                qemu: true,
                ..Default::default()
            },
            true,
        );
        assert!(!plan.contains(&Step::AddBackportsSource));
        assert_eq!(plan[0], Step::AptUpdate);
    }

    #[test]
    fn dtc_only_needs_no_backports() {
        let plan = install_plan(
            &Missing {
                dtc: true,
                ..Default::default()
            },
            false,
        );
        assert_eq!(
            plan,
            vec![
                Step::AptUpdate,
                Step::AptInstall {
                    packages: vec!["device-tree-compiler"],
                    from_backports: false
                }
            ]
        );
    }

    #[test]
    fn not_root_gets_exact_commands() {
        let reason = refusal_reason(Some(1000), Some(DEBIAN_12)).expect("must refuse");
        assert!(reason.contains("not running as root"));
        let text = manual_instructions(&reason, &install_plan(&everything_missing(), false));
        assert!(
            text.contains(&format!("sudo tee {BACKPORTS_SOURCE_PATH}")),
            "{text}"
        );
        assert!(text.contains("  Types: deb deb-src\n"), "{text}");
        assert!(text.contains("  Suites: bookworm-backports\n"), "{text}");
        assert!(text.contains("  sudo apt-get update\n"), "{text}");
        assert!(
            text.contains("  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-arm qemu-system-data\n"),
            "{text}"
        );
        assert!(
            text.contains("apt-get install -y --no-install-recommends device-tree-compiler nasm rustc-web cargo-web rust-web-src rust-web-clippy rust-web-llvm lld-22\n"),
            "{text}"
        );
        // Order matters: the source before the update, the update before installs.
        let source = text.find("sudo tee").unwrap();
        let update = text.find("apt-get update").unwrap();
        let install = text.find("apt-get install").unwrap();
        assert!(source < update && update < install);
    }

    #[test]
    fn backports_deb_src_detection() {
        assert!(has_backports_deb_src(BACKPORTS_SOURCE));
        let binary_only = BACKPORTS_SOURCE.replace("Types: deb deb-src", "Types: deb");
        assert!(!has_backports_deb_src(&binary_only));
        let disabled = format!("{BACKPORTS_SOURCE}Enabled: no\n");
        assert!(!has_backports_deb_src(&disabled));
        // deb-src for another suite, and bookworm-backports binaries in the next stanza.
        let split = "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\n\
                     Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n";
        assert!(!has_backports_deb_src(split));
        assert!(has_backports_deb_src(
            "deb http://deb.debian.org/debian bookworm main\n\
             deb-src http://deb.debian.org/debian bookworm-backports main\n"
        ));
        assert!(!has_backports_deb_src(
            "# deb-src http://deb.debian.org/debian bookworm-backports main\n"
        ));
        assert!(!has_backports_deb_src(
            "deb http://deb.debian.org/debian bookworm-backports main\n"
        ));
    }

    #[test]
    fn root_on_debian_12_may_install() {
        assert_eq!(refusal_reason(Some(0), Some(DEBIAN_12)), None);
    }

    #[test]
    fn other_os_is_refused_even_as_root() {
        let ubuntu = "PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nID=ubuntu\nVERSION_ID=\"24.04\"\n";
        let reason = refusal_reason(Some(0), Some(ubuntu)).unwrap();
        assert!(reason.contains("Ubuntu 24.04 LTS"), "{reason}");
        let trixie = "ID=debian\nVERSION_ID=\"13\"\n";
        assert!(refusal_reason(Some(0), Some(trixie)).is_some());
        assert!(refusal_reason(Some(0), None)
            .unwrap()
            .contains("unknown OS"));
    }

    #[test]
    fn qemu_versions() {
        assert_eq!(
            parse_qemu_major("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"),
            Some(10)
        );
        assert_eq!(
            parse_qemu_major("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)"),
            Some(7)
        );
        assert_eq!(parse_qemu_major("garbage"), None);
    }
}
