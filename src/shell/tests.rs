//! Whole-shell tests against a fake backend that records every call and keeps a small,
//! checkable model of CMA, the movable workload and the debugfs files.

use super::*;
use crate::shell::linuxfmt::{debugfs_free_count, CmaDebugAllocations, FreeOrder};
use crate::shell::vfs::VfsTree;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

const AREA: &str = "reserved";
const AREA_PAGES: u64 = 64;
const BASE_PFN: u64 = 0x48000;
const RAM_PAGES: u64 = 262_144;

struct Fake {
    tree: VfsTree,
    calls: Vec<String>,
    /// Calls the shell must never make (reading write-only, writing read-only files).
    violations: Vec<String>,
    bitmap: Vec<bool>,
    handles: BTreeMap<u64, (u64, u64)>,
    next_handle: u64,
    debug_allocs: CmaDebugAllocations,
    alloc_success: u64,
    alloc_fail: u64,
    release_success: u64,
    workload: Option<u64>,
    tracing: bool,
    log: LevelFilter,
    /// Live dma-bufs of the fake heaps: id -> (heap, bytes).
    bufs: BTreeMap<u64, (String, u64)>,
    next_buf: u64,
    /// The fake board has a PASR window (`pasr` and `suspend` work).
    pasr: bool,
}

const HEAPS: [&str; 2] = ["system", "reserved"];

impl Fake {
    fn new() -> Self {
        let mut tree = VfsTree::new();
        for file in ["meminfo", "buddyinfo", "pagetypeinfo", "zoneinfo", "iomem"] {
            tree.add_file(&format!("/proc/{}", file), Access::ReadOnly);
        }
        for file in [
            "alloc_pages_success",
            "alloc_pages_fail",
            "release_pages_success",
        ] {
            tree.add_file(
                &format!("/sys/kernel/mm/cma/{}/{}", AREA, file),
                Access::ReadOnly,
            );
        }
        let debug = format!("/sys/kernel/debug/cma/{}", AREA);
        tree.add_file(&format!("{}/alloc", debug), Access::WriteOnly);
        tree.add_file(&format!("{}/free", debug), Access::WriteOnly);
        for file in [
            "base_pfn",
            "bitmap",
            "count",
            "maxchunk",
            "order_per_bit",
            "used",
        ] {
            tree.add_file(&format!("{}/{}", debug, file), Access::ReadOnly);
        }
        for heap in HEAPS {
            tree.add_file(&format!("/dev/dma_heap/{}", heap), Access::ReadOnly);
        }
        tree.add_file("/proc/device-tree/chosen/bootargs", Access::ReadOnly);
        tree.add_file("/proc/device-tree/memory@40000000/reg", Access::ReadOnly);
        Fake {
            tree,
            calls: Vec::new(),
            violations: Vec::new(),
            bitmap: vec![false; AREA_PAGES as usize],
            handles: BTreeMap::new(),
            next_handle: 1,
            debug_allocs: CmaDebugAllocations::new(FreeOrder::NewestFirst),
            alloc_success: 0,
            alloc_fail: 0,
            release_success: 0,
            workload: None,
            tracing: false,
            log: LevelFilter::Info,
            bufs: BTreeMap::new(),
            next_buf: 1,
            pasr: true,
        }
    }

    fn used(&self) -> u64 {
        self.bitmap.iter().filter(|&&b| b).count() as u64
    }

    fn cma_alloc(&mut self, pages: u64, align_order: u32) -> Option<u64> {
        let step = 1u64 << align_order;
        let mut start = 0;
        while start + pages <= AREA_PAGES {
            let range = start as usize..(start + pages) as usize;
            if self.bitmap[range.clone()].iter().all(|b| !b) {
                self.bitmap[range].iter_mut().for_each(|b| *b = true);
                self.alloc_success += pages;
                return Some(start);
            }
            start += step;
        }
        self.alloc_fail += pages;
        None
    }

    fn cma_release(&mut self, offset: u64, pages: u64) {
        for bit in &mut self.bitmap[offset as usize..(offset + pages) as usize] {
            assert!(*bit, "double free in the fake");
            *bit = false;
        }
        self.release_success += pages;
    }

    /// The model's invariants: every used bit belongs to exactly one live allocation.
    fn check_consistent(&self) {
        let by_handles: u64 = self.handles.values().map(|(_, pages)| pages).sum();
        assert_eq!(self.used(), by_handles + self.debug_allocs.pages());
        assert_eq!(self.alloc_success - self.release_success, self.used());
        assert!(
            self.violations.is_empty(),
            "forbidden calls: {:?}",
            self.violations
        );
    }
}

/// The fake service's refusals, in its own words (reach the shell as
/// [`BackendError::Service`]).
#[derive(Debug)]
enum FakeError {
    AlreadyRunning,
    NotRunning,
    OnlyPages(u64),
    NoArea(String),
    CannotAllocate(u64),
    NoNode(String),
    NoHeap(String),
    NoBuf(u64),
    NoPasr,
}

impl core::fmt::Display for FakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FakeError::AlreadyRunning => f.write_str("already running"),
            FakeError::NotRunning => f.write_str("not running (try 'mem start')"),
            FakeError::OnlyPages(have) => write!(f, "only {} pages", have),
            FakeError::NoArea(area) => write!(f, "no CMA area '{}'", area),
            FakeError::CannotAllocate(pages) => write!(f, "cannot allocate {} pages", pages),
            FakeError::NoNode(path) => write!(f, "{}: no such node", path),
            FakeError::NoHeap(heap) => write!(f, "no heap '{}'", heap),
            FakeError::NoBuf(id) => write!(f, "no dma-buf {}", id),
            FakeError::NoPasr => f.write_str("no PASR window on this board"),
        }
    }
}

impl core::error::Error for FakeError {}

impl Backend for Fake {
    fn fs_list(&mut self, dir: &str) -> Result<Vec<DirEntry>, FsError> {
        self.tree.list(dir)
    }

