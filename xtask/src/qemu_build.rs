//! `cargo xtask qemu [--force]`: build the patched QEMU that can host our vhost-user devices.
//!
//! Theory of operation
//! -------------------
//! Stock QEMU 10.0.2 refuses `-device vhost-user-device` (the class is not user-creatable);
//! `qemu/patches/*.patch` flip that (qemu/README.md says why). This module rebuilds the
//! QEMU this machine already runs, Debian's `qemu-system-arm` from bookworm-backports, from
//! Debian's source of exactly that version, with the patches applied, for
//! `aarch64-softmmu` only, and caches the result outside the work tree:
//!
//! `${XDG_CACHE_HOME:-$HOME/.cache}/monolith/qemu/<debian version, sanitised>-<first 12 hex
//! of the patches' sha256>/` holding `bin/qemu-system-aarch64`, `share/qemu/` (the data
//! directory), `BUILD-INFO` and `build.log`.
//!
//! Stages, each announced with a `qemu: STAGE: ...` line:
//! 1. deps: probe the build packages with one `dpkg-query` (a warm machine makes no apt
//!    call); missing ones, and a bookworm-backports source without `deb-src`, become a
//!    [`setup::Step`] plan that [`setup::run_step`] carries out as root on Debian 12, or
//!    that is printed as commands otherwise (the same apt code as `cargo xtask setup`);
//! 2. download: `apt-get source --download-only qemu=VERSION` (VERSION from dpkg-query);
//! 3. unpack: `dpkg-source -x` (Debian's patches applied). If the archive serves only the
//!    orig tarball (apt verified its hash, but the `.dsc`/`.debian.tar.xz` are missing, as on
//!    this workplace's package mirror), the tarball is unpacked instead and the build says
//!    loudly that Debian's own patches are not in it (`BUILD-INFO`: `debian_patches=no`);
//! 4. patch: `patch -p1` with each of our patches, in name order, then (orig tarball only)
//!    those in `qemu/patches/orig-tarball/`, which stand in for Debian's build fixes;
//! 5. configure: [`configure_args`]: aarch64 only, `--without-default-features`, then
//!    exactly what our verbs use (TCG, pixman, GTK, VNC, PNG screendumps, system libfdt,
//!    vhost-user, capstone for `-d in_asm`), UI built in (no modules), no docs or tools;
//! 6. build: `ninja`, its `[N/M]` lines condensed to a percentage every 5 %;
//! 7. install: `ninja install` into the staging prefix (QEMU installs relocatable: it finds
//!    its data directory relative to its binary, so the prefix may move).
//!
//! All of it happens in `<key>.partial/` next to the final directory, which is renamed into
//! place only when complete: a directory named by the key is always a whole build, so
//! [`cached`] just looks. A lock file (`<key>.lock`) serialises concurrent builders. A
//! `.partial` left by a killed build is resumed when it got through configure with the
//! same arguments (its `CONFIGURED` marker: ninja then goes on where it stopped, which
//! matters when a build takes half an hour on a busy machine), else removed; `--force`
//! always starts from scratch. Every command's
//! output goes to `build.log`; a failure prints the last lines and the log's path.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::paths::repo_root;
use crate::setup::{self, Step};

/// The Debian binary package whose version is rebuilt, and its source package.
const QEMU_BINARY_PACKAGE: &str = "qemu-system-arm";
const QEMU_SOURCE_PACKAGE: &str = "qemu";
/// QEMU 10 needs meson >= 1.5; bookworm has 1.0, bookworm-backports 1.7. Debian's orig
/// tarball drops the meson wheel upstream bundles, so the system's meson is the one used.
const MESON_MIN: (u32, u32) = (1, 5);
/// Build dependencies (Debian 12 names) besides meson. dpkg-dev: `apt-get source`,
/// `dpkg-source` (and through it patch and xz-utils); python3-venv: QEMU's configure builds
/// a venv around meson; ninja-build, pkg-config, gcc, libc6-dev, make, flex, bison: the
/// build itself; glib, pixman, libfdt, zlib: QEMU's required libraries; GTK: the window of
/// `cargo xtask run`; libpng: PNG `screendump`; capstone: the disassembly in `-d in_asm`
/// that `cargo xtask profile` reads.
pub const BUILD_PACKAGES: &[&str] = &[
    "dpkg-dev",
    "python3-venv",
    "ninja-build",
    "pkg-config",
    "gcc",
    "libc6-dev",
    "make",
    "flex",
    "bison",
    "libglib2.0-dev",
    "libpixman-1-dev",
    "libfdt-dev",
    "zlib1g-dev",
    "libgtk-3-dev",
    "libpng-dev",
    "libcapstone-dev",
];
const MESON_PACKAGE: &str = "meson";
/// Build dependencies that must come from bookworm-backports: meson (version, above);
/// python3-pycotap, which QEMU's configure wants next to meson (pythondeps.toml) and
/// bookworm lacks; and libwayland-dev (libgtk-3-dev needs it, and it must match the
/// libwayland-client0 that backports' qemu-system-gui brought in: bookworm's 1.21 -dev
/// refuses backports' 1.23 libraries).
pub const BACKPORTS_BUILD_PACKAGES: &[&str] = &[MESON_PACKAGE, "python3-pycotap", "libwayland-dev"];
/// Debian's Python, where meson and pycotap are installed: not whatever `python3` comes
/// first in PATH (pyenv's, on this workplace, has neither).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";
/// Lines of the log shown when a stage fails.
const TAIL_LINES: usize = 40;
/// Build progress is printed each time it passes a multiple of this many percent.
const PROGRESS_STEP: u64 = 5;
const BINARY: &str = "bin/qemu-system-aarch64";
const DATA_DIR: &str = "share/qemu";
const BUILD_INFO: &str = "BUILD-INFO";
const LOG_NAME: &str = "build.log";

