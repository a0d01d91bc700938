//! The command set: parsing arguments, calling the backend, wording every error.
//!
//! # Theory of operation
//!
//! A submitted line is split by [`super::lexer`], looked up in [`COMMANDS`], and its
//! arguments are checked completely before the backend is called: wrong arity, a bad
//! number, a count over [`Backend::page_limit`], a read-only target... each ends in one
//! line of text and no backend call, so state cannot change on bad input. Errors start
//! with the command name (`cat: /x: No such file or directory`), successes print what the
//! backend returned. Output is written with `\n`; the shell's sink turns it into `\r\n`.
//!
//! Page counts accept a plain number of pages or a K/M/G size (see [`super::number`]).
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::backend::{
    Backend, BackendError, CmaOp, DmabufOp, EntryKind, FsError, GpuOp, HeapOp, LevelFilter, MemOp,
    TraceOp, VideoOp,
};
use super::lexer;
use super::number::{parse_pages, parse_size, parse_u64};
use super::vfs;

/// What the firmware must do after a command; the shell itself never stops the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    PowerOff,
    Reboot,
}

pub struct CommandSpec {
    pub name: &'static str,
    pub usage: &'static str,
    pub summary: &'static str,
}

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "help",
        usage: "help [COMMAND]",
        summary: "list commands, or show how to use one",
    },
    CommandSpec {
        name: "echo",
        usage: "echo [ARG...] [> FILE]",
        summary: "print the arguments, or write them to a file",
    },
    CommandSpec {
        name: "ls",
        usage: "ls [PATH]",
        summary: "list a directory of the virtual file tree",
    },
    CommandSpec {
        name: "cat",
        usage: "cat FILE...",
        summary: "print files of the virtual file tree",
    },
    CommandSpec {
        name: "dt",
        usage: "dt [PATH]",
        summary: "show device-tree nodes and properties",
    },
    CommandSpec {
        name: "mem",
        usage: "mem start|grow PAGES|shrink PAGES|verify|status",
        summary: "drive the movable workload (PAGES: a count, or a size like 4M)",
    },
    CommandSpec {
        name: "cma",
        usage: "cma list|alloc AREA PAGES [ALIGN_ORDER]|free HANDLE",
        summary: "list CMA areas, allocate from one, free an allocation",
    },
    CommandSpec {
        name: "gpu",
        usage: "gpu info|pattern|map|off",
        summary: "show the display: device info, test pattern, live memory map, or blank it",
    },
    CommandSpec {
        name: "video",
        usage: "video play [loop] [crc]|stop|info",
        summary: "play the loaded clip on the screen (decoder to display, no CPU copy)",
    },
    CommandSpec {
        name: "heap",
        usage: "heap list|alloc HEAP SIZE",
        summary: "list the DMA-BUF heaps, allocate a dma-buf from one (SIZE: bytes, or 4K/2M)",
    },
    CommandSpec {
        name: "dmabuf",
        usage: "dmabuf list|free ID",
        summary: "list the exported dma-bufs, drop one",
    },
    CommandSpec {
        name: "trace",
        usage: "trace record|stop|replay [TIMES]|show",
        summary: "record allocation requests and replay them",
    },
    CommandSpec {
        name: "bench",
        usage: "bench [NAME]",
        summary: "run benchmarks (all, or one by name)",
    },
    CommandSpec {
        name: "log",
        usage: "log [error|warn|info|debug|trace|off]",
        summary: "show or set the log level",
    },
    CommandSpec {
        name: "pasr",
        usage: "pasr",
        summary: "list the DRAM banks or segments: ranges, free memory, masks, self-refresh power",
    },
    CommandSpec {
        name: "suspend",
        usage: "suspend [SECONDS]",
        summary: "empty and mask free DRAM, sleep in self-refresh (1 to 3600 s, default 1)",
    },
    CommandSpec {
        name: "poweroff",
        usage: "poweroff",
        summary: "power the machine off",
    },
    CommandSpec {
        name: "reboot",
        usage: "reboot",
        summary: "reset the machine",
    },
];

