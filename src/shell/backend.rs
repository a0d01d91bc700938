//! The boundary between the shell and the firmware.
//!
//! # Theory of operation
//!
//! The shell is pure policy: it edits lines, parses arguments, normalises paths and turns
//! errors into one line of text. Everything that touches real state goes through
//! [`Backend`], which the firmware glue implements on top of the memory manager, the
//! device tree and the platform. A fake implementation in the tests records every call, so
//! the whole shell runs on the host.
//!
//! Arguments reach the backend already validated: numbers are parsed and range-checked,
//! page counts are non-zero and within [`Backend::page_limit`], paths are absolute and
//! normalised, and permission bits from the directory listing have been honoured (a
//! read-only file is never written, a write-only file never read). The backend is still
//! the authority on everything the shell cannot know (does that area exist, is that handle
//! live, does the allocation fit) and answers with an error value, never a panic.
//!
//! The virtual file tree is described by the backend one directory at a time
//! ([`Backend::fs_list`]); [`super::vfs::VfsTree`] is a ready-made registry the glue can
//! use to answer it cheaply.
#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use log::LevelFilter;

/// Who may do what with a file. Mirrors the owner bits Linux gives sysfs/debugfs files
/// (`S_IRUGO`, `S_IWUSR`, ...) because the shell refuses the wrong direction itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    WriteOnly,
    ReadWrite,
}

impl Access {
    pub fn readable(self) -> bool {
        matches!(self, Access::ReadOnly | Access::ReadWrite)
    }

    pub fn writable(self) -> bool {
        matches!(self, Access::WriteOnly | Access::ReadWrite)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File(Access),
}

/// One name in a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub kind: EntryKind,
}

impl DirEntry {
    pub fn dir(name: &str) -> Self {
        DirEntry {
            name: String::from(name),
            kind: EntryKind::Dir,
        }
    }

    pub fn file(name: &str, access: Access) -> Self {
        DirEntry {
            name: String::from(name),
            kind: EntryKind::File(access),
        }
    }
}

/// Why a file operation failed. The `Display` text is the `strerror` wording, so the shell
/// prints `cat: /x: No such file or directory` like a Unix shell would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsError {
    /// ENOENT
    NotFound,
    /// ENOTDIR
    NotADirectory,
    /// EISDIR
    IsADirectory,
    /// EACCES: reading a write-only file or writing a read-only one.
    PermissionDenied,
    /// EINVAL: the value written does not parse.
    InvalidArgument,
    /// ENOMEM: e.g. a debugfs `alloc` that could not be satisfied.
    OutOfMemory,
    /// EBUSY
    Busy,
    /// Anything else, worded by the backend.
    Other(String),
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsError::NotFound => "No such file or directory",
            FsError::NotADirectory => "Not a directory",
            FsError::IsADirectory => "Is a directory",
            FsError::PermissionDenied => "Permission denied",
            FsError::InvalidArgument => "Invalid argument",
            FsError::OutOfMemory => "Cannot allocate memory",
            FsError::Busy => "Device or resource busy",
            FsError::Other(text) => text,
        })
    }
}

impl core::error::Error for FsError {}

/// A failure of the service behind the backend (memory manager, benchmarks), kept as the
/// service's own error.
pub type ServiceError = Box<dyn core::error::Error + Send + Sync>;

/// Why a `mem`, `cma`, `dt`, `trace`, `bench` or `log` request failed. The `Display` text is
/// what the shell prints after `CMD: `.
#[derive(Debug)]
pub enum BackendError {
    /// `mem verify`: pages that no longer hold their pattern.
    Corrupted { checked: usize, bad: usize },
    /// `cma alloc` from an area that does not exist.
    NoSuchArea { name: String, have: Vec<String> },
    /// `cma alloc` refused by the memory manager.
    CmaAlloc {
        area: String,
        pages: u64,
        cause: ServiceError,
    },
    /// `cma free` of a handle nobody holds.
    NoSuchHandle(u64),
    /// `cma free` refused by the memory manager.
    CmaFree { handle: u64, cause: ServiceError },
    /// `dt` without a device tree.
    NoDeviceTree,
    /// `dt PATH` that names neither a node nor a property.
    NoSuchNode(String),
    /// `trace record` while recording.
    AlreadyRecording,
    /// `trace stop` while not recording.
    NotRecording,
    /// `trace replay` while recording.
    StillRecording,
    /// `trace replay` or `trace show` with no trace recorded or loaded.
    NoTrace,
    /// `bench NAME` of a benchmark the backend does not have.
    UnknownBenchmark { name: String, have: Vec<String> },
    /// Anything else the service refused, in its own words.
    Service(ServiceError),
}

impl BackendError {
    /// The service's own error, printed as it words it.
    pub fn service(error: impl core::error::Error + Send + Sync + 'static) -> BackendError {
        BackendError::Service(Box::new(error))
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Corrupted { checked, bad } => {
                write!(f, "verified {checked} pages: {bad} corrupted")
            }
            BackendError::NoSuchArea { name, have } => {
                write!(f, "no CMA area named '{name}' (have: {})", have.join(", "))
            }
            BackendError::CmaAlloc { area, pages, cause } => {
                write!(f, "{pages} pages from '{area}': {cause}")
            }
            BackendError::NoSuchHandle(handle) => write!(f, "no allocation with handle {handle}"),
            BackendError::CmaFree { handle, cause } => write!(f, "handle {handle}: {cause}"),
            BackendError::NoDeviceTree => f.write_str("no device tree"),
            BackendError::NoSuchNode(path) => write!(f, "{path}: no such node or property"),
            BackendError::AlreadyRecording => f.write_str("already recording (trace stop ends it)"),
            BackendError::NotRecording => f.write_str("not recording"),
            BackendError::StillRecording => f.write_str("stop recording before replaying"),
            BackendError::NoTrace => f.write_str(
                "no trace: 'trace record' one, or boot with 'cargo xtask run --trace FILE'",
            ),
            BackendError::UnknownBenchmark { name, have } => {
                write!(f, "unknown benchmark '{name}' (have: {})", have.join(", "))
            }
            BackendError::Service(error) => write!(f, "{error}"),
        }
    }
}

