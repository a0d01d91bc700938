//! The shell's PASR commands and files over the PASR service (bare metal only):
//! `pasr`, `suspend [SECONDS]`, and `/sys/kernel/debug/pasr/{banks,power,last_suspend}`
//! (the same text as the commands), registered only on a board whose tree describes its
//! DRAM banks.

use alloc::string::{String, ToString};

use crate::pasr::report::{BANKS_FILE, LAST_SUSPEND_FILE, POWER_FILE};
use crate::pasr_service;
use crate::shell::vfs::VfsTree;
use crate::shell::{Access, BackendError, FsError};

/// Register the debugfs files (a board without PASR gets none).
pub fn register(tree: &mut VfsTree) {
    if crate::kmem::pasr::geometry().is_none() {
        return;
    }
    for file in [BANKS_FILE, POWER_FILE, LAST_SUSPEND_FILE] {
        tree.add_file(file, Access::ReadOnly);
    }
}

/// `Some` for the files this module serves.
pub fn read(path: &str) -> Option<Result<String, FsError>> {
    let text = match path {
        BANKS_FILE => pasr_service::banks(),
        POWER_FILE => pasr_service::power(),
        LAST_SUSPEND_FILE => Ok(pasr_service::last_suspend()),
        _ => return None,
    };
    Some(text.map_err(|e| FsError::Other(e.to_string())))
}

/// `pasr`.
pub fn banks() -> Result<String, BackendError> {
    pasr_service::banks().map_err(BackendError::service)
}

/// `suspend SECONDS`.
pub fn suspend(seconds: u64) -> Result<String, BackendError> {
    pasr_service::suspend(seconds).map_err(BackendError::service)
}
