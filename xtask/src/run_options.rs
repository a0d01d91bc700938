//! How to boot: a board plus overrides, the options `run` takes and test files repeat.
//!
//! Theory of operation
//! -------------------
//! [`RunOptions`] is one `clap` argument group with two readers: `cargo xtask run` flattens
//! it into its command line, and [`RunOptions::from_words`] parses a plain word list with
//! it (the `//! xtask-qemu:` header lines of test files, the console tests' option strings),
//! so a test and a developer at the terminal spell options identically. [`split_words`]
//! turns such a line into words the way a shell would, so `--append "cma=64M loglevel=7"`
//! stays one value. Values are checked while parsing (board names, sizes, core counts), so
//! a typo fails before anything is built.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Parser};

use crate::board::check_board_name;
use crate::size::parse_size;

/// How to boot: a board plus overrides. Sizes are bytes, already validated.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Board file boards/NAME.toml [default: virt]
    #[arg(long, value_name = "NAME", value_parser = board_name)]
    pub board: Option<String>,
    /// Boot this device tree as is instead of the board's
    #[arg(long, value_name = "FILE")]
    pub dtb: Option<PathBuf>,
    /// Kernel command line (/chosen/bootargs)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// RAM size, e.g. 512M, 2G (overrides the board)
    #[arg(long = "mem", value_name = "SIZE", value_parser = parse_size)]
    pub mem_bytes: Option<u64>,
    /// Number of cores (overrides the board)
    #[arg(long, value_name = "N", value_parser = parse_smp)]
    pub smp: Option<u32>,
    /// Allocation trace for the shell's `trace show/replay` (loaded at 0x40100000, at most
    /// 1 MiB)
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// The virtio-video decoder: on, off, or auto (on when the patched QEMU is built).
    /// Default: on for boards that always have it, auto for `run`, off otherwise
    #[arg(long, value_name = "WHEN")]
    pub video: Option<VideoChoice>,
    /// H.264 (Constrained Baseline, Annex-B) clip to load for the decoder, or
    /// `generated:WxH:FRAMES[,WxH:FRAMES]` for a pattern clip made now [default: a
    /// 1280x720 clip encoded from a moving pattern at build time]
    #[arg(long, value_name = "FILE")]
    pub clip: Option<PathBuf>,
    /// Fault for the decoder device to inject (its `--fault` syntax; repeatable)
    #[arg(long = "video-fault", value_name = "SPEC")]
    pub video_faults: Vec<String>,
}

/// `--video on|off|auto`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoChoice {
    On,
    Off,
    Auto,
}

/// The word-list reader: only [`RunOptions`], no program name, no `--help`, and a later
/// occurrence of an option replaces an earlier one (header lines add up).
#[derive(Parser, Debug)]
#[command(
    name = "xtask-qemu",
    no_binary_name = true,
    disable_help_flag = true,
    args_override_self = true
)]
struct WordList {
    #[command(flatten)]
    options: RunOptions,
}

impl RunOptions {
    /// Parse options given as words (no `--debug`: the build profile is not a test's
    /// choice).
    pub fn from_words(words: &[String]) -> Result<RunOptions> {
        WordList::try_parse_from(words)
            .map(|list| list.options)
            .map_err(|e| anyhow!(clap_message(&e)))
    }
}

/// A clap error's own line, without the usage and `--help` hint that suit a terminal but
/// not a header line in a test file.
pub fn clap_message(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

fn board_name(text: &str) -> Result<String> {
    check_board_name(text)?;
    Ok(text.to_string())
}

fn parse_smp(text: &str) -> Result<u32> {
    match text.parse::<u32>() {
        Ok(n) if (1..=512).contains(&n) => Ok(n),
        _ => bail!("bad core count `{text}`: expected a number from 1 to 512"),
    }
}

/// Split like a POSIX shell does for plain words: whitespace separates, single and double
/// quotes group, backslash escapes one character outside single quotes.
pub fn split_words(text: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(inner) => current.push(inner),
                        None => bail!("unclosed ' in `{text}`"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => current.push(escaped),
                            None => bail!("trailing \\ in `{text}`"),
                        },
                        Some(inner) => current.push(inner),
                        None => bail!("unclosed \" in `{text}`"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(escaped) => {
                    in_word = true;
                    current.push(escaped);
                }
                None => bail!("trailing \\ in `{text}`"),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split_words(text).unwrap()
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            words(r#"a "b c" 'd e' f\ g"#),
            vec!["a", "b c", "d e", "f g"]
        );
        assert_eq!(words(r#"--append="x=1 y=2""#), vec!["--append=x=1 y=2"]);
        assert_eq!(words("''"), vec![""]);
        assert!(split_words("'open").is_err());
    }

    #[test]
    fn word_lists_take_every_option_but_debug() {
        let options = RunOptions::from_words(&words(
            "--board virt-2bank --append 'cma=64M loglevel=7' --mem=2G --smp 4 --dtb x.dtb \
             --trace t.bin",
        ))
        .unwrap();
        assert_eq!(
            options,
            RunOptions {
                board: Some("virt-2bank".into()),
                dtb: Some(PathBuf::from("x.dtb")),
                append: Some("cma=64M loglevel=7".into()),
                mem_bytes: Some(2 << 30),
                smp: Some(4),
                trace: Some(PathBuf::from("t.bin")),
                ..RunOptions::default()
            }
        );
        let video = RunOptions::from_words(&words(
            "--board virt-video --video on --clip c.h264 --video-fault stall@3 \
             --video-fault error-event@5",
        ))
        .unwrap();
        assert_eq!(video.video, Some(VideoChoice::On));
        assert_eq!(video.clip, Some(PathBuf::from("c.h264")));
        assert_eq!(video.video_faults, ["stall@3", "error-event@5"]);
        assert!(RunOptions::from_words(&words("--video maybe")).is_err());
        assert!(RunOptions::from_words(&words("--debug")).is_err());
        assert!(RunOptions::from_words(&words("--help")).is_err());
        let later = RunOptions::from_words(&words("--smp 1 --smp 2")).unwrap();
        assert_eq!(later.smp, Some(2), "a later line overrides an earlier one");
        assert_eq!(RunOptions::from_words(&[]).unwrap(), RunOptions::default());
    }

    #[test]
    fn word_list_errors_are_one_line_naming_the_problem() {
        let error = RunOptions::from_words(&words("--mem lots")).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("bad size `lots`"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        let unknown = format!(
            "{:#}",
            RunOptions::from_words(&words("--bogus")).unwrap_err()
        );
        assert!(unknown.contains("--bogus"), "{unknown}");
    }
}
