//! `cargo xtask profile`: where a marked stretch of guest code spends its instructions.
//!
//! Theory of operation
//! -------------------
//! A `tests/profile_*.rs` image calls `monolith_profile_begin()`, does the work to be
//! profiled, and calls `monolith_profile_end()` (two `#[no_mangle]` functions of the
//! library). We boot it under `-icount shift=0,sleep=off`, as benchmarks run, with QEMU's
//! log `-d in_asm,exec,nochain` written to a file in the target directory:
//! - `in_asm` prints every translation block (TB) when it is translated: an `IN:` line,
//!   then one `0xPC:  ...` line per guest instruction, then a blank line;
//! - `exec` prints `Trace N: 0xHOST [CS_BASE/PC/FLAGS/CFLAGS] SYMBOL` each time a TB is
//!   entered, where HOST is the address of the TB's generated code;
//! - `nochain` stops QEMU from jumping straight from one TB into the next, which would
//!   skip the `Trace` line; every TB execution is then logged.
//!
//! [`parse_log`] streams that log (about 1.5 GB for `profile_cma`: never held whole) and
//! counts instructions while active: from the first TB at the address of
//! `monolith_profile_begin` up to the TB at `monolith_profile_end`, addresses from the
//! ELF's symbol table. A TB is identified by its HOST address, not its guest PC: under
//! `-icount` one PC can start several TBs of different lengths (a TB cut short where the
//! instruction budget ends, a one-instruction TB for a device access), and keying by PC
//! would count a later run of the long TB with the short one's length. The first `Trace`
//! after an `IN:` block is that new TB's first run, which binds HOST to the block; a TB
//! never seen translated counts as one instruction at its PC. Two more lines correct the
//! counts: `Stopped execution of TB chain before 0xHOST` means the TB just entered ran no
//! instruction (an interrupt or the icount deadline was pending), and
//! `cpu_io_recompile: rewound execution of TB to PC` means it ran only up to PC, a device
//! access that QEMU replays in a TB of its own. A fault inside a TB is not visible in this
//! log; the profiled code is not expected to take one.
//!
//! Each executed instruction address is then attributed twice: to the ELF symbol at or
//! below it ([`SymbolMap`], read from `.symtab` by [`elf_code_symbols`], names demangled),
//! where inlined code counts in the function it was inlined into; and, when an
//! `llvm-symbolizer` is installed, to the innermost inlined function and its source line
//! from the DWARF line tables (the release profile keeps `debug = true`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::{LittleEndian, SectionIndex};

use anyhow::{anyhow, bail, Context, Result};

use crate::build::{self, Profile, TestImage, PROFILE_IMAGE_PREFIX};
use crate::qemu::{self, Boot};
use crate::setup::{self, Tools};
use crate::test_header::qemu_header_options;

/// How many rows each table shows unless `--top` says otherwise.
pub const DEFAULT_TOP: usize = 30;

/// `cargo xtask profile [FILTER] [--top N]`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(args_override_self = true)]
pub struct Args {
    /// Substring that the names of the `profile_*` images to run must contain
    pub filter: Option<String>,
    /// Rows per table
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TOP, value_parser = parse_top)]
    pub top: usize,
}

fn parse_top(value: &str) -> Result<usize> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("bad `--top` value `{value}`: expected a number of rows, 1 or more"),
    }
}

/// The marker functions an image calls around the profiled work.
pub const BEGIN_SYMBOL: &str = "monolith_profile_begin";
pub const END_SYMBOL: &str = "monolith_profile_end";

/// As `cargo xtask bench`: one counter tick per instruction, so the run repeats exactly.
const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// Translations, TB entries, and every TB entered (see the module header).
const LOG_ITEMS: [&str; 2] = ["-d", "in_asm,exec,nochain"];
/// Logging every TB slows QEMU down a lot; a profile image is a few seconds of guest work.
const PROFILE_TIMEOUT: Duration = Duration::from_secs(1800);
/// Function names longer than this are cut in the tables (generic Rust names run to
/// hundreds of characters).
const NAME_WIDTH: usize = 160;

pub fn verb(options: &Args) -> Result<ExitCode> {
    let tools = setup::ensure()?;
    let images: Vec<TestImage> = build::test_images(&tools, Profile::Release, |name| {
        name.starts_with(PROFILE_IMAGE_PREFIX)
    })?
    .into_iter()
    .filter(TestImage::is_profile)
    .collect();
    let names: Vec<&str> = images.iter().map(|image| image.name.as_str()).collect();
    let selected: Vec<&TestImage> = images
        .iter()
        .filter(|image| {
            options
                .filter
                .as_deref()
                .is_none_or(|f| image.name.contains(f))
        })
        .collect();
    if names.is_empty() {
        bail!(
            "no profile image: add tests/{PROFILE_IMAGE_PREFIX}<name>.rs and its [[test]] entry \
             in Cargo.toml"
        );
    }
    if selected.is_empty() {
        bail!(
            "no profile image name contains `{}` (there are: {})",
            options.filter.as_deref().unwrap_or_default(),
            names.join(", ")
        );
    }
    let symbolizer = find_symbolizer();
    let mut failures = Vec::new();
    for image in selected {
        println!("\n== profile: {}", image.name);
        if let Err(message) = profile_image(&tools, image, options.top, symbolizer.as_deref()) {
            println!("FAILED: {message:#}");
            failures.push(image.name.as_str());
        }
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("profiles failed: {}", failures.join(", "))
    }
}