    fn fs_read(&mut self, path: &str) -> Result<String, FsError> {
        self.calls.push(format!("read {}", path));
        match self.tree.kind(path) {
            Some(EntryKind::File(access)) if !access.readable() => {
                self.violations.push(format!("read {}", path));
                return Err(FsError::PermissionDenied);
            }
            Some(EntryKind::File(_)) => {}
            _ => {
                self.violations.push(format!("read of non-file {}", path));
                return Err(FsError::NotFound);
            }
        }
        let name = path.rsplit('/').next().unwrap_or("");
        Ok(match name {
            "meminfo" => linuxfmt::meminfo_line("MemTotal", RAM_PAGES * 4),
            "used" => linuxfmt::number_attr(self.used()),
            "count" => linuxfmt::number_attr(AREA_PAGES),
            "base_pfn" => linuxfmt::number_attr(BASE_PFN),
            "order_per_bit" => linuxfmt::number_attr(0),
            "alloc_pages_success" => linuxfmt::number_attr(self.alloc_success),
            "alloc_pages_fail" => linuxfmt::number_attr(self.alloc_fail),
            "release_pages_success" => linuxfmt::number_attr(self.release_success),
            "bootargs" => String::from("console=ttyAMA0"), // no newline, like a DT string
            other => format!("{} contents\n", other),
        })
    }

    fn fs_write(&mut self, path: &str, value: &str) -> Result<(), FsError> {
        self.calls.push(format!("write {} {:?}", path, value));
        match self.tree.kind(path) {
            Some(EntryKind::File(access)) if access.writable() => {}
            _ => {
                self.violations.push(format!("write {}", path));
                return Err(FsError::PermissionDenied);
            }
        }
        if path.ends_with("/alloc") {
            let pages = number::parse_u64(value.trim()).map_err(|_| FsError::InvalidArgument)?;
            let offset = self.cma_alloc(pages, 0).ok_or(FsError::OutOfMemory)?;
            self.debug_allocs.record(offset, pages);
        } else {
            let pages = debugfs_free_count(value).ok_or(FsError::InvalidArgument)?;
            let plan = self.debug_allocs.free(pages, 0);
            for (offset, count) in plan.releases {
                self.cma_release(offset, count);
            }
        }
        Ok(())
    }

    fn mem(&mut self, op: MemOp) -> Result<String, BackendError> {
        self.calls.push(format!("mem {:?}", op));
        match (op, self.workload) {
            (MemOp::Start, None) => {
                self.workload = Some(0);
                Ok(String::from("workload started"))
            }
            (MemOp::Start, Some(_)) => Err(BackendError::service(FakeError::AlreadyRunning)),
            (_, None) => Err(BackendError::service(FakeError::NotRunning)),
            (MemOp::Grow { pages }, Some(have)) => {
                self.workload = Some(have + pages);
                Ok(format!("{} pages", have + pages))
            }
            (MemOp::Shrink { pages }, Some(have)) if pages <= have => {
                self.workload = Some(have - pages);
                Ok(format!("{} pages", have - pages))
            }
            (MemOp::Shrink { .. }, Some(have)) => {
                Err(BackendError::service(FakeError::OnlyPages(have)))
            }
            (MemOp::Verify, Some(have)) => Ok(format!("verified {} pages", have)),
            (MemOp::Status, Some(have)) => Ok(format!("{} pages\n", have)),
        }
    }

    fn cma(&mut self, op: CmaOp<'_>) -> Result<String, BackendError> {
        self.calls.push(format!("cma {:?}", op));
        match op {
            CmaOp::List => Ok(format!(
                "{}: {} pages, {} used\n",
                AREA,
                AREA_PAGES,
                self.used()
            )),
            CmaOp::Alloc {
                area,
                pages,
                align_order,
            } => {
                if area != AREA {
                    return Err(BackendError::service(FakeError::NoArea(area.to_string())));
                }
                let offset = self
                    .cma_alloc(pages, align_order)
                    .ok_or(BackendError::service(FakeError::CannotAllocate(pages)))?;
                let handle = self.next_handle;
                self.next_handle += 1;
                self.handles.insert(handle, (offset, pages));
                Ok(format!("handle {} pfn {:#x}", handle, BASE_PFN + offset))
            }
            CmaOp::Free { handle } => {
                let (offset, pages) = self
                    .handles
                    .remove(&handle)
                    .ok_or(BackendError::NoSuchHandle(handle))?;
                self.cma_release(offset, pages);
                Ok(String::new())
            }
        }
    }

    fn dt(&mut self, path: Option<&str>) -> Result<String, BackendError> {
        self.calls.push(format!("dt {:?}", path));
        match path {
            None | Some("/") => Ok(String::from("/ {\n  chosen { };\n};\n")),
            Some("/chosen") => Ok(String::from(
                "chosen {\n  bootargs = \"console=ttyAMA0\";\n};",
            )),
            Some(other) => Err(BackendError::service(FakeError::NoNode(other.to_string()))),
        }
    }

    fn trace(&mut self, op: TraceOp) -> Result<String, BackendError> {
        self.calls.push(format!("trace {:?}", op));
        match op {
            TraceOp::Record => {
                self.tracing = true;
                Ok(String::new())
            }
            TraceOp::Stop => {
                self.tracing = false;
                Ok(String::new())
            }
            TraceOp::Replay { times } => Ok(format!("replayed {} times", times)),
            TraceOp::Show => Ok(String::from("0 events")),
        }
    }

    fn gpu(&mut self, op: GpuOp) -> Result<String, BackendError> {
        self.calls.push(format!("gpu {:?}", op));
        Ok(format!("gpu {:?} done", op))
    }

    fn video(&mut self, op: VideoOp) -> Result<String, BackendError> {
        self.calls.push(format!("video {:?}", op));
        Ok(format!("video {:?} done", op))
    }

    fn heap(&mut self, op: HeapOp<'_>) -> Result<String, BackendError> {
        self.calls.push(format!("heap {:?}", op));
        match op {
            HeapOp::List => Ok(HEAPS.join("\n")),
            HeapOp::Alloc { heap, bytes } => {
                if !HEAPS.contains(&heap) {
                    return Err(BackendError::service(FakeError::NoHeap(heap.to_string())));
                }
                let id = self.next_buf;
                self.next_buf += 1;
                self.bufs.insert(id, (heap.to_string(), bytes));
                Ok(format!("dmabuf {} {} bytes from {}", id, bytes, heap))
            }
        }
    }

