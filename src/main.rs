//! The Monolith firmware image.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
#[no_mangle]
fn kernel_init(dtb_from_x0: usize) -> ! {
    monolith::println!("Monolith {} (dtb x0={:#x})", env!("CARGO_PKG_VERSION"), dtb_from_x0);
    loop {
        aarch64_cpu::asm::wfe();
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("monolith is a bare-metal aarch64 image: build and boot it with `cargo xtask run`");
}
