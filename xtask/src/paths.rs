//! Where things live.
//!
//! Theory of operation
//! -------------------
//! The repository root is this crate's parent, fixed at compile time, so xtask works from
//! any current directory. Generated files go under the host target directory: `target/`, or
//! `$CARGO_TARGET_DIR` when set (engineers sharing one tree each set their own, and the
//! firmware and DTB caches then follow them instead of contending on one directory). The
//! firmware gets `<target>/firmware`: a different target triple, toolchain and `-Z` flags
//! would otherwise make the host and firmware builds evict each other's artifacts.

use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

pub fn host_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

pub fn firmware_target_dir() -> PathBuf {
    host_target_dir().join("firmware")
}

pub fn boards_dir() -> PathBuf {
    repo_root().join("boards")
}

pub fn dtb_cache_dir() -> PathBuf {
    host_target_dir().join("dtb")
}
