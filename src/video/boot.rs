//! Whether the clip starts playing at boot: the `monolith.video=` boot argument.
//!
//! `monolith.video=play` plays the clip once as soon as the shell starts, `loop` plays it
//! until `video stop`, `off` (and no argument) waits for `video play`. `cargo xtask run`
//! passes `loop` when it attaches the decoder, so a plain run shows video; the tests boot
//! without it and start plays themselves. As with every Linux parameter, the last
//! occurrence wins.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;

use crate::dt::bootargs::parse_command_line;

/// The boot argument's name.
pub const BOOT_PARAM: &str = "monolith.video";

/// What to play at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootPlay {
    Off,
    Once,
    Loop,
}

/// Read `monolith.video=` from the kernel command line; a bad value is a message (and the
/// caller plays nothing).
pub fn boot_play(bootargs: Option<&str>) -> Result<BootPlay, String> {
    let line = parse_command_line(bootargs.unwrap_or(""));
    let Some(value) = line.values(BOOT_PARAM).last() else {
        return Ok(BootPlay::Off);
    };
    match value {
        Some("play") => Ok(BootPlay::Once),
        Some("loop") => Ok(BootPlay::Loop),
        Some("off") => Ok(BootPlay::Off),
        Some(other) => Err(format!(
            "{BOOT_PARAM}={other}: not one of play, loop, off; playing nothing"
        )),
        None => Err(format!(
            "{BOOT_PARAM} needs a value (play, loop or off); playing nothing"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_value_wins_and_bad_ones_are_refused() {
        assert_eq!(boot_play(None), Ok(BootPlay::Off));
        assert_eq!(boot_play(Some("cma=64M")), Ok(BootPlay::Off));
        assert_eq!(boot_play(Some("monolith.video=play")), Ok(BootPlay::Once));
        assert_eq!(
            boot_play(Some(
                "monolith.video=play monolith.display=map monolith.video=loop"
            )),
            Ok(BootPlay::Loop)
        );
        assert_eq!(boot_play(Some("monolith.video=off")), Ok(BootPlay::Off));
        let bad = boot_play(Some("monolith.video=movie")).unwrap_err();
        assert!(bad.contains("monolith.video=movie"), "{bad}");
        assert!(boot_play(Some("monolith.video")).is_err());
        assert_eq!(boot_play(Some("-- monolith.video=loop")), Ok(BootPlay::Off));
    }
}
