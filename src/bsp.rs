//! Board support: facts about QEMU `virt` that do not come from the device tree.
pub mod qemu_virt;
pub use qemu_virt::*;
