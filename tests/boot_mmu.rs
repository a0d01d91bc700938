//! xtask-qemu: --board virt
//!
//! In-QEMU tests of the boot core: the MMU identity map and its permissions, the movable
//! window, expected faults, cache maintenance. Each memory access whose exact instruction
//! matters is inline assembly: the target is built with +strict-align, so plain Rust
//! would never issue an unaligned load, and the compiler must not merge or drop accesses
//! that are supposed to fault.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::arch::asm;

use monolith::exception::expect_fault;
use monolith::exception::syndrome::{
    FaultStatus, EC_DATA_ABORT_CURRENT_EL, EC_INSTRUCTION_ABORT_CURRENT_EL,
};
use monolith::memory::mmu::{self, MapError, MemoryKind, PAGE_SIZE};
use monolith::test_harness::{run_tests, TestCase};
use monolith::{qemu_ensure, qemu_ensure_eq};

const PAGE: usize = PAGE_SIZE as usize;

#[repr(C, align(4096))]
struct Page([u8; PAGE]);

fn heap_page(fill: u8) -> Box<Page> {
    Box::new(Page([fill; PAGE]))
}

fn load_u64(address: usize) -> u64 {
    let value: u64;
    // Safety: callers pass a mapped, readable address (or one inside expect_fault).
    unsafe {
        asm!("ldr {v}, [{a}]", a = in(reg) address, v = out(reg) value, options(nostack, readonly))
    };
    value
}

fn store_u64(address: usize, value: u64) {
    // Safety: callers pass memory they own (or an address inside expect_fault).
    unsafe { asm!("str {v}, [{a}]", a = in(reg) address, v = in(reg) value, options(nostack)) };
}

fn mmu_is_on_with_caches() -> Result<(), String> {
    let sctlr: u64;
    // Safety: reading a system register.
    unsafe { asm!("mrs {s}, SCTLR_EL1", s = out(reg) sctlr, options(nomem, nostack)) };
    qemu_ensure!(mmu::is_enabled());
    qemu_ensure!(sctlr & 1 != 0, "SCTLR_EL1.M clear: {sctlr:#x}");
    qemu_ensure!(
        sctlr & (1 << 2) != 0 && sctlr & (1 << 12) != 0,
        "caches off: {sctlr:#x}"
    );
    qemu_ensure!(sctlr & (1 << 1) == 0, "alignment check on: {sctlr:#x}");
    qemu_ensure!(sctlr & (1 << 19) != 0, "WXN off: {sctlr:#x}");
    Ok(())
}

#[repr(C, align(4096))]
struct TwoPages([u8; 2 * PAGE]);

fn unaligned_load_from_ram_works() -> Result<(), String> {
    let mut pages = Box::new(TwoPages([0; 2 * PAGE]));
    for (i, byte) in pages.0.iter_mut().enumerate() {
        *byte = (i * 7 + i / 256) as u8;
    }
    let base = pages.0.as_ptr() as usize;
    // Odd offsets, one crossing a cache line and one crossing into the next page.
    for offset in [1usize, 3, 7, 0x3d, PAGE - 3] {
        let expected = u64::from_le_bytes(pages.0[offset..offset + 8].try_into().unwrap());
        let mut loaded = 0;
        let fault = expect_fault(|| loaded = load_u64(base + offset));
        qemu_ensure!(
            fault.is_none(),
            "unaligned load at +{offset:#x} faulted: {}",
            fault.unwrap()
        );
        qemu_ensure_eq!(loaded, expected);
    }
    Ok(())
}

fn unaligned_store_to_ram_works() -> Result<(), String> {
    let page = heap_page(0);
    let address = page.0.as_ptr() as usize + 5;
    let fault = expect_fault(|| store_u64(address, 0x1122_3344_5566_7788));
    qemu_ensure!(
        fault.is_none(),
        "unaligned store faulted: {}",
        fault.unwrap()
    );
    qemu_ensure_eq!(&page.0[5..13], &0x1122_3344_5566_7788u64.to_le_bytes()[..]);
    qemu_ensure_eq!(page.0[4], 0);
    qemu_ensure_eq!(page.0[13], 0);
    Ok(())
}