    fn dmabuf(&mut self, op: DmabufOp) -> Result<String, BackendError> {
        self.calls.push(format!("dmabuf {:?}", op));
        match op {
            DmabufOp::List => Ok(self
                .bufs
                .iter()
                .map(|(id, (heap, bytes))| format!("{} {} {}\n", id, heap, bytes))
                .collect()),
            DmabufOp::Free { id } => match self.bufs.remove(&id) {
                Some(_) => Ok(String::new()),
                None => Err(BackendError::service(FakeError::NoBuf(id))),
            },
        }
    }

    fn bench(&mut self, name: Option<&str>) -> Result<String, BackendError> {
        self.calls.push(format!("bench {:?}", name));
        Ok(format!("bench {} done", name.unwrap_or("all")))
    }

    fn bench_names(&self) -> Vec<String> {
        vec![String::from("buddy"), String::from("cma")]
    }

    fn pasr(&mut self) -> Result<String, BackendError> {
        self.calls.push(String::from("pasr"));
        if !self.pasr {
            return Err(BackendError::service(FakeError::NoPasr));
        }
        Ok(String::from("die  bank  state\n0    0     busy"))
    }

    fn suspend(&mut self, seconds: u64) -> Result<String, BackendError> {
        self.calls.push(format!("suspend {}", seconds));
        if !self.pasr {
            return Err(BackendError::service(FakeError::NoPasr));
        }
        Ok(format!("asked: {} s\n", seconds))
    }

    fn log_level(&self) -> LevelFilter {
        self.log
    }

    fn set_log_level(&mut self, level: LevelFilter) -> Result<(), BackendError> {
        self.calls.push(format!("log {:?}", level));
        self.log = level;
        Ok(())
    }

    fn page_limit(&self) -> u64 {
        RAM_PAGES
    }
}

struct Rig {
    shell: Shell,
    fake: Fake,
    out: String,
}

impl Rig {
    fn new() -> Self {
        let mut rig = Rig {
            shell: Shell::new(),
            fake: Fake::new(),
            out: String::new(),
        };
        rig.shell.show_prompt(&mut rig.out);
        rig.out.clear();
        rig
    }

    fn send(&mut self, bytes: &[u8]) -> Action {
        let mut last = Action::Continue;
        for &byte in bytes {
            let action = self.shell.input(byte, &mut self.fake, &mut self.out);
            if action != Action::Continue {
                last = action;
            }
        }
        last
    }

    /// Runs one command line and returns only what the command printed (between the echoed
    /// line and the next prompt), with `\r\n` turned back into `\n`.
    fn run(&mut self, line: &str) -> String {
        self.out.clear();
        self.send(line.as_bytes());
        self.send(b"\r");
        let echoed = format!("{}\r\n", line);
        let body = self
            .out
            .strip_prefix(&echoed)
            .unwrap_or_else(|| panic!("echo of {:?}: {:?}", line, self.out));
        let body = body
            .strip_suffix(PROMPT)
            .unwrap_or_else(|| panic!("no prompt after {:?}: {:?}", line, body));
        assert_no_bare_lf(body);
        body.replace("\r\n", "\n")
    }

    fn calls(&mut self) -> Vec<String> {
        core::mem::take(&mut self.fake.calls)
    }
}

fn assert_no_bare_lf(text: &str) {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert!(
                i > 0 && bytes[i - 1] == b'\r',
                "bare LF at {} in {:?}",
                i,
                text
            );
        }
    }
}

#[test]
fn start_prompt_and_echo_ok() {
    let mut shell = Shell::new();
    let mut fake = Fake::new();
    let mut out = String::new();
    shell.show_prompt(&mut out);
    shell.input_bytes(b"echo ok\r", &mut fake, &mut out);
    assert_eq!(out, "monolith> echo ok\r\nok\r\nmonolith> ");
}

#[test]
fn run_line_executes_without_echo_or_prompt() {
    let mut shell = Shell::new();
    let mut fake = Fake::new();
    let mut out = String::new();
    let action = shell.run_line(
        "cat /sys/kernel/debug/cma/reserved/count /x",
        &mut fake,
        &mut out,
    );
    assert_eq!(action, Action::Continue);
    assert_eq!(out, "64\r\ncat: /x: No such file or directory\r\n");
    assert_eq!(
        shell.run_line("reboot", &mut fake, &mut out),
        Action::Reboot
    );
    assert_eq!(shell.history().count(), 0);
}

#[test]
fn echo_joins_arguments_like_a_shell() {
    let mut rig = Rig::new();
    assert_eq!(rig.run("echo  a   b"), "a b\n");
    assert_eq!(rig.run("echo 'a   b' \"c d\""), "a   b c d\n");
    assert_eq!(rig.run("echo"), "\n");
    assert_eq!(rig.run("echo \"it's\""), "it's\n");
    assert_eq!(
        rig.run("echo 'open"),
        "syntax error: unterminated ' quote\n"
    );
    assert!(rig.calls().is_empty());
}

#[test]
fn unknown_command_and_empty_lines() {
    let mut rig = Rig::new();
    assert_eq!(rig.run("foo bar"), "unknown command: foo (try 'help')\n");
    assert_eq!(rig.run(""), "");
    assert_eq!(rig.run("   "), "");
    assert_eq!(
        rig.run("> /proc/meminfo"),
        "syntax error: '>' needs a command before it\n"
    );
    assert!(rig.calls().is_empty());
}

#[test]
fn help_lists_every_command_and_explains_one() {
    let mut rig = Rig::new();
    let text = rig.run("help");
    assert_eq!(text.lines().count(), commands::COMMANDS.len());
    for spec in commands::COMMANDS {
        assert!(text.contains(spec.usage), "help misses {}", spec.name);
    }
    let cma = rig.run("help cma");
    assert!(cma.starts_with("usage: cma list|alloc AREA PAGES [ALIGN_ORDER]|free HANDLE\n"));
    assert_eq!(rig.run("help nope"), "help: no such command: nope\n");
    assert!(rig.run("help a b").starts_with("help: too many arguments"));
}

