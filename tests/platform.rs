//! xtask-qemu: --board virt
//!
//! In-QEMU tests of the platform layer: the generic-timer tick really interrupts, uptime
//! is monotonic, QEMU's own device tree (parsed at boot) describes the default `virt`
//! board (1 GiB at 0x4000_0000, PL011, GICv3, 32 virtio-mmio slots), and damaged copies of
//! that same blob are refused with the expected messages.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use monolith::driver::{gicv3, timer};
use monolith::dt::platform::{DtError, Platform, PsciConduit};
use monolith::test_harness::{run_tests, TestCase};
use monolith::{qemu_ensure, qemu_ensure_eq};

fn boot_blob() -> Result<&'static [u8], String> {
    monolith::dtb::blob().ok_or_else(|| String::from("no boot DTB recorded"))
}

fn be32(blob: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]])
}

fn timer_tick_interrupts_arrive() -> Result<(), String> {
    let before = timer::ticks();
    let handled_before = gicv3::stats().handled;
    // 100 Hz: 200 ms holds about 20 ticks; the deadline bounds the wait if none come.
    let deadline = timer::uptime() + Duration::from_secs(2);
    while timer::ticks() < before + 20 && timer::uptime() < deadline {
        core::hint::spin_loop();
    }
    let taken = timer::ticks() - before;
    qemu_ensure!(taken >= 20, "only {taken} ticks in 2 s");
    qemu_ensure!(
        gicv3::stats().handled >= handled_before + taken,
        "IRQ count did not follow the ticks"
    );
    // The rate is right too: over 300 ms, between 15 and 45 ticks at 100 Hz (QEMU's timing
    // is loose under load, so generous bounds).
    let start = timer::ticks();
    timer::spin_for(Duration::from_millis(300));
    let in_300ms = timer::ticks() - start;
    qemu_ensure!((15..=45).contains(&in_300ms), "{in_300ms} ticks in 300 ms");
    Ok(())
}

fn uptime_is_monotonic_and_spin_for_waits() -> Result<(), String> {
    let mut last = timer::uptime();
    for _ in 0..10_000 {
        let now = timer::uptime();
        qemu_ensure!(now >= last, "uptime went back: {now:?} < {last:?}");
        last = now;
    }
    let start = timer::uptime();
    timer::spin_for(Duration::from_millis(20));
    let waited = timer::uptime() - start;
    qemu_ensure!(
        waited >= Duration::from_millis(20),
        "spin_for(20 ms) returned after {waited:?}"
    );
    qemu_ensure!(timer::frequency() > 0);
    Ok(())
}

fn boot_dtb_describes_default_virt() -> Result<(), String> {
    let p: &Platform = monolith::runtime::platform();
    qemu_ensure_eq!(p.memory, alloc::vec![0x4000_0000u64..0x8000_0000]);
    let uart = p.uart.as_ref().ok_or("no UART")?;
    qemu_ensure_eq!((uart.base, uart.intid), (0x0900_0000, Some(33)));
    let gic = p.gic.as_ref().ok_or("no GIC")?;
    qemu_ensure_eq!((gic.version, gic.distributor.start), (3, 0x0800_0000));
    qemu_ensure_eq!(gic.redistributor.start, 0x080a_0000);
    qemu_ensure!(gicv3::is_ready(), "GIC not initialised");
    qemu_ensure_eq!(p.virtio_mmio.len(), 32);
    qemu_ensure!(p
        .virtio_mmio
        .iter()
        .all(|d| d.base >= 0x0a00_0000 && d.base < 0x0a00_4000 && d.size == 0x200));
    let timer_info = p.timer.as_ref().ok_or("no timer")?;
    qemu_ensure_eq!((timer_info.phys_intid, timer_info.virt_intid), (30, 27));
    qemu_ensure_eq!(p.psci, Some(PsciConduit::Hvc));
    // The boot blob re-parses to the same description.
    let blob = boot_blob()?;
    let again = Platform::parse(blob, p.dtb.start).map_err(|e| e.to_string())?;
    qemu_ensure!(&again == p, "re-parse differs");
    Ok(())
}

