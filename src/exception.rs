//! Exceptions: the vector table, fault reports, and expected faults for tests.
//!
//! # Theory of operation
//!
//! [`init`] points VBAR_EL1 at a 16-entry vector table (`_arch/aarch64/exception.s`). The
//! kernel runs on SP_EL0 ("EL1t") and every exception switches to SP_EL1, a separate
//! exception stack, so even a kernel stack overflow into the guard page is reported
//! instead of faulting again while saving registers. Each entry saves the general
//! registers and ELR/SPSR/ESR/FAR into an [`ExceptionContext`] on that stack and calls one
//! Rust function with the vector number:
//!
//! - IRQs go to `crate::driver::handle_irq()`.
//! - A synchronous exception while [`expect_fault`] is armed, if it is a data abort,
//!   is recorded and skipped (ELR += 4), so a test can provoke a fault and look at it. An
//!   instruction abort while armed returns to the link register, i.e. to the caller of the
//!   branch-with-link that jumped to non-executable memory.
//! - Everything else is fatal: a decoded dump ([`syndrome`]) of ESR, FAR, ELR, SPSR and the
//!   general registers, then a clean stop (semihosting exit failure in test builds, PSCI
//!   SYSTEM_OFF otherwise, and `wfe` forever if even that returns).

pub mod syndrome;

#[cfg(target_os = "none")]
#[path = "_arch/aarch64/exception.rs"]
mod arch_exception;

#[cfg(target_os = "none")]
pub use arch_exception::{expect_fault, init, EXCEPTION_STACK_SIZE};

use core::fmt;

use syndrome::{
    abort_syndrome, exception_class, exception_class_name, AbortSyndrome, EsrDescription,
    FaultStatus, SpsrDescription,
};

/// Registers saved by the vector entry code (layout shared with `exception.s`).
#[repr(C)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionContext {
    /// x0..x30 of the interrupted code.
    pub gpr: [u64; 31],
    pub sp_el0: u64,
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
}

const _: () = assert!(core::mem::size_of::<ExceptionContext>() == 36 * 8);

/// Which of the 16 vectors was taken: (kind, where from).
pub fn vector_name(vector: u64) -> (&'static str, &'static str) {
    const KINDS: [&str; 4] = ["Synchronous", "IRQ", "FIQ", "SError"];
    const ORIGINS: [&str; 4] = [
        "current EL, SP_EL0 (kernel)",
        "current EL, SP_EL1 (inside a handler)",
        "lower EL, AArch64",
        "lower EL, AArch32",
    ];
    let origin = ORIGINS
        .get((vector / 4) as usize)
        .copied()
        .unwrap_or("unknown vector");
    (KINDS[(vector % 4) as usize], origin)
}

