//! Processor code: boot entry and CPU primitives. Architecture half in `_arch/aarch64/cpu`.

#[path = "_arch/aarch64/cpu/boot.rs"]
mod boot;
