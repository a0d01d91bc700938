//! The virtio-mmio transport's register block (virtio 1.x, section 4.2.2 "MMIO Device
//! Register Layout"), for the probe and the hardware half of our virtio transport
//! (`virtio_mmio.rs`, which checks these offsets against `crate::virtio::transport::reg`).
//!
//! This is the modern layout (Version 2). The legacy layout (Version 1, section 4.2.4)
//! shares MagicValue, Version, DeviceID, VendorID, the feature words, QueueSel,
//! QueueNumMax, QueueNum, QueueNotify, InterruptStatus/ACK and Status at the same offsets,
//! and puts GuestPageSize (0x028), QueueAlign (0x03c) and QueuePFN (0x040) in what are
//! reserved gaps here; a legacy driver would add them. The device-specific configuration
//! space starts at [`CONFIG_OFFSET`] and its size depends on the device type, so it is
//! not part of the struct. Register names are the spec's.

// Register fields keep the spec's names (MagicValue, QueueNumMax, ...).
#![allow(non_snake_case)]

use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

/// MagicValue: "virt" in little-endian (4.2.2).
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// Version of the modern interface (4.2.2); 1 is the legacy one (4.2.4).
pub const VERSION_MODERN: u32 = 2;
/// Offset of the device-specific configuration space (4.2.2, "Config").
pub const CONFIG_OFFSET: usize = 0x100;

register_structs! {
    /// One virtio-mmio transport (virtio 1.x, 4.2.2). Every register is 32 bits wide and
    /// must be accessed as such; 64-bit quantities are split into Low/High halves.
    pub VirtioMmioRegisters {
        /// 0x74726976 ("virt"); anything else means no virtio-mmio transport.
        (0x000 => pub MagicValue: ReadOnly<u32>),
        /// 2 (modern) or 1 (legacy, 4.2.4).
        (0x004 => pub Version: ReadOnly<u32>),
        /// Device type (section 5); 0 = no device behind this transport.
        (0x008 => pub DeviceID: ReadOnly<u32>),
        (0x00c => pub VendorID: ReadOnly<u32>),
        /// The 32 feature bits (2.2) selected by DeviceFeaturesSel.
        (0x010 => pub DeviceFeatures: ReadOnly<u32>),
        (0x014 => pub DeviceFeaturesSel: WriteOnly<u32>),
        (0x018 => _reserved0),
        /// The 32 accepted feature bits selected by DriverFeaturesSel.
        (0x020 => pub DriverFeatures: WriteOnly<u32>),
        (0x024 => pub DriverFeaturesSel: WriteOnly<u32>),
        (0x028 => _reserved1),
        /// Which virtqueue the Queue* registers below refer to.
        (0x030 => pub QueueSel: WriteOnly<u32>),
        /// Largest queue size the device supports for the selected queue; 0 = no queue.
        (0x034 => pub QueueNumMax: ReadOnly<u32>),
        (0x038 => pub QueueNum: ReadWrite<u32>),
        (0x03c => _reserved2),
        (0x044 => pub QueueReady: ReadWrite<u32>),
        (0x048 => _reserved3),
        /// Queue index (or notification data, with VIRTIO_F_NOTIFICATION_DATA).
        (0x050 => pub QueueNotify: WriteOnly<u32>),
        (0x054 => _reserved4),
        /// Bit 0: used buffer notification; bit 1: configuration change.
        (0x060 => pub InterruptStatus: ReadOnly<u32>),
        (0x064 => pub InterruptACK: WriteOnly<u32>),
        (0x068 => _reserved5),
        /// Device status (2.1); writing 0 resets the device.
        (0x070 => pub Status: ReadWrite<u32>),
        (0x074 => _reserved6),
        /// Descriptor area of the selected queue (2.7 split / 2.8 packed virtqueues).
        (0x080 => pub QueueDescLow: WriteOnly<u32>),
        (0x084 => pub QueueDescHigh: WriteOnly<u32>),
        (0x088 => _reserved7),
        /// Driver area ("available ring") of the selected queue.
        (0x090 => pub QueueDriverLow: WriteOnly<u32>),
        (0x094 => pub QueueDriverHigh: WriteOnly<u32>),
        (0x098 => _reserved8),
        /// Device area ("used ring") of the selected queue.
        (0x0a0 => pub QueueDeviceLow: WriteOnly<u32>),
        (0x0a4 => pub QueueDeviceHigh: WriteOnly<u32>),
        (0x0a8 => _reserved9),
        /// Shared memory region selector; the Len/Base registers describe the selected
        /// region (all ones in both halves of SHMLen: no such region).
        (0x0ac => pub SHMSel: WriteOnly<u32>),
        (0x0b0 => pub SHMLenLow: ReadOnly<u32>),
        (0x0b4 => pub SHMLenHigh: ReadOnly<u32>),
        (0x0b8 => pub SHMBaseLow: ReadOnly<u32>),
        (0x0bc => pub SHMBaseHigh: ReadOnly<u32>),
        /// Write 1 to reset the selected queue; reads 1 until the reset is done.
        (0x0c0 => pub QueueReset: ReadWrite<u32>),
        (0x0c4 => _reserved10),
        /// Changes whenever the configuration space changes: read it before and after a
        /// multi-word configuration read to detect a torn one.
        (0x0fc => pub ConfigGeneration: ReadOnly<u32>),
        (0x100 => @END),
    }
}

const _: () = assert!(core::mem::size_of::<VirtioMmioRegisters>() == CONFIG_OFFSET);
