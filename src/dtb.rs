//! Finding the device-tree blob in physical memory (hardware layer).
//!
//! Theory of operation: boot protocols that pass a DTB put its address in x0; QEMU passes
//! 0 for an ELF `-kernel` and copies the tree to the start of RAM instead (when it fits
//! below the image, see shared/reference/qemu-virt.md). So: x0 if it is non-zero, aligned
//! and holds the FDT magic, else the start of RAM if that does. The blob's length is its
//! header's `totalsize`, capped at [`MAX_DTB_SIZE`] so a corrupted header cannot make us
//! read (or hand the parser) an arbitrary span of memory; the safe validator
//! ([`DeviceTree::from_blob`]) checks everything else. The one validated tree and the
//! [`Platform`] read from it are leaked to `'static` and published once: [`tree`] for
//! every later reader (reserved memory, the shell's views), [`platform`] for the boot code.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::dt::platform::{DtError, Platform};
use crate::dt::tree::DeviceTree;

/// Largest blob we accept. QEMU's unpacked tree is 1 MiB; real ones are far smaller.
pub const MAX_DTB_SIZE: usize = 2 << 20;
/// The FDT header is 40 bytes; `Platform::parse` reports shorter `totalsize` values.
const FDT_HEADER_LEN: usize = 40;
const FDT_MAGIC: u32 = 0xd00d_feed;

/// What boot found: the validated tree and the platform read from it.
struct BootTree {
    platform: Platform,
    tree: DeviceTree<'static>,
    blob: &'static [u8],
}

static BOOT_TREE: AtomicPtr<BootTree> = AtomicPtr::new(core::ptr::null_mut());

/// Big-endian word at a physical address.
///
/// # Safety
/// `address` must be 4-aligned and readable (RAM, identity-mapped or MMU off).
unsafe fn read_be32(address: usize) -> u32 {
    // Safety: guaranteed by the caller.
    u32::from_be(unsafe { core::ptr::read_volatile(address as *const u32) })
}

/// Where the DTB is, judged by its magic; `Err` carries what RAM base held instead.
fn locate(dtb_from_x0: usize) -> Result<usize, DtError> {
    if dtb_from_x0 != 0 && dtb_from_x0.is_multiple_of(8) {
        // Safety: a boot protocol that passes x0 passes the address of the DTB in RAM; an
        // 8-aligned address is a valid place for a 4-byte read.
        if unsafe { read_be32(dtb_from_x0) } == FDT_MAGIC {
            return Ok(dtb_from_x0);
        }
    }
    let ram = crate::bsp::RAM_BASE;
    // Safety: RAM_BASE is the first byte of RAM on `virt`, always present and readable.
    let magic = unsafe { read_be32(ram) };
    if magic == FDT_MAGIC {
        Ok(ram)
    } else {
        Err(DtError::NotFound {
            x0: dtb_from_x0 as u64,
            ram_base: ram as u64,
            ram_word: magic,
        })
    }
}

/// Locate the DTB (x0 if it holds one, else the start of RAM), validate and parse it.
/// The result lives for the whole run; later calls return the first result.
pub fn boot_platform(dtb_from_x0: usize) -> Result<&'static Platform, DtError> {
    if let Some(platform) = platform() {
        return Ok(platform);
    }
    let address = locate(dtb_from_x0)?;
    // Safety: `address` holds the FDT magic, so the 8 bytes of magic+totalsize are RAM.
    let totalsize = unsafe { read_be32(address + 4) } as usize;
    let len = totalsize.clamp(FDT_HEADER_LEN, MAX_DTB_SIZE);
    // Safety: the blob starts in RAM at `address` and the boot code never writes the
    // (at most 2 MiB) below the image or at x0 before the allocator reserves
    // `platform.dtb`; the slice is only read, for the whole run. If `totalsize` lies, the
    // parser sees a mismatch and refuses: `len` never exceeds MAX_DTB_SIZE, which stays
    // inside the 1 GiB minimum of RAM on `virt`.
    let blob: &'static [u8] = unsafe { core::slice::from_raw_parts(address as *const u8, len) };
    let parsed = DeviceTree::from_blob(blob)
        .and_then(|tree| Ok((Platform::from_tree(&tree, address as u64)?, tree)));
    let (platform, tree) = match parsed {
        // A `totalsize` above the cap reads as truncation at the cap: say so plainly.
        Err(DtError::Truncated { header, .. }) if totalsize > MAX_DTB_SIZE => {
            return Err(DtError::Truncated {
                header,
                available: MAX_DTB_SIZE,
            })
        }
        other => other?,
    };
    let blob = &blob[..tree.totalsize() as usize];
    let leaked: &'static mut BootTree = Box::leak(Box::new(BootTree {
        platform,
        tree,
        blob,
    }));
    BOOT_TREE.store(leaked, Ordering::Release);
    Ok(&leaked.platform)
}

fn boot_tree() -> Option<&'static BootTree> {
    let pointer = BOOT_TREE.load(Ordering::Acquire);
    // Safety: the pointer is null or came from `Box::leak` in `boot_platform`: valid,
    // never freed, never written again after publication (Release/Acquire pairing).
    unsafe { pointer.as_ref() }
}

/// The platform parsed by [`boot_platform`], once it has succeeded.
pub fn platform() -> Option<&'static Platform> {
    boot_tree().map(|tree| &tree.platform)
}

/// The validated boot device tree, once [`boot_platform`] has succeeded: what every reader
/// after the platform uses (reserved memory, `dt`, `/proc/device-tree`).
pub fn tree() -> Option<&'static DeviceTree<'static>> {
    boot_tree().map(|boot| &boot.tree)
}

/// The raw boot blob (`totalsize` bytes), once [`boot_platform`] has succeeded: only for
/// tests that validate damaged copies of it. Readers use [`tree`].
pub fn blob() -> Option<&'static [u8]> {
    boot_tree().map(|boot| boot.blob)
}