impl core::error::Error for BackendError {
    /// The service's error behind a request that names its context (`cma alloc`, `cma
    /// free`); `Service` is transparent, so its source is the service error's own.
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            BackendError::CmaAlloc { cause, .. } | BackendError::CmaFree { cause, .. } => {
                Some(cause.as_ref())
            }
            BackendError::Service(error) => error.source(),
            _ => None,
        }
    }
}

/// `mem ...`: the movable workload that fills memory with pages the allocator may migrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOp {
    Start,
    /// Add this many pages to the workload.
    Grow {
        pages: u64,
    },
    /// Give back this many pages.
    Shrink {
        pages: u64,
    },
    /// Check every workload page still holds its pattern (it may have been migrated).
    Verify,
    Status,
}

/// `cma ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmaOp<'a> {
    List,
    /// Like `cma_alloc(area, pages, align_order)`; success text should contain the handle.
    Alloc {
        area: &'a str,
        pages: u64,
        align_order: u32,
    },
    /// Release what `Alloc` returned under this handle.
    Free {
        handle: u64,
    },
}

/// `trace ...`: record allocation requests, replay them later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceOp {
    Record,
    Stop,
    /// Replay the recorded trace `times` times (the shell passes 1 when not given).
    Replay {
        times: u64,
    },
    Show,
}

/// `gpu ...`: the virtio-gpu display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuOp {
    /// The device, its scanouts and what is on screen.
    Info,
    /// Show the test pattern (eight colour bars).
    Pattern,
    /// Show the live memory map (one cell per pageblock).
    Map,
    /// Blank the display and give its framebuffer back.
    Off,
}

/// `video ...`: play the loaded clip through the virtio-video decoder onto the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoOp {
    /// Start playing; `looping` starts again after the last frame, `crc` prints each
    /// shown frame's CRC-32 (a test's oracle).
    Play {
        looping: bool,
        crc: bool,
    },
    Stop,
    /// Format, size, frames, fps, CPU copies per frame.
    Info,
}

/// `heap ...`: the DMA-BUF heaps (`/dev/dma_heap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapOp<'a> {
    List,
    /// Allocate `bytes` from the heap named `heap` and export it as a dma-buf; success
    /// text should contain the buffer's id.
    Alloc {
        heap: &'a str,
        bytes: u64,
    },
}

/// `dmabuf ...`: the exported buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmabufOp {
    List,
    /// Drop the shell's reference to buffer `id` (released when it was the last one).
    Free {
        id: u64,
    },
}

/// Everything the shell needs from the firmware.
///
/// `Ok(text)` is printed as is (a missing final newline is added); `Err(error)` is printed
/// as `CMD: error`. Keep both to a line or a table: this is a serial console.
pub trait Backend {
    /// Entries of the directory `dir` (absolute, normalised, `/` for the root).
    /// `Err(NotFound)` if it does not exist, `Err(NotADirectory)` if it is a file.
    fn fs_list(&mut self, dir: &str) -> Result<Vec<DirEntry>, FsError>;

    /// Content of a readable file. Called only for files listed as readable.
    fn fs_read(&mut self, path: &str) -> Result<String, FsError>;

    /// `echo VALUE > path`: `value` is the echoed text without the trailing newline.
    /// Called only for files listed as writable.
    fn fs_write(&mut self, path: &str, value: &str) -> Result<(), FsError>;

    fn mem(&mut self, op: MemOp) -> Result<String, BackendError>;

    fn cma(&mut self, op: CmaOp<'_>) -> Result<String, BackendError>;

    /// `dt` prints the whole tree, `dt PATH` one node (its properties and children).
    fn dt(&mut self, path: Option<&str>) -> Result<String, BackendError>;

    fn trace(&mut self, op: TraceOp) -> Result<String, BackendError>;

    fn gpu(&mut self, op: GpuOp) -> Result<String, BackendError>;

    fn heap(&mut self, op: HeapOp<'_>) -> Result<String, BackendError>;

    fn video(&mut self, op: VideoOp) -> Result<String, BackendError>;

    fn dmabuf(&mut self, op: DmabufOp) -> Result<String, BackendError>;

    /// `bench` runs the default set, `bench NAME` one benchmark.
    fn bench(&mut self, name: Option<&str>) -> Result<String, BackendError>;

    /// Names `bench NAME` accepts; used for completion and `help bench`.
    fn bench_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// `pasr`: the DRAM units, their ranges, free memory and masks, and the modeled
    /// self-refresh power (`crate::pasr::report::banks`).
    fn pasr(&mut self) -> Result<String, BackendError>;

    /// `suspend SECONDS`: vacate and mask, sleep in self-refresh for `seconds` (1 to
    /// [`super::commands::MAX_SUSPEND_SECONDS`], checked by the shell), wake, and report
    /// (`crate::pasr::report::suspend`).
    fn suspend(&mut self, seconds: u64) -> Result<String, BackendError>;

    fn log_level(&self) -> LevelFilter;

    fn set_log_level(&mut self, level: LevelFilter) -> Result<(), BackendError>;

    /// Largest page count a single request may name (the shell rejects more before asking).
    /// The glue should return the number of RAM pages.
    fn page_limit(&self) -> u64 {
        u64::from(u32::MAX)
    }
}
