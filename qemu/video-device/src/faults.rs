//! Fault injection for end-to-end tests of the driver's recovery paths.
//!
//! `--fault` flags (`serve`) are parsed into one typed [`Faults`] set; the protocol core
//! consults it (tests set it directly). Three kinds, each firing at most once:
//! - `error-response=CMD@N[/CODE]`: the Nth command (1-based) of type CMD gets an error
//!   response instead of being handled (CODE 0x300..=0x305, default 0x300).
//! - `error-event@FRAME`: once a stream has delivered its FRAMEth decoded frame (1-based), the
//!   device sends an ERROR event for it and stops decoding that stream (the first stream
//!   to get there; once per device lifetime, like every fault).
//! - `stall@FRAME`: once any stream has delivered frame FRAME, the device stops answering the
//!   command queue; chains stay unanswered until the driver resets the device.
#![forbid(unsafe_code)]

use std::fmt;

use monolith::virtio::video::wire::{cmd, ErrorCode};

/// One `--fault` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ErrorResponse {
        command: u32,
        nth: u64,
        code: ErrorCode,
    },
    ErrorEvent {
        frame: u64,
    },
    Stall {
        frame: u64,
    },
}

/// Every fault of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub faults: Vec<Fault>,
}

/// Why a `--fault` value is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultParseError(String);

impl fmt::Display for FaultParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultParseError {}

/// Command names as the flag spells them (the `VIRTIO_VIDEO_CMD_*` suffix, kebab-case).
const COMMANDS: &[(&str, u32)] = &[
    ("query-capability", cmd::QUERY_CAPABILITY),
    ("stream-create", cmd::STREAM_CREATE),
    ("stream-destroy", cmd::STREAM_DESTROY),
    ("stream-drain", cmd::STREAM_DRAIN),
    ("resource-create", cmd::RESOURCE_CREATE),
    ("resource-queue", cmd::RESOURCE_QUEUE),
    ("resource-destroy-all", cmd::RESOURCE_DESTROY_ALL),
    ("queue-clear", cmd::QUEUE_CLEAR),
    ("get-params", cmd::GET_PARAMS_EXT),
    ("set-params", cmd::SET_PARAMS_EXT),
];

fn number(text: &str, what: &str) -> Result<u64, FaultParseError> {
    let value = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match value {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(FaultParseError(format!(
            "{what} must be a number from 1, got {text:?}"
        ))),
    }
}

impl std::str::FromStr for Fault {
    type Err = FaultParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("error-response=") {
            let (name, count) = rest.split_once('@').ok_or_else(|| {
                FaultParseError(format!("error-response needs CMD@N, got {rest:?}"))
            })?;
            let command = COMMANDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
                .ok_or_else(|| {
                    let names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
                    FaultParseError(format!(
                        "unknown command {name:?}; one of {}",
                        names.join(", ")
                    ))
                })?;
            let (count, code) = match count.split_once('/') {
                Some((count, code)) => {
                    let value = number(code, "the error code")?;
                    let code = u32::try_from(value)
                        .ok()
                        .and_then(ErrorCode::from_u32)
                        .ok_or_else(|| {
                            FaultParseError(format!(
                                "error code {code} is not one of 0x300..=0x305"
                            ))
                        })?;
                    (count, code)
                }
                None => (count, ErrorCode::InvalidOperation),
            };
            let nth = number(count, "N")?;
            Ok(Fault::ErrorResponse { command, nth, code })
        } else if let Some(frame) = s.strip_prefix("error-event@") {
            Ok(Fault::ErrorEvent {
                frame: number(frame, "FRAME")?,
            })
        } else if let Some(frame) = s.strip_prefix("stall@") {
            Ok(Fault::Stall {
                frame: number(frame, "FRAME")?,
            })
        } else {
            Err(FaultParseError(format!(
                "unknown fault {s:?}: error-response=CMD@N[/CODE], error-event@FRAME or stall@FRAME"
            )))
        }
    }
}

impl Faults {
    pub fn new(faults: Vec<Fault>) -> Self {
        Faults { faults }
    }

    /// The error code the `nth` command of type `command` must get, if a fault says so.
    pub fn error_response(&self, command: u32, nth: u64) -> Option<ErrorCode> {
        self.faults.iter().find_map(|f| match *f {
            Fault::ErrorResponse {
                command: c,
                nth: n,
                code,
            } if c == command && n == nth => Some(code),
            _ => None,
        })
    }

    /// Must a stream that has just delivered frame `frame` get an ERROR event?
    pub fn error_event_after(&self, frame: u64) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(*f, Fault::ErrorEvent { frame: n } if n == frame))
    }

    /// Must the device stall once a stream has delivered frame `frame`?
    pub fn stall_after(&self, frame: u64) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(*f, Fault::Stall { frame: n } if n == frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_kind_parses() {
        assert_eq!(
            "error-response=resource-queue@5".parse(),
            Ok(Fault::ErrorResponse {
                command: cmd::RESOURCE_QUEUE,
                nth: 5,
                code: ErrorCode::InvalidOperation
            })
        );
        assert_eq!(
            "error-response=stream-create@1/0x304".parse(),
            Ok(Fault::ErrorResponse {
                command: cmd::STREAM_CREATE,
                nth: 1,
                code: ErrorCode::InvalidParameter
            })
        );
        assert_eq!("error-event@3".parse(), Ok(Fault::ErrorEvent { frame: 3 }));
        assert_eq!("stall@7".parse(), Ok(Fault::Stall { frame: 7 }));
    }

    #[test]
    fn bad_faults_are_refused_with_a_reason() {
        for bad in [
            "error-response=bogus@1",
            "error-response=resource-queue",
            "error-response=resource-queue@0",
            "error-response=resource-queue@2/0x200",
            "stall@",
            "stall@x",
            "explode",
        ] {
            let err = bad.parse::<Fault>().unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad}");
        }
    }

    #[test]
    fn lookups_match_only_their_fault() {
        let faults = Faults::new(vec![
            "error-response=resource-queue@5".parse().unwrap(),
            "stall@9".parse().unwrap(),
        ]);
        assert_eq!(
            faults.error_response(cmd::RESOURCE_QUEUE, 5),
            Some(ErrorCode::InvalidOperation)
        );
        assert_eq!(faults.error_response(cmd::RESOURCE_QUEUE, 4), None);
        assert_eq!(faults.error_response(cmd::STREAM_DRAIN, 5), None);
        assert!(faults.stall_after(9));
        assert!(!faults.stall_after(8));
        assert!(!faults.error_event_after(9));
    }
}
