//! The header of an in-QEMU test file: its leading block of `//!` lines.
//!
//! Two kinds of line there speak to xtask: `//! xtask-qemu: <run options>` (how to boot
//! the image, [`qemu_header_options`]) and `//! xtask-expect-stop: REGEX` (the image must
//! stop the machine, [`expected_stop`]). Only the leading block is read: a header is a
//! header, not any line in the file.

use anyhow::{Context, Result};

use crate::run_options::{split_words, RunOptions};

/// The leading `//!` lines' text, after the `//!`.
fn header_lines(source: &str) -> impl Iterator<Item = &str> {
    source
        .lines()
        .map_while(|line| line.trim_start().strip_prefix("//!"))
        .map(str::trim_start)
}

/// Collect the options of the `//! xtask-qemu: ...` lines at the top of a test file.
pub fn qemu_header_options(source: &str) -> Result<RunOptions> {
    let parse = || -> Result<RunOptions> {
        let mut words = Vec::new();
        for options in header_lines(source).filter_map(|doc| doc.strip_prefix("xtask-qemu:")) {
            words.extend(split_words(options)?);
        }
        RunOptions::from_words(&words)
    };
    parse().context("`//! xtask-qemu:` header")
}

/// An image whose correct outcome is to stop the machine (a fatal fault, a refused device
/// tree) says so with `//! xtask-expect-stop: REGEX`: it passes when QEMU exits on its own
/// with a failure status, the output matches REGEX, and the stop was reported only once
/// (no fault loop).
pub fn expected_stop(source: &str) -> Option<String> {
    header_lines(source)
        .find_map(|doc| doc.strip_prefix("xtask-expect-stop:"))
        .map(|pattern| pattern.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_stop_header_is_read_from_the_leading_doc_lines_only() {
        let source = "//! Fault test.\n//! xtask-expect-stop: Data Abort.*\n#![no_std]\n";
        assert_eq!(expected_stop(source).as_deref(), Some("Data Abort.*"));
        assert_eq!(expected_stop("//! plain\n#![no_std]\n"), None);
        assert_eq!(
            expected_stop("#![no_std]\n//! xtask-expect-stop: x\n"),
            None
        );
    }

    #[test]
    fn header_lines_are_collected_from_the_leading_doc_block() {
        let source = "//! Boot on two banks.\n\
                      //! xtask-qemu: --board virt-2bank --smp 1\n\
                      //! xtask-qemu: --append \"cma=32M\"\n\
                      #![no_std]\n\
                      //! xtask-qemu: --mem 4G\n";
        let options = qemu_header_options(source).unwrap();
        assert_eq!(options.board.as_deref(), Some("virt-2bank"));
        assert_eq!(options.smp, Some(1));
        assert_eq!(options.append.as_deref(), Some("cma=32M"));
        assert_eq!(
            options.mem_bytes, None,
            "lines after the header block are code, not header"
        );
    }

    #[test]
    fn header_rejects_debug_and_unknown() {
        assert!(qemu_header_options("//! xtask-qemu: --debug\n").is_err());
        let err = format!(
            "{:#}",
            qemu_header_options("//! xtask-qemu: --mem lots\n").unwrap_err()
        );
        assert!(err.contains("xtask-qemu"), "{err}");
        assert_eq!(
            qemu_header_options("fn main() {}\n").unwrap(),
            RunOptions::default()
        );
    }
}
