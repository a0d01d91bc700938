//! Boards: TOML files in `boards/` that name a QEMU machine, plus a device-tree overlay.
//!
//! Theory of operation
//! -------------------
//! A board is data, not code: machine type and options, CPU model, memory size, cores,
//! optional NUMA split, extra QEMU arguments, default boot arguments, and an optional
//! overlay (`boards/<name>.dtso`). [`MachineConfig`] is a board with the user's `--mem` /
//! `--smp` applied; its [`MachineConfig::qemu_args`] are the *machine-shaping* arguments,
//! used both to boot and to dump QEMU's own DTB, because the tree QEMU generates depends on
//! them (memory nodes, CPUs, NUMA ids) and a tree from different options would lie to the
//! firmware.
//!
//! With an overlay, [`MachineConfig::device_tree`] makes the boot DTB: QEMU dumps its tree
//! (`-machine ...,dumpdtb=`), `dtc -@` compiles the overlay, `fdtoverlay` merges them. The
//! merged tree is packed (kilobytes, where the raw dump is 1 MiB); that matters because
//! QEMU places a `-dtb` at the start of RAM only if about twice its size fits below the
//! image at 0x4020_0000. Results are cached under `<target>/dtb/`, keyed by a hash of
//! everything that shapes them (QEMU version, arguments, overlay text), so a warm run
//! spawns no tool; files are renamed into place so two parallel runs never see a half
//! written DTB.
//!
//! NUMA: `numa_nodes = N` splits RAM into N equal `memory-backend-ram` objects (all cores
//! on node 0), which QEMU `virt` turns into N `/memory` nodes, one after the other from
//! 0x4000_0000. Generating them here keeps `--mem` overrides valid.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use anyhow::{bail, Context, Result};

use crate::paths;
use crate::setup::Tools;
use crate::size::{parse_size, size_for_qemu};

pub const DEFAULT_BOARD: &str = "virt";

/// `boards/<name>.toml` as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BoardFile {
    pub description: String,
    /// `-machine` value, e.g. `virt,gic-version=3`.
    pub machine: String,
    pub cpu: String,
    /// RAM size, e.g. `1G`.
    pub memory: String,
    pub smp: u32,
    #[serde(default)]
    pub numa_nodes: Option<u32>,
    /// File name of the overlay source, relative to `boards/`.
    #[serde(default)]
    pub overlay: Option<String>,
    /// Default `/chosen/bootargs`; `--append` replaces it.
    #[serde(default)]
    pub append: Option<String>,
    /// More QEMU arguments (devices, for instance), one word per element.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Whether the board has our virtio-video decoder (a vhost-user device, which needs
    /// the patched QEMU of `cargo xtask qemu`).
    #[serde(default)]
    pub video: Option<VideoMode>,
    /// Whether the board has our PASR DRAM-controller model (a vhost-user device, always
    /// attached: it needs the patched QEMU), and how its dies are laid out.
    #[serde(default)]
    pub pasr: Option<PasrLayout>,
}

/// The DRAM layout a PASR board describes (`boards/pasr-<layout>.dtso`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PasrLayout {
    /// Two dies of eight banks, one after the other.
    Plain,
    /// Two dies taking turns every 4 KiB: each bank paired with the other die's.
    Interleaved,
}

impl PasrLayout {
    /// The overlay that describes the dies (`monolith,pasr-dram`).
    pub fn overlay(self) -> &'static str {
        match self {
            PasrLayout::Plain => "pasr-plain.dtso",
            PasrLayout::Interleaved => "pasr-interleaved.dtso",
        }
    }
}

/// When a board gets the virtio-video decoder.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VideoMode {
    /// Every boot: the patched QEMU is built if it is missing.
    Always,
    /// `cargo xtask run` attaches it when the patched QEMU is already built (and says so
    /// when it is not); tests and benches boot the board as is unless they ask
    /// (`--video on`), so their expectations never depend on what was built before.
    WhenBuilt,
}

/// The overlay applied on top of the board's when the decoder is attached.
pub const VIDEO_OVERLAY: &str = "video.dtso";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub name: String,
    pub file: BoardFile,
    pub memory_bytes: u64,
}

