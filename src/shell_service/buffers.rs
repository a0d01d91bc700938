//! The shell's DMA-BUF commands and files over the DMA service (bare metal only).
//!
//! # Theory of operation
//!
//! `heap alloc HEAP SIZE` exports a dma-buf from a heap and the shell keeps the one
//! reference it got; `dmabuf free ID` drops that reference, so the buffer is released
//! unless a device still holds it (then it goes when the device lets go, as in Linux where
//! closing the fd only drops one reference). The shell may free only what it allocated:
//! the display's framebuffer, say, shows in `dmabuf list` but `dmabuf free` refuses it.
//!
//! Files, as Linux lays them out: `/dev/dma_heap/<heap>` per heap (character devices in
//! Linux, so `ls` lists them and reading one is `EINVAL`), and
//! `/sys/kernel/debug/dma_buf/bufinfo` in Linux's format.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use crate::dma_service::{self, BufId, DmaError};
use crate::shell::vfs::VfsTree;
use crate::shell::{Access, BackendError, DmabufOp, FsError, HeapOp};
use crate::util::size::ByteSize;

pub const DMA_HEAP_DIR: &str = crate::shell::commands::DMA_HEAP_DIR;
pub const BUFINFO: &str = "/sys/kernel/debug/dma_buf/bufinfo";

/// The dma-bufs the shell allocated and still holds a reference to.
#[derive(Default)]
pub struct ShellBuffers {
    owned: BTreeSet<BufId>,
}

/// The shell refuses to drop a reference it does not hold.
#[derive(Debug)]
pub enum BufferCommandError {
    NotTheShells { id: u64 },
    Dma(DmaError),
}

impl core::fmt::Display for BufferCommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BufferCommandError::NotTheShells { id } => write!(
                f,
                "dma-buf {id} was not allocated by 'heap alloc' (its owner frees it)"
            ),
            BufferCommandError::Dma(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for BufferCommandError {}

fn dma(e: DmaError) -> BackendError {
    BackendError::service(BufferCommandError::Dma(e))
}

impl ShellBuffers {
    /// Register the heap devices and bufinfo in the shell's file tree.
    pub fn register(tree: &mut VfsTree) {
        tree.add_dir(DMA_HEAP_DIR);
        for heap in dma_service::heap_names() {
            tree.add_file(&format!("{DMA_HEAP_DIR}/{heap}"), Access::ReadOnly);
        }
        tree.add_file(BUFINFO, Access::ReadOnly);
    }

    /// `Some` for the files this module serves.
    pub fn read(path: &str) -> Option<Result<String, FsError>> {
        if path == BUFINFO {
            return Some(Ok(dma_service::bufinfo()));
        }
        // A heap is a character device: reading it is EINVAL, as on Linux.
        path.strip_prefix(DMA_HEAP_DIR)
            .filter(|rest| rest.starts_with('/'))
            .map(|_| Err(FsError::InvalidArgument))
    }

    pub fn heap(&mut self, op: HeapOp<'_>) -> Result<String, BackendError> {
        match op {
            HeapOp::List => Ok(dma_service::dev_dma_heap()),
            HeapOp::Alloc { heap, bytes } => {
                let id = dma_service::heap_alloc(heap, bytes).map_err(dma)?;
                // Owned from here on, so `dmabuf free` can always give it back.
                self.owned.insert(id);
                let segments = dma_service::buf_segments(id).map_err(dma)?;
                let first = segments.first().map_or(0, |s| s.0);
                Ok(if segments.len() == 1 {
                    format!(
                        "dmabuf {id}: {} from {heap}, contiguous at {first:#x}",
                        ByteSize(bytes)
                    )
                } else {
                    format!(
                        "dmabuf {id}: {} from {heap}, {} segments",
                        ByteSize(bytes),
                        segments.len()
                    )
                })
            }
        }
    }

    pub fn dmabuf(&mut self, op: DmabufOp) -> Result<String, BackendError> {
        match op {
            DmabufOp::List => {
                let mut text = String::from("id    size        segments refs devices exporter\n");
                for b in dma_service::buf_list() {
                    let mine = if self.owned.contains(&b.id) {
                        " (shell)"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        text,
                        "{:<5} {:<11} {:<8} {:<4} {:<7} {}{}",
                        b.id,
                        format!("{}", ByteSize(b.size)),
                        b.segments,
                        b.count,
                        b.attachments,
                        b.exp_name,
                        mine
                    );
                }
                Ok(text)
            }
            DmabufOp::Free { id } => {
                let owned = BufId::try_from(id)
                    .ok()
                    .filter(|id| self.owned.contains(id))
                    .ok_or(BackendError::service(BufferCommandError::NotTheShells {
                        id,
                    }))?;
                dma_service::buf_put(owned).map_err(dma)?;
                self.owned.remove(&owned);
                Ok(String::new())
            }
        }
    }
}