#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Rebuild even when a build for this QEMU version and these patches is cached
    #[arg(long)]
    pub force: bool,
}

/// A complete patched build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchedQemu {
    /// `.../bin/qemu-system-aarch64`.
    pub binary: PathBuf,
    /// `.../share/qemu`: pass it with `-L` (Debian's `/usr/share/qemu` fits too: same
    /// version).
    pub data_dir: PathBuf,
    /// The Debian version rebuilt, e.g. `1:10.0.2+ds-2+deb13u1~bpo12+1`.
    pub version: String,
    /// Whether Debian's own patches are in it (false: built from the orig tarball alone,
    /// because the archive did not serve the `.dsc`).
    pub debian_patches: bool,
}

/// `cargo xtask qemu`.
pub fn verb(args: &Args) -> Result<ExitCode> {
    let qemu = if args.force { build(true)? } else { ensure()? };
    println!("qemu: {}", qemu.binary.display());
    println!("qemu: data directory {}", qemu.data_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// A complete build for the installed QEMU version and the current patches, if there is
/// one. No side effects beyond one `dpkg-query` and reading the patch files.
pub fn cached() -> Option<PatchedQemu> {
    let version = setup::dpkg_version(QEMU_BINARY_PACKAGE)?;
    let patches = read_patches().ok()?;
    let dir = cache_root()?.join(cache_key(&version, &patches));
    complete_build(&dir, &version)
}

/// The patched QEMU: the cached build, or a new one (minutes, with progress).
pub fn ensure() -> Result<PatchedQemu> {
    build(false)
}

/// A patch file: its name relative to `qemu/patches` (part of the key: renaming reorders)
/// and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub name: String,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl Patch {
    /// Whether it is applied only to a tree unpacked from the orig tarball alone
    /// (`qemu/patches/orig-tarball/`: what Debian's own patches would otherwise fix).
    pub fn orig_tarball_only(&self) -> bool {
        self.name.starts_with(ORIG_TARBALL_PATCHES)
    }
}

/// The subdirectory of `qemu/patches` for patches that stand in for Debian's.
const ORIG_TARBALL_PATCHES: &str = "orig-tarball/";

fn patch_dir() -> PathBuf {
    repo_root().join("qemu/patches")
}

/// Every `qemu/patches/*.patch`, then every `qemu/patches/orig-tarball/*.patch`, each in
/// name order (the order they are applied).
fn read_patches() -> Result<Vec<Patch>> {
    let dir = patch_dir();
    let mut patches = patches_in(&dir, "")?;
    if patches.is_empty() {
        bail!("no *.patch in {}: nothing to build", dir.display());
    }
    let orig_only = dir.join(ORIG_TARBALL_PATCHES);
    if orig_only.is_dir() {
        patches.extend(patches_in(&orig_only, ORIG_TARBALL_PATCHES)?);
    }
    Ok(patches)
}

/// The `*.patch` files directly in `dir`, sorted, named `prefix` + file name.
fn patches_in(dir: &Path, prefix: &str) -> Result<Vec<Patch>> {
    let mut patches = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".patch") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        patches.push(Patch {
            name: format!("{prefix}{name}"),
            path,
            bytes,
        });
    }
    patches.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(patches)
}

/// sha256 over every patch's name, length and bytes, as lowercase hex.
pub fn patches_sha256(patches: &[Patch]) -> String {
    let mut hasher = Sha256::new();
    for patch in patches {
        hasher.update(patch.name.as_bytes());
        hasher.update([0]);
        hasher.update((patch.bytes.len() as u64).to_le_bytes());
        hasher.update(&patch.bytes);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A Debian version as one path component: `:` (the epoch's) and `~` become `_`; letters,
/// digits and `.+-` stay; anything else (`/` included) becomes `_`.
pub fn sanitise_version(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The cache directory's name for `version` built with `patches`.
pub fn cache_key(version: &str, patches: &[Patch]) -> String {
    format!(
        "{}-{}",
        sanitise_version(version),
        &patches_sha256(patches)[..12]
    )
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/monolith/qemu`.
fn cache_root() -> Option<PathBuf> {
    cache_root_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

/// [`cache_root`] from the two variables. The XDG spec ignores a relative (or empty)
/// `XDG_CACHE_HOME`; without `HOME` there is no cache.
pub fn cache_root_from(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let base = match xdg_cache_home.map(PathBuf::from) {
        Some(xdg) if xdg.is_absolute() => xdg,
        _ => {
            let home = PathBuf::from(home.filter(|h| !h.is_empty())?);
            home.join(".cache")
        }
    };
    Some(base.join("monolith/qemu"))
}

fn complete_build(dir: &Path, version: &str) -> Option<PatchedQemu> {
    let binary = dir.join(BINARY);
    let info = std::fs::read_to_string(dir.join(BUILD_INFO)).ok()?;
    if !binary.is_file() {
        return None;
    }
    Some(PatchedQemu {
        binary,
        data_dir: dir.join(DATA_DIR),
        version: version.to_string(),
        debian_patches: info.lines().any(|line| line == "debian_patches=yes"),
    })
}

/// Parse `dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Version}\n'` output into
/// the installed packages' versions (`ii` only: a removed package's config is not a
/// package).
pub fn parse_dpkg_query(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (package, status, version) = (fields.next()?, fields.next()?, fields.next()?);
            (status.starts_with("ii") && !version.trim().is_empty())
                .then(|| (package.trim().to_string(), version.trim().to_string()))
        })
        .collect()
}

fn installed_versions(packages: &[&str]) -> BTreeMap<String, String> {
    // Exit status 1 when some package is unknown; the known ones are still printed.
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${db:Status-Abbrev}\t${Version}\n"])
        .args(packages)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(output) => parse_dpkg_query(&String::from_utf8_lossy(&output.stdout)),
        Err(_) => BTreeMap::new(),
    }
}

/// Whether a Debian version of meson is at least [`MESON_MIN`] (`1.7.0-1~bpo12+1` yes,
/// `1.0.1-5` no).
pub fn meson_new_enough(version: &str) -> bool {
    let upstream = version.split_once(':').map_or(version, |(_, rest)| rest);
    let mut numbers = upstream
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= MESON_MIN,
        _ => false,
    }
}

