//! Serial-console debug shell (safe): line editing, commands, a Linux-style virtual file tree.
//!
//! # Theory of operation
//!
//! [`Shell`] is a state machine: the firmware hands it each received byte with
//! [`Shell::input`], together with the [`Backend`] that owns the real state and a
//! `core::fmt::Write` sink for the UART. It never blocks, never reads ahead and never
//! panics on input, so it can be driven from an interrupt-fed queue, and on the host from
//! tests that assert on the exact bytes written.
//!
//! The pieces:
//! - [`editor`]: the line editor (keys, history, completion display, CR/LF/CRLF).
//! - [`lexer`]: words, quotes and `>` redirection.
//! - [`commands`]: the command table, argument checking, error wording.
//! - [`vfs`]: path normalisation and lookup in the backend's virtual file tree, plus
//!   [`vfs::VfsTree`], a registry the glue can serve directory listings from.
//! - [`linuxfmt`]: Linux's text formats for the procfs/sysfs/debugfs files, so the glue
//!   only gathers numbers.
//! - [`number`]: decimal, hex and size-suffixed arguments, overflow as an error.
//! - [`backend`]: the trait the firmware implements.
//!
//! Wire format: every line the shell writes ends in `\r\n` (text is produced with `\n` and
//! converted on the way out); one prompt follows each submitted line; a typed character is
//! echoed exactly once. The prompt is [`PROMPT`]. After [`Action::PowerOff`] or
//! [`Action::Reboot`] no prompt is printed; call [`Shell::show_prompt`] if the machine
//! is still there afterwards.
#![forbid(unsafe_code)]

pub mod backend;
pub mod commands;
pub mod editor;
pub mod lexer;
pub mod linuxfmt;
pub mod number;
pub mod vfs;

#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

pub use backend::{
    Access, Backend, BackendError, CmaOp, DirEntry, DmabufOp, EntryKind, FsError, GpuOp, HeapOp,
    LevelFilter, MemOp, ServiceError, TraceOp, VideoOp,
};
pub use commands::Action;
pub use editor::{HISTORY_LEN, MAX_LINE};

pub const PROMPT: &str = "monolith> ";

pub struct Shell {
    editor: editor::LineEditor,
    /// The last byte written was `\r`, so a `\n` at the start of the next write needs none.
    wrote_cr: bool,
}

impl Default for Shell {
    fn default() -> Self {
        Self::new()
    }
}

impl Shell {
    pub fn new() -> Self {
        Shell {
            editor: editor::LineEditor::new(PROMPT),
            wrote_cr: false,
        }
    }

    /// Prints the prompt (and any line being edited). Call once at start-up.
    pub fn show_prompt<W: Write + ?Sized>(&mut self, out: &mut W) {
        let mut sink = CrLf {
            inner: out,
            wrote_cr: &mut self.wrote_cr,
        };
        self.editor.show_prompt(&mut sink);
    }

    /// Feeds one received byte. Returns what the firmware must do (almost always
    /// [`Action::Continue`]).
    pub fn input<B, W>(&mut self, byte: u8, backend: &mut B, out: &mut W) -> Action
    where
        B: Backend + ?Sized,
        W: Write + ?Sized,
    {
        let mut sink = CrLf {
            inner: out,
            wrote_cr: &mut self.wrote_cr,
        };
        match self.editor.feed(byte, &mut sink) {
            editor::Event::Pending => Action::Continue,
            editor::Event::Line(line) => {
                let action = commands::run(&line, backend, &mut sink);
                if action == Action::Continue {
                    self.editor.show_prompt(&mut sink);
                }
                action
            }
            editor::Event::TooLong => {
                let _ = writeln!(
                    sink,
                    "line too long: the limit is {} characters; nothing was run",
                    MAX_LINE
                );
                self.editor.show_prompt(&mut sink);
                Action::Continue
            }
            editor::Event::Complete => {
                let (word_start, candidates) = completions(self.editor.before_cursor(), backend);
                self.editor.complete(word_start, &candidates, &mut sink);
                Action::Continue
            }
        }
    }

    /// Feeds several bytes; stops early and returns the first action that is not
    /// `Continue` (the remaining bytes are dropped: the machine is going away).
    pub fn input_bytes<B, W>(&mut self, bytes: &[u8], backend: &mut B, out: &mut W) -> Action
    where
        B: Backend + ?Sized,
        W: Write + ?Sized,
    {
        for &byte in bytes {
            let action = self.input(byte, backend, out);
            if action != Action::Continue {
                return action;
            }
        }
        Action::Continue
    }

    /// Runs a command line as if it had been typed, without echo, prompt or history: for
    /// boot-time scripts and for the firmware's own tests. Output lines end in `\r\n`.
    pub fn run_line<B, W>(&mut self, line: &str, backend: &mut B, out: &mut W) -> Action
    where
        B: Backend + ?Sized,
        W: Write + ?Sized,
    {
        let mut sink = CrLf {
            inner: out,
            wrote_cr: &mut self.wrote_cr,
        };
        commands::run(line, backend, &mut sink)
    }