pub const MEM_SUBCOMMANDS: &[&str] = &["start", "grow", "shrink", "verify", "status"];
pub const CMA_SUBCOMMANDS: &[&str] = &["list", "alloc", "free"];
pub const GPU_SUBCOMMANDS: &[&str] = &["info", "pattern", "map", "off"];
pub const VIDEO_SUBCOMMANDS: &[&str] = &["play", "stop", "info"];
pub const HEAP_SUBCOMMANDS: &[&str] = &["list", "alloc"];
pub const DMABUF_SUBCOMMANDS: &[&str] = &["list", "free"];
pub const TRACE_SUBCOMMANDS: &[&str] = &["record", "stop", "replay", "show"];
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];

/// Largest alignment `cma alloc` accepts: 2^20 pages = 4 GiB, beyond any area here.
pub const MAX_ALIGN_ORDER: u32 = 20;
/// `trace replay` runs synchronously on the console; keep it interruptible by design.
pub const MAX_REPLAY_TIMES: u64 = 1000;

/// `suspend` without an argument sleeps this long.
pub const DEFAULT_SUSPEND_SECONDS: u64 = 1;
/// Longest `suspend`: an hour, so a typo cannot put the machine to sleep for a day.
pub const MAX_SUSPEND_SECONDS: u64 = 3600;

/// Where CMA area directories live; `cma alloc` completes area names from here.
pub const CMA_SYSFS_DIR: &str = "/sys/kernel/mm/cma";
/// Where the DMA-BUF heaps are listed (one file per heap, as in Linux); `heap alloc`
/// completes heap names from here.
pub const DMA_HEAP_DIR: &str = "/dev/dma_heap";
/// `dt PATH` completes against the device tree mirrored here.
pub const DT_PROCFS_DIR: &str = "/proc/device-tree";

pub fn spec(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| spec.name == name)
}

/// Runs one submitted line.
pub fn run<B: Backend + ?Sized, W: Write + ?Sized>(
    line: &str,
    backend: &mut B,
    out: &mut W,
) -> Action {
    let parsed = match lexer::parse(line) {
        Ok(parsed) => parsed,
        Err(error) => {
            let _ = writeln!(out, "syntax error: {}", error);
            return Action::Continue;
        }
    };
    let Some((name, args)) = parsed.words.split_first() else {
        if parsed.redirect.is_some() {
            let _ = writeln!(out, "syntax error: '>' needs a command before it");
        }
        return Action::Continue;
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(spec) = spec(name) else {
        let _ = writeln!(out, "unknown command: {} (try 'help')", name);
        return Action::Continue;
    };
    if parsed.redirect.is_some() && spec.name != "echo" {
        let _ = writeln!(out, "{}: '>' is only supported by echo", spec.name);
        return Action::Continue;
    }
    let mut ctx = Context { spec, out };
    match spec.name {
        "help" => ctx.help(&args),
        "echo" => ctx.echo(&args, parsed.redirect.as_deref(), backend),
        "ls" => ctx.ls(&args, backend),
        "cat" => ctx.cat(&args, backend),
        "dt" => {
            if ctx.arity(&args, 0, 1) {
                let result = backend.dt(args.first().copied());
                ctx.report(result);
            }
        }
        "mem" => ctx.mem(&args, backend),
        "cma" => ctx.cma(&args, backend),
        "trace" => ctx.trace(&args, backend),
        "gpu" => ctx.gpu(&args, backend),
        "video" => ctx.video(&args, backend),
        "heap" => ctx.heap(&args, backend),
        "dmabuf" => ctx.dmabuf(&args, backend),
        "bench" => ctx.bench(&args, backend),
        "log" => ctx.log(&args, backend),
        "pasr" => {
            if ctx.arity(&args, 0, 0) {
                let result = backend.pasr();
                ctx.report(result);
            }
        }
        "suspend" => ctx.suspend(&args, backend),
        "poweroff" => {
            if ctx.arity(&args, 0, 0) {
                let _ = writeln!(ctx.out, "Powering off.");
                return Action::PowerOff;
            }
        }
        "reboot" => {
            if ctx.arity(&args, 0, 0) {
                let _ = writeln!(ctx.out, "Rebooting.");
                return Action::Reboot;
            }
        }
        _ => {
            let _ = writeln!(ctx.out, "{}: not implemented", spec.name);
        }
    }
    Action::Continue
}

struct Context<'o, W: Write + ?Sized> {
    spec: &'static CommandSpec,
    out: &'o mut W,
}