fn memory_types_as_the_hardware_sees_them() -> Result<(), String> {
    // From PAR_EL1.ATTR after AT S1E1R: what the walker really found, not our bookkeeping.
    let platform = monolith::runtime::platform();
    qemu_ensure_eq!(
        mmu::memory_kind(monolith::bsp::EARLY_UART_BASE),
        Some(MemoryKind::Device)
    );
    for window in &platform.mmio {
        qemu_ensure_eq!(
            mmu::memory_kind(window.start as usize),
            Some(MemoryKind::Device)
        );
    }
    if let Some(gic) = &platform.gic {
        qemu_ensure_eq!(
            mmu::memory_kind(gic.distributor.start as usize),
            Some(MemoryKind::Device)
        );
    }
    for bank in &platform.memory {
        qemu_ensure_eq!(
            mmu::memory_kind(bank.start as usize),
            Some(MemoryKind::Normal)
        );
        qemu_ensure_eq!(
            mmu::memory_kind(bank.end as usize - 1),
            Some(MemoryKind::Normal)
        );
    }
    let page = heap_page(0);
    qemu_ensure_eq!(
        mmu::memory_kind(page.0.as_ptr() as usize),
        Some(MemoryKind::Normal)
    );
    qemu_ensure_eq!(mmu::memory_kind(mmu::movable_window().start), None);
    Ok(())
}

static READ_ONLY_WORD: u64 = 0x5eed_f00d;

fn write_to_rodata_is_a_permission_fault() -> Result<(), String> {
    let address = &READ_ONLY_WORD as *const u64 as usize;
    let rodata = mmu::kernel_image_layout().rodata;
    qemu_ensure!(
        rodata.contains(&(address as u64)),
        "{address:#x} not in rodata {rodata:x?}"
    );
    let fault = expect_fault(|| store_u64(address, 0))
        .ok_or_else(|| String::from("write to rodata did not fault"))?;
    qemu_ensure_eq!(fault.exception_class(), EC_DATA_ABORT_CURRENT_EL);
    qemu_ensure!(
        matches!(fault.status(), Some(FaultStatus::Permission { .. })),
        "expected a permission fault, got {fault}"
    );
    qemu_ensure!(fault.is_write(), "WnR clear: {fault}");
    qemu_ensure_eq!(fault.far, address as u64);
    qemu_ensure_eq!(load_u64(address), 0x5eed_f00d);
    Ok(())
}

fn write_to_text_faults() -> Result<(), String> {
    let address = write_to_text_faults as fn() -> Result<(), String> as usize;
    let fault = expect_fault(|| store_u64(address, 0))
        .ok_or_else(|| String::from("write to text did not fault"))?;
    qemu_ensure!(
        matches!(fault.status(), Some(FaultStatus::Permission { .. })),
        "got {fault}"
    );
    qemu_ensure_eq!(fault.far, address as u64);
    Ok(())
}

fn executing_from_data_faults() -> Result<(), String> {
    let mut page = heap_page(0);
    // `ret`, so the call would come straight back if the page were executable.
    page.0[..4].copy_from_slice(&0xd65f_03c0u32.to_le_bytes());
    let target = page.0.as_ptr() as usize;
    let fault = expect_fault(|| {
        // Safety: either the page is not executable (the fault returns to the link
        // register), or it holds a lone `ret`, which returns as well.
        unsafe { asm!("blr {t}", t = in(reg) target, clobber_abi("C"), options(nostack)) };
    })
    .ok_or_else(|| String::from("executing heap memory did not fault"))?;
    qemu_ensure_eq!(fault.exception_class(), EC_INSTRUCTION_ABORT_CURRENT_EL);
    qemu_ensure!(
        matches!(fault.status(), Some(FaultStatus::Permission { .. })),
        "got {fault}"
    );
    qemu_ensure_eq!(fault.far, target as u64);
    qemu_ensure_eq!(fault.elr, target as u64);
    Ok(())
}

