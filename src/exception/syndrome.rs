//! Decoding ESR_EL1 and SPSR_EL1 into words a person can act on.
//!
//! # Theory of operation
//!
//! ESR_EL1 says why a synchronous exception or SError was taken: the exception class
//! (EC, bits 31:26) names the kind, the instruction-specific syndrome (ISS, bits 24:0)
//! carries the detail. For instruction and data aborts the low six ISS bits are the fault
//! status code (DFSC/IFSC), which encodes both the kind of fault and the translation level
//! it happened at; a data abort also says whether the access was a write (WnR, bit 6).
//! Everything here is a pure function of the register values, so it is host-tested.
#![forbid(unsafe_code)]

use core::fmt;

/// ESR_EL1.EC values we name. Anything else is shown as its raw number.
pub fn exception_class_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "Unknown",
        0x01 => "Trapped WFI/WFE",
        0x07 => "SVE/SIMD/FP access trap",
        0x0d => "Branch Target Exception",
        0x0e => "Illegal Execution state",
        0x11 => "SVC32",
        0x15 => "SVC64",
        0x16 => "HVC64",
        0x17 => "SMC64",
        0x18 => "Trapped MSR/MRS/system instruction",
        0x19 => "SVE access trap",
        0x1c => "Pointer authentication failure",
        0x20 => "Instruction Abort, lower EL",
        0x21 => "Instruction Abort, current EL",
        0x22 => "PC alignment fault",
        0x24 => "Data Abort, lower EL",
        0x25 => "Data Abort, current EL",
        0x26 => "SP alignment fault",
        0x28 => "Trapped FP exception (AArch32)",
        0x2c => "Trapped FP exception (AArch64)",
        0x2f => "SError",
        0x30 => "Breakpoint, lower EL",
        0x31 => "Breakpoint, current EL",
        0x32 => "Software Step, lower EL",
        0x33 => "Software Step, current EL",
        0x34 => "Watchpoint, lower EL",
        0x35 => "Watchpoint, current EL",
        0x38 => "BKPT (AArch32)",
        0x3c => "BRK (AArch64)",
        _ => "Reserved/unnamed exception class",
    }
}

/// Exception class field of an ESR value.
pub fn exception_class(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

pub const EC_INSTRUCTION_ABORT_LOWER_EL: u8 = 0x20;
pub const EC_INSTRUCTION_ABORT_CURRENT_EL: u8 = 0x21;
pub const EC_DATA_ABORT_LOWER_EL: u8 = 0x24;
pub const EC_DATA_ABORT_CURRENT_EL: u8 = 0x25;

/// True for instruction and data aborts, whose ISS carries a fault status code.
pub fn is_abort(esr: u64) -> bool {
    matches!(
        exception_class(esr),
        EC_INSTRUCTION_ABORT_LOWER_EL
            | EC_INSTRUCTION_ABORT_CURRENT_EL
            | EC_DATA_ABORT_LOWER_EL
            | EC_DATA_ABORT_CURRENT_EL
    )
}

pub fn is_data_abort(esr: u64) -> bool {
    matches!(
        exception_class(esr),
        EC_DATA_ABORT_LOWER_EL | EC_DATA_ABORT_CURRENT_EL
    )
}

/// The kind of fault a DFSC/IFSC value reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultStatus {
    AddressSize { level: u8 },
    Translation { level: u8 },
    AccessFlag { level: u8 },
    Permission { level: u8 },
    SynchronousExternal,
    SynchronousExternalOnWalk { level: u8 },
    Parity,
    Alignment,
    TlbConflict,
    Other(u8),
}