/// What must happen before the build can start: nothing on a warm machine. `installed`:
/// package -> version; `deb_src`: whether apt can fetch bookworm-backports sources.
pub fn dependency_plan(installed: &BTreeMap<String, String>, deb_src: bool) -> Vec<Step> {
    let missing: Vec<&'static str> = BUILD_PACKAGES
        .iter()
        .copied()
        .filter(|package| !installed.contains_key(*package))
        .collect();
    let backports: Vec<&'static str> = BACKPORTS_BUILD_PACKAGES
        .iter()
        .copied()
        .filter(|package| match installed.get(*package) {
            None => true,
            Some(version) => *package == MESON_PACKAGE && !meson_new_enough(version),
        })
        .collect();
    let mut plan = Vec::new();
    if !deb_src {
        plan.push(Step::AddBackportsSource);
    }
    if !deb_src || !backports.is_empty() || !missing.is_empty() {
        plan.push(Step::AptUpdate);
    }
    // Backports first: the plain install's libgtk-3-dev then finds its libwayland-dev.
    if !backports.is_empty() {
        plan.push(Step::AptInstall {
            packages: backports,
            from_backports: true,
        });
    }
    if !missing.is_empty() {
        plan.push(Step::AptInstall {
            packages: missing,
            from_backports: false,
        });
    }
    plan
}

/// The error for a machine that may not run `plan` itself (`reason` from
/// [`setup::root_refusal`]).
pub fn manual_dependency_instructions(reason: &str, plan: &[Step]) -> String {
    format!(
        "cannot install the patched QEMU's build dependencies: {reason}.\n\
         Run these commands, then run `cargo xtask qemu` again:\n\n{}",
        setup::plan_commands(plan)
    )
}

/// The error for a machine that is not Debian 12: what to do by hand instead.
fn not_debian_instructions(name: &str) -> String {
    format!(
        "`cargo xtask qemu` rebuilds Debian 12's QEMU from Debian's source and needs Debian 12 \
         (dpkg, apt); this machine is {name}.\nElsewhere build QEMU 10.0.2 by hand: unpack \
         its source, apply {} with `patch -p1`, run `./configure {}` and `make install`, then \
         point xtask at it with {}=PREFIX/{BINARY}",
        patch_dir().join("*.patch").display(),
        configure_args(Path::new("PREFIX"), "VERSION", "HASH").join(" "),
        setup::QEMU_OVERRIDE_VAR
    )
}

/// `./configure` arguments: aarch64 only, every auto feature off, then what we use.
pub fn configure_args(prefix: &Path, version: &str, patch_hash: &str) -> Vec<String> {
    let mut args = vec![
        format!("--prefix={}", prefix.display()),
        "--target-list=aarch64-softmmu".to_string(),
        format!("--python={SYSTEM_PYTHON}"),
        format!("--with-pkgversion=Debian {version} + Monolith patches {patch_hash}"),
        "--without-default-features".to_string(),
        // Nothing from PyPI or git: the tree and the system's meson must suffice.
        "--disable-download".to_string(),
    ];
    args.extend(
        [
            "--disable-werror",
            "--disable-docs",
            "--disable-tools",
            "--disable-guest-agent",
            "--disable-debug-info",
            // The UI in the binary itself: a module of another build would not load.
            "--disable-modules",
            "--enable-tcg",
            "--enable-pixman",
            "--enable-gtk",
            "--enable-vnc",
            "--enable-png",
            "--enable-fdt=system",
            "--enable-vhost-user",
            "--enable-capstone",
        ]
        .map(String::from),
    );
    args
}

/// `[N/M] ...` (ninja's status line) -> (N, M).
pub fn ninja_progress(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix('[')?;
    let (counts, _) = rest.split_once(']')?;
    let (done, total) = counts.split_once('/')?;
    let (done, total) = (done.trim().parse().ok()?, total.trim().parse().ok()?);
    (total > 0 && done <= total).then_some((done, total))
}

/// Turns ninja's counts into a percentage worth printing: each multiple of
/// [`PROGRESS_STEP`] once, in order.
#[derive(Debug, Default)]
pub struct Progress {
    printed: Option<u64>,
}

impl Progress {
    pub fn update(&mut self, done: u64, total: u64) -> Option<u64> {
        let percent = done * 100 / total;
        let step = percent - percent % PROGRESS_STEP;
        if self.printed.is_some_and(|printed| step <= printed) {
            return None;
        }
        self.printed = Some(step);
        Some(step)
    }
}

