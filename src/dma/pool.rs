//! The coherent atomic pool (`kernel/dma/pool.c`): memory set aside at boot for
//! `dma_alloc_coherent` callers that cannot wait (a CMA allocation may migrate pages and
//! reclaim, which waits).
//!
//! # Theory of operation
//!
//! Size: `coherent_pool=<size>` (memparse: K/M/G suffixes) if given, else Linux's
//! `atomic_pool_init` default, 128 KiB per GiB of RAM; at least 128 KiB; at most one
//! max-order block (order 10 = 4 MiB, `MAX_ORDER_NR_PAGES`), because the pool is one
//! buddy block taken at boot. A value that is not a size, is zero, or is bigger than that
//! gets one message and the default (Linux would take garbage as 0 and have no pool).
//!
//! Inside the pool, allocation is page-granular first fit, aligned to the request's order
//! as `gen_pool_dma_alloc_align` does for `dma_alloc_from_pool`.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::firstfit::FirstFit;
use super::{get_order, pages_for};
use crate::dt::bootargs::{self, memparse};
use crate::mm::{Pfn, MAX_ORDER, PAGE_SIZE};
use crate::util::size::{format_size, GIB, KIB};

/// Smallest pool (`SZ_128K`).
pub const MIN_POOL_BYTES: u64 = 128 * KIB;
/// Largest pool: one max-order block.
pub const MAX_POOL_BYTES: u64 = (PAGE_SIZE as u64) << MAX_ORDER;

/// The pool size for `ram_bytes` of RAM and the kernel command line `cmdline`; problems
/// with `coherent_pool=` are pushed to `messages`.
pub fn atomic_pool_size(ram_bytes: u64, cmdline: Option<&str>, messages: &mut Vec<String>) -> u64 {
    let default = (ram_bytes / (GIB / MIN_POOL_BYTES)).clamp(MIN_POOL_BYTES, MAX_POOL_BYTES)
        & !(PAGE_SIZE as u64 - 1);
    let line = bootargs::parse_command_line(cmdline.unwrap_or(""));
    let Some(value) = line.values("coherent_pool").last() else {
        return default;
    };
    let refuse = |why: String, messages: &mut Vec<String>| {
        messages.push(format!(
            "coherent_pool: {why}; using the default {}",
            format_size(default)
        ));
        default
    };
    let Some(text) = value else {
        return refuse(
            String::from("no value (expected coherent_pool=nn[KMG])"),
            messages,
        );
    };
    match memparse(text) {
        Ok((0, "")) => refuse(String::from("size 0"), messages),
        Ok((bytes, "")) if bytes > MAX_POOL_BYTES => refuse(
            format!(
                "{text} is over one max-order block ({})",
                format_size(MAX_POOL_BYTES)
            ),
            messages,
        ),
        Ok((bytes, "")) => {
            let pages = pages_for(bytes).unwrap_or(0) as u64;
            (pages * PAGE_SIZE as u64).max(MIN_POOL_BYTES)
        }
        Ok((_, rest)) => refuse(format!("'{text}' has trailing '{rest}'"), messages),
        Err(_) => refuse(format!("'{text}' is not a size"), messages),
    }
}

/// Order of the one block the pool is taken as.
pub fn pool_order(bytes: u64) -> usize {
    get_order(bytes) as usize
}

/// Why a pool allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    ZeroSize,
    /// No free run of the size (the pool is small by design).
    Exhausted {
        pages: usize,
    },
    /// A free of something the pool did not hand out.
    NotAllocated {
        pfn: Pfn,
        pages: usize,
    },
}

impl core::fmt::Display for PoolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PoolError::ZeroSize => f.write_str("zero-byte atomic pool allocation"),
            PoolError::Exhausted { pages } => write!(f, "atomic pool has no {pages} free pages"),
            PoolError::NotAllocated { pfn, pages } => {
                write!(
                    f,
                    "pfn {pfn:#x} ({pages} pages) is not an atomic pool allocation"
                )
            }
        }
    }
}

/// The pool over its boot-time block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicPool {
    pages: FirstFit,
}

impl AtomicPool {
    pub fn new(base: Pfn, pages: usize) -> AtomicPool {
        AtomicPool {
            pages: FirstFit::new(base..base + pages),
        }
    }