/// The fatal-exception report: what was taken and from where, ESR decoded, FAR (marked
/// as meaningless when the class does not set it), ELR, SPSR decoded, the interrupted SP
/// and the general registers.
pub fn write_report(
    out: &mut dyn fmt::Write,
    context: &ExceptionContext,
    vector: u64,
    interrupted_sp: u64,
) -> fmt::Result {
    let (kind, origin) = vector_name(vector);
    writeln!(out, "*** Unhandled exception: {kind}, from {origin}")?;
    // ESR and FAR only describe synchronous exceptions and SErrors.
    if matches!(vector % 4, 0 | 3) {
        writeln!(out, "ESR_EL1  {}", EsrDescription(context.esr))?;
        let far_note = match abort_syndrome(context.esr) {
            Some(abort) if !abort.far_not_valid => "(faulting address)",
            _ => "(not valid for this exception)",
        };
        writeln!(out, "FAR_EL1  {:#018x}  {far_note}", context.far)?;
    }
    writeln!(out, "ELR_EL1  {:#018x}  (return address)", context.elr)?;
    writeln!(out, "SPSR_EL1 {}", SpsrDescription(context.spsr))?;
    writeln!(out, "SP       {interrupted_sp:#018x}")?;
    for row in context.gpr.chunks(4).enumerate() {
        let (row, registers) = row;
        for (column, value) in registers.iter().enumerate() {
            let n = row * 4 + column;
            write!(out, "x{n:<2} {value:#018x}  ")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// What an expected fault looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultInfo {
    pub esr: u64,
    pub far: u64,
    /// Address of the faulting instruction.
    pub elr: u64,
}

impl FaultInfo {
    pub fn exception_class(&self) -> u8 {
        exception_class(self.esr)
    }

    pub fn class_name(&self) -> &'static str {
        exception_class_name(self.exception_class())
    }

    pub fn abort(&self) -> Option<AbortSyndrome> {
        abort_syndrome(self.esr)
    }

    /// The fault status code, for aborts.
    pub fn status(&self) -> Option<FaultStatus> {
        self.abort().map(|a| a.status)
    }

    pub fn is_write(&self) -> bool {
        self.abort().is_some_and(|a| a.write)
    }
}

impl core::fmt::Display for FaultInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "ESR {} FAR {:#x} ELR {:#x}",
            syndrome::EsrDescription(self.esr),
            self.far,
            self.elr
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn report_decodes_a_permission_fault() {
        let mut context = ExceptionContext {
            esr: 0x9600_004f,
            far: 0x4021_0008,
            elr: 0x4020_1234,
            spsr: 0x3c4,
            ..Default::default()
        };
        context.gpr[0] = 0xdead;
        context.gpr[30] = 0x4020_0fff;
        let mut report = String::new();
        write_report(&mut report, &context, 0, 0x40a6_0f00).unwrap();
        let lines: alloc::vec::Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[0],
            "*** Unhandled exception: Synchronous, from current EL, SP_EL0 (kernel)"
        );
        assert_eq!(
            lines[1],
            "ESR_EL1  0x9600004f: EC 0x25 Data Abort, current EL, permission fault, level 3, on write (WnR=1)"
        );
        assert_eq!(lines[2], "FAR_EL1  0x0000000040210008  (faulting address)");
        assert_eq!(lines[3], "ELR_EL1  0x0000000040201234  (return address)");
        assert_eq!(
            lines[4],
            "SPSR_EL1 0x000003c4: EL1t, flags ----, masked DAIF"
        );
        assert_eq!(lines[5], "SP       0x0000000040a60f00");
        assert!(lines[6].starts_with("x0  0x000000000000dead  x1  0x0000000000000000"));
        assert_eq!(lines.len(), 6 + 8);
        assert!(lines[13].starts_with("x28 ") && lines[13].contains("x30 0x0000000040200fff"));
    }

    #[test]
    fn report_of_an_irq_vector_has_no_syndrome() {
        let mut report = String::new();
        write_report(&mut report, &ExceptionContext::default(), 6, 0).unwrap();
        assert!(report.starts_with(
            "*** Unhandled exception: FIQ, from current EL, SP_EL1 (inside a handler)\n"
        ));
        assert!(!report.contains("ESR_EL1"));
        let mut svc = String::new();
        let context = ExceptionContext {
            esr: 0x5600_0000,
            ..Default::default()
        };
        write_report(&mut svc, &context, 8, 0).unwrap();
        assert!(svc.contains("SVC64") && svc.contains("(not valid for this exception)"));
    }

    #[test]
    fn fault_info_accessors() {
        let info = FaultInfo {
            esr: (0x25 << 26) | (1 << 25) | 0b00_0110,
            far: 0x1000,
            elr: 0x4020_0000,
        };
        assert_eq!(info.class_name(), "Data Abort, current EL");
        assert_eq!(info.status(), Some(FaultStatus::Translation { level: 2 }));
        assert!(!info.is_write());
        let svc = FaultInfo {
            esr: 0x15 << 26,
            far: 0,
            elr: 0,
        };
        assert_eq!(svc.status(), None);
    }
}