#[test]
fn ls_directories_files_and_errors() {
    let mut rig = Rig::new();
    assert_eq!(rig.run("ls"), "dev/\nproc/\nsys/\n");
    assert_eq!(
        rig.run("ls /proc"),
        "buddyinfo\ndevice-tree/\niomem\nmeminfo\npagetypeinfo\nzoneinfo\n"
    );
    assert_eq!(
        rig.run("ls /proc/../proc/./meminfo"),
        "/proc/../proc/./meminfo\n"
    );
    assert_eq!(
        rig.run("ls /sys/kernel/debug/cma/reserved"),
        "alloc\nbase_pfn\nbitmap\ncount\nfree\nmaxchunk\norder_per_bit\nused\n"
    );
    assert_eq!(
        rig.run("ls /nope"),
        "ls: cannot access '/nope': No such file or directory\n"
    );
    assert_eq!(
        rig.run("ls /proc/meminfo/x"),
        "ls: cannot access '/proc/meminfo/x': Not a directory\n"
    );
    assert!(rig
        .run("ls a b")
        .starts_with("ls: too many arguments (usage: ls [PATH])"));
    assert_eq!(rig.run("ls / > /x"), "ls: '>' is only supported by echo\n");
}

#[test]
fn cat_reads_files_and_words_errors() {
    let mut rig = Rig::new();
    assert_eq!(
        rig.run("cat /proc/meminfo"),
        "MemTotal:        1048576 kB\n"
    );
    assert_eq!(rig.calls(), vec!["read /proc/meminfo"]);
    // Relative paths start at the root; several files are concatenated.
    let two =
        rig.run("cat sys/kernel/debug/cma/reserved/count /sys/kernel/debug/cma/reserved/base_pfn");
    assert_eq!(two, "64\n294912\n");
    // A value without a final newline still leaves the prompt on a fresh line.
    assert_eq!(
        rig.run("cat /proc/device-tree/chosen/bootargs"),
        "console=ttyAMA0\n"
    );
    rig.calls();
    assert_eq!(rig.run("cat /x"), "cat: /x: No such file or directory\n");
    assert_eq!(rig.run("cat /proc"), "cat: /proc: Is a directory\n");
    assert_eq!(
        rig.run("cat /sys/kernel/debug/cma/reserved/alloc"),
        "cat: /sys/kernel/debug/cma/reserved/alloc: Permission denied (write-only file)\n"
    );
    assert!(rig.calls().is_empty(), "errors must not reach the backend");
    assert!(rig
        .run("cat")
        .starts_with("cat: missing argument (usage: cat FILE...)"));
    // An error in the middle does not stop the rest.
    assert_eq!(
        rig.run("cat /x /sys/kernel/debug/cma/reserved/count"),
        "cat: /x: No such file or directory\n64\n"
    );
    rig.fake.check_consistent();
}

#[test]
fn debugfs_alloc_and_free_through_echo() {
    let mut rig = Rig::new();
    let dir = "/sys/kernel/debug/cma/reserved";
    assert_eq!(rig.run(&format!("echo 5 > {}/alloc", dir)), "");
    assert_eq!(rig.run(&format!("echo 3>{}/alloc", dir)), "");
    assert_eq!(rig.run(&format!("cat {}/used", dir)), "8\n");
    assert_eq!(
        rig.run("cat /sys/kernel/mm/cma/reserved/alloc_pages_success"),
        "8\n"
    );
    // free 4: the newest allocation (3 pages) and one page of the older one.
    assert_eq!(rig.run(&format!("echo 4 > {}/free", dir)), "");
    assert_eq!(rig.run(&format!("cat {}/used", dir)), "4\n");
    assert_eq!(
        rig.run("cat /sys/kernel/mm/cma/reserved/release_pages_success"),
        "4\n"
    );
    rig.fake.check_consistent();
    // The value reaches the backend without the newline echo would add.
    assert!(rig.calls().contains(&format!("write {}/alloc \"5\"", dir)));
}

#[test]
fn echo_redirect_errors_leave_state_alone() {
    let mut rig = Rig::new();
    let dir = "/sys/kernel/debug/cma/reserved";
    assert_eq!(
        rig.run(&format!("echo 1 > {}/used", dir)),
        format!("echo: {}/used: Permission denied (read-only file)\n", dir)
    );
    assert_eq!(
        rig.run("echo 1 > /nope"),
        "echo: /nope: No such file or directory\n"
    );
    assert_eq!(rig.run("echo 1 > /proc"), "echo: /proc: Is a directory\n");
    assert!(rig.calls().is_empty());
    assert_eq!(
        rig.run(&format!("echo abc > {}/alloc", dir)),
        format!("echo: {}/alloc: Invalid argument\n", dir)
    );
    assert_eq!(
        rig.run(&format!("echo 1000 > {}/alloc", dir)),
        format!("echo: {}/alloc: Cannot allocate memory\n", dir)
    );
    assert_eq!(rig.fake.used(), 0);
    assert_eq!(
        rig.run("echo a > b > c"),
        "syntax error: only one '>' redirection is allowed\n"
    );
    assert_eq!(
        rig.run("echo a >"),
        "syntax error: '>' needs a file name after it\n"
    );
    rig.fake.check_consistent();
}