/// The version with neither epoch nor Debian revision: `10.0.2+ds`.
pub fn upstream_version(version: &str) -> &str {
    let no_epoch = version.split_once(':').map_or(version, |(_, rest)| rest);
    no_epoch
        .rsplit_once('-')
        .map_or(no_epoch, |(upstream, _)| upstream)
}

/// The build's log and staging directory.
struct Staging {
    dir: PathBuf,
    log_path: PathBuf,
    log: File,
}

impl Staging {
    fn note(&mut self, text: &str) {
        let _ = writeln!(self.log, "== {text}");
    }

    /// Run `command` with stdin closed and its output in the log.
    fn run(&mut self, stage: &str, command: &mut Command) -> Result<()> {
        self.note(&format!("{stage}: {}", crate::qemu::describe(command)));
        let status = command
            .stdin(Stdio::null())
            .stdout(self.log.try_clone()?)
            .stderr(self.log.try_clone()?)
            .status()
            .with_context(|| format!("{stage}: cannot start {:?}", command.get_program()))?;
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(
                stage,
                &format!("`{}` failed ({status})", crate::qemu::describe(command)),
            ))
        }
    }

    /// `ninja` with its progress condensed to a percentage.
    fn run_ninja(&mut self, stage: &str, command: &mut Command) -> Result<()> {
        self.note(&format!("{stage}: {}", crate::qemu::describe(command)));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.log.try_clone()?)
            .spawn()
            .with_context(|| format!("{stage}: cannot start ninja"))?;
        let stdout = child.stdout.take().context("ninja's stdout")?;
        let mut progress = Progress::default();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            let _ = writeln!(self.log, "{line}");
            if let Some(percent) =
                ninja_progress(&line).and_then(|(n, m)| progress.update(n, m).map(|p| (p, n, m)))
            {
                println!(
                    "qemu: {stage}: {:3}% ({}/{})",
                    percent.0, percent.1, percent.2
                );
            }
        }
        let status = child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(stage, &format!("ninja failed ({status})")))
        }
    }

    fn failure(&mut self, stage: &str, what: &str) -> anyhow::Error {
        let _ = self.log.flush();
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        anyhow!(
            "{stage}: {what}\n--- last {TAIL_LINES} lines of {} ---\n{tail}\n--- full log: {} \
             (rerun with `cargo xtask qemu --force` after fixing)",
            self.log_path.display(),
            self.log_path.display()
        )
    }
}

fn build(force: bool) -> Result<PatchedQemu> {
    let os_release = std::fs::read_to_string("/etc/os-release").ok();
    if let Err(name) = setup::debian_12(os_release.as_deref()) {
        bail!(not_debian_instructions(&name));
    }
    let version = setup::dpkg_version(QEMU_BINARY_PACKAGE).ok_or_else(|| {
        anyhow!(
            "{QEMU_BINARY_PACKAGE} (Debian's QEMU, from bookworm-backports) is not installed; \
             the patched QEMU is a rebuild of the installed version: run `cargo xtask setup` \
             first"
        )
    })?;
    let patches = read_patches()?;
    let hash = patches_sha256(&patches);
    let key = cache_key(&version, &patches);
    let root = cache_root().ok_or_else(|| {
        anyhow!("neither XDG_CACHE_HOME nor HOME is set: no place for the QEMU build cache")
    })?;
    let final_dir = root.join(&key);
    if !force {
        if let Some(qemu) = complete_build(&final_dir, &version) {
            println!("qemu: cached build {}", final_dir.display());
            return Ok(qemu);
        }
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let lock_path = root.join(format!("{key}.lock"));
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        println!("qemu: another build of {key} is running; waiting for it");
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        if !force {
            if let Some(qemu) = complete_build(&final_dir, &version) {
                println!("qemu: cached build {}", final_dir.display());
                return Ok(qemu);
            }
        }
    }
    let started = Instant::now();
    println!(
        "== qemu: building QEMU {version} with {} patch(es) into {}",
        patches.len(),
        final_dir.display()
    );

    install_dependencies()?;

    let staging_dir = root.join(format!("{key}.partial"));
    let build_dir = staging_dir.join("build");
    let prefix = staging_dir.join("install");
    let args = configure_args(&prefix, &version, &hash[..12]);
    let resume = if force {
        None
    } else {
        resumable(&staging_dir, &args)
    };
    if resume.is_none() && staging_dir.exists() {
        std::fs::remove_dir_all(&staging_dir)
            .with_context(|| format!("removing the leftover {}", staging_dir.display()))?;
    }
    std::fs::create_dir_all(&staging_dir)
        .with_context(|| format!("creating {}", staging_dir.display()))?;
    let log_path = staging_dir.join(LOG_NAME);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut staging = Staging {
        dir: staging_dir.clone(),
        log_path,
        log,
    };
    println!("qemu: log {}", staging.log_path.display());

    let configured = match resume {
        Some(configured) => {
            println!(
                "qemu: resuming the interrupted build in {} (configured; ninja goes on where \
                 it stopped)",
                staging_dir.display()
            );
            configured
        }
        None => {
            let (source, debian_patches) = download_and_unpack(&mut staging, &version)?;
            let applied: Vec<String> = patches
                .iter()
                .filter(|patch| !debian_patches || !patch.orig_tarball_only())
                .map(|patch| patch.name.clone())
                .collect();
            for patch in patches.iter().filter(|p| applied.contains(&p.name)) {
                println!("qemu: patch: {}", patch.name);
                staging.run(
                    "patch",
                    Command::new("patch")
                        .args([
                            "-p1",
                            "--batch",
                            "--forward",
                            "--no-backup-if-mismatch",
                            "-i",
                        ])
                        .arg(&patch.path)
                        .current_dir(&source),
                )?;
            }
            std::fs::create_dir_all(&build_dir)?;
            println!("qemu: configure: aarch64-softmmu, GTK + VNC built in, vhost-user");
            staging.run(
                "configure",
                Command::new(source.join("configure"))
                    .args(&args)
                    .current_dir(&build_dir),
            )?;
            let configured = Configured {
                debian_patches,
                applied,
            };
            // Written whole, then renamed: a marker is never half a marker.
            let marker = staging_dir.join(CONFIGURED);
            let part = staging_dir.join(format!("{CONFIGURED}.part"));
            std::fs::write(&part, configured_marker(&args, &configured))?;
            std::fs::rename(&part, &marker)?;
            configured
        }
    };

    println!("qemu: build: ninja (minutes; progress every {PROGRESS_STEP}%)");
    staging.run_ninja("build", Command::new("ninja").arg("-C").arg(&build_dir))?;

    println!("qemu: install: into the staging prefix");
    staging.run(
        "install",
        Command::new("ninja")
            .arg("-C")
            .arg(&build_dir)
            .arg("install"),
    )?;
    if !prefix.join(BINARY).is_file() {
        return Err(staging.failure("install", &format!("no {BINARY} after `ninja install`")));
    }

    let seconds = started.elapsed().as_secs();
    let (debian_patches, names) = (configured.debian_patches, configured.applied);
    let info = format!(
        "debian_version={version}\npatches={}\npatches_sha256={hash}\ndebian_patches={}\n\
         build_seconds={seconds}\n",
        names.join(" "),
        if debian_patches { "yes" } else { "no" }
    );
    std::fs::write(prefix.join(BUILD_INFO), info)?;
    staging.note("done");
    std::fs::copy(&staging.log_path, prefix.join(LOG_NAME))?;

    // Into place: the old build (with --force) aside first, since a rename cannot replace
    // a non-empty directory; a reader sees the old build or the new, never half of one.
    let old = root.join(format!("{key}.old"));
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if final_dir.exists() {
        std::fs::rename(&final_dir, &old)?;
    }
    std::fs::rename(&prefix, &final_dir)
        .with_context(|| format!("moving the build into {}", final_dir.display()))?;
    for leftover in [&old, &staging_dir] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)
                .with_context(|| format!("removing {}", leftover.display()))?;
        }
    }
    println!(
        "qemu: done in {}m{:02}s: {}",
        seconds / 60,
        seconds % 60,
        final_dir.display()
    );
    complete_build(&final_dir, &version)
        .ok_or_else(|| anyhow!("{} is incomplete after the build", final_dir.display()))
}