impl FaultStatus {
    pub fn from_code(code: u8) -> FaultStatus {
        let level = code & 0b11;
        match code & 0x3f {
            0b00_0000..=0b00_0011 => FaultStatus::AddressSize { level },
            0b00_0100..=0b00_0111 => FaultStatus::Translation { level },
            // 0b001000 would be an access flag fault at level 0, which cannot happen with
            // a 4 KiB granule without FEAT_LPA2.
            0b00_1001..=0b00_1011 => FaultStatus::AccessFlag { level },
            0b00_1101..=0b00_1111 => FaultStatus::Permission { level },
            0b01_0000 => FaultStatus::SynchronousExternal,
            0b01_0100..=0b01_0111 => FaultStatus::SynchronousExternalOnWalk { level },
            0b01_1000 => FaultStatus::Parity,
            0b10_0001 => FaultStatus::Alignment,
            0b11_0000 => FaultStatus::TlbConflict,
            other => FaultStatus::Other(other),
        }
    }

    /// The translation level the fault happened at, where the code says.
    pub fn level(self) -> Option<u8> {
        match self {
            FaultStatus::AddressSize { level }
            | FaultStatus::Translation { level }
            | FaultStatus::AccessFlag { level }
            | FaultStatus::Permission { level }
            | FaultStatus::SynchronousExternalOnWalk { level } => Some(level),
            _ => None,
        }
    }
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultStatus::AddressSize { level } => write!(f, "address size fault, level {level}"),
            FaultStatus::Translation { level } => write!(f, "translation fault, level {level}"),
            FaultStatus::AccessFlag { level } => write!(f, "access flag fault, level {level}"),
            FaultStatus::Permission { level } => write!(f, "permission fault, level {level}"),
            FaultStatus::SynchronousExternal => f.write_str("synchronous external abort"),
            FaultStatus::SynchronousExternalOnWalk { level } => {
                write!(f, "synchronous external abort on table walk, level {level}")
            }
            FaultStatus::Parity => f.write_str("parity/ECC error"),
            FaultStatus::Alignment => f.write_str("alignment fault"),
            FaultStatus::TlbConflict => f.write_str("TLB conflict abort"),
            FaultStatus::Other(code) => write!(f, "fault status {code:#08b}"),
        }
    }
}

/// The abort-specific part of an ESR value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortSyndrome {
    pub status: FaultStatus,
    /// Data aborts only: the faulting access was a write (WnR). False for instruction aborts.
    pub write: bool,
    /// A stage-2 fault taken while walking the stage-1 tables (S1PTW; needs a hypervisor).
    pub on_stage1_table_walk: bool,
    /// FAR_EL1 does not hold the faulting address (FnV).
    pub far_not_valid: bool,
}

/// Decode the ISS of an instruction or data abort; `None` for other classes.
pub fn abort_syndrome(esr: u64) -> Option<AbortSyndrome> {
    if !is_abort(esr) {
        return None;
    }
    let data = is_data_abort(esr);
    Some(AbortSyndrome {
        status: FaultStatus::from_code((esr & 0x3f) as u8),
        // Cache maintenance (CM) reports WnR = 1 regardless; it is still our doing.
        write: data && esr & (1 << 6) != 0,
        on_stage1_table_walk: esr & (1 << 7) != 0,
        far_not_valid: esr & (1 << 10) != 0,
    })
}

/// One line describing ESR_EL1: class, then the abort details where there are any.
pub struct EsrDescription(pub u64);

impl fmt::Display for EsrDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esr = self.0;
        let ec = exception_class(esr);
        write!(
            f,
            "{:#010x}: EC {ec:#04x} {}",
            esr,
            exception_class_name(ec)
        )?;
        if let Some(abort) = abort_syndrome(esr) {
            write!(f, ", {}", abort.status)?;
            if is_data_abort(esr) {
                f.write_str(if abort.write {
                    ", on write (WnR=1)"
                } else {
                    ", on read (WnR=0)"
                })?;
            }
            if abort.on_stage1_table_walk {
                f.write_str(", stage-2 fault on stage-1 table walk")?;
            }
            if abort.far_not_valid {
                f.write_str(", FAR not valid")?;
            }
        } else {
            write!(f, ", ISS {:#x}", esr & 0x1ff_ffff)?;
        }
        Ok(())
    }
}

/// SPSR_EL1: the mode and masks the exception interrupted.
pub struct SpsrDescription(pub u64);