#[test]
fn cma_commands() {
    let mut rig = Rig::new();
    assert_eq!(rig.run("cma list"), "reserved: 64 pages, 0 used\n");
    assert_eq!(rig.run("cma alloc reserved 16"), "handle 1 pfn 0x48000\n");
    assert_eq!(rig.run("cma alloc reserved 8K 3"), "handle 2 pfn 0x48010\n");
    assert_eq!(rig.run("cma alloc reserved 0x2"), "handle 3 pfn 0x48012\n");
    assert_eq!(rig.fake.used(), 20);
    assert_eq!(rig.run("cma free 2"), "");
    assert_eq!(rig.fake.used(), 18);
    rig.calls();
    // Bad input: one line each, and nothing reaches the backend.
    for (line, error) in [
        ("cma", "cma: usage: cma list|alloc AREA PAGES [ALIGN_ORDER]|free HANDLE"),
        ("cma alloc reserved", "cma: usage: cma list|alloc AREA PAGES [ALIGN_ORDER]|free HANDLE"),
        ("cma alloc reserved 1 2 3", "cma: usage: cma list|alloc AREA PAGES [ALIGN_ORDER]|free HANDLE"),
        ("cma frob", "cma: unknown subcommand 'frob' (usage: cma list|alloc AREA PAGES [ALIGN_ORDER]|free HANDLE)"),
        ("cma alloc reserved x", "cma: bad number: 'x' (decimal, 0x hex, or K/M/G size)"),
        ("cma alloc reserved 0", "cma: page count must be at least 1"),
        ("cma alloc reserved 6K", "cma: 6K is not a whole number of 4096-byte pages"),
        ("cma alloc reserved 2G", "cma: 524288 pages is over the limit of 262144 pages"),
        ("cma alloc reserved 99999999999999999999", "cma: bad number: '99999999999999999999' (decimal, 0x hex, or K/M/G size)"),
        ("cma alloc reserved 1 21", "cma: alignment order 21 is over the limit of 20"),
        ("cma alloc reserved 1 -1", "cma: bad number: '-1' (decimal, 0x hex, or K/M/G size)"),
        ("cma free", "cma: usage: cma list|alloc AREA PAGES [ALIGN_ORDER]|free HANDLE"),
        ("cma free x", "cma: bad handle: bad number: 'x' (decimal, 0x hex, or K/M/G size)"),
    ] {
        assert_eq!(rig.run(line), format!("{}\n", error), "for {:?}", line);
    }
    assert!(rig.calls().is_empty());
    // Errors the backend decides are passed through, state unchanged.
    assert_eq!(rig.run("cma free 2"), "cma: no allocation with handle 2\n");
    assert_eq!(
        rig.run("cma free 77"),
        "cma: no allocation with handle 77\n"
    );
    assert_eq!(rig.run("cma alloc other 1"), "cma: no CMA area 'other'\n");
    assert_eq!(
        rig.run("cma alloc reserved 64"),
        "cma: cannot allocate 64 pages\n"
    );
    assert_eq!(rig.fake.used(), 18);
    rig.fake.check_consistent();
}

#[test]
fn video_commands_and_their_options() {
    let mut rig = Rig::new();
    for (line, op) in [
        ("video play", "Play { looping: false, crc: false }"),
        ("video play loop", "Play { looping: true, crc: false }"),
        ("video play crc loop", "Play { looping: true, crc: true }"),
        ("video stop", "Stop"),
        ("video info", "Info"),
    ] {
        assert_eq!(rig.run(line), format!("video {} done\n", op), "{line}");
    }
    let calls = rig.fake.calls.len();
    assert!(rig
        .run("video play twice")
        .contains("unknown or repeated option `twice`"));
    assert!(rig.run("video play loop loop").contains("`loop`"));
    assert!(rig.run("video rewind").contains("play"));
    assert_eq!(rig.fake.calls.len(), calls, "a bad line reaches no backend");
}

#[test]
fn pasr_lists_and_suspend_takes_seconds_within_limits() {
    let mut rig = Rig::new();
    // Backend text is printed as is, with a final newline added.
    assert_eq!(rig.run("pasr"), "die  bank  state\n0    0     busy\n");
    assert_eq!(rig.run("suspend"), "asked: 1 s\n");
    assert_eq!(rig.run("suspend 5"), "asked: 5 s\n");
    assert_eq!(rig.run("suspend 3600"), "asked: 3600 s\n");
    assert_eq!(rig.run("suspend 0x3c"), "asked: 60 s\n");
    assert_eq!(
        rig.calls(),
        [
            "pasr",
            "suspend 1",
            "suspend 5",
            "suspend 3600",
            "suspend 60"
        ]
    );

    assert_eq!(
        rig.run("pasr all"),
        "pasr: too many arguments (usage: pasr)\n"
    );
    assert_eq!(
        rig.run("suspend 1 2"),
        "suspend: too many arguments (usage: suspend [SECONDS])\n"
    );
    for bad in [
        "0",
        "3601",
        "-1",
        "1s",
        "1.5",
        "0x",
        "99999999999999999999999",
    ] {
        assert_eq!(
            rig.run(&format!("suspend {bad}")),
            format!("suspend: SECONDS must be a whole number from 1 to 3600, not '{bad}'\n"),
        );
    }
    assert!(rig.calls().is_empty(), "a bad line reaches no backend");

    // The backend's refusal is worded after the command name.
    rig.fake.pasr = false;
    assert_eq!(rig.run("pasr"), "pasr: no PASR window on this board\n");
    assert_eq!(
        rig.run("suspend 2"),
        "suspend: no PASR window on this board\n"
    );
    assert_eq!(rig.calls(), ["pasr", "suspend 2"]);

    assert_eq!(
        rig.run("help suspend"),
        format!(
            "usage: suspend [SECONDS]\n  {}\n",
            commands::spec("suspend").unwrap().summary
        )
    );
    assert_eq!(complete(&mut rig, "sus"), "suspend ");
    assert_eq!(complete(&mut rig, "pa"), "pasr ");
}