/// Board names become file names: keep them to a safe alphabet.
pub fn check_board_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!("bad board name `{name}`: use letters, digits, `-` and `_`");
    }
    Ok(())
}

pub fn parse_board(name: &str, text: &str) -> Result<Board> {
    let file: BoardFile = toml::from_str(text).with_context(|| format!("boards/{name}.toml"))?;
    let memory_bytes =
        parse_size(&file.memory).with_context(|| format!("boards/{name}.toml: memory"))?;
    if file.smp == 0 {
        bail!("boards/{name}.toml: smp must be at least 1");
    }
    if file.numa_nodes == Some(0) {
        bail!("boards/{name}.toml: numa_nodes must be at least 1");
    }
    if file.machine.contains("dumpdtb") {
        bail!("boards/{name}.toml: machine must not set dumpdtb (xtask does)");
    }
    Ok(Board {
        name: name.to_string(),
        file,
        memory_bytes,
    })
}

pub fn available_boards() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(paths::boards_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let path = entry.path();
                    (path.extension()? == "toml")
                        .then(|| path.file_stem()?.to_str().map(String::from))?
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn load_board(name: &str) -> Result<Board> {
    check_board_name(name)?;
    let path = paths::boards_dir().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "board `{name}` ({}): {e}; boards: {}",
            path.display(),
            available_boards().join(", ")
        )
    })?;
    parse_board(name, &text)
}

/// A board with the run's overrides (`--mem`, `--smp`) applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    pub board: Board,
    pub mem_bytes: u64,
    pub smp: u32,
    /// The virtio-video decoder is attached: guest RAM is a shared memfd (the device maps
    /// it) and the tree gets [`VIDEO_OVERLAY`].
    pub video: bool,
}

impl MachineConfig {
    pub fn new(board: Board, mem_bytes: Option<u64>, smp: Option<u32>) -> Result<MachineConfig> {
        let config = MachineConfig {
            mem_bytes: mem_bytes.unwrap_or(board.memory_bytes),
            smp: smp.unwrap_or(board.file.smp),
            board,
            video: false,
        };
        config.qemu_args()?;
        Ok(config)
    }

    /// The machine-shaping QEMU arguments: identical for the DTB dump and the boot.
    pub fn qemu_args(&self) -> Result<Vec<String>> {
        self.args_with_machine(self.board.file.machine.clone())
    }

    /// The same machine with the decoder attached (or not).
    pub fn with_video(mut self, video: bool) -> MachineConfig {
        self.video = video;
        self
    }

    /// Whether a vhost-user device maps guest RAM (the decoder, the PASR controller):
    /// then RAM must be a shared file.
    pub fn shares_ram(&self) -> bool {
        self.video || self.board.file.pasr.is_some()
    }

    fn args_with_machine(&self, mut machine: String) -> Result<Vec<String>> {
        let file = &self.board.file;
        // A vhost-user device maps guest RAM itself: it must be a shared file.
        let shared_ram = self.shares_ram() && file.numa_nodes.is_none();
        if shared_ram {
            machine.push_str(",memory-backend=ram");
        }
        let mut args: Vec<String> = vec![
            "-machine".into(),
            machine,
            "-cpu".into(),
            file.cpu.clone(),
            "-m".into(),
            size_for_qemu(self.mem_bytes),
            "-smp".into(),
            self.smp.to_string(),
            "-nic".into(),
            "none".into(),
        ];
        if shared_ram {
            args.push("-object".into());
            args.push(format!(
                "memory-backend-memfd,id=ram,size={},share=on",
                size_for_qemu(self.mem_bytes)
            ));
        }
        if let Some(nodes) = file.numa_nodes {
            args.extend(numa_args(
                nodes,
                self.mem_bytes,
                self.smp,
                self.shares_ram(),
            )?);
        }
        args.extend(file.extra_args.iter().cloned());
        Ok(args)
    }

