//! Command-line parsing, by hand.
//!
//! Theory of operation
//! -------------------
//! The grammar is small (a verb, then `--flag`, `--flag VALUE` or `--flag=VALUE`), so a
//! hand parser keeps error messages exact and costs no dependency. The QEMU options of
//! `run` ([`RunOptions`]) are also the language of the `//! xtask-qemu: ...` header lines
//! that an in-QEMU test file may start with: [`qemu_header_options`] splits those lines like
//! a shell would (quotes group words) and feeds them to the same parser, so a test and a
//! developer at the terminal spell options identically.

use std::path::PathBuf;

use crate::Result;

pub const USAGE: &str = "\
usage: cargo xtask <verb> [options]

verbs:
  setup                      check the tools, install what is missing (Debian 12, as root)
  build [--debug]            build the firmware ELF and raw binary (release by default)
  run [options]              build, then boot the firmware in QEMU on this terminal
      --board NAME           board file boards/NAME.toml (default: virt)
      --dtb FILE             boot this device tree as is instead of the board's
      --append \"ARGS\"        kernel command line (/chosen/bootargs)
      --mem SIZE             RAM size, e.g. 512M, 2G (overrides the board)
      --smp N                number of cores (overrides the board)
      --trace FILE           allocation trace for the shell's `trace show/replay`
                             (loaded at 0x40100000, at most 1 MiB)
      --debug                boot the debug build
  test [--host-only | --qemu-only] [FILTER]
                             host unit tests, in-QEMU test images, console tests
  bench                      host benchmarks and (later) in-guest benchmarks
  profile [FILTER] [--top N] instructions by function between the profile markers of the
                             tests/profile_*.rs images (QEMU execution log; default top 30)
  help                       this text";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Release,
    Debug,
}

impl Profile {
    /// The directory cargo puts this profile's output in.
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub profile: Profile,
}

/// How to boot: a board plus overrides. Sizes are bytes, already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub board: Option<String>,
    pub dtb: Option<PathBuf>,
    pub append: Option<String>,
    pub mem_bytes: Option<u64>,
    pub smp: Option<u32>,
    pub debug: bool,
    /// Shell allocation trace for QEMU's loader to place at [`crate::qemu::TRACE_ADDR`].
    pub trace: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestOptions {
    pub host: bool,
    pub qemu: bool,
    /// Substring that test names must contain (host tests get it as cargo's filter).
    pub filter: Option<String>,
}

/// How many rows each of `profile`'s tables shows unless `--top` says otherwise.
pub const DEFAULT_PROFILE_TOP: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOptions {
    /// Substring that the names of the `profile_*` images to run must contain.
    pub filter: Option<String>,
    /// Rows per table.
    pub top: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Setup,
    Build(BuildOptions),
    Run(RunOptions),
    Test(TestOptions),
    Bench,
    Profile(ProfileOptions),
}

pub fn parse_command(argv: &[String]) -> Result<Command> {
    let Some((verb, rest)) = argv.split_first() else {
        return Ok(Command::Help);
    };
    match verb.as_str() {
        "help" | "--help" | "-h" => Ok(Command::Help),
        "setup" => no_arguments("setup", rest).map(|_| Command::Setup),
        "bench" => no_arguments("bench", rest).map(|_| Command::Bench),
        "build" => parse_build(rest).map(Command::Build),
        "run" => parse_run_options(rest, true).map(Command::Run),
        "test" => parse_test(rest).map(Command::Test),
        "profile" => parse_profile(rest).map(Command::Profile),
        other => Err(format!("unknown verb `{other}`")),
    }
}

fn no_arguments(verb: &str, rest: &[String]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(extra) => Err(format!("`{verb}` takes no arguments, got `{extra}`")),
    }
}

fn parse_build(rest: &[String]) -> Result<BuildOptions> {
    let mut profile = Profile::Release;
    for arg in rest {
        match arg.as_str() {
            "--debug" => profile = Profile::Debug,
            "--release" => profile = Profile::Release,
            other => return Err(format!("`build`: unknown option `{other}`")),
        }
    }
    Ok(BuildOptions { profile })
}

fn parse_test(rest: &[String]) -> Result<TestOptions> {
    let mut host_only = false;
    let mut qemu_only = false;
    let mut filter = None;
    for arg in rest {
        match arg.as_str() {
            "--host-only" => host_only = true,
            "--qemu-only" => qemu_only = true,
            flag if flag.starts_with('-') => {
                return Err(format!("`test`: unknown option `{flag}`"))
            }
            name => {
                if filter.replace(name.to_string()).is_some() {
                    return Err("`test`: give at most one name filter".to_string());
                }
            }
        }
    }
    if host_only && qemu_only {
        return Err("`test`: --host-only and --qemu-only exclude each other".to_string());
    }
    Ok(TestOptions {
        host: !qemu_only,
        qemu: !host_only,
        filter,
    })
}