    /// The line currently being edited.
    pub fn line(&self) -> &str {
        self.editor.line()
    }

    /// Submitted lines, oldest first (at most [`HISTORY_LEN`]).
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.editor.history()
    }
}

/// Turns every `\n` not already preceded by `\r` into `\r\n`.
struct CrLf<'a, W: Write + ?Sized> {
    inner: &'a mut W,
    wrote_cr: &'a mut bool,
}

impl<W: Write + ?Sized> Write for CrLf<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(newline) = rest.find('\n') {
            let (before, after) = rest.split_at(newline);
            if !before.is_empty() {
                self.inner.write_str(before)?;
                *self.wrote_cr = before.ends_with('\r');
            }
            if !*self.wrote_cr {
                self.inner.write_char('\r')?;
            }
            self.inner.write_char('\n')?;
            *self.wrote_cr = false;
            rest = &after[1..];
        }
        if !rest.is_empty() {
            self.inner.write_str(rest)?;
            *self.wrote_cr = rest.ends_with('\r');
        }
        Ok(())
    }
}

/// Tab completion: where the word under the cursor starts, and the full replacement
/// words (each ending in `' '`, or `'/'` for a directory).
fn completions<B: Backend + ?Sized>(before_cursor: &str, backend: &mut B) -> (usize, Vec<String>) {
    // The word being completed starts after the last blank or `>` (as in `echo 5>/sys/..`).
    let word_start = before_cursor.rfind([' ', '\t', '>']).map_or(0, |i| i + 1);
    let typed = &before_cursor[word_start..];
    let head = &before_cursor[..word_start];
    let after_redirect = head.trim_end().ends_with('>');
    let words: Vec<&str> = head
        .split([' ', '\t', '>'])
        .filter(|w| !w.is_empty())
        .collect();

    let from_list = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|name| name.starts_with(typed))
            .map(|name| commands::join_candidate("", name, false))
            .collect()
    };
    let candidates = match (words.as_slice(), after_redirect) {
        (_, true) => path_candidates(backend, "/", typed),
        ([], false) => {
            let names: Vec<&str> = commands::COMMANDS.iter().map(|spec| spec.name).collect();
            from_list(&names)
        }
        (["help"], _) => {
            let names: Vec<&str> = commands::COMMANDS.iter().map(|spec| spec.name).collect();
            from_list(&names)
        }
        (["ls" | "cat"], _) | (["cat", ..], _) => path_candidates(backend, "/", typed),
        (["dt"], _) => path_candidates(backend, commands::DT_PROCFS_DIR, typed),
        (["mem"], _) => from_list(commands::MEM_SUBCOMMANDS),
        (["cma"], _) => from_list(commands::CMA_SUBCOMMANDS),
        (["cma", "alloc"], _) => {
            let areas: Vec<String> = backend
                .fs_list(commands::CMA_SYSFS_DIR)
                .unwrap_or_default()
                .into_iter()
                .filter(|entry| entry.kind == EntryKind::Dir)
                .map(|entry| entry.name)
                .collect();
            let areas: Vec<&str> = areas.iter().map(String::as_str).collect();
            from_list(&areas)
        }
        (["gpu"], _) => from_list(commands::GPU_SUBCOMMANDS),
        (["heap"], _) => from_list(commands::HEAP_SUBCOMMANDS),
        (["heap", "alloc"], _) => {
            let heaps: Vec<String> = backend
                .fs_list(commands::DMA_HEAP_DIR)
                .unwrap_or_default()
                .into_iter()
                .map(|entry| entry.name)
                .collect();
            let heaps: Vec<&str> = heaps.iter().map(String::as_str).collect();
            from_list(&heaps)
        }
        (["dmabuf"], _) => from_list(commands::DMABUF_SUBCOMMANDS),
        (["trace"], _) => from_list(commands::TRACE_SUBCOMMANDS),
        (["log"], _) => from_list(commands::LOG_LEVELS),
        (["bench"], _) => {
            let names = backend.bench_names();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            from_list(&names)
        }
        _ => Vec::new(),
    };
    (word_start, candidates)
}

/// Entries of the directory part of `typed` (resolved under `root`) whose names start with
/// its last component, as replacement words that keep the directory part as typed.
fn path_candidates<B: Backend + ?Sized>(backend: &mut B, root: &str, typed: &str) -> Vec<String> {
    let (dir_part, prefix) = match typed.rfind('/') {
        Some(slash) => typed.split_at(slash + 1),
        None => ("", typed),
    };
    let mut dir = String::from(root);
    dir.push('/');
    dir.push_str(dir_part);
    let Ok(entries) = backend.fs_list(&vfs::normalize(&dir)) else {
        return Vec::new();
    };
    let mut candidates: Vec<String> = entries
        .iter()
        .filter(|entry| entry.name.starts_with(prefix))
        .map(|entry| commands::join_candidate(dir_part, &entry.name, entry.kind == EntryKind::Dir))
        .collect();
    candidates.sort();
    candidates
}
