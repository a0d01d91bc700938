//! Boot to the prompt, in instructions: under `-icount shift=0` the generic counter's time
//! is one nanosecond per retired instruction, so the uptime when a test image reaches
//! `kernel_init` (after the same boot as the firmware's, up to where it would start the
//! shell) is the number of instructions boot took.

use alloc::format;
use alloc::string::String;

/// Print the boot cost and the RAM the zone manages (`memory` names the board's size).
pub fn boot_to_prompt(memory: &str) -> Result<(), String> {
    let instructions = crate::driver::timer::uptime().as_nanos();
    let managed_mib = crate::kmem::with_zone(|zone| zone.counters().managed_pages >> 8)
        .map_err(|e| format!("{e}"))?;
    crate::println!(
        "\nboot to the prompt with {memory}: {instructions} instructions ({managed_mib} MiB managed)"
    );
    Ok(())
}