fn parse_profile(rest: &[String]) -> Result<ProfileOptions> {
    let mut filter = None;
    let mut top = DEFAULT_PROFILE_TOP;
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        let top_value = match word.as_str() {
            "--top" => Some(
                words
                    .next()
                    .ok_or_else(|| "`profile`: `--top` needs a value".to_string())?
                    .as_str(),
            ),
            other => other.strip_prefix("--top="),
        };
        if let Some(value) = top_value {
            top = match value.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                    "`profile`: bad `--top` value `{value}`: expected a number of rows, 1 or more"
                ))
                }
            };
            continue;
        }
        if word.starts_with('-') {
            return Err(format!("`profile`: unknown option `{word}`"));
        }
        if filter.replace(word.clone()).is_some() {
            return Err("`profile`: give at most one image-name filter".to_string());
        }
    }
    Ok(ProfileOptions { filter, top })
}

/// Parse `run`'s options. `allow_debug` is false for test headers, where the build profile
/// is not the test's choice.
pub fn parse_run_options(rest: &[String], allow_debug: bool) -> Result<RunOptions> {
    let mut options = RunOptions::default();
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        let (flag, inline_value) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (word.as_str(), None),
        };
        let mut value = || -> Result<String> {
            match inline_value.clone() {
                Some(value) => Ok(value),
                None => words
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("`{flag}` needs a value")),
            }
        };
        match flag {
            "--board" => {
                let name = value()?;
                crate::board::check_board_name(&name)?;
                options.board = Some(name);
            }
            "--dtb" => options.dtb = Some(PathBuf::from(value()?)),
            "--append" => options.append = Some(value()?),
            "--mem" => options.mem_bytes = Some(parse_size(&value()?)?),
            "--smp" => options.smp = Some(parse_smp(&value()?)?),
            "--trace" => options.trace = Some(PathBuf::from(value()?)),
            "--debug" if allow_debug && inline_value.is_none() => options.debug = true,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(options)
}

/// A RAM size the way QEMU's `-m` reads it: a number with an optional K/M/G/T suffix
/// (binary units, optional trailing `B` or `iB`); a bare number means MiB, as in QEMU.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || format!("bad size `{text}`: expected e.g. 512M, 1G, 2048 (MiB)");
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let unitless = lower.trim_end_matches("ib").trim_end_matches('b');
    let digits_end = unitless
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unitless.len());
    let (digits, suffix) = unitless.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match suffix {
        "" | "m" => 20,
        "k" => 10,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    let bytes = number.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if bytes == 0 || bytes % (1 << 20) != 0 {
        return Err(format!(
            "bad size `{text}`: must be a non-zero whole number of MiB"
        ));
    }
    Ok(bytes)
}

fn parse_smp(text: &str) -> Result<u32> {
    match text.parse::<u32>() {
        Ok(n) if (1..=512).contains(&n) => Ok(n),
        _ => Err(format!(
            "bad core count `{text}`: expected a number from 1 to 512"
        )),
    }
}

/// Format bytes for QEMU's `-m`, in MiB so no precision is lost.
pub fn size_for_qemu(bytes: u64) -> String {
    format!("{}M", bytes >> 20)
}

/// Collect the options of the `//! xtask-qemu: ...` lines at the top of a test file. Only
/// the leading block of `//!` lines is read: a header is a header, not any line in the file.
pub fn qemu_header_options(source: &str) -> Result<RunOptions> {
    let mut words = Vec::new();
    for line in source.lines() {
        let Some(doc) = line.trim_start().strip_prefix("//!") else {
            break;
        };
        if let Some(options) = doc.trim_start().strip_prefix("xtask-qemu:") {
            words.extend(split_words(options)?);
        }
    }
    parse_run_options(&words, false).map_err(|e| format!("`//! xtask-qemu:` header: {e}"))
}

