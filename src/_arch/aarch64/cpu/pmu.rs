//! The performance monitors' instruction counter (PMUv3), for benchmarks that must count
//! instructions across WFI: under QEMU's precise `-icount` the INST_RETIRED event is the
//! emulator's own instruction count, while the generic counter may jump ahead while the
//! CPU waits for an interrupt (`sleep=off`).
//!
//! `aarch64-cpu` 11 has no PMU registers, so these accesses stay raw `asm!`.

/// INST_RETIRED, the architectural instruction-retired event (Arm ARM D17.11).
const INST_RETIRED: u64 = 0x08;

/// Program event counter 0 to count INST_RETIRED at EL1 and EL0 and enable it. Fails when
/// the CPU has no PMUv3 or does not implement the event (QEMU implements it only with
/// precise `-icount`).
pub fn count_instructions() -> Result<(), &'static str> {
    let dfr0: u64;
    let ceid0: u64;
    // Safety: ID_AA64DFR0_EL1 is a read-only ID register, readable at EL1.
    unsafe {
        core::arch::asm!("mrs {r}, ID_AA64DFR0_EL1", r = out(reg) dfr0, options(nomem, nostack))
    };
    let pmuver = (dfr0 >> 8) & 0xf;
    if pmuver == 0 || pmuver == 0xf {
        return Err("no PMUv3 (ID_AA64DFR0_EL1.PMUVer is 0 or IMPLEMENTATION DEFINED)");
    }
    // Safety: PMCEID0_EL0 is read-only and readable at EL1 once PMUv3 is present.
    unsafe {
        core::arch::asm!("mrs {r}, PMCEID0_EL0", r = out(reg) ceid0, options(nomem, nostack))
    };
    if ceid0 & (1 << INST_RETIRED) == 0 {
        return Err("the PMU does not count INST_RETIRED (QEMU needs -icount with a fixed shift)");
    }
    // Safety: at EL1 with PMUv3 these registers are ours to program; no other code uses
    // the PMU. PMEVTYPER0 = event 0x08 with all filter bits 0 (count EL1 and EL0);
    // PMCR_EL0.E (bit 0) enables the counters; PMCNTENSET_EL0 bit 0 enables counter 0.
    unsafe {
        core::arch::asm!(
            "msr PMEVTYPER0_EL0, {ev}",
            "mrs {t}, PMCR_EL0",
            "orr {t}, {t}, #1",
            "msr PMCR_EL0, {t}",
            "msr PMCNTENSET_EL0, {one}",
            "isb",
            ev = in(reg) INST_RETIRED,
            one = in(reg) 1u64,
            t = out(reg) _,
            options(nostack)
        )
    };
    let a = instructions_retired();
    let b = instructions_retired();
    if b == a {
        return Err("the INST_RETIRED counter does not advance");
    }
    Ok(())
}

/// Event counter 0 (instructions retired, 32 bits: subtract with `wrapping_sub`), after an
/// ISB so earlier code has retired.
#[inline(always)]
pub fn instructions_retired() -> u32 {
    let v: u64;
    // Safety: PMEVCNTR0_EL0 is readable at EL1; [`count_instructions`] programmed it (before
    // that it reads an unspecified value, which only makes a figure wrong, not unsound).
    unsafe { core::arch::asm!("isb", "mrs {v}, PMEVCNTR0_EL0", v = out(reg) v, options(nostack)) };
    v as u32
}