/// Removes the QEMU log however the profile ends: it is gigabytes.
struct TemporaryFile(PathBuf);

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn profile_image(
    tools: &Tools,
    image: &TestImage,
    top: usize,
    symbolizer: Option<&Path>,
) -> Result<()> {
    let elf = std::fs::read(&image.executable)
        .with_context(|| format!("reading {}", image.executable.display()))?;
    let symbols = elf_code_symbols(&elf).with_context(|| image.name.clone())?;
    let marker = |name: &str| {
        symbols
            .iter()
            .find(|symbol| symbol.name == name)
            .map(|symbol| symbol.address)
            .ok_or_else(|| {
                anyhow!(
                    "{} has no symbol `{name}`: the profile markers come from the monolith \
                     library (src/bench/profile.rs) and must be called by the image",
                    image.name
                )
            })
    };
    let markers = Markers {
        begin: marker(BEGIN_SYMBOL)?,
        end: marker(END_SYMBOL)?,
    };

    let source = std::fs::read_to_string(&image.source)
        .with_context(|| format!("reading {}", image.source.display()))?;
    let boot = Boot::resolve(&qemu_header_options(&source)?, tools)?;
    let log_dir = crate::paths::host_target_dir().join("profile");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let log = TemporaryFile(log_dir.join(format!("{}.log", image.name)));
    // QEMU appends to nothing, but a stale log from a killed run must not be read instead.
    let _ = std::fs::remove_file(&log.0);
    let launch = boot.launch(&image.executable, qemu::Console::Pipes, true)?;
    let mut command = launch.command;
    let _beside = launch.beside;
    command.args(ICOUNT).args(LOG_ITEMS).arg("-D").arg(&log.0);
    println!("$ {}", qemu::describe(&command));
    let started = Instant::now();
    let captured = qemu::run_captured(&mut command, PROFILE_TIMEOUT)?;
    let code = captured.status.and_then(|status| status.code());
    let verdict = crate::test::image_verdict(&captured.output, code);
    if captured.timed_out() || verdict.failed > 0 {
        let why = if captured.timed_out() {
            format!("timed out after {PROFILE_TIMEOUT:?}")
        } else {
            format!("failed (QEMU exit {code:?})")
        };
        bail!(
            "{} {why}; its serial log:\n{}\n----- end of log -----",
            image.name,
            captured.output.trim_end()
        );
    }
    let log_bytes = std::fs::metadata(&log.0).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: {} passed, {} failed; QEMU ran {:.1} s and logged {:.2} GB",
        image.name,
        verdict.passed,
        verdict.failed,
        started.elapsed().as_secs_f64(),
        log_bytes as f64 / 1e9
    );

    let parsing = Instant::now();
    let file =
        std::fs::File::open(&log.0).with_context(|| format!("opening {}", log.0.display()))?;
    let region = parse_log(BufReader::with_capacity(1 << 20, file), markers)
        .with_context(|| format!("reading {}", log.0.display()))?;
    drop(log);
    if !region.began {
        bail!(
            "{} never entered `{BEGIN_SYMBOL}` ({:#x}): nothing to profile (does the image \
             call the markers on this path?)",
            image.name,
            markers.begin
        );
    }
    if !region.ended {
        bail!(
            "{} entered `{BEGIN_SYMBOL}` but never `{END_SYMBOL}` ({:#x}): the region did not \
             finish",
            image.name,
            markers.end
        );
    }
    println!(
        "log parsed in {:.1} s: {} distinct instruction addresses",
        parsing.elapsed().as_secs_f64(),
        region.counts.len()
    );
    report(&region, &symbols, &image.executable, top, symbolizer);
    Ok(())
}

fn report(
    region: &Region,
    symbols: &[ElfSymbol],
    elf: &Path,
    top: usize,
    symbolizer: Option<&Path>,
) {
    println!(
        "\ntotal instructions in region: {} ({BEGIN_SYMBOL} .. {END_SYMBOL})",
        region.total
    );
    let map = SymbolMap::new(symbols);
    let mut by_symbol: HashMap<&str, u64> = HashMap::new();
    for (&pc, &count) in &region.counts {
        *by_symbol.entry(map.name_at(pc)).or_default() += count;
    }
    print_table(
        "by function (ELF symbol table; inlined code counts in its caller)",
        by_symbol,
        region.total,
        top,
    );

    let Some(symbolizer) = symbolizer else {
        println!(
            "\n(no llvm-symbolizer in PATH or /usr/lib/llvm-*/bin: install llvm for the \
             tables by inlined function and by source line)"
        );
        return;
    };
    let mut pcs: Vec<u64> = region.counts.keys().copied().collect();
    pcs.sort_unstable();
    let places = match symbolize(symbolizer, elf, &pcs) {
        Ok(places) => places,
        Err(message) => {
            println!("\n({message:#}; only the symbol table is shown)");
            return;
        }
    };
    let mut by_function: HashMap<&str, u64> = HashMap::new();
    let mut by_line: HashMap<&str, u64> = HashMap::new();
    for (pc, count) in &region.counts {
        let (function, line) = places
            .get(pc)
            .map(|place| (place.function.as_str(), place.line.as_str()))
            .unwrap_or(("??", "??:0"));
        *by_function.entry(function).or_default() += count;
        *by_line.entry(line).or_default() += count;
    }
    println!("(inlining from {})", symbolizer.display());
    print_table(
        "by innermost inlined function",
        by_function,
        region.total,
        top,
    );
    print_table("by source line", by_line, region.total, top);
}