    /// The DTB to boot with, or `None` to let QEMU pass its own (boards without overlay).
    pub fn device_tree(&self, tools: &Tools) -> Result<Option<PathBuf>> {
        let Some(overlay_name) = &self.board.file.overlay else {
            return Ok(None);
        };
        let mut overlay_paths = vec![paths::boards_dir().join(overlay_name)];
        if self.video {
            overlay_paths.push(paths::boards_dir().join(VIDEO_OVERLAY));
        }
        if let Some(layout) = self.board.file.pasr {
            overlay_paths.push(paths::boards_dir().join(layout.overlay()));
        }
        let mut overlay = Vec::new();
        for path in &overlay_paths {
            overlay.extend(std::fs::read(path).with_context(|| {
                format!("board `{}`: overlay {}", self.board.name, path.display())
            })?);
            overlay.push(0);
        }
        let args = self.qemu_args()?;
        let key = cache_key(&tools.qemu_version, &args, &overlay);
        let cache_dir = paths::dtb_cache_dir();
        let dtb = cache_dir.join(format!("{}-{key:016x}.dtb", self.board.name));
        if dtb.is_file() {
            return Ok(Some(dtb));
        }
        let shown: Vec<String> = overlay_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        println!(
            "board: making {} from QEMU's tree + {}",
            dtb.display(),
            shown.join(" + ")
        );
        // Two test images may need the same board at once: each maker gets its own work
        // directory, and the finished DTB is renamed into place (atomic on one filesystem).
        static MAKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let maker = MAKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work = cache_dir.join(format!("tmp-{}-{maker}-{key:016x}", std::process::id()));
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let outcome = self.make_device_tree(tools, &overlay_paths, &work, &dtb);
        let _ = std::fs::remove_dir_all(&work);
        outcome.map(|_| Some(dtb))
    }

    fn make_device_tree(
        &self,
        tools: &Tools,
        overlays: &[PathBuf],
        work: &Path,
        dtb: &Path,
    ) -> Result<()> {
        let base = work.join("base.dtb");
        let merged = work.join("merged.dtb");
        let machine = format!("{},dumpdtb={}", self.board.file.machine, base.display());
        let mut dump = Command::new(&tools.qemu);
        dump.args(self.args_with_machine(machine)?)
            .arg("-L")
            .arg(&tools.qemu_data_dir)
            .args(["-display", "none", "-serial", "null", "-monitor", "none"]);
        run_tool(&mut dump, "dumping QEMU's device tree")?;
        let mut apply = Command::new(&tools.fdtoverlay);
        apply.arg("-i").arg(&base).arg("-o").arg(&merged);
        for (n, overlay) in overlays.iter().enumerate() {
            let dtbo = work.join(format!("overlay-{n}.dtbo"));
            let mut compile = Command::new(&tools.dtc);
            compile
                .args(["-@", "-q", "-I", "dts", "-O", "dtb", "-o"])
                .arg(&dtbo)
                .arg(overlay);
            run_tool(&mut compile, "compiling the board overlay")?;
            apply.arg(dtbo);
        }
        run_tool(&mut apply, "applying the board overlay")?;
        std::fs::rename(&merged, dtb).with_context(|| format!("moving DTB into {}", dtb.display()))
    }
}