impl fmt::Display for SpsrDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spsr = self.0;
        let mode = match spsr & 0b1_1111 {
            0b0_0000 => "EL0t",
            0b0_0100 => "EL1t",
            0b0_0101 => "EL1h",
            0b0_1000 => "EL2t",
            0b0_1001 => "EL2h",
            m if m & 0b1_0000 != 0 => "AArch32",
            _ => "illegal mode",
        };
        let flag = |bit: u32, name: char| if spsr & (1 << bit) != 0 { name } else { '-' };
        write!(
            f,
            "{spsr:#010x}: {mode}, flags {}{}{}{}, masked {}{}{}{}",
            flag(31, 'N'),
            flag(30, 'Z'),
            flag(29, 'C'),
            flag(28, 'V'),
            flag(9, 'D'),
            flag(8, 'A'),
            flag(7, 'I'),
            flag(6, 'F')
        )?;
        if spsr & (1 << 20) != 0 {
            f.write_str(", illegal execution state")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn write_to_read_only_page_is_a_level_3_permission_fault_on_write() {
        // EC 0x25, IL, ISV clear, WnR, DFSC 0b001111.
        let esr = (0x25 << 26) | (1 << 25) | (1 << 6) | 0b00_1111;
        let abort = abort_syndrome(esr).unwrap();
        assert_eq!(abort.status, FaultStatus::Permission { level: 3 });
        assert!(abort.write);
        assert_eq!(
            format!("{}", EsrDescription(esr)),
            "0x9600004f: EC 0x25 Data Abort, current EL, permission fault, level 3, on write (WnR=1)"
        );
    }

    #[test]
    fn fault_status_codes() {
        assert_eq!(
            FaultStatus::from_code(0b00_0101),
            FaultStatus::Translation { level: 1 }
        );
        assert_eq!(
            FaultStatus::from_code(0b00_0111),
            FaultStatus::Translation { level: 3 }
        );
        assert_eq!(
            FaultStatus::from_code(0b00_1010),
            FaultStatus::AccessFlag { level: 2 }
        );
        assert_eq!(FaultStatus::from_code(0b10_0001), FaultStatus::Alignment);
        assert_eq!(
            FaultStatus::from_code(0b01_0000),
            FaultStatus::SynchronousExternal
        );
        assert_eq!(
            FaultStatus::from_code(0b00_1000),
            FaultStatus::Other(0b00_1000)
        );
        assert_eq!(FaultStatus::Translation { level: 2 }.level(), Some(2));
        assert_eq!(FaultStatus::Alignment.level(), None);
        assert_eq!(
            format!("{}", FaultStatus::from_code(0b00_0110)),
            "translation fault, level 2"
        );
    }

    #[test]
    fn instruction_abort_has_no_write_bit() {
        // IFSC permission level 3; bit 6 is RES0 for instruction aborts but must not leak.
        let esr = (0x21 << 26) | (1 << 25) | (1 << 6) | 0b00_1111;
        let abort = abort_syndrome(esr).unwrap();
        assert!(!abort.write);
        assert_eq!(
            format!("{}", EsrDescription(esr)),
            "0x8600004f: EC 0x21 Instruction Abort, current EL, permission fault, level 3"
        );
    }

    #[test]
    fn non_aborts_show_their_iss() {
        let svc = (0x15 << 26) | (1 << 25) | 0x42;
        assert_eq!(abort_syndrome(svc), None);
        assert_eq!(
            format!("{}", EsrDescription(svc)),
            "0x56000042: EC 0x15 SVC64, ISS 0x42"
        );
        assert_eq!(
            format!("{}", EsrDescription(0)),
            "0x00000000: EC 0x00 Unknown, ISS 0x0"
        );
        assert_eq!(
            exception_class_name(0x3f),
            "Reserved/unnamed exception class"
        );
    }

    #[test]
    fn spsr_modes_and_masks() {
        assert_eq!(
            format!("{}", SpsrDescription(0x3c5)),
            "0x000003c5: EL1h, flags ----, masked DAIF"
        );
        assert_eq!(
            format!("{}", SpsrDescription(0x6000_0004)),
            "0x60000004: EL1t, flags -ZC-, masked ----"
        );
    }
}