fn print_table(title: &str, counts: HashMap<&str, u64>, total: u64, top: usize) {
    let mut rows: Vec<(&str, u64)> = counts.into_iter().collect();
    // Ties by name, so two runs of the same image print the same table.
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    println!(
        "\n-- {title}: top {} of {}",
        top.min(rows.len()),
        rows.len()
    );
    for (name, count) in rows.into_iter().take(top) {
        let percent = 100.0 * count as f64 / total.max(1) as f64;
        println!("{count:10} {percent:6.2}%  {}", shorten(name, NAME_WIDTH));
    }
}

fn shorten(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_string();
    }
    let mut short: String = name.chars().take(width.saturating_sub(3)).collect();
    short.push_str("...");
    short
}

// ---------------------------------------------------------------------------------------
// The QEMU log.

/// Guest addresses of the marker functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Markers {
    pub begin: u64,
    pub end: u64,
}

/// What ran between the markers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Region {
    /// Executions of each guest instruction address.
    pub counts: HashMap<u64, u64>,
    /// The sum of `counts`.
    pub total: u64,
    /// A TB at the begin marker ran.
    pub began: bool,
    /// A TB at the end marker ran after the begin marker's.
    pub ended: bool,
}

/// One translation: its guest instruction addresses and how often it ran while active.
#[derive(Debug, Default)]
struct Block {
    insns: Vec<u64>,
    runs: u64,
}

/// What a counted TB entry was, so a following `Stopped`/`rewound` line can correct it.
#[derive(Debug, Clone, Copy)]
enum Counted {
    Block {
        host: u64,
        index: usize,
    },
    /// A TB never seen translated, counted as one instruction at its PC.
    Lone {
        host: u64,
        pc: u64,
    },
}

#[derive(Debug)]
struct LogParser {
    markers: Markers,
    blocks: Vec<Block>,
    by_host: HashMap<u64, usize>,
    by_pc: HashMap<u64, usize>,
    /// The block whose instruction lines are being read (after `IN:`).
    filling: Option<usize>,
    /// The newest block, until its first `Trace` binds it to a host address.
    unbound: Option<usize>,
    lone: HashMap<u64, u64>,
    /// Instructions of counted TB runs that a rewind took back.
    rewound: HashMap<u64, u64>,
    last: Option<Counted>,
    active: bool,
    total: u64,
    began: bool,
    ended: bool,
}

impl LogParser {
    fn new(markers: Markers) -> LogParser {
        LogParser {
            markers,
            blocks: Vec::new(),
            by_host: HashMap::new(),
            by_pc: HashMap::new(),
            filling: None,
            unbound: None,
            lone: HashMap::new(),
            rewound: HashMap::new(),
            last: None,
            active: false,
            total: 0,
            began: false,
            ended: false,
        }
    }

    fn line(&mut self, line: &[u8]) {
        if let Some(rest) = line.strip_prefix(b"Trace ") {
            self.filling = None;
            if let Some((host, pc)) = parse_trace(rest) {
                self.entered(host, pc);
            }
        } else if let Some(rest) = line.strip_prefix(b"0x") {
            if let (Some(index), Some((pc, b':'))) = (self.filling, hex_prefix(rest)) {
                let insns = &mut self.blocks[index].insns;
                if insns.is_empty() {
                    // As the prototype did: the newest translation at a PC stands for
                    // TBs whose host address was never bound.
                    self.by_pc.insert(pc, index);
                }
                insns.push(pc);
            }
        } else if line.starts_with(b"IN:") {
            self.blocks.push(Block::default());
            self.filling = Some(self.blocks.len() - 1);
            self.unbound = self.filling;
        } else if let Some(rest) = line.strip_prefix(b"Stopped execution of TB chain before 0x") {
            if let Some((host, _)) = hex_prefix(rest) {
                self.stopped(host);
            }
        } else if let Some(rest) =
            line.strip_prefix(b"cpu_io_recompile: rewound execution of TB to ")
        {
            if let Some((pc, _)) = hex_prefix(rest) {
                self.rewound_to(pc);
            }
        } else if line.is_empty() || line.starts_with(b"---") {
            self.filling = None;
        }
    }