fn corrupted_copies_are_refused() -> Result<(), String> {
    let blob = boot_blob()?;
    let len = blob.len();

    let mut bad_magic: Vec<u8> = blob.to_vec();
    bad_magic[0] ^= 0xff;
    let err = Platform::parse(&bad_magic, 0)
        .err()
        .ok_or("bad magic accepted")?;
    qemu_ensure_eq!(
        err.to_string(),
        "bad magic 0x2f0dfeed (expected 0xd00dfeed)"
    );

    let mut too_big = blob.to_vec();
    too_big[4..8].copy_from_slice(&(len as u32 + 4096).to_be_bytes());
    let err = Platform::parse(&too_big, 0)
        .err()
        .ok_or("oversized totalsize accepted")?;
    qemu_ensure_eq!(
        err.to_string(),
        format!(
            "truncated: header says {} bytes, only {len} available",
            len + 4096
        )
    );

    // The buffer ends in the middle of the structure block.
    let off_struct = be32(blob, 8) as usize;
    let size_struct = be32(blob, 36) as usize;
    let cut = &blob[..off_struct + size_struct / 2];
    let err = Platform::parse(cut, 0)
        .err()
        .ok_or("truncated copy accepted")?;
    qemu_ensure_eq!(
        err.to_string(),
        format!(
            "truncated: header says {len} bytes, only {} available",
            cut.len()
        )
    );

    // The header agrees with a structure block cut in half: the token walk runs out (in
    // the middle of a token, a name or a value, wherever the cut falls).
    let mut short_struct = blob.to_vec();
    short_struct[36..40].copy_from_slice(&(size_struct as u32 / 2).to_be_bytes());
    let err = Platform::parse(&short_struct, 0)
        .err()
        .ok_or("half structure block accepted")?;
    qemu_ensure!(matches!(err, DtError::Malformed { .. }), "{err:?}");
    qemu_ensure!(
        err.to_string()
            .starts_with("malformed structure block at offset 0x"),
        "{err}"
    );
    Ok(())
}

fn logger_level_is_runtime_settable() -> Result<(), String> {
    use log::LevelFilter;
    let before = monolith::logger::level();
    qemu_ensure_eq!(before, LevelFilter::Info);
    monolith::logger::set_level(LevelFilter::Warn);
    qemu_ensure!(!log::log_enabled!(log::Level::Info));
    qemu_ensure!(log::log_enabled!(log::Level::Warn));
    monolith::logger::set_level(before);
    qemu_ensure!(log::log_enabled!(log::Level::Info));
    Ok(())
}

fn console_input_is_interrupt_driven() -> Result<(), String> {
    qemu_ensure!(monolith::console::rx_interrupt_driven());
    // Nothing typed in a test run: the non-blocking read must say so, not wait.
    qemu_ensure_eq!(monolith::console::read_byte(), None);
    Ok(())
}

#[no_mangle]
fn kernel_init() -> ! {
    run_tests(
        "platform",
        &[
            TestCase {
                name: "timer_tick_interrupts_arrive",
                run: timer_tick_interrupts_arrive,
            },
            TestCase {
                name: "uptime_is_monotonic_and_spin_for_waits",
                run: uptime_is_monotonic_and_spin_for_waits,
            },
            TestCase {
                name: "boot_dtb_describes_default_virt",
                run: boot_dtb_describes_default_virt,
            },
            TestCase {
                name: "corrupted_copies_are_refused",
                run: corrupted_copies_are_refused,
            },
            TestCase {
                name: "logger_level_is_runtime_settable",
                run: logger_level_is_runtime_settable,
            },
            TestCase {
                name: "console_input_is_interrupt_driven",
                run: console_input_is_interrupt_driven,
            },
        ],
    )
}