impl<W: Write + ?Sized> Context<'_, W> {
    fn fail(&mut self, message: core::fmt::Arguments<'_>) {
        let _ = write!(self.out, "{}: ", self.spec.name);
        let _ = self.out.write_fmt(message);
        let _ = self.out.write_char('\n');
    }

    fn usage(&mut self) {
        let usage = self.spec.usage;
        self.fail(format_args!("usage: {}", usage));
    }

    /// Checks the argument count, printing the usage line when it is wrong.
    fn arity(&mut self, args: &[&str], min: usize, max: usize) -> bool {
        if args.len() < min {
            let usage = self.spec.usage;
            self.fail(format_args!("missing argument (usage: {})", usage));
            return false;
        }
        if args.len() > max {
            let usage = self.spec.usage;
            self.fail(format_args!("too many arguments (usage: {})", usage));
            return false;
        }
        true
    }

    fn report(&mut self, result: Result<String, BackendError>) {
        match result {
            Ok(text) => self.print_text(&text),
            Err(error) => self.fail(format_args!("{}", error)),
        }
    }

    /// Prints backend text so that the next prompt starts on a fresh line.
    fn print_text(&mut self, text: &str) {
        let _ = self.out.write_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            let _ = self.out.write_char('\n');
        }
    }

    fn pages(&mut self, text: &str, limit: u64) -> Option<u64> {
        match parse_pages(text) {
            Err(error) => self.fail(format_args!("{}", error)),
            Ok(0) => self.fail(format_args!("page count must be at least 1")),
            Ok(pages) if pages > limit => self.fail(format_args!(
                "{} pages is over the limit of {} pages",
                pages, limit
            )),
            Ok(pages) => return Some(pages),
        }
        None
    }

    fn help(&mut self, args: &[&str]) {
        if !self.arity(args, 0, 1) {
            return;
        }
        match args.first() {
            None => {
                for spec in COMMANDS {
                    let _ = writeln!(self.out, "{:<52} {}", spec.usage, spec.summary);
                }
            }
            Some(name) => match spec(name) {
                Some(spec) => {
                    let _ = writeln!(self.out, "usage: {}", spec.usage);
                    let _ = writeln!(self.out, "  {}", spec.summary);
                }
                None => self.fail(format_args!("no such command: {}", name)),
            },
        }
    }

    fn echo<B: Backend + ?Sized>(&mut self, args: &[&str], target: Option<&str>, backend: &mut B) {
        let text = args.join(" ");
        let Some(target) = target else {
            let _ = writeln!(self.out, "{}", text);
            return;
        };
        let path = vfs::normalize(target);
        match vfs::stat(backend, &path) {
            Err(error) => self.fail(format_args!("{}: {}", target, error)),
            Ok(EntryKind::Dir) => self.fail(format_args!("{}: {}", target, FsError::IsADirectory)),
            Ok(EntryKind::File(access)) if !access.writable() => self.fail(format_args!(
                "{}: {} (read-only file)",
                target,
                FsError::PermissionDenied
            )),
            Ok(EntryKind::File(_)) => {
                if let Err(error) = backend.fs_write(&path, &text) {
                    self.fail(format_args!("{}: {}", target, error));
                }
            }
        }
    }

    fn ls<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        if !self.arity(args, 0, 1) {
            return;
        }
        let typed = args.first().copied().unwrap_or("/");
        let path = vfs::normalize(typed);
        match vfs::stat(backend, &path) {
            Err(error) => self.fail(format_args!("cannot access '{}': {}", typed, error)),
            Ok(EntryKind::File(_)) => {
                let _ = writeln!(self.out, "{}", typed);
            }
            Ok(EntryKind::Dir) => match backend.fs_list(&path) {
                Err(error) => self.fail(format_args!("cannot access '{}': {}", typed, error)),
                Ok(mut entries) => {
                    entries.sort_by(|a, b| a.name.cmp(&b.name));
                    for entry in entries {
                        let marker = if entry.kind == EntryKind::Dir {
                            "/"
                        } else {
                            ""
                        };
                        let _ = writeln!(self.out, "{}{}", entry.name, marker);
                    }
                }
            },
        }
    }

    fn cat<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        if !self.arity(args, 1, usize::MAX) {
            return;
        }
        for typed in args {
            let path = vfs::normalize(typed);
            match vfs::stat(backend, &path) {
                Err(error) => self.fail(format_args!("{}: {}", typed, error)),
                Ok(EntryKind::Dir) => {
                    self.fail(format_args!("{}: {}", typed, FsError::IsADirectory))
                }
                Ok(EntryKind::File(access)) if !access.readable() => self.fail(format_args!(
                    "{}: {} (write-only file)",
                    typed,
                    FsError::PermissionDenied
                )),
                Ok(EntryKind::File(_)) => match backend.fs_read(&path) {
                    Ok(text) => self.print_text(&text),
                    Err(error) => self.fail(format_args!("{}: {}", typed, error)),
                },
            }
        }
    }

    fn mem<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        let limit = backend.page_limit();
        let op = match args {
            ["start"] => MemOp::Start,
            ["verify"] => MemOp::Verify,
            ["status"] => MemOp::Status,
            ["grow", count] => match self.pages(count, limit) {
                Some(pages) => MemOp::Grow { pages },
                None => return,
            },
            ["shrink", count] => match self.pages(count, limit) {
                Some(pages) => MemOp::Shrink { pages },
                None => return,
            },
            _ => return self.bad_subcommand(args, MEM_SUBCOMMANDS),
        };
        let result = backend.mem(op);
        self.report(result);
    }

    fn cma<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        let limit = backend.page_limit();
        let op = match args {
            ["list"] => CmaOp::List,
            ["alloc", area, count, rest @ ..] if rest.len() <= 1 => {
                let Some(pages) = self.pages(count, limit) else {
                    return;
                };
                let align_order = match rest.first().map(|text| parse_u64(text)) {
                    None => 0,
                    Some(Err(error)) => return self.fail(format_args!("{}", error)),
                    Some(Ok(order)) if order > u64::from(MAX_ALIGN_ORDER) => {
                        return self.fail(format_args!(
                            "alignment order {} is over the limit of {}",
                            order, MAX_ALIGN_ORDER
                        ))
                    }
                    Some(Ok(order)) => order as u32,
                };
                CmaOp::Alloc {
                    area,
                    pages,
                    align_order,
                }
            }
            ["free", handle] => match parse_u64(handle) {
                Ok(handle) => CmaOp::Free { handle },
                Err(error) => return self.fail(format_args!("bad handle: {}", error)),
            },
            _ => return self.bad_subcommand(args, CMA_SUBCOMMANDS),
        };
        let result = backend.cma(op);
        self.report(result);
    }

    fn gpu<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        let op = match args {
            ["info"] => GpuOp::Info,
            ["pattern"] => GpuOp::Pattern,
            ["map"] => GpuOp::Map,
            ["off"] => GpuOp::Off,
            _ => return self.bad_subcommand(args, GPU_SUBCOMMANDS),
        };
        let result = backend.gpu(op);
        self.report(result);
    }

    fn video<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        let op = match args {
            ["play", flags @ ..] => {
                let (mut looping, mut crc) = (false, false);
                for flag in flags {
                    match *flag {
                        "loop" if !looping => looping = true,
                        "crc" if !crc => crc = true,
                        other => {
                            return self.fail(format_args!(
                                "play: unknown or repeated option `{}` (use loop, crc)",
                                other
                            ))
                        }
                    }
                }
                VideoOp::Play { looping, crc }
            }
            ["stop"] => VideoOp::Stop,
            ["info"] => VideoOp::Info,
            _ => return self.bad_subcommand(args, VIDEO_SUBCOMMANDS),
        };
        let result = backend.video(op);
        self.report(result);
    }

    fn heap<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        let op = match args {
            ["list"] => HeapOp::List,
            ["alloc", heap, size] => {
                let limit = backend.page_limit().saturating_mul(crate::util::PAGE_SIZE);
                match parse_size(size) {
                    Err(error) => return self.fail(format_args!("{}", error)),
                    Ok(0) => return self.fail(format_args!("size must be at least 1 byte")),
                    Ok(bytes) if bytes > limit => {
                        return self.fail(format_args!(
                            "size {} is over the limit of {} bytes (all of RAM)",
                            size, limit
                        ))
                    }
                    Ok(bytes) => HeapOp::Alloc { heap, bytes },
                }
            }
            _ => return self.bad_subcommand(args, HEAP_SUBCOMMANDS),
        };
        let result = backend.heap(op);
        self.report(result);
    }

    fn dmabuf<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        let op = match args {
            ["list"] => DmabufOp::List,
            ["free", id] => match parse_u64(id) {
                Ok(id) => DmabufOp::Free { id },
                Err(error) => return self.fail(format_args!("bad id: {}", error)),
            },
            _ => return self.bad_subcommand(args, DMABUF_SUBCOMMANDS),
        };
        let result = backend.dmabuf(op);
        self.report(result);
    }

    fn trace<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        let op = match args {
            ["record"] => TraceOp::Record,
            ["stop"] => TraceOp::Stop,
            ["show"] => TraceOp::Show,
            ["replay"] => TraceOp::Replay { times: 1 },
            ["replay", times] => match parse_u64(times) {
                Err(error) => return self.fail(format_args!("{}", error)),
                Ok(0) => return self.fail(format_args!("replay count must be at least 1")),
                Ok(times) if times > MAX_REPLAY_TIMES => {
                    return self.fail(format_args!(
                        "replay count {} is over the limit of {}",
                        times, MAX_REPLAY_TIMES
                    ))
                }
                Ok(times) => TraceOp::Replay { times },
            },
            _ => return self.bad_subcommand(args, TRACE_SUBCOMMANDS),
        };
        let result = backend.trace(op);
        self.report(result);
    }

    fn bench<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        if !self.arity(args, 0, 1) {
            return;
        }
        let name = args.first().copied();
        if let Some(name) = name {
            let known = backend.bench_names();
            if !known.is_empty() && !known.iter().any(|known| known == name) {
                let list = known.join(", ");
                return self.fail(format_args!(
                    "unknown benchmark '{}' (have: {})",
                    name, list
                ));
            }
        }
        let result = backend.bench(name);
        self.report(result);
    }

    fn log<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        if !self.arity(args, 0, 1) {
            return;
        }
        let Some(text) = args.first() else {
            let level = level_name(backend.log_level());
            let _ = writeln!(self.out, "log level: {}", level);
            return;
        };
        let Some(level) = parse_level(text) else {
            let levels = LOG_LEVELS.join(", ");
            return self.fail(format_args!(
                "unknown level '{}' (one of: {})",
                text, levels
            ));
        };
        if let Err(error) = backend.set_log_level(level) {
            self.fail(format_args!("{}", error));
        }
    }

    fn suspend<B: Backend + ?Sized>(&mut self, args: &[&str], backend: &mut B) {
        if !self.arity(args, 0, 1) {
            return;
        }
        let seconds = match args.first() {
            None => DEFAULT_SUSPEND_SECONDS,
            Some(text) => match parse_u64(text) {
                Ok(seconds) if (1..=MAX_SUSPEND_SECONDS).contains(&seconds) => seconds,
                // Out of range, negative, a unit suffix, too long: one wording for all.
                _ => {
                    return self.fail(format_args!(
                        "SECONDS must be a whole number from 1 to {}, not '{}'",
                        MAX_SUSPEND_SECONDS, text
                    ))
                }
            },
        };
        let result = backend.suspend(seconds);
        self.report(result);
    }

    fn bad_subcommand(&mut self, args: &[&str], known: &[&str]) {
        match args.first() {
            Some(sub) if !known.contains(sub) => {
                let usage = self.spec.usage;
                self.fail(format_args!(
                    "unknown subcommand '{}' (usage: {})",
                    sub, usage
                ))
            }
            _ => self.usage(),
        }
    }
}

pub fn parse_level(text: &str) -> Option<LevelFilter> {
    let levels = [
        ("error", LevelFilter::Error),
        ("warn", LevelFilter::Warn),
        ("info", LevelFilter::Info),
        ("debug", LevelFilter::Debug),
        ("trace", LevelFilter::Trace),
        ("off", LevelFilter::Off),
    ];
    levels
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, level)| *level)
}

pub fn level_name(level: LevelFilter) -> &'static str {
    match level {
        LevelFilter::Off => "off",
        LevelFilter::Error => "error",
        LevelFilter::Warn => "warn",
        LevelFilter::Info => "info",
        LevelFilter::Debug => "debug",
        LevelFilter::Trace => "trace",
    }
}

/// Names a path completion offers, e.g. `format!("{}{}", dir_part, name)`.
pub(crate) fn join_candidate(dir_part: &str, name: &str, is_dir: bool) -> String {
    format!("{}{}{}", dir_part, name, if is_dir { '/' } else { ' ' })
}