/// In the staging directory once configure succeeded: [`configured_marker`].
const CONFIGURED: &str = "CONFIGURED";

/// What the download, unpack and patch stages found, kept for a resumed build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    pub debian_patches: bool,
    /// The patches applied, by name.
    pub applied: Vec<String>,
}

/// The configure arguments one a line, then what [`Configured`] holds.
pub fn configured_marker(args: &[String], configured: &Configured) -> String {
    let mut text: String = args.iter().map(|arg| format!("{arg}\n")).collect();
    text.push_str(&format!(
        "debian_patches={}\napplied={}\n",
        if configured.debian_patches {
            "yes"
        } else {
            "no"
        },
        configured.applied.join(" ")
    ));
    text
}

/// [`configured_marker`]'s text back, if it was written for exactly `args`.
pub fn parse_configured_marker(text: &str, args: &[String]) -> Option<Configured> {
    let mut lines = text.lines();
    for arg in args {
        if lines.next()? != arg {
            return None;
        }
    }
    let debian_patches = match lines.next()?.strip_prefix("debian_patches=")? {
        "yes" => true,
        "no" => false,
        _ => return None,
    };
    let applied = lines
        .next()?
        .strip_prefix("applied=")?
        .split_whitespace()
        .map(String::from)
        .collect();
    lines.next().is_none().then_some(Configured {
        debian_patches,
        applied,
    })
}

/// An interrupted build that got through configure with these very arguments (so the same
/// version, patches and prefix): ninja can go on from where it stopped.
fn resumable(staging_dir: &Path, args: &[String]) -> Option<Configured> {
    if !staging_dir.join("build/build.ninja").is_file() {
        return None;
    }
    let text = std::fs::read_to_string(staging_dir.join(CONFIGURED)).ok()?;
    parse_configured_marker(&text, args)
}

/// Stage 1: the build dependencies.
fn install_dependencies() -> Result<()> {
    let mut wanted = BUILD_PACKAGES.to_vec();
    wanted.extend_from_slice(BACKPORTS_BUILD_PACKAGES);
    let installed = installed_versions(&wanted);
    let plan = dependency_plan(&installed, setup::backports_deb_src_configured());
    if plan.is_empty() {
        println!("qemu: deps: all {} build packages present", wanted.len());
        return Ok(());
    }
    println!("qemu: deps: {} step(s) to run", plan.len());
    if let Some(reason) = setup::root_refusal(setup::effective_uid()) {
        bail!(manual_dependency_instructions(&reason, &plan));
    }
    for step in &plan {
        setup::run_step("qemu: deps", step)?;
    }
    let installed = installed_versions(&wanted);
    let left = dependency_plan(&installed, setup::backports_deb_src_configured());
    if !left.is_empty() {
        bail!(
            "build dependencies still missing after installing them:\n{}",
            setup::plan_commands(&left)
        );
    }
    Ok(())
}