fn stack_guard_is_unmapped() -> Result<(), String> {
    let layout = mmu::kernel_image_layout();
    qemu_ensure_eq!(layout.stack_guard.end - layout.stack_guard.start, PAGE_SIZE);
    qemu_ensure_eq!(mmu::translate(layout.stack_guard.start as usize), None);
    qemu_ensure_eq!(mmu::translate(layout.stack_guard.end as usize - 8), None);
    // Its neighbours are mapped, at their own addresses.
    let below = layout.stack_guard.start as usize - 8;
    qemu_ensure_eq!(mmu::translate(below), Some(below as u64));
    qemu_ensure_eq!(
        mmu::translate(layout.stack.start as usize),
        Some(layout.stack.start)
    );
    let fault = expect_fault(|| {
        load_u64(layout.stack_guard.start as usize + 16);
    })
    .ok_or_else(|| String::from("reading the guard page did not fault"))?;
    qemu_ensure_eq!(fault.status(), Some(FaultStatus::Translation { level: 3 }));
    Ok(())
}

fn identity_map_covers_ram_and_devices() -> Result<(), String> {
    let platform = monolith::runtime::platform();
    for bank in &platform.memory {
        let last = (bank.end - 8) as usize;
        qemu_ensure_eq!(mmu::translate(last), Some(last as u64));
    }
    let uart = monolith::bsp::EARLY_UART_BASE;
    qemu_ensure_eq!(mmu::translate(uart), Some(uart as u64));
    let window = mmu::movable_window();
    qemu_ensure_eq!(mmu::translate(window.start), None);
    Ok(())
}

fn movable_window_round_trip() -> Result<(), String> {
    let window = mmu::movable_window();
    let va = window.start + 0x1234 * PAGE;
    let first = heap_page(0xaa);
    let second = heap_page(0x55);
    let (first_pa, second_pa) = (first.0.as_ptr() as u64, second.0.as_ptr() as u64);

    qemu_ensure_eq!(mmu::translate(va), None);
    mmu::map_movable(va, first_pa).map_err(|e| format!("map: {e}"))?;
    qemu_ensure_eq!(mmu::translate(va + 8), Some(first_pa + 8));
    qemu_ensure_eq!(load_u64(va), 0xaaaa_aaaa_aaaa_aaaa);
    store_u64(va + 16, 0x0123_4567_89ab_cdef);
    qemu_ensure_eq!(load_u64(first_pa as usize + 16), 0x0123_4567_89ab_cdef);

    // Migrate: copy, then switch the mapping.
    let mut second = second;
    second.0.copy_from_slice(&first.0);
    qemu_ensure_eq!(mmu::remap_movable(va, second_pa), Ok(first_pa));
    qemu_ensure_eq!(mmu::translate(va), Some(second_pa));
    store_u64(va + 24, 0xfeed_face_cafe_beef);
    qemu_ensure_eq!(load_u64(second_pa as usize + 24), 0xfeed_face_cafe_beef);
    qemu_ensure_eq!(load_u64(first_pa as usize + 24), 0xaaaa_aaaa_aaaa_aaaa);
    qemu_ensure_eq!(load_u64(va + 16), 0x0123_4567_89ab_cdef);

    qemu_ensure_eq!(mmu::unmap_movable(va), Ok(second_pa));
    qemu_ensure_eq!(mmu::translate(va), None);
    let fault = expect_fault(|| {
        load_u64(va);
    })
    .ok_or_else(|| String::from("access after unmap did not fault"))?;
    qemu_ensure_eq!(fault.status(), Some(FaultStatus::Translation { level: 3 }));
    qemu_ensure_eq!(fault.far, va as u64);
    drop(second);
    Ok(())
}

