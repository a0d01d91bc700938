//! The Monolith firmware image.
//!
//! Theory of operation: the library's runtime brings the machine up (exceptions, heap,
//! device tree, MMU, drivers) and then calls [`kernel_init`] here. The firmware prints
//! what it found, so a boot log alone tells which platform and devices it runs on, and
//! then hands the console to the debug shell ([`monolith::shell_service::run`]).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod summary {
    use aarch64_cpu::registers::CurrentEL;
    use monolith::driver::{gicv3, timer, virtio_probe};
    use monolith::dt::platform::{Platform, PsciConduit};
    use monolith::println;
    use monolith::util::size::ByteSize as Size;
    use tock_registers::interfaces::Readable;

    /// The planner's view of `/reserved-memory` ([`monolith::dt::reserved::summary`]).
    fn reserved_memory() {
        match monolith::kmem::plan() {
            Some(plan) => {
                for line in monolith::dt::reserved::summary(plan) {
                    println!("{line}");
                }
            }
            None => println!("reserved-memory: not planned"),
        }
    }

    pub fn print(platform: &Platform) {
        println!();
        println!(
            "Monolith {} - contiguous memory for devices that cannot scatter-gather",
            env!("CARGO_PKG_VERSION")
        );
        println!("  running at EL{}", CurrentEL.read(CurrentEL::EL));
        if let Some(model) = &platform.model {
            println!("  machine   {model}");
        }
        println!(
            "  dtb       {:#x}..{:#x} ({})",
            platform.dtb.start,
            platform.dtb.end,
            Size(platform.dtb.end - platform.dtb.start)
        );

        let total: u64 = platform
            .memory
            .iter()
            .map(|bank| bank.end - bank.start)
            .sum();
        println!(
            "memory: {} bank(s), {} total",
            platform.memory.len(),
            Size(total)
        );
        for bank in &platform.memory {
            println!(
                "  {:#012x}..{:#012x}  {}",
                bank.start,
                bank.end,
                Size(bank.end - bank.start)
            );
        }
        for r in &platform.mem_reserve {
            println!(
                "  /memreserve/ {:#012x}..{:#012x}  {}",
                r.start,
                r.end,
                Size(r.end - r.start)
            );
        }

        reserved_memory();

        println!("devices:");
        match &platform.uart {
            Some(u) => println!(
                "  uart      pl011 @ {:#x}, intid {}, {} Hz clock, rx {}",
                u.base,
                u.intid
                    .map_or(alloc::string::String::from("-"), |i| alloc::format!("{i}")),
                u.clock_hz.unwrap_or(0),
                if monolith::console::rx_interrupt_driven() {
                    "by interrupt"
                } else {
                    "polled"
                }
            ),
            None => println!("  uart      none (early console)"),
        }
        match &platform.gic {
            Some(g) if g.version == 3 => println!(
                "  gic       GICv3, distributor {:#x}, redistributors {:#x}..{:#x}{}",
                g.distributor.start,
                g.redistributor.start,
                g.redistributor.end,
                if gicv3::is_ready() {
                    ""
                } else {
                    " (NOT initialised)"
                }
            ),
            Some(g) => println!(
                "  gic       GICv{} @ {:#x} (unsupported)",
                g.version, g.distributor.start
            ),
            None => println!("  gic       none"),
        }
        match &platform.timer {
            Some(t) => println!(
                "  timer     {} Hz counter, virt intid {}, phys intid {}, tick {} Hz",
                timer::frequency(),
                t.virt_intid,
                t.phys_intid,
                timer::HZ
            ),
            None => println!(
                "  timer     {} Hz counter, no timer node",
                timer::frequency()
            ),
        }
        let conduit = match platform.psci {
            Some(PsciConduit::Hvc) => "hvc",
            Some(PsciConduit::Smc) => "smc",
            None => "none",
        };
        println!("  psci      {conduit}");

        let mut attached = 0;
        for device in &platform.virtio_mmio {
            // Safety: each window is a `virtio,mmio` node's `reg`, part of `platform.mmio`,
            // which the boot code identity-maps as device memory.
            let probe = unsafe { virtio_probe::identify(device.base) };
            if let Some((id @ 1.., version)) = probe {
                attached += 1;
                let transport = match version {
                    2 => "modern",
                    1 => "legacy",
                    _ => "unknown",
                };
                println!(
                    "  virtio    {:#x} intid {}: {id} {} (virtio-mmio v{version}, {transport})",
                    device.base,
                    device.intid.unwrap_or(0),
                    virtio_probe::device_name(id)
                );
            }
        }
        println!(
            "  virtio    {} mmio slot(s), {attached} with a device",
            platform.virtio_mmio.len()
        );
        println!(
            "bootargs: {}",
            platform.bootargs.as_deref().unwrap_or("(none)")
        );
    }
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[no_mangle]
fn kernel_init() -> ! {
    let platform = monolith::runtime::platform();
    summary::print(platform);
    show_at_boot(platform.bootargs.as_deref());
    play_at_boot(platform.bootargs.as_deref());
    log::info!(
        "boot complete in {:?}; starting the shell",
        monolith::driver::timer::uptime()
    );
    // Everything boot prints comes before the first prompt, so no log line lands inside it.
    monolith::shell_service::run()
}

/// `monolith.display=`: put the memory map (or the test pattern) on the screen before the
/// shell starts.
#[cfg(target_os = "none")]
fn show_at_boot(bootargs: Option<&str>) {
    use monolith::display::boot::{boot_screen, BootScreen};
    use monolith::display_service::{self, Showing};
    let what = match boot_screen(bootargs) {
        Ok(BootScreen::Off) => return,
        Ok(BootScreen::Map) => Showing::Map,
        Ok(BootScreen::Pattern) => Showing::Pattern,
        Err(message) => return monolith::println!("display: {message}"),
    };
    match display_service::show(what) {
        Ok(text) => monolith::println!("display: {text}"),
        Err(error) => monolith::println!("display: not shown: {error}"),
    }
}

/// `monolith.video=`: start the clip before the shell starts (the console loop steps it).
#[cfg(target_os = "none")]
fn play_at_boot(bootargs: Option<&str>) {
    use monolith::video::boot::{boot_play, BootPlay};
    let looping = match boot_play(bootargs) {
        Ok(BootPlay::Off) => return,
        Ok(BootPlay::Once) => false,
        Ok(BootPlay::Loop) => true,
        Err(message) => return monolith::println!("video: {message}"),
    };
    match monolith::video_service::play(looping, false) {
        Ok(text) => monolith::println!(
            "video: {text}{}",
            if looping {
                " (`video stop` ends it)"
            } else {
                ""
            }
        ),
        Err(error) => monolith::println!("video: not playing: {error}"),
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("monolith is a bare-metal aarch64 image: build and boot it with `cargo xtask run`");
}
