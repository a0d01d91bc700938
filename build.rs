//! Link the firmware with our linker script, and relink when it changes
//! (cargo does not track linker inputs by itself).
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg=-T{manifest}/linker.ld");
        println!("cargo:rustc-link-arg=--no-rosegment");
    }
}