    /// A `Trace` line: the TB at `host` (guest `pc`) is entered.
    fn entered(&mut self, host: u64, pc: u64) {
        let starts_at_pc =
            |parser: &LogParser, index: usize| parser.blocks[index].insns.first() == Some(&pc);
        let block = match self.unbound {
            Some(index) if starts_at_pc(self, index) => {
                self.unbound = None;
                self.by_host.insert(host, index);
                Some(index)
            }
            _ => self
                .by_host
                .get(&host)
                .copied()
                .filter(|&index| starts_at_pc(self, index))
                .or_else(|| self.by_pc.get(&pc).copied()),
        };
        if pc == self.markers.begin {
            self.active = true;
            self.began = true;
        } else if pc == self.markers.end {
            self.ended |= self.active;
            self.active = false;
        }
        self.last = None;
        if !self.active {
            return;
        }
        match block {
            Some(index) => {
                let entry = &mut self.blocks[index];
                entry.runs += 1;
                self.total += entry.insns.len() as u64;
                self.last = Some(Counted::Block { host, index });
            }
            None => {
                *self.lone.entry(pc).or_default() += 1;
                self.total += 1;
                self.last = Some(Counted::Lone { host, pc });
            }
        }
    }

    /// The TB at `host` was entered but ran no instruction.
    fn stopped(&mut self, host: u64) {
        match self.last.take() {
            Some(Counted::Block { host: h, index }) if h == host => {
                let entry = &mut self.blocks[index];
                entry.runs -= 1;
                self.total -= entry.insns.len() as u64;
            }
            Some(Counted::Lone { host: h, pc }) if h == host => {
                if let Some(runs) = self.lone.get_mut(&pc) {
                    *runs -= 1;
                }
                self.total -= 1;
            }
            _ => {}
        }
    }

    /// The TB just entered ran only the instructions before `pc`.
    fn rewound_to(&mut self, pc: u64) {
        match self.last.take() {
            Some(Counted::Block { index, .. }) => {
                let insns = &self.blocks[index].insns;
                if let Some(position) = insns.iter().position(|&insn| insn == pc) {
                    for &insn in &insns[position..] {
                        *self.rewound.entry(insn).or_default() += 1;
                        self.total -= 1;
                    }
                }
            }
            Some(Counted::Lone { pc: lone_pc, .. }) if lone_pc == pc => {
                if let Some(runs) = self.lone.get_mut(&pc) {
                    *runs -= 1;
                }
                self.total -= 1;
            }
            _ => {}
        }
    }

    fn finish(self) -> Region {
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for block in self.blocks.iter().filter(|block| block.runs > 0) {
            for &insn in &block.insns {
                *counts.entry(insn).or_default() += block.runs;
            }
        }
        for (pc, runs) in self.lone {
            *counts.entry(pc).or_default() += runs;
        }
        for (insn, runs) in self.rewound {
            if let Some(count) = counts.get_mut(&insn) {
                *count = count.saturating_sub(runs);
            }
        }
        counts.retain(|_, count| *count > 0);
        Region {
            counts,
            total: self.total,
            began: self.began,
            ended: self.ended,
        }
    }
}

/// Count the instructions run between the markers in a `-d in_asm,exec,nochain` log, one
/// line at a time (the log is far larger than what it tells).
pub fn parse_log(mut log: impl BufRead, markers: Markers) -> std::io::Result<Region> {
    let mut parser = LogParser::new(markers);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if log.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        parser.line(&line);
    }
    Ok(parser.finish())
}

/// A hexadecimal number at the start of `text` (no `0x`), and the byte after it (0 at the
/// end of the text).
fn hex_prefix(text: &[u8]) -> Option<(u64, u8)> {
    let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let value = std::str::from_utf8(&text[..digits])
        .ok()
        .and_then(|digits| u64::from_str_radix(digits, 16).ok())?;
    Some((value, text.get(digits).copied().unwrap_or(0)))
}

/// `N: 0xHOST [CS_BASE/PC/FLAGS/CFLAGS] SYMBOL` (after `Trace `): HOST and PC.
fn parse_trace(rest: &[u8]) -> Option<(u64, u64)> {
    let at = rest.windows(4).position(|w| w == b": 0x")? + 4;
    let (host, _) = hex_prefix(&rest[at..])?;
    let open = at + rest[at..].iter().position(|&b| b == b'[')?;
    let slash = open + rest[open..].iter().position(|&b| b == b'/')?;
    let (pc, after) = hex_prefix(&rest[slash + 1..])?;
    (after == b'/').then_some((host, pc))
}

// ---------------------------------------------------------------------------------------
// The ELF symbol table.

/// A symbol defined in an executable section (what `nm` marks `t`/`T`/`W`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSymbol {
    pub address: u64,
    pub size: u64,
    pub is_function: bool,
    /// Demangled, without Rust's hashes.
    pub name: String,
}