#[test]
fn gpu_heap_and_dmabuf_commands() {
    let mut rig = Rig::new();
    for (line, op) in [
        ("gpu info", "Info"),
        ("gpu pattern", "Pattern"),
        ("gpu map", "Map"),
        ("gpu off", "Off"),
    ] {
        assert_eq!(rig.run(line), format!("gpu {} done\n", op));
    }
    assert_eq!(rig.run("heap list"), "system\nreserved\n");
    assert_eq!(
        rig.run("heap alloc system 8K"),
        "dmabuf 1 8192 bytes from system\n"
    );
    assert_eq!(
        rig.run("heap alloc reserved 0x1001"),
        "dmabuf 2 4097 bytes from reserved\n"
    );
    assert_eq!(rig.run("dmabuf list"), "1 system 8192\n2 reserved 4097\n");
    assert_eq!(rig.run("dmabuf free 1"), "");
    rig.calls();
    // Bad input: one line each, and nothing reaches the backend.
    let heap_usage = "heap list|alloc HEAP SIZE";
    let dmabuf_usage = "dmabuf list|free ID";
    for (line, error) in [
        ("gpu", String::from("gpu: usage: gpu info|pattern|map|off")),
        (
            "gpu on",
            String::from("gpu: unknown subcommand 'on' (usage: gpu info|pattern|map|off)"),
        ),
        (
            "gpu info now",
            String::from("gpu: usage: gpu info|pattern|map|off"),
        ),
        ("heap", format!("heap: usage: {}", heap_usage)),
        ("heap alloc system", format!("heap: usage: {}", heap_usage)),
        (
            "heap alloc system 4K 1",
            format!("heap: usage: {}", heap_usage),
        ),
        (
            "heap alloc system 0",
            String::from("heap: size must be at least 1 byte"),
        ),
        (
            "heap alloc system x",
            String::from("heap: bad number: 'x' (decimal, 0x hex, or K/M/G size)"),
        ),
        (
            "heap alloc system 2G",
            String::from("heap: size 2G is over the limit of 1073741824 bytes (all of RAM)"),
        ),
        (
            "heap grab",
            format!("heap: unknown subcommand 'grab' (usage: {})", heap_usage),
        ),
        ("dmabuf", format!("dmabuf: usage: {}", dmabuf_usage)),
        ("dmabuf free", format!("dmabuf: usage: {}", dmabuf_usage)),
        (
            "dmabuf free -3",
            String::from("dmabuf: bad id: bad number: '-3' (decimal, 0x hex, or K/M/G size)"),
        ),
    ] {
        assert_eq!(rig.run(line), format!("{}\n", error), "for {:?}", line);
    }
    assert!(rig.calls().is_empty());
    // The backend's refusals pass through, state unchanged.
    assert_eq!(
        rig.run("heap alloc carveout 4K"),
        "heap: no heap 'carveout'\n"
    );
    assert_eq!(rig.run("dmabuf free 1"), "dmabuf: no dma-buf 1\n");
    assert_eq!(rig.run("dmabuf list"), "2 reserved 4097\n");
    assert_eq!(complete(&mut rig, "heap alloc sy"), "heap alloc system ");
    assert_eq!(complete(&mut rig, "gpu pa"), "gpu pattern ");
    assert_eq!(complete(&mut rig, "dmabuf f"), "dmabuf free ");
}

#[test]
fn mem_commands() {
    let mut rig = Rig::new();
    assert_eq!(
        rig.run("mem status"),
        "mem: not running (try 'mem start')\n"
    );
    assert_eq!(rig.run("mem start"), "workload started\n");
    assert_eq!(rig.run("mem grow 4M"), "1024 pages\n");
    assert_eq!(rig.run("mem grow 0x10"), "1040 pages\n");
    assert_eq!(rig.run("mem shrink 40"), "1000 pages\n");
    assert_eq!(rig.run("mem shrink 2000"), "mem: only 1000 pages\n");
    assert_eq!(rig.run("mem verify"), "verified 1000 pages\n");
    assert_eq!(rig.run("mem status"), "1000 pages\n");
    rig.calls();
    assert_eq!(
        rig.run("mem grow"),
        "mem: usage: mem start|grow PAGES|shrink PAGES|verify|status\n"
    );
    assert_eq!(
        rig.run("mem grow 1 2"),
        "mem: usage: mem start|grow PAGES|shrink PAGES|verify|status\n"
    );
    assert_eq!(
        rig.run("mem grow lots"),
        "mem: bad number: 'lots' (decimal, 0x hex, or K/M/G size)\n"
    );
    assert_eq!(
        rig.run("mem grow 4G"),
        "mem: 1048576 pages is over the limit of 262144 pages\n"
    );
    assert_eq!(
        rig.run("mem status now"),
        "mem: usage: mem start|grow PAGES|shrink PAGES|verify|status\n"
    );
    assert!(rig.run("mem").starts_with("mem: usage:"));
    assert!(rig.calls().is_empty());
    assert_eq!(rig.fake.workload, Some(1000));
}

#[test]
fn trace_bench_log_dt() {
    let mut rig = Rig::new();
    assert_eq!(rig.run("trace record"), "");
    assert!(rig.fake.tracing);
    assert_eq!(rig.run("trace stop"), "");
    assert_eq!(rig.run("trace replay"), "replayed 1 times\n");
    assert_eq!(rig.run("trace replay 3"), "replayed 3 times\n");
    assert_eq!(rig.run("trace show"), "0 events\n");
    rig.calls();
    assert_eq!(
        rig.run("trace replay 0"),
        "trace: replay count must be at least 1\n"
    );
    assert_eq!(
        rig.run("trace replay 1001"),
        "trace: replay count 1001 is over the limit of 1000\n"
    );
    assert!(rig
        .run("trace")
        .starts_with("trace: usage: trace record|stop|replay [TIMES]|show"));
    assert!(rig
        .run("trace rewind")
        .starts_with("trace: unknown subcommand 'rewind'"));
    assert_eq!(
        rig.run("bench nope"),
        "bench: unknown benchmark 'nope' (have: buddy, cma)\n"
    );
    assert!(rig.calls().is_empty());
    assert_eq!(rig.run("bench"), "bench all done\n");
    assert_eq!(rig.run("bench cma"), "bench cma done\n");

    assert_eq!(rig.run("log"), "log level: info\n");
    assert_eq!(rig.run("log DEBUG"), "");
    assert_eq!(rig.fake.log, LevelFilter::Debug);
    assert_eq!(rig.run("log off"), "");
    assert_eq!(rig.run("log"), "log level: off\n");
    assert_eq!(
        rig.run("log loud"),
        "log: unknown level 'loud' (one of: error, warn, info, debug, trace, off)\n"
    );
    assert_eq!(rig.fake.log, LevelFilter::Off);

    assert_eq!(rig.run("dt"), "/ {\n  chosen { };\n};\n");
    assert_eq!(
        rig.run("dt /chosen"),
        "chosen {\n  bootargs = \"console=ttyAMA0\";\n};\n"
    );
    assert_eq!(rig.run("dt /nope"), "dt: /nope: no such node\n");
    assert!(rig.run("dt a b").starts_with("dt: too many arguments"));
}