fn run_tool(command: &mut Command, what: &str) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot start {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {:?}\n{}{}",
            output.status,
            command,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Equal memory backends, one per node; every core on node 0. The point is memory
/// banks, not CPU locality: splitting the cores would put CPUs of one socket in different
/// nodes, which QEMU warns about, and further nodes are memory-only banks.
/// With `shared`, each node is a shared memfd (for a vhost-user device).
pub fn numa_args(nodes: u32, mem_bytes: u64, smp: u32, shared: bool) -> Result<Vec<String>> {
    let per_node = mem_bytes / u64::from(nodes);
    if per_node == 0
        || !per_node.is_multiple_of(1 << 20)
        || per_node * u64::from(nodes) != mem_bytes
    {
        bail!(
            "{} of RAM does not split into {nodes} equal whole-MiB NUMA nodes",
            size_for_qemu(mem_bytes)
        );
    }
    let mut args = Vec::new();
    for node in 0..nodes {
        args.push("-object".to_string());
        args.push(if shared {
            format!(
                "memory-backend-memfd,id=ram{node},size={},share=on",
                size_for_qemu(per_node)
            )
        } else {
            format!(
                "memory-backend-ram,id=ram{node},size={}",
                size_for_qemu(per_node)
            )
        });
        let cpus = match (node, smp) {
            (0, 1) => ",cpus=0".to_string(),
            (0, _) => format!(",cpus=0-{}", smp - 1),
            _ => String::new(),
        };
        args.push("-numa".to_string());
        args.push(format!("node,nodeid={node},memdev=ram{node}{cpus}"));
    }
    Ok(args)
}

/// FNV-1a over the parts, each followed by a separator byte so ("ab","c") != ("a","bc").
/// Stable across Rust versions, unlike `DefaultHasher`.
pub fn cache_key(qemu_version: &str, args: &[String], overlay: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes.iter().chain(std::iter::once(&0xffu8)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(qemu_version.as_bytes());
    for arg in args {
        feed(arg.as_bytes());
    }
    feed(overlay);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
description = "test"
machine = "virt,gic-version=3"
cpu = "cortex-a72"
memory = "1G"
smp = 2
"#;

    #[test]
    fn minimal_board_parses_with_defaults() {
        let board = parse_board("t", MINIMAL).unwrap();
        assert_eq!(board.memory_bytes, 1 << 30);
        assert_eq!(board.file.numa_nodes, None);
        assert!(board.file.extra_args.is_empty());
        let config = MachineConfig::new(board, None, None).unwrap();
        assert_eq!(
            config.qemu_args().unwrap(),
            [
                "-machine",
                "virt,gic-version=3",
                "-cpu",
                "cortex-a72",
                "-m",
                "1024M",
                "-smp",
                "2",
                "-nic",
                "none"
            ]
        );
    }

    #[test]
    fn bad_board_files_are_errors() {
        let unknown_field = format!("{MINIMAL}colour = \"red\"\n");
        let error = |text: &str| format!("{:#}", parse_board("t", text).unwrap_err());
        assert!(error(&unknown_field).contains("colour"));
        assert!(error(&MINIMAL.replace("1G", "lots")).contains("memory"));
        assert!(parse_board("t", &MINIMAL.replace("smp = 2", "smp = 0")).is_err());
        assert!(parse_board("t", "machine = ").is_err());
        assert!(parse_board("t", &MINIMAL.replace("gic-version=3", "dumpdtb=x")).is_err());
        assert!(check_board_name("../x").is_err());
    }

    #[test]
    fn overrides_and_numa_split() {
        let text = format!("{MINIMAL}numa_nodes = 2\n");
        let board = parse_board("t", &text).unwrap();
        let args = MachineConfig::new(board.clone(), Some(2 << 30), Some(4))
            .unwrap()
            .qemu_args()
            .unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("-m 2048M -smp 4"), "{joined}");
        assert!(
            joined.contains("-object memory-backend-ram,id=ram0,size=1024M"),
            "{joined}"
        );
        assert!(
            joined.contains("-numa node,nodeid=0,memdev=ram0,cpus=0-3 "),
            "{joined}"
        );
        assert!(
            joined.ends_with("-numa node,nodeid=1,memdev=ram1"),
            "{joined}"
        );
        let one = numa_args(2, 2 << 30, 1, false).unwrap().join(" ");
        let shared = numa_args(2, 2 << 30, 1, true).unwrap().join(" ");
        assert!(
            shared.contains("memory-backend-memfd,id=ram1,size=1024M,share=on"),
            "{shared}"
        );
        assert!(one.contains("nodeid=0,memdev=ram0,cpus=0 "), "{one}");
        assert!(one.ends_with("nodeid=1,memdev=ram1"), "{one}");
        // 3 MiB cannot split into 2 whole MiB.
        assert!(MachineConfig::new(board, Some(3 << 20), None).is_err());
    }

    #[test]
    fn video_shares_guest_ram_and_boards_say_when() {
        let board = parse_board("t", &format!("{MINIMAL}video = \"always\"\n")).unwrap();
        assert_eq!(board.file.video, Some(VideoMode::Always));
        let when = parse_board("t", &format!("{MINIMAL}video = \"when-built\"\n")).unwrap();
        assert_eq!(when.file.video, Some(VideoMode::WhenBuilt));
        assert!(parse_board("t", &format!("{MINIMAL}video = \"sometimes\"\n")).is_err());
        let plain = MachineConfig::new(board.clone(), None, None).unwrap();
        assert!(!plain.qemu_args().unwrap().join(" ").contains("memfd"));
        let args = plain.with_video(true).qemu_args().unwrap().join(" ");
        assert!(
            args.contains("-machine virt,gic-version=3,memory-backend=ram "),
            "{args}"
        );
        assert!(
            args.contains("-object memory-backend-memfd,id=ram,size=1024M,share=on"),
            "{args}"
        );
    }

    #[test]
    fn pasr_boards_share_guest_ram_and_name_their_layout() {
        let board = parse_board("t", &format!("{MINIMAL}pasr = \"interleaved\"\n")).unwrap();
        assert_eq!(board.file.pasr, Some(PasrLayout::Interleaved));
        assert_eq!(PasrLayout::Plain.overlay(), "pasr-plain.dtso");
        assert!(parse_board("t", &format!("{MINIMAL}pasr = \"striped\"\n")).is_err());
        let args = MachineConfig::new(board, None, None)
            .unwrap()
            .qemu_args()
            .unwrap()
            .join(" ");
        assert!(args.contains("memory-backend-memfd,id=ram"), "{args}");
        for layout in [PasrLayout::Plain, PasrLayout::Interleaved] {
            assert!(crate::paths::boards_dir().join(layout.overlay()).is_file());
        }
    }

    #[test]
    fn cache_key_depends_on_every_input() {
        let args = vec!["-m".to_string(), "1024M".to_string()];
        let key = cache_key("QEMU 10.0.2", &args, b"overlay");
        assert_eq!(key, cache_key("QEMU 10.0.2", &args, b"overlay"));
        assert_ne!(key, cache_key("QEMU 10.0.3", &args, b"overlay"));
        assert_ne!(
            key,
            cache_key("QEMU 10.0.2", &["-m".into(), "2048M".into()], b"overlay")
        );
        assert_ne!(key, cache_key("QEMU 10.0.2", &args, b"overlay2"));
        assert_ne!(
            cache_key("v", &["ab".into(), "c".into()], b""),
            cache_key("v", &["a".into(), "bc".into()], b"")
        );
    }

    /// `reg = <hi lo hi lo>` pairs (two cells address, two cells size) in an overlay text.
    fn reserved_regs(dtso: &str) -> Vec<(u64, u64)> {
        let pattern = regex::Regex::new(
            r"reg\s*=\s*<\s*(0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)\s*>",
        )
        .unwrap();
        let cell = |text: &str| u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap();
        pattern
            .captures_iter(dtso)
            .map(|c| {
                (
                    (cell(&c[1]) << 32) | cell(&c[2]),
                    (cell(&c[3]) << 32) | cell(&c[4]),
                )
            })
            .collect()
    }

    #[test]
    fn shipped_boards_parse_and_their_regions_fit_in_ram_outside_the_image() {
        let names = available_boards();
        assert!(names.contains(&"virt".to_string()), "{names:?}");
        assert!(names.contains(&"virt-2bank".to_string()), "{names:?}");
        for name in names {
            let board = load_board(&name).unwrap();
            let config = MachineConfig::new(board.clone(), None, None).unwrap();
            let Some(overlay) = &board.file.overlay else {
                continue;
            };
            let mut text = std::fs::read_to_string(paths::boards_dir().join(overlay)).unwrap();
            if board.file.video.is_some() {
                text += &std::fs::read_to_string(paths::boards_dir().join(VIDEO_OVERLAY)).unwrap();
            }
            let regions = reserved_regs(&text);
            assert!(!regions.is_empty(), "{name}: overlay reserves nothing");
            let ram = 0x4000_0000..0x4000_0000 + config.mem_bytes;
            for (base, size) in regions {
                let end = base + size;
                assert!(
                    base >= 0x4100_0000 && end <= ram.end,
                    "{name}: region {base:#x}..{end:#x} must be in RAM {ram:x?} above the \
                     DTB copy and image [0x40000000, 0x41000000)"
                );
            }
        }
    }

    #[test]
    fn reg_extraction_reads_two_cell_pairs() {
        let regs =
            reserved_regs("reg = <0x0 0x50000000 0x0 0x10000000>;\nreg=<0x1 0x0 0x0 0x1000>;");
        assert_eq!(
            regs,
            vec![(0x5000_0000, 0x1000_0000), (0x1_0000_0000, 0x1000)]
        );
    }
}