/// The code symbols of a 64-bit little-endian ELF's `.symtab`. AArch64 mapping symbols
/// (`$x`, `$d`) mark code and data inside functions, not functions, so they are skipped.
pub fn elf_code_symbols(elf: &[u8]) -> Result<Vec<ElfSymbol>> {
    let header = crate::image::elf64_header(elf)?;
    let sections = header
        .sections(LittleEndian, elf)
        .context("reading the section headers")?;
    let table = sections
        .symbols(LittleEndian, elf, elf::SHT_SYMTAB)
        .context("reading the symbol table")?;
    if table.section() == SectionIndex(0) {
        bail!("the ELF has no symbol table (was it stripped?)");
    }
    let mut symbols = Vec::new();
    // Index 0 is the null symbol.
    for (index, symbol) in table.enumerate().skip(1) {
        let kind = symbol.st_type();
        if kind != elf::STT_NOTYPE && kind != elf::STT_FUNC {
            continue;
        }
        // `None` for undefined, absolute and common symbols.
        let Some(section_index) = table
            .symbol_section(LittleEndian, symbol, index)
            .with_context(|| format!("symbol {}", index.0))?
        else {
            continue;
        };
        let section = sections
            .section(section_index)
            .with_context(|| format!("symbol {}: section {}", index.0, section_index.0))?;
        if !section.sh_flags(LittleEndian).contains(elf::SHF_EXECINSTR) {
            continue;
        }
        let raw = symbol
            .name(LittleEndian, table.strings())
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        if raw.is_empty() || raw.starts_with('$') {
            continue;
        }
        symbols.push(ElfSymbol {
            address: symbol.st_value(LittleEndian),
            size: symbol.st_size(LittleEndian),
            is_function: kind == elf::STT_FUNC,
            name: format!("{:#}", rustc_demangle::demangle(&raw)),
        });
    }
    Ok(symbols)
}

/// Address to function, the way `nm -n` reads: the nearest symbol at or below.
pub struct SymbolMap {
    starts: Vec<u64>,
    names: Vec<String>,
}

impl SymbolMap {
    /// Of several symbols at one address (an assembly label and a linker-script symbol,
    /// say) a sized function wins, then the last name in sort order, so the choice is
    /// stable.
    pub fn new(symbols: &[ElfSymbol]) -> SymbolMap {
        let mut sorted: Vec<&ElfSymbol> = symbols.iter().collect();
        sorted.sort_by(|a, b| {
            (a.address, a.is_function, a.size > 0, &a.name).cmp(&(
                b.address,
                b.is_function,
                b.size > 0,
                &b.name,
            ))
        });
        let mut map = SymbolMap {
            starts: Vec::new(),
            names: Vec::new(),
        };
        for symbol in sorted {
            if map.starts.last() == Some(&symbol.address) {
                map.names.pop();
                map.starts.pop();
            }
            map.starts.push(symbol.address);
            map.names.push(symbol.name.clone());
        }
        map
    }

    pub fn name_at(&self, pc: u64) -> &str {
        match self.starts.partition_point(|&start| start <= pc) {
            0 => "?",
            after => &self.names[after - 1],
        }
    }
}

// ---------------------------------------------------------------------------------------
// llvm-symbolizer.

/// `llvm-symbolizer` from PATH, else the newest `/usr/lib/llvm-N/bin/llvm-symbolizer`.
pub fn find_symbolizer() -> Option<PathBuf> {
    if let Some(found) = setup::which("llvm-symbolizer") {
        return Some(found);
    }
    let versions: Vec<String> = std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    newest_llvm_dirs(&versions)
        .into_iter()
        .map(|dir| Path::new("/usr/lib").join(dir).join("bin/llvm-symbolizer"))
        .find(|path| path.is_file())
}

/// The `llvm-N` names among `names`, highest N first.
fn newest_llvm_dirs(names: &[String]) -> Vec<&str> {
    let mut found: Vec<(u32, &str)> = names
        .iter()
        .filter_map(|name| {
            let version = name.strip_prefix("llvm-")?.parse::<u32>().ok()?;
            Some((version, name.as_str()))
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, name)| name).collect()
}

/// Where an instruction comes from: the innermost (possibly inlined) function, and
/// `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub function: String,
    pub line: String,
}

/// One line of `llvm-symbolizer --output-style=JSON --inlining`: the address and its
/// innermost frame (the first of `Symbol`).
fn parse_symbolizer_line(line: &str) -> Option<(u64, Place)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let address = value["Address"].as_str()?.strip_prefix("0x")?;
    let address = u64::from_str_radix(address, 16).ok()?;
    let frame = &value["Symbol"][0];
    let known = |text: Option<&str>| match text {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => "??".to_string(),
    };
    let function = known(frame["FunctionName"].as_str());
    let file = known(frame["FileName"].as_str());
    let line_number = frame["Line"].as_u64().unwrap_or(0);
    Some((
        address,
        Place {
            function,
            line: format!("{file}:{line_number}"),
        },
    ))
}

