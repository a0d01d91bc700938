//! What the screen shows from boot on: the `monolith.display=` boot argument.
//!
//! `monolith.display=map` shows the live memory map as soon as the shell starts,
//! `pattern` the test pattern, `off` (and no argument) nothing until `gpu map` or
//! `gpu pattern`. `cargo xtask run` passes `map` on boards with a GPU, so a plain run
//! shows memory; the tests boot without it, so the framebuffer only takes CMA pages when
//! a test asks for it. As with every Linux parameter, the last occurrence wins.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;

use crate::dt::bootargs::parse_command_line;

/// The boot argument's name.
pub const BOOT_PARAM: &str = "monolith.display";

/// What to show at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootScreen {
    Off,
    Pattern,
    Map,
}

/// Read `monolith.display=` from the kernel command line; a bad value is a message (and
/// the caller shows nothing).
pub fn boot_screen(bootargs: Option<&str>) -> Result<BootScreen, String> {
    let line = parse_command_line(bootargs.unwrap_or(""));
    let Some(value) = line.values(BOOT_PARAM).last() else {
        return Ok(BootScreen::Off);
    };
    match value {
        Some("map") => Ok(BootScreen::Map),
        Some("pattern") => Ok(BootScreen::Pattern),
        Some("off") => Ok(BootScreen::Off),
        Some(other) => Err(format!(
            "{BOOT_PARAM}={other}: not one of map, pattern, off; showing nothing"
        )),
        None => Err(format!(
            "{BOOT_PARAM} needs a value (map, pattern or off); showing nothing"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_value_wins_and_bad_ones_are_refused() {
        assert_eq!(boot_screen(None), Ok(BootScreen::Off));
        assert_eq!(boot_screen(Some("console=ttyAMA0")), Ok(BootScreen::Off));
        assert_eq!(
            boot_screen(Some("monolith.display=map")),
            Ok(BootScreen::Map)
        );
        assert_eq!(
            boot_screen(Some(
                "monolith.display=map cma=64M monolith.display=pattern"
            )),
            Ok(BootScreen::Pattern)
        );
        assert_eq!(
            boot_screen(Some("monolith.display=off")),
            Ok(BootScreen::Off)
        );
        let bad = boot_screen(Some("monolith.display=movie")).unwrap_err();
        assert!(bad.contains("monolith.display=movie"), "{bad}");
        assert!(boot_screen(Some("monolith.display")).is_err());
        // Arguments after `--` belong to init, as in Linux.
        assert_eq!(
            boot_screen(Some("-- monolith.display=map")),
            Ok(BootScreen::Off)
        );
    }
}
