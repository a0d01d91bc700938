//! Finding the device-tree blob in physical memory (hardware layer). (Skeleton.)

use crate::dt::platform::{DtError, Platform};

/// Locate the DTB (x0 if it holds one, else the start of RAM), validate and parse it.
/// The result lives for the whole run.
pub fn boot_platform(_dtb_from_x0: usize) -> Result<&'static Platform, DtError> {
    Err(DtError::Unimplemented)
}