/// Ask `symbolizer` where each of `pcs` comes from.
fn symbolize(symbolizer: &Path, elf: &Path, pcs: &[u64]) -> Result<HashMap<u64, Place>> {
    let mut child = Command::new(symbolizer)
        .arg(format!("--obj={}", elf.display()))
        // `linkage` names carry the type and module path (`<Zone>::rmqueue`); `short`
        // would leave a bare `rmqueue` or `{closure#0}`.
        .args([
            "--inlining",
            "--functions=linkage",
            "--demangle",
            "--relativenames",
            "--output-style=JSON",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", symbolizer.display()))?;
    let input: String = pcs.iter().map(|pc| format!("{pc:#x}\n")).collect();
    let mut stdin = child.stdin.take();
    // Written from a thread: the answers come back while we write, and a full pipe in
    // each direction would otherwise deadlock.
    let writer = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(input.as_bytes());
        }
    });
    let mut places = HashMap::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            if let Some((pc, place)) = parse_symbolizer_line(&line) {
                places.insert(pc, place);
            }
        }
    }
    let _ = writer.join();
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", symbolizer.display()))?;
    if !status.success() || places.is_empty() {
        bail!("{} gave no answer ({status})", symbolizer.display());
    }
    Ok(places)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKERS: Markers = Markers {
        begin: 0x1000,
        end: 0x2000,
    };

    fn parse(log: &str) -> Region {
        let region = parse_log(log.as_bytes(), MARKERS).unwrap();
        assert_eq!(
            region.total,
            region.counts.values().sum::<u64>(),
            "total is the sum of the counts"
        );
        region
    }

    fn block(pcs: &[u64]) -> String {
        let mut text = String::from("----------------\nIN: some_function\n");
        for pc in pcs {
            text.push_str(&format!("0x{pc:08x}:  d503201f  nop      \n"));
        }
        text.push('\n');
        text
    }

    fn trace(host: u64, pc: u64) -> String {
        format!("Trace 0: 0x{host:x} [00004000/{pc:016x}/00000421/ff022200] some_function\n")
    }

    fn counts(region: &Region) -> Vec<(u64, u64)> {
        let mut counts: Vec<(u64, u64)> = region.counts.iter().map(|(&a, &c)| (a, c)).collect();
        counts.sort_unstable();
        counts
    }

    #[test]
    fn counts_only_between_the_markers() {
        let mut log = String::new();
        // Before begin: translated and run, not counted.
        log += &block(&[0x3000, 0x3004]);
        log += &trace(0xa0, 0x3000);
        log += &block(&[0x1000, 0x1004]);
        log += &trace(0xa1, 0x1000);
        // Inside: the 0x3000 TB three times, one TB translated now.
        log += &trace(0xa0, 0x3000);
        log += &trace(0xa0, 0x3000);
        log += &block(&[0x4000, 0x4004, 0x4008]);
        log += &trace(0xa2, 0x4000);
        log += &trace(0xa0, 0x3000);
        // End marker: not counted, nor what follows.
        log += &block(&[0x2000]);
        log += &trace(0xa3, 0x2000);
        log += &trace(0xa0, 0x3000);
        log += &trace(0xa2, 0x4000);
        let region = parse(&log);
        assert!(region.began && region.ended);
        assert_eq!(
            counts(&region),
            vec![
                (0x1000, 1),
                (0x1004, 1),
                (0x3000, 3),
                (0x3004, 3),
                (0x4000, 1),
                (0x4004, 1),
                (0x4008, 1)
            ]
        );
        assert_eq!(region.total, 2 + 6 + 3);
    }

    #[test]
    fn markers_toggle_counting_each_time() {
        let mut log = String::new();
        log += &block(&[0x1000]);
        log += &trace(0xb0, 0x1000);
        log += &block(&[0x5000, 0x5004]);
        log += &trace(0xb5, 0x5000);
        log += &block(&[0x2000]);
        log += &trace(0xb2, 0x2000);
        // Between the two regions: not counted.
        log += &trace(0xb5, 0x5000);
        log += &trace(0xb5, 0x5000);
        log += &trace(0xb0, 0x1000);
        log += &trace(0xb5, 0x5000);
        log += &trace(0xb2, 0x2000);
        let region = parse(&log);
        assert_eq!(counts(&region), vec![(0x1000, 2), (0x5000, 2), (0x5004, 2)]);
        assert!(region.began && region.ended);
    }

    #[test]
    fn a_translation_never_bound_to_its_host_address_is_found_by_pc() {
        let mut log = String::new();
        log += &trace(0xb0, 0x1000);
        // Two translations in a row: the first is never seen running right after its own.
        log += &block(&[0x6000, 0x6004]);
        log += &block(&[0x7000]);
        log += &trace(0xb7, 0x7000);
        log += &trace(0xb6, 0x6000);
        log += &trace(0xb2, 0x2000);
        let region = parse(&log);
        assert_eq!(
            counts(&region),
            vec![(0x1000, 1), (0x6000, 1), (0x6004, 1), (0x7000, 1)]
        );
    }

    #[test]
    fn a_tb_never_seen_translated_counts_one_instruction() {
        let mut log = String::new();
        log += &trace(0xc1, 0x1000);
        log += &trace(0xc7, 0x7000);
        log += &trace(0xc7, 0x7000);
        log += &trace(0xc2, 0x2000);
        let region = parse(&log);
        assert_eq!(counts(&region), vec![(0x1000, 1), (0x7000, 2)]);
    }

    #[test]
    fn a_short_retranslation_at_the_same_pc_does_not_shorten_the_long_tb() {
        let mut log = String::new();
        log += &trace(0xd1, 0x1000);
        log += &block(&[0x3000, 0x3004, 0x3008]);
        log += &trace(0xd3, 0x3000);
        // The icount budget ends after one instruction: QEMU translates a shorter TB.
        log += &block(&[0x3000]);
        log += &trace(0xe3, 0x3000);
        log += &trace(0xd3, 0x3000);
        log += &trace(0xe3, 0x3000);
        log += &trace(0xd2, 0x2000);
        let region = parse(&log);
        assert_eq!(
            counts(&region),
            vec![(0x1000, 1), (0x3000, 4), (0x3004, 2), (0x3008, 2)]
        );
    }

    #[test]
    fn stopped_and_rewound_tbs_are_taken_back() {
        let mut log = String::new();
        log += &trace(0xf1, 0x1000);
        log += &block(&[0x3000, 0x3004, 0x3008, 0x300c]);
        log += &trace(0xf3, 0x3000);
        // Entered, but an interrupt was pending: nothing ran.
        log += &trace(0xf3, 0x3000);
        log += "Stopped execution of TB chain before 0xf3 [0000000000003000] some_function\n";
        // A device access at 0x3008: only 0x3000 and 0x3004 ran, then 0x3008 on its own.
        log += &trace(0xf3, 0x3000);
        log += "cpu_io_recompile: rewound execution of TB to 0000000000003008\n";
        log += &block(&[0x3008]);
        log += &trace(0xf8, 0x3008);
        // A stop that names another TB changes nothing.
        log += &trace(0xf3, 0x3000);
        log += "Stopped execution of TB chain before 0x99 [0000000000003000] some_function\n";
        log += &trace(0xf2, 0x2000);
        let region = parse(&log);
        assert_eq!(
            counts(&region),
            vec![
                (0x1000, 1),
                (0x3000, 3),
                (0x3004, 3),
                (0x3008, 3),
                (0x300c, 2)
            ]
        );
        assert_eq!(region.total, 12);
    }

    #[test]
    fn missing_markers_are_reported() {
        let region = parse(&(block(&[0x3000]) + &trace(0xa, 0x3000)));
        assert!(!region.began && !region.ended && region.total == 0);
        let region = parse(&(trace(0xa, 0x1000) + &trace(0xb, 0x3000)));
        assert!(region.began && !region.ended);
        assert_eq!(region.total, 2);
        // An end before any begin does not count as the end of the region.
        let region = parse(&(trace(0xc, 0x2000) + &trace(0xa, 0x1000)));
        assert!(region.began && !region.ended);
    }

    #[test]
    fn malformed_lines_are_ignored() {
        let mut log = String::new();
        log += &trace(0xa, 0x1000);
        log += "Trace 0: garbage\nTrace 0: 0xzz [1/2]\n0xnothex: x\nrandom text\n\r\n";
        log += &trace(0xb, 0x2000);
        assert_eq!(counts(&parse(&log)), vec![(0x1000, 1)]);
        assert_eq!(
            parse_trace(b"0: 0x7f00 [00004000/0000000040200000/0/0] s"),
            Some((0x7f00, 0x4020_0000))
        );
        assert_eq!(parse_trace(b"0: 0x7f00 [00004000/zz/0/0]"), None);
        assert_eq!(hex_prefix(b"4020:"), Some((0x4020, b':')));
        assert_eq!(hex_prefix(b"11112222333344445"), None, "more than 64 bits");
    }

    const STT_NOTYPE: u8 = elf::STT_NOTYPE.0;
    const STT_FUNC: u8 = elf::STT_FUNC.0;

    /// A minimal ELF64 with `.text` (executable), `.data`, `.symtab` and `.strtab` (which
    /// also serves as the section name table: every name is empty); symbols are (name,
    /// value, size, type, section index).
    fn elf_with_symbols(symbols: &[(&str, u64, u64, u8, u16)]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24]; // the null symbol
        for (name, value, size, kind, section) in symbols {
            let name_offset = strtab.len() as u32;
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
            symtab.extend_from_slice(&name_offset.to_le_bytes());
            symtab.push(0x10 | kind); // global
            symtab.push(0);
            symtab.extend_from_slice(&section.to_le_bytes());
            symtab.extend_from_slice(&value.to_le_bytes());
            symtab.extend_from_slice(&size.to_le_bytes());
        }
        let mut elf = vec![0u8; 64];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[6] = 1; // EI_VERSION
        let symtab_offset = elf.len() as u64;
        elf.extend_from_slice(&symtab);
        let strtab_offset = elf.len() as u64;
        elf.extend_from_slice(&strtab);
        let shoff = elf.len() as u64;
        // null, .text, .data, .symtab (link 4), .strtab
        let sections: [(u32, u64, u64, u64, u32); 5] = [
            (0, 0, 0, 0, 0),
            (1, 0x6, 0, 0, 0),
            (1, 0x3, 0, 0, 0),
            (elf::SHT_SYMTAB.0, 0, symtab_offset, symtab.len() as u64, 4),
            (3, 0, strtab_offset, strtab.len() as u64, 0),
        ];
        for (kind, flags, offset, size, link) in sections {
            let mut header = [0u8; 64];
            header[4..8].copy_from_slice(&kind.to_le_bytes());
            header[8..16].copy_from_slice(&flags.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&offset.to_le_bytes());
            header[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            header[0x28..0x2c].copy_from_slice(&link.to_le_bytes());
            elf.extend_from_slice(&header);
        }
        elf[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&5u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&4u16.to_le_bytes()); // e_shstrndx
        elf
    }

    #[test]
    fn code_symbols_from_the_elf_symbol_table() {
        let elf = elf_with_symbols(&[
            ("$x", 0x4020_0000, 0, STT_NOTYPE, 1),
            ("_start", 0x4020_0000, 0, STT_NOTYPE, 1),
            ("__text_start", 0x4020_0000, 0, STT_NOTYPE, 1),
            ("monolith_profile_begin", 0x4020_0100, 8, STT_FUNC, 1),
            // Legacy Rust mangling; the hash is dropped.
            (
                "_ZN8monolith2mm3cma9cma_alloc17h0123456789abcdefE",
                0x4020_0200,
                0x100,
                STT_FUNC,
                1,
            ),
            ("$d", 0x4020_0280, 0, STT_NOTYPE, 1),
            ("SOME_DATA", 0x4030_0000, 8, 1, 2),
            ("undefined", 0, 0, STT_FUNC, 0),
            ("absolute", 0x10, 0, STT_NOTYPE, 0xfff1),
        ]);
        let symbols = elf_code_symbols(&elf).unwrap();
        let names: Vec<&str> = symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "_start",
                "__text_start",
                "monolith_profile_begin",
                "monolith::mm::cma::cma_alloc"
            ]
        );
        let map = SymbolMap::new(&symbols);
        assert_eq!(map.name_at(0x4010_0000), "?");
        assert_eq!(map.name_at(0x4020_0000), "_start");
        assert_eq!(map.name_at(0x4020_00fc), "_start");
        assert_eq!(map.name_at(0x4020_0104), "monolith_profile_begin");
        // Past a `$d` literal pool: still the function.
        assert_eq!(map.name_at(0x4020_0290), "monolith::mm::cma::cma_alloc");
    }

    #[test]
    fn bad_elves_are_errors_not_panics() {
        assert!(elf_code_symbols(b"").is_err());
        let error = |elf: &[u8]| format!("{:#}", elf_code_symbols(elf).unwrap_err());
        assert!(error(b"\x7fELF\x01\x01").contains("64-bit"));
        let mut truncated = elf_with_symbols(&[("f", 1, 1, STT_FUNC, 1)]);
        truncated.truncate(120);
        assert!(elf_code_symbols(&truncated).is_err());
        let mut stripped = elf_with_symbols(&[]);
        let shoff = u64::from_le_bytes(stripped[0x28..0x30].try_into().unwrap()) as usize;
        stripped[shoff + 3 * 64 + 4] = 1; // .symtab becomes PROGBITS
        assert!(error(&stripped).contains("stripped"));
    }

    #[test]
    fn symbolizer_json_lines() {
        let line = r#"{"Address":"0x40210000","ModuleName":"m","Symbol":[{"Column":28,"Discriminator":0,"FileName":"src/mm/buddy.rs","FunctionName":"<monolith::mm::Zone>::rmqueue","Line":120,"StartAddress":"0x4020fff8","StartFileName":"src/mm/buddy.rs","StartLine":100},{"FileName":"src/mm/cma.rs","FunctionName":"outer","Line":7}]}"#;
        assert_eq!(
            parse_symbolizer_line(line),
            Some((
                0x4021_0000,
                Place {
                    function: "<monolith::mm::Zone>::rmqueue".into(),
                    line: "src/mm/buddy.rs:120".into()
                }
            ))
        );
        let unknown = r#"{"Address":"0x40200000","ModuleName":"m","Symbol":[{"Column":0,"FileName":"","FunctionName":"","Line":0}]}"#;
        assert_eq!(
            parse_symbolizer_line(unknown),
            Some((
                0x4020_0000,
                Place {
                    function: "??".into(),
                    line: "??:0".into()
                }
            ))
        );
        assert_eq!(parse_symbolizer_line("not json"), None);
    }

    #[test]
    fn newest_llvm_first() {
        let names: Vec<String> = ["llvm-14", "llvm-22", "llvm", "llvm-9", "llvm-x", "gcc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            newest_llvm_dirs(&names),
            vec!["llvm-22", "llvm-14", "llvm-9"]
        );
    }

    #[test]
    fn long_names_are_cut() {
        assert_eq!(shorten("abc", 10), "abc");
        assert_eq!(shorten("abcdefghijkl", 8), "abcde...");
    }
}