/// Stages 2 and 3: the source tree, and whether Debian's patches are in it.
fn download_and_unpack(staging: &mut Staging, version: &str) -> Result<(PathBuf, bool)> {
    let download = staging.dir.join("download");
    std::fs::create_dir_all(&download)?;
    let spec = format!("{QEMU_SOURCE_PACKAGE}={version}");
    println!("qemu: download: apt-get source --download-only {spec}");
    let mut outcome = staging.run(
        "download",
        Command::new("apt-get")
            .args(["source", "--download-only"])
            .arg(&spec)
            .current_dir(&download),
    );
    let no_epoch = version.split_once(':').map_or(version, |(_, rest)| rest);
    let dsc = download.join(format!("{QEMU_SOURCE_PACKAGE}_{no_epoch}.dsc"));
    let orig = find_orig_tarball(&download, upstream_version(version));
    if outcome.is_err() && !dsc.is_file() && orig.is_none() {
        // Perhaps apt's source lists were never fetched (deb-src added without an update).
        println!("qemu: download: retrying after `apt-get update`");
        if setup::root_refusal(setup::effective_uid()).is_none() {
            staging.run("download", Command::new("apt-get").arg("update"))?;
            outcome = staging.run(
                "download",
                Command::new("apt-get")
                    .args(["source", "--download-only"])
                    .arg(&spec)
                    .current_dir(&download),
            );
        }
    }
    let source = staging.dir.join("src");
    if dsc.is_file() {
        outcome?;
        println!("qemu: unpack: dpkg-source -x (Debian's patches applied)");
        staging.run(
            "unpack",
            Command::new("dpkg-source").arg("-x").arg(&dsc).arg(&source),
        )?;
        return Ok((source, true));
    }
    let Some(orig) = find_orig_tarball(&download, upstream_version(version)) else {
        return Err(match outcome {
            Err(error) => error.context(format!(
                "cannot download Debian's source of QEMU {version}: is there a `deb-src` entry \
                 for bookworm-backports ({}) and does `apt-get update` work?",
                setup::BACKPORTS_SOURCE_PATH
            )),
            Ok(()) => anyhow!("`apt-get source {spec}` brought neither a .dsc nor an orig tarball"),
        });
    };
    println!(
        "qemu: download: WARNING: the archive served {} but not {}: building Debian's orig \
         tarball (upstream QEMU) WITHOUT Debian's own patches",
        orig.file_name().unwrap_or_default().to_string_lossy(),
        dsc.file_name().unwrap_or_default().to_string_lossy()
    );
    println!("qemu: unpack: tar -xf {}", orig.display());
    let unpack = staging.dir.join("unpack");
    std::fs::create_dir_all(&unpack)?;
    staging.run(
        "unpack",
        Command::new("tar")
            .arg("-xf")
            .arg(&orig)
            .arg("-C")
            .arg(&unpack),
    )?;
    let mut tops = std::fs::read_dir(&unpack)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir());
    let (Some(top), None) = (tops.next(), tops.next()) else {
        return Err(staging.failure("unpack", "the orig tarball does not hold one top directory"));
    };
    std::fs::rename(&top, &source)?;
    Ok((source, false))
}

