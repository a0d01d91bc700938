//! kmem as the host sees it: only its pure parts, which build and are unit-tested there
//! (the rest of kmem drives the MMU and RAM and exists only on the bare-metal target).
//! `lib.rs` loads this file as `kmem` on the host, so the paths are the same everywhere.
#![forbid(unsafe_code)]

pub mod anon_pins;
pub mod memmap;
pub mod pagecache_policy;