fn movable_window_rejects_bad_requests() -> Result<(), String> {
    let window = mmu::movable_window();
    let page = heap_page(0);
    let pa = page.0.as_ptr() as u64;
    qemu_ensure_eq!(
        mmu::map_movable(window.start + 8, pa),
        Err(MapError::Misaligned)
    );
    qemu_ensure_eq!(
        mmu::map_movable(window.start, pa + 8),
        Err(MapError::Misaligned)
    );
    qemu_ensure_eq!(
        mmu::map_movable(0x4000_0000, pa),
        Err(MapError::NotInWindow)
    );
    qemu_ensure_eq!(mmu::map_movable(window.end, pa), Err(MapError::NotInWindow));
    qemu_ensure_eq!(
        mmu::map_movable(window.start, 0x0900_0000),
        Err(MapError::NotRam)
    );
    qemu_ensure_eq!(mmu::unmap_movable(window.start), Err(MapError::NotMapped));
    qemu_ensure_eq!(
        mmu::remap_movable(window.start, pa),
        Err(MapError::NotMapped)
    );
    mmu::map_movable(window.start, pa).map_err(|e| format!("map: {e}"))?;
    qemu_ensure_eq!(
        mmu::map_movable(window.start, pa),
        Err(MapError::AlreadyMapped)
    );
    qemu_ensure_eq!(mmu::unmap_movable(window.start), Ok(pa));
    Ok(())
}

fn many_window_pages_share_tables() -> Result<(), String> {
    // 600 pages crosses a 2 MiB boundary, so a second L3 table is allocated on demand.
    let window = mmu::movable_window();
    let base = window.start + 511 * PAGE - 100 * PAGE;
    let backing = heap_page(0);
    let pa = backing.0.as_ptr() as u64;
    for i in 0..600 {
        mmu::map_movable(base + i * PAGE, pa).map_err(|e| format!("map {i}: {e}"))?;
    }
    store_u64(base + 599 * PAGE, 42);
    qemu_ensure_eq!(load_u64(base), 42);
    for i in 0..600 {
        qemu_ensure_eq!(mmu::unmap_movable(base + i * PAGE), Ok(pa));
    }
    Ok(())
}

fn cache_maintenance_keeps_data() -> Result<(), String> {
    use monolith::cpu::cache;
    let line = cache::dcache_line_size();
    qemu_ensure!(
        line.is_power_of_two() && (16..=2048).contains(&line),
        "line size {line}"
    );
    let page = heap_page(0x3c);
    let base = page.0.as_ptr() as usize;
    store_u64(base + 40, 7);
    cache::clean_dcache_range(base + 3, 100);
    cache::clean_invalidate_dcache_range(base, PAGE);
    // Safety: the page is ours and every store to it was cleaned above.
    unsafe { cache::invalidate_dcache_range(base + 1, PAGE - 2) };
    qemu_ensure_eq!(load_u64(base + 40), 7);
    qemu_ensure_eq!(page.0[PAGE - 1], 0x3c);
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "boot_mmu",
        &[
            TestCase {
                name: "mmu_is_on_with_caches",
                run: mmu_is_on_with_caches,
            },
            TestCase {
                name: "unaligned_load_from_ram_works",
                run: unaligned_load_from_ram_works,
            },
            TestCase {
                name: "unaligned_store_to_ram_works",
                run: unaligned_store_to_ram_works,
            },
            TestCase {
                name: "memory_types_as_the_hardware_sees_them",
                run: memory_types_as_the_hardware_sees_them,
            },
            TestCase {
                name: "write_to_rodata_is_a_permission_fault",
                run: write_to_rodata_is_a_permission_fault,
            },
            TestCase {
                name: "write_to_text_faults",
                run: write_to_text_faults,
            },
            TestCase {
                name: "executing_from_data_faults",
                run: executing_from_data_faults,
            },
            TestCase {
                name: "stack_guard_is_unmapped",
                run: stack_guard_is_unmapped,
            },
            TestCase {
                name: "identity_map_covers_ram_and_devices",
                run: identity_map_covers_ram_and_devices,
            },
            TestCase {
                name: "movable_window_round_trip",
                run: movable_window_round_trip,
            },
            TestCase {
                name: "movable_window_rejects_bad_requests",
                run: movable_window_rejects_bad_requests,
            },
            TestCase {
                name: "many_window_pages_share_tables",
                run: many_window_pages_share_tables,
            },
            TestCase {
                name: "cache_maintenance_keeps_data",
                run: cache_maintenance_keeps_data,
            },
        ],
    )
}