/// `qemu_<upstream>.orig.tar.*` in `dir`.
fn find_orig_tarball(dir: &Path, upstream: &str) -> Option<PathBuf> {
    let prefix = format!("{QEMU_SOURCE_PACKAGE}_{upstream}.orig.tar.");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|name| name.starts_with(&prefix))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION: &str = "1:10.0.2+ds-2+deb13u1~bpo12+1";

    fn patch(name: &str, bytes: &[u8]) -> Patch {
        Patch {
            name: name.to_string(),
            path: PathBuf::from(name),
            bytes: bytes.to_vec(),
        }
    }

    fn warm() -> BTreeMap<String, String> {
        let mut installed: BTreeMap<String, String> = BUILD_PACKAGES
            .iter()
            .map(|p| (p.to_string(), "1.0".to_string()))
            .collect();
        installed.insert("meson".into(), "1.7.0-1~bpo12+1".into());
        installed.insert("libwayland-dev".into(), "1.23.0-1~bpo12+1".into());
        installed.insert("python3-pycotap".into(), "1.3.1-2~bpo12+1".into());
        installed
    }

    #[test]
    fn cache_key_follows_version_and_patch_bytes() {
        let patches = vec![patch("a.patch", b"-x\n+y\n")];
        let key = cache_key(VERSION, &patches);
        assert_eq!(
            key,
            format!(
                "1_10.0.2+ds-2+deb13u1_bpo12+1-{}",
                &patches_sha256(&patches)[..12]
            )
        );
        assert_eq!(key.len(), "1_10.0.2+ds-2+deb13u1_bpo12+1-".len() + 12);
        assert!(!key.contains([':', '~', '/']), "{key}");
        assert_eq!(key, cache_key(VERSION, &patches.clone()), "deterministic");
        // One byte of a patch, its name, another patch, or the version: another key.
        let changed_byte = vec![patch("a.patch", b"-x\n+z\n")];
        let renamed = vec![patch("b.patch", b"-x\n+y\n")];
        let two = vec![patch("a.patch", b"-x\n+y\n"), patch("b.patch", b"")];
        for other in [
            cache_key(VERSION, &changed_byte),
            cache_key(VERSION, &renamed),
            cache_key(VERSION, &two),
            cache_key("1:10.0.3+ds-1~bpo12+1", &patches),
        ] {
            assert_ne!(other, key);
        }
        // Bytes moved from one patch to the next are a different patch set.
        assert_ne!(
            patches_sha256(&[patch("a", b"xy"), patch("b", b"")]),
            patches_sha256(&[patch("a", b"x"), patch("b", b"y")])
        );
        assert_eq!(
            patches_sha256(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256 of nothing"
        );
    }

    #[test]
    fn versions_are_sanitised_for_paths() {
        assert_eq!(sanitise_version("1:2.3~rc1+ds-4"), "1_2.3_rc1+ds-4");
        assert_eq!(sanitise_version("../../etc"), ".._.._etc");
        assert_eq!(upstream_version(VERSION), "10.0.2+ds");
        assert_eq!(upstream_version("10.0.2"), "10.0.2");
        assert_eq!(upstream_version("2:1.0-a-b"), "1.0-a");
    }

    #[test]
    fn cache_root_from_xdg_or_home() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            cache_root_from(os("/x/cache"), os("/home/u")),
            Some(PathBuf::from("/x/cache/monolith/qemu"))
        );
        assert_eq!(
            cache_root_from(None, os("/home/u")),
            Some(PathBuf::from("/home/u/.cache/monolith/qemu"))
        );
        assert_eq!(
            cache_root_from(os("relative"), os("/home/u")),
            Some(PathBuf::from("/home/u/.cache/monolith/qemu")),
            "a relative XDG_CACHE_HOME is ignored"
        );
        assert_eq!(cache_root_from(os(""), None), None);
    }

    #[test]
    fn ninja_progress_lines() {
        assert_eq!(
            ninja_progress("[123/2468] Compiling C object libqemu.a.p/x.c.o"),
            Some((123, 2468))
        );
        assert_eq!(
            ninja_progress("[2468/2468] Linking target qemu-system-aarch64"),
            Some((2468, 2468))
        );
        for line in [
            "ninja: Entering directory `build'",
            "[3/0] nonsense",
            "[5/4] more than all",
            "[a/b] words",
            "[12] one number",
            "",
            " [1/2] indented",
        ] {
            assert_eq!(ninja_progress(line), None, "{line:?}");
        }
    }

    #[test]
    fn progress_prints_each_five_percent_once() {
        let mut progress = Progress::default();
        let printed: Vec<u64> = (1..=200).filter_map(|n| progress.update(n, 200)).collect();
        assert_eq!(printed, (0..=100).step_by(5).collect::<Vec<_>>());
        // A jump prints only where it lands; going back prints nothing.
        let mut progress = Progress::default();
        assert_eq!(progress.update(1, 1000), Some(0));
        assert_eq!(progress.update(370, 1000), Some(35));
        assert_eq!(progress.update(300, 1000), None);
        assert_eq!(progress.update(399, 1000), None);
        assert_eq!(progress.update(400, 1000), Some(40));
    }

    #[test]
    fn dpkg_query_output() {
        let text = "gcc\tii \t4:12.2.0-3\nflex\tun \t\nbison\trc \t2:3.8.2+dfsg-1\n\
                    libglib2.0-dev\tii \t2.74.6-2+deb12u5\n";
        let installed = parse_dpkg_query(text);
        assert_eq!(installed.len(), 2, "{installed:?}");
        assert_eq!(installed["gcc"], "4:12.2.0-3");
        assert_eq!(installed["libglib2.0-dev"], "2.74.6-2+deb12u5");
    }

    #[test]
    fn meson_versions() {
        assert!(meson_new_enough("1.7.0-1~bpo12+1"));
        assert!(meson_new_enough("1.5.0-1"));
        assert!(meson_new_enough("2.0"));
        assert!(!meson_new_enough("1.0.1-5"));
        assert!(!meson_new_enough("1.4.9"));
        assert!(!meson_new_enough("garbage"));
    }

    #[test]
    fn warm_machine_needs_no_apt() {
        assert_eq!(dependency_plan(&warm(), true), Vec::new());
    }

    #[test]
    fn bare_machine_plan() {
        let plan = dependency_plan(&BTreeMap::new(), false);
        assert_eq!(
            plan,
            vec![
                Step::AddBackportsSource,
                Step::AptUpdate,
                Step::AptInstall {
                    packages: vec!["meson", "python3-pycotap", "libwayland-dev"],
                    from_backports: true
                },
                Step::AptInstall {
                    packages: BUILD_PACKAGES.to_vec(),
                    from_backports: false
                },
            ]
        );
        for needed in [
            "dpkg-dev",
            "python3-venv",
            "ninja-build",
            "libgtk-3-dev",
            "libfdt-dev",
        ] {
            assert!(BUILD_PACKAGES.contains(&needed), "{needed}");
        }
    }

    #[test]
    fn partial_machines() {
        // Bookworm's own meson is too old: upgraded from backports, nothing else.
        let mut old_meson = warm();
        old_meson.insert("meson".into(), "1.0.1-5".into());
        assert_eq!(
            dependency_plan(&old_meson, true),
            vec![
                Step::AptUpdate,
                Step::AptInstall {
                    packages: vec!["meson"],
                    from_backports: true
                }
            ]
        );
        // Wayland's -dev missing: from backports, whatever meson is.
        let mut no_wayland = warm();
        no_wayland.remove("libwayland-dev");
        assert_eq!(
            dependency_plan(&no_wayland, true),
            vec![
                Step::AptUpdate,
                Step::AptInstall {
                    packages: vec!["libwayland-dev"],
                    from_backports: true
                }
            ]
        );
        // Two libraries missing: only those.
        let mut two_missing = warm();
        two_missing.remove("flex");
        two_missing.remove("libgtk-3-dev");
        assert_eq!(
            dependency_plan(&two_missing, true),
            vec![
                Step::AptUpdate,
                Step::AptInstall {
                    packages: vec!["flex", "libgtk-3-dev"],
                    from_backports: false
                }
            ]
        );
        // Everything installed but no deb-src: rewrite the source file, refresh the lists.
        assert_eq!(
            dependency_plan(&warm(), false),
            vec![Step::AddBackportsSource, Step::AptUpdate]
        );
    }

    #[test]
    fn not_root_gets_exact_commands() {
        let reason = setup::root_refusal(Some(1000)).expect("must refuse");
        let text =
            manual_dependency_instructions(&reason, &dependency_plan(&BTreeMap::new(), false));
        assert!(text.contains("not running as root (uid 1000)"), "{text}");
        assert!(text.contains("then run `cargo xtask qemu` again"), "{text}");
        assert!(
            text.contains(&format!("  sudo tee {}", setup::BACKPORTS_SOURCE_PATH)),
            "{text}"
        );
        assert!(text.contains("  Types: deb deb-src\n"), "{text}");
        assert!(text.contains("  sudo apt-get update\n"), "{text}");
        assert!(
            text.contains(
                "apt-get install -y --no-install-recommends -t bookworm-backports meson python3-pycotap libwayland-dev\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "apt-get install -y --no-install-recommends {}\n",
                BUILD_PACKAGES.join(" ")
            )),
            "{text}"
        );
        assert_eq!(setup::root_refusal(Some(0)), None);
    }

    #[test]
    fn not_debian_names_the_manual_route() {
        let text = not_debian_instructions("Fedora Linux 41");
        assert!(text.contains("this machine is Fedora Linux 41"), "{text}");
        assert!(text.contains("patch -p1"), "{text}");
        assert!(text.contains("--target-list=aarch64-softmmu"), "{text}");
        assert!(
            text.contains("MONOLITH_QEMU=PREFIX/bin/qemu-system-aarch64"),
            "{text}"
        );
    }

    #[test]
    fn configure_builds_only_what_we_use() {
        let args = configure_args(Path::new("/p"), VERSION, "0123456789ab");
        for wanted in [
            "--prefix=/p",
            "--target-list=aarch64-softmmu",
            "--python=/usr/bin/python3",
            "--without-default-features",
            "--disable-modules",
            "--disable-docs",
            "--disable-tools",
            "--disable-werror",
            "--enable-gtk",
            "--enable-vnc",
            "--enable-fdt=system",
            "--enable-vhost-user",
        ] {
            assert!(args.iter().any(|a| a == wanted), "{wanted} in {args:?}");
        }
        assert!(args.contains(&format!(
            "--with-pkgversion=Debian {VERSION} + Monolith patches 0123456789ab"
        )));
    }

    #[test]
    fn configured_marker_round_trip() {
        let args = configure_args(Path::new("/c/k.partial/install"), VERSION, "0123456789ab");
        let configured = Configured {
            debian_patches: false,
            applied: vec!["a.patch".into(), "orig-tarball/b.patch".into()],
        };
        let text = configured_marker(&args, &configured);
        assert_eq!(
            parse_configured_marker(&text, &args),
            Some(configured.clone())
        );
        // Other arguments (another prefix, version or option): no resume.
        let other = configure_args(Path::new("/elsewhere"), VERSION, "0123456789ab");
        assert_eq!(parse_configured_marker(&text, &other), None);
        let mut fewer = args.clone();
        fewer.pop();
        assert_eq!(parse_configured_marker(&text, &fewer), None);
        assert_eq!(parse_configured_marker("", &args), None);
        let no_patch_line = text.trim_end().rsplit_once('\n').unwrap().0;
        assert_eq!(parse_configured_marker(no_patch_line, &args), None);
        let extra = format!("{text}more\n");
        assert_eq!(parse_configured_marker(&extra, &args), None);
        let with_debian = Configured {
            debian_patches: true,
            applied: vec!["a.patch".into()],
        };
        assert_eq!(
            parse_configured_marker(&configured_marker(&args, &with_debian), &args),
            Some(with_debian)
        );
    }

    #[test]
    fn the_repository_patch_is_found_and_flips_both_devices() {
        let patches = read_patches().unwrap();
        assert!(!patches[0].orig_tarball_only(), "{patches:?}");
        let stand_in = patches
            .iter()
            .find(|p| p.name == "orig-tarball/pc-bios-without-blobs.patch")
            .expect("qemu/patches/orig-tarball/pc-bios-without-blobs.patch");
        assert!(stand_in.orig_tarball_only());
        assert_eq!(
            patches.last(),
            Some(stand_in),
            "the orig-tarball patches come after the others"
        );
        let ours = patches
            .iter()
            .find(|p| p.name == "vhost-user-device-user-creatable.patch")
            .expect("qemu/patches/vhost-user-device-user-creatable.patch");
        let text = String::from_utf8_lossy(&ours.bytes);
        for file in [
            "hw/virtio/vhost-user-device.c",
            "hw/virtio/vhost-user-device-pci.c",
        ] {
            assert!(text.contains(&format!("+++ b/{file}\n")), "{file}");
        }
        assert_eq!(
            text.matches("\n-    dc->user_creatable = false;\n").count(),
            2
        );
        assert_eq!(
            text.matches("\n+    dc->user_creatable = true;\n").count(),
            2
        );
    }
}