/// An image whose correct outcome is to stop the machine (a fatal fault, a refused device
/// tree) says so with `//! xtask-expect-stop: REGEX`: it passes when QEMU exits on its own
/// with a failure status, the output matches REGEX, and the stop was reported only once
/// (no fault loop).
pub fn expected_stop(source: &str) -> Option<String> {
    source
        .lines()
        .map_while(|line| line.trim_start().strip_prefix("//!"))
        .find_map(|doc| doc.trim_start().strip_prefix("xtask-expect-stop:"))
        .map(|pattern| pattern.trim().to_string())
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
                        None => return Err(format!("unclosed ' in `{text}`")),
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
                            None => return Err(format!("trailing \\ in `{text}`")),
                        },
                        Some(inner) => current.push(inner),
                        None => return Err(format!("unclosed \" in `{text}`")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(escaped) => {
                    in_word = true;
                    current.push(escaped);
                }
                None => return Err(format!("trailing \\ in `{text}`")),
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
mod expected_stop_tests {
    use super::expected_stop;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(text: &str) -> Vec<String> {
        split_words(text).unwrap()
    }

    #[test]
    fn no_verb_means_help() {
        assert_eq!(parse_command(&[]).unwrap(), Command::Help);
    }

    #[test]
    fn unknown_verb_and_option_are_errors() {
        assert!(parse_command(&argv("frobnicate"))
            .unwrap_err()
            .contains("frobnicate"));
        assert!(parse_command(&argv("run --bogus"))
            .unwrap_err()
            .contains("--bogus"));
        assert!(parse_command(&argv("setup now")).is_err());
        assert!(parse_command(&argv("build --fast")).is_err());
    }

    #[test]
    fn build_defaults_to_release() {
        assert_eq!(
            parse_command(&argv("build")).unwrap(),
            Command::Build(BuildOptions {
                profile: Profile::Release
            })
        );
        assert_eq!(
            parse_command(&argv("build --debug")).unwrap(),
            Command::Build(BuildOptions {
                profile: Profile::Debug
            })
        );
    }

    #[test]
    fn run_options_both_spellings() {
        let parsed = parse_command(&argv(
            "run --board virt-2bank --append 'cma=64M loglevel=7' --mem=2G --smp 4 --debug --dtb x.dtb --trace t.bin",
        ))
        .unwrap();
        assert_eq!(
            parsed,
            Command::Run(RunOptions {
                board: Some("virt-2bank".into()),
                dtb: Some(PathBuf::from("x.dtb")),
                append: Some("cma=64M loglevel=7".into()),
                mem_bytes: Some(2 << 30),
                smp: Some(4),
                debug: true,
                trace: Some(PathBuf::from("t.bin")),
            })
        );
    }

    #[test]
    fn run_option_missing_value() {
        assert!(parse_command(&argv("run --board"))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_command(&argv("run --smp 0")).is_err());
        assert!(parse_command(&argv("run --smp many")).is_err());
        assert!(parse_command(&argv("run --board ../etc/passwd")).is_err());
    }

    #[test]
    fn test_verb_modes_and_filter() {
        assert_eq!(
            parse_command(&argv("test")).unwrap(),
            Command::Test(TestOptions {
                host: true,
                qemu: true,
                filter: None
            })
        );
        assert_eq!(
            parse_command(&argv("test --qemu-only boot")).unwrap(),
            Command::Test(TestOptions {
                host: false,
                qemu: true,
                filter: Some("boot".into())
            })
        );
        assert!(parse_command(&argv("test --host-only --qemu-only")).is_err());
        assert!(parse_command(&argv("test a b")).is_err());
    }

    #[test]
    fn profile_verb_filter_and_top() {
        assert_eq!(
            parse_command(&argv("profile")).unwrap(),
            Command::Profile(ProfileOptions {
                filter: None,
                top: DEFAULT_PROFILE_TOP
            })
        );
        let expected = Command::Profile(ProfileOptions {
            filter: Some("cma".into()),
            top: 10,
        });
        assert_eq!(
            parse_command(&argv("profile cma --top 10")).unwrap(),
            expected
        );
        assert_eq!(
            parse_command(&argv("profile --top=10 cma")).unwrap(),
            expected
        );
        assert!(parse_command(&argv("profile --top"))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_command(&argv("profile --top 0")).is_err());
        assert!(parse_command(&argv("profile --top=many")).is_err());
        assert!(parse_command(&argv("profile --fast")).is_err());
        assert!(parse_command(&argv("profile a b")).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2048").unwrap(), 2048 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1048576k").unwrap(), 1 << 30);
        assert!(parse_size("0").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("100k").is_err(), "not a whole MiB");
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err(), "overflow");
        assert_eq!(size_for_qemu(2 << 30), "2048M");
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            argv(r#"a "b c" 'd e' f\ g"#),
            vec!["a", "b c", "d e", "f g"]
        );
        assert_eq!(argv(r#"--append="x=1 y=2""#), vec!["--append=x=1 y=2"]);
        assert_eq!(argv("''"), vec![""]);
        assert!(split_words("'open").is_err());
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
        let err = qemu_header_options("//! xtask-qemu: --mem lots\n").unwrap_err();
        assert!(err.contains("xtask-qemu"), "{err}");
        assert_eq!(
            qemu_header_options("fn main() {}\n").unwrap(),
            RunOptions::default()
        );
    }
}