    pub fn size_pages(&self) -> usize {
        self.pages.span().len()
    }

    pub fn used_pages(&self) -> usize {
        self.pages.used_pages()
    }

    /// `dma_alloc_from_pool`: `bytes` rounded up to pages, aligned to its order.
    pub fn alloc(&mut self, bytes: u64) -> Result<(Pfn, usize), PoolError> {
        let pages = pages_for(bytes)
            .filter(|p| *p > 0)
            .ok_or(PoolError::ZeroSize)?;
        let align = 1usize << get_order(bytes).min(MAX_ORDER as u32);
        let pfn = self
            .pages
            .alloc(pages, align)
            .ok_or(PoolError::Exhausted { pages })?;
        Ok((pfn, pages))
    }

    pub fn free(&mut self, pfn: Pfn, pages: usize) -> Result<(), PoolError> {
        if self.pages.free(pfn, pages) {
            Ok(())
        } else {
            Err(PoolError::NotAllocated { pfn, pages })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::size::MIB;

    fn size(ram: u64, line: &str) -> (u64, Vec<String>) {
        let mut messages = Vec::new();
        (atomic_pool_size(ram, Some(line), &mut messages), messages)
    }

    #[test]
    fn default_is_128k_per_gib_clamped() {
        assert_eq!(size(GIB, ""), (128 * KIB, vec![]));
        assert_eq!(size(2 * GIB, "console=ttyAMA0"), (256 * KIB, vec![]));
        assert_eq!(size(256 * MIB, "").0, 128 * KIB, "at least 128 KiB");
        assert_eq!(size(64 * GIB, "").0, 4 * MIB, "at most one order-10 block");
        assert_eq!(pool_order(128 * KIB), 5);
        assert_eq!(pool_order(4 * MIB), 10);
    }

    #[test]
    fn coherent_pool_is_memparsed_and_bad_values_fall_back_with_a_message() {
        assert_eq!(size(GIB, "coherent_pool=1M"), (MIB, vec![]));
        assert_eq!(size(GIB, "coherent_pool=512K").0, 512 * KIB);
        assert_eq!(size(GIB, "coherent_pool=0x100000").0, MIB);
        assert_eq!(
            size(GIB, "coherent_pool=5000").0,
            128 * KIB,
            "rounded up, at least 128 KiB"
        );
        assert_eq!(
            size(GIB, "coherent_pool=1M coherent_pool=2M").0,
            2 * MIB,
            "last wins"
        );
        for bad in [
            "coherent_pool=abc",
            "coherent_pool=0",
            "coherent_pool=8M",
            "coherent_pool=1Mx",
            "coherent_pool",
        ] {
            let (bytes, messages) = size(GIB, bad);
            assert_eq!(bytes, 128 * KIB, "{bad}");
            assert_eq!(messages.len(), 1, "{bad}: {messages:?}");
            assert!(
                messages[0].starts_with("coherent_pool: ")
                    && messages[0].ends_with("using the default 128 KiB"),
                "{}",
                messages[0]
            );
        }
    }

    #[test]
    fn pool_hands_out_aligned_pages_and_takes_back_only_its_own() {
        let mut pool = AtomicPool::new(0x1000, 32);
        assert_eq!(pool.alloc(1), Ok((0x1000, 1)));
        assert_eq!(
            pool.alloc(8192),
            Ok((0x1002, 2)),
            "order-1 request, 2-page aligned"
        );
        assert_eq!(pool.alloc(0), Err(PoolError::ZeroSize));
        assert_eq!(
            pool.alloc(128 * KIB),
            Err(PoolError::Exhausted { pages: 32 })
        );
        assert_eq!(pool.used_pages(), 3);
        assert_eq!(
            pool.free(0x1002, 1),
            Err(PoolError::NotAllocated {
                pfn: 0x1002,
                pages: 1
            })
        );
        assert_eq!(pool.free(0x1002, 2), Ok(()));
        assert_eq!(pool.free(0x1000, 1), Ok(()));
        assert_eq!(pool.used_pages(), 0);
        assert_eq!(pool.alloc(128 * KIB), Ok((0x1000, 32)));
    }
}