#[test]
fn poweroff_and_reboot_return_actions_without_a_prompt() {
    let mut rig = Rig::new();
    assert_eq!(rig.send(b"poweroff\r"), Action::PowerOff);
    assert_eq!(rig.out, "poweroff\r\nPowering off.\r\n");
    rig.out.clear();
    assert_eq!(rig.send(b"reboot\r"), Action::Reboot);
    assert_eq!(rig.out, "reboot\r\nRebooting.\r\n");
    rig.out.clear();
    assert_eq!(rig.send(b"poweroff now\r"), Action::Continue);
    assert_eq!(
        rig.out,
        "poweroff now\r\npoweroff: too many arguments (usage: poweroff)\r\nmonolith> "
    );
}

#[test]
fn one_prompt_per_line_for_cr_lf_and_crlf() {
    for ending in ["\r", "\n", "\r\n"] {
        let mut rig = Rig::new();
        let input = format!("echo a{e}echo b{e}{e}", e = ending);
        rig.send(input.as_bytes());
        assert_eq!(
            rig.out, "echo a\r\na\r\nmonolith> echo b\r\nb\r\nmonolith> \r\nmonolith> ",
            "ending {:?}",
            ending
        );
    }
}

#[test]
fn line_editing_through_the_shell() {
    let mut rig = Rig::new();
    // Left x2, insert, End, backspace: "echo ok" from "echo kx".
    rig.send(b"echo kx\x1b[D\x1b[Do\x1b[F\x7f\r");
    assert!(rig.out.ends_with("\r\nok\r\nmonolith> "), "{:?}", rig.out);
    // Ctrl-U kills the junk before the cursor, Ctrl-C abandons a line.
    rig.out.clear();
    rig.send(b"garbage\x15echo fine\r");
    assert!(rig.out.ends_with("\r\nfine\r\nmonolith> "), "{:?}", rig.out);
    rig.out.clear();
    rig.send(b"cma alloc reserved 1\x03");
    assert_eq!(rig.out, "cma alloc reserved 1^C\r\nmonolith> ");
    assert!(rig.calls().iter().all(|call| !call.starts_with("cma")));
    // Up recalls the last command; running it again works.
    rig.out.clear();
    rig.send(b"\x1b[A\r");
    assert!(rig.out.ends_with("fine\r\nmonolith> "), "{:?}", rig.out);
    assert_eq!(
        rig.shell.history().collect::<Vec<_>>(),
        vec!["echo ok", "echo fine"]
    );
}

#[test]
fn too_long_line_is_refused_and_shell_goes_on() {
    let mut rig = Rig::new();
    let mut line = String::from("echo ");
    line.push_str(&"x".repeat(MAX_LINE));
    rig.send(line.as_bytes());
    rig.out.clear();
    rig.send(b"\r");
    assert_eq!(
        rig.out,
        "\r\nline too long: the limit is 256 characters; nothing was run\r\nmonolith> "
    );
    assert_eq!(rig.run("echo ok"), "ok\n");
}

fn complete(rig: &mut Rig, typed: &str) -> String {
    rig.send(b"\x03");
    rig.out.clear();
    rig.send(typed.as_bytes());
    rig.send(b"\t");
    rig.shell.line().to_string()
}

#[test]
fn completion_of_commands_paths_and_arguments() {
    let mut rig = Rig::new();
    assert_eq!(complete(&mut rig, "hel"), "help ");
    assert_eq!(complete(&mut rig, "hea"), "heap ");
    assert_eq!(complete(&mut rig, "help tr"), "help trace ");
    assert_eq!(complete(&mut rig, "ls /pr"), "ls /proc/");
    assert_eq!(complete(&mut rig, "cat /proc/me"), "cat /proc/meminfo ");
    assert_eq!(
        complete(&mut rig, "cat /proc/meminfo /proc/bu"),
        "cat /proc/meminfo /proc/buddyinfo "
    );
    assert_eq!(complete(&mut rig, "cat proc/i"), "cat proc/iomem ");
    assert_eq!(
        complete(&mut rig, "ls /sys/kernel/debug/cma/"),
        "ls /sys/kernel/debug/cma/reserved/"
    );
    assert_eq!(
        complete(&mut rig, "echo 5 > /sys/kernel/debug/cma/reserved/al"),
        "echo 5 > /sys/kernel/debug/cma/reserved/alloc "
    );
    assert_eq!(complete(&mut rig, "echo 5>/sys/ker"), "echo 5>/sys/kernel/");
    assert_eq!(complete(&mut rig, "cma alloc re"), "cma alloc reserved ");
    assert_eq!(complete(&mut rig, "cma fr"), "cma free ");
    assert_eq!(complete(&mut rig, "mem g"), "mem grow ");
    assert_eq!(complete(&mut rig, "log d"), "log debug ");
    assert_eq!(complete(&mut rig, "bench b"), "bench buddy ");
    assert_eq!(complete(&mut rig, "dt /ch"), "dt /chosen/");
    // echo's own arguments are not paths; unknown commands complete nothing.
    assert_eq!(complete(&mut rig, "echo /pr"), "echo /pr");
    assert_eq!(complete(&mut rig, "frob /pr"), "frob /pr");
    assert_eq!(complete(&mut rig, "cat /nope/x"), "cat /nope/x");
}

