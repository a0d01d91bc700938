//! Identify what sits behind each virtio-mmio slot (for the boot summary).
//!
//! QEMU `virt` always creates 32 virtio-mmio transports; a slot with no device attached
//! reads DeviceID 0. Both the legacy (version 1) and modern (version 2) layouts keep
//! MagicValue at 0x000, Version at 0x004 and DeviceID at 0x008.

/// "virt" in little-endian.
const VIRTIO_MMIO_MAGIC: u32 = 0x7472_6976;

/// The DeviceID of the transport at `base` (0 = empty slot), or `None` if no virtio-mmio
/// transport answers there.
///
/// # Safety
/// `base` must be a `virtio,mmio` register window from the device tree, identity-mapped
/// as device memory (or the MMU off). Reading these three registers has no side effects.
pub unsafe fn device_id(base: u64) -> Option<u32> {
    let base = base as usize;
    // Safety: the caller guarantees a virtio-mmio register window at `base`; the reads
    // are 32-bit, aligned and side-effect free.
    let (magic, device) = unsafe {
        (
            core::ptr::read_volatile(base as *const u32),
            core::ptr::read_volatile((base + 0x8) as *const u32),
        )
    };
    (magic == VIRTIO_MMIO_MAGIC).then_some(device)
}

/// Linux `VIRTIO_ID_*` names for the device types QEMU can attach.
pub fn device_name(id: u32) -> &'static str {
    match id {
        0 => "none",
        1 => "net",
        2 => "block",
        3 => "console",
        4 => "rng",
        5 => "balloon",
        8 => "scsi",
        9 => "9p",
        16 => "gpu",
        18 => "input",
        19 => "vsock",
        20 => "crypto",
        23 => "iommu",
        24 => "mem",
        25 => "sound",
        26 => "fs",
        27 => "pmem",
        30 => "video-encoder",
        31 => "video-decoder",
        _ => "unknown",
    }
}
