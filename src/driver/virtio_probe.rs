//! Identify what sits behind each virtio-mmio slot (for the boot summary and the drivers'
//! probes): DeviceID and transport version.
//!
//! QEMU `virt` always creates 32 virtio-mmio transports; a slot with no device attached
//! reads DeviceID 0. Both the legacy (version 1) and modern (version 2) layouts keep
//! MagicValue and DeviceID where [`VirtioMmioRegisters`] has them, so the probe reads only
//! those two and works for either.

use tock_registers::interfaces::Readable;

use super::virtio_mmio_regs::{VirtioMmioRegisters, MAGIC_VALUE};

/// DeviceID and Version (2 modern, 1 legacy) of the transport at `base`, or `None` if no
/// virtio-mmio transport answers there.
///
/// # Safety
/// As for [`device_id`]; Version is side-effect free as well.
pub unsafe fn identify(base: u64) -> Option<(u32, u32)> {
    // Safety: as in `device_id`, the caller guarantees the mapped window.
    let regs = unsafe { &*(base as usize as *const VirtioMmioRegisters) };
    let (magic, device, version) = (
        regs.MagicValue.get(),
        regs.DeviceID.get(),
        regs.Version.get(),
    );
    (magic == MAGIC_VALUE).then_some((device, version))
}

/// The DeviceID of the transport at `base` (0 = empty slot), or `None` if no virtio-mmio
/// transport answers there.
///
/// # Safety
/// `base` must be a `virtio,mmio` register window from the device tree, identity-mapped
/// as device memory (or the MMU off). Reading these two registers has no side effects.
pub unsafe fn device_id(base: u64) -> Option<u32> {
    // Safety: the caller guarantees a virtio-mmio register window at `base`, which spans
    // at least the common registers (0x100 bytes); the struct is `repr(C)` with the spec's
    // offsets and its fields are volatile cells, so a shared reference is sound, and the
    // two reads below are 32-bit, aligned and side-effect free.
    let regs = unsafe { &*(base as usize as *const VirtioMmioRegisters) };
    let (magic, device) = (regs.MagicValue.get(), regs.DeviceID.get());
    (magic == MAGIC_VALUE).then_some(device)
}

/// The platform's `virtio,mmio` slots whose device has DeviceID `id`, in tree order.
pub fn slots_with_id(id: u32) -> impl Iterator<Item = &'static crate::dt::platform::MmioDevice> {
    crate::runtime::platform()
        .virtio_mmio
        .iter()
        .filter(move |device| {
            // Safety: each window is a `virtio,mmio` node's `reg`, part of
            // `platform.mmio`, which the boot code identity-maps as device memory.
            let found = unsafe { device_id(device.base) };
            found == Some(id)
        })
}

/// Linux `VIRTIO_ID_*` names for the device types QEMU can attach (virtio 1.x, section 5).
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