#[test]
fn ambiguous_completion_extends_then_lists() {
    let mut rig = Rig::new();
    // "c" -> "cat", "cma": nothing common to add, so both are listed and the line redrawn.
    assert_eq!(complete(&mut rig, "c"), "c");
    assert_eq!(rig.out, "c\r\ncat  cma\r\nmonolith> c");
    // "cat /proc/" lists entries by name.
    complete(&mut rig, "cat /proc/");
    assert_eq!(rig.out, "cat /proc/\r\nbuddyinfo  device-tree/  iomem  meminfo  pagetypeinfo  zoneinfo\r\nmonolith> cat /proc/");
    // "ls /sys/kernel/debug/cma/reserved/" then "a" -> alloc (only one a*)
    assert_eq!(
        complete(&mut rig, "cat /sys/kernel/mm/cma/reserved/alloc_"),
        "cat /sys/kernel/mm/cma/reserved/alloc_pages_"
    );
    // Tab in the middle of a line completes the word before the cursor.
    rig.send(b"\x03");
    rig.send(b"cat /proc/me x\x1b[D\x1b[D\t");
    assert_eq!(rig.shell.line(), "cat /proc/meminfo  x");
}

#[test]
fn invalid_utf8_and_control_noise_are_harmless() {
    let mut rig = Rig::new();
    rig.send(b"\xff\xfe\xc3\x28\x00\x07\x1b\x1b[");
    rig.send(b"\x03");
    assert_eq!(rig.run("echo ok"), "ok\n");
}

mod random {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "help",
        "echo",
        "ls",
        "cat",
        "dt",
        "mem",
        "cma",
        "trace",
        "bench",
        "log",
        "start",
        "grow",
        "shrink",
        "verify",
        "status",
        "list",
        "alloc",
        "free",
        "record",
        "stop",
        "replay",
        "show",
        "reserved",
        "other",
        "0",
        "1",
        "7",
        "64",
        "0x10",
        "4K",
        "6K",
        "2M",
        "5G",
        "-3",
        "abc",
        "99999999999999999999999",
        "/proc/meminfo",
        "/proc",
        "/sys/kernel/debug/cma/reserved/alloc",
        "/sys/kernel/debug/cma/reserved/free",
        "/sys/kernel/debug/cma/reserved/used",
        "..",
        "/x",
        ">",
        "'a b'",
        "\"q",
        "debug",
        "off",
        "buddy",
        "pasr",
        "suspend",
        "3600",
    ];

    fn line() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(WORDS), 0..6).prop_map(|words| words.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes at all, then Ctrl-C: the shell still answers `echo ok` exactly.
        #[test]
        fn random_bytes_never_break_the_shell(bytes in prop::collection::vec(any::<u8>(), 0..4000)) {
            let mut rig = Rig::new();
            rig.send(&bytes);
            rig.fake.check_consistent();
            assert_no_bare_lf(&rig.out);
            rig.out.clear();
            rig.send(b"\x03echo ok\r");
            // Ctrl-C first moves the cursor to the end of whatever was left on the line.
            let (before, after) = rig.out.split_once("^C").expect("no ^C echoed");
            let moved = before.is_empty()
                || (before.starts_with("\x1b[") && before.ends_with('C')
                    && before[2..before.len() - 1].bytes().all(|b| b.is_ascii_digit()));
            prop_assert!(moved, "unexpected output before ^C: {:?}", before);
            prop_assert_eq!(after, "\r\nmonolith> echo ok\r\nok\r\nmonolith> ");
            prop_assert!(rig.shell.history().count() <= HISTORY_LEN);
        }

        /// Random command lines: one prompt per line whatever the ending, CRLF on the wire,
        /// and the fake's bookkeeping stays consistent.
        #[test]
        fn random_lines_get_one_prompt_each(
            lines in prop::collection::vec(line(), 1..60),
            ending in prop::sample::select(&["\r", "\n", "\r\n"][..]),
        ) {
            let mut rig = Rig::new();
            let mut input = String::new();
            for line in &lines {
                // poweroff/reboot are not in WORDS, so every line ends in a prompt.
                input.push_str(line);
                input.push_str(ending);
            }
            rig.send(input.as_bytes());
            rig.fake.check_consistent();
            prop_assert_eq!(rig.out.matches(PROMPT).count(), lines.len());
            prop_assert!(rig.out.ends_with(PROMPT));
            assert_no_bare_lf(&rig.out);
            rig.out.clear();
            rig.send(b"echo ok\r");
            prop_assert_eq!(&rig.out, "echo ok\r\nok\r\nmonolith> ");
        }
    }
}

#[test]
fn backend_errors_word_each_refusal_and_keep_the_cause() {
    use core::error::Error;
    let have = vec![String::from("reserved"), String::from("video")];
    let cases: [(BackendError, &str); 8] = [
        (
            BackendError::Corrupted {
                checked: 10,
                bad: 2,
            },
            "verified 10 pages: 2 corrupted",
        ),
        (
            BackendError::NoSuchArea {
                name: String::from("x"),
                have: have.clone(),
            },
            "no CMA area named 'x' (have: reserved, video)",
        ),
        (
            BackendError::CmaAlloc {
                area: String::from("reserved"),
                pages: 64,
                cause: FakeError::CannotAllocate(64).into(),
            },
            "64 pages from 'reserved': cannot allocate 64 pages",
        ),
        (BackendError::NoSuchHandle(7), "no allocation with handle 7"),
        (
            BackendError::NoSuchNode(String::from("/x")),
            "/x: no such node or property",
        ),
        (
            BackendError::NoTrace,
            "no trace: 'trace record' one, or boot with 'cargo xtask run --trace FILE'",
        ),
        (
            BackendError::UnknownBenchmark {
                name: String::from("x"),
                have,
            },
            "unknown benchmark 'x' (have: reserved, video)",
        ),
        (
            BackendError::service(FakeError::NotRunning),
            "not running (try 'mem start')",
        ),
    ];
    for (error, text) in &cases {
        assert_eq!(error.to_string(), *text);
    }
    let alloc = &cases[2].0;
    assert_eq!(
        alloc.source().map(|cause| cause.to_string()).as_deref(),
        Some("cannot allocate 64 pages"),
        "the service's error stays reachable as the source"
    );
    assert!(cases[7].0.source().is_none(), "Service is transparent");
}
