//! Device-tree interpretation (safe): platform devices, reserved memory, boot arguments.
#![forbid(unsafe_code)]

pub mod bootargs;
pub mod platform;
pub mod reserved;
