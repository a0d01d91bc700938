//! Boot arguments (`/chosen/bootargs`) the way Linux reads them.
//!
//! # Theory of operation
//!
//! The command line is split into `param[=value]` tokens with the rules of Linux's
//! `next_arg()` (lib/cmdline.c): tokens are separated by white space unless inside double
//! quotes; a leading quote on the whole token or on the value is dropped together with a
//! trailing quote; the first `=` separates the parameter from its value. A bare `--` ends
//! the kernel's arguments: everything after it belongs to init and is never interpreted
//! here (Linux's `parse_args()` stops there as well).
//!
//! Numbers with size suffixes go through [`memparse`], a copy of Linux's `memparse()`:
//! C-style radix detection (`0x` hex, leading `0` octal, else decimal) followed by an
//! optional `K`/`M`/`G`/`T`/`P`/`E` suffix, each a further shift by 10.
//!
//! `cma=nn[KMG][@start[KMG][-end[KMG]]]` becomes a [`CmaRequest`] with the three numbers
//! `early_cma()` records (`size_cmdline`, `base_cmdline`, `limit_cmdline`). Like Linux,
//! later `cma=` occurrences overwrite earlier ones field by field (a later `cma=32M`
//! keeps an earlier `@start-end`). Rounding and placement belong to the reserved-memory
//! planner ([`super::reserved`]), as they belong to `dma_contiguous_reserve()` in Linux.
//!
//! Where Linux would silently read garbage as zero (`cma=abc` is `cma=0` there, which
//! disables the default area), we refuse the value with a message instead: a typo must
//! not silently take away the default CMA area. A literal `cma=0` still disables it.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::mm::CmaFit;

/// One `param[=value]` token, quotes already removed as Linux removes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootArg<'a> {
    pub param: &'a str,
    /// `None` when the token has no `=`; `Some("")` for `param=`.
    pub value: Option<&'a str>,
}

/// A command line split at `--`: the kernel's tokens and the ones handed on to init.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine<'a> {
    pub kernel: Vec<BootArg<'a>>,
    pub init: Vec<BootArg<'a>>,
}

impl<'a> CommandLine<'a> {
    /// Value of every kernel occurrence of `param`, in command-line order. Linux compares
    /// parameter names treating `-` and `_` as the same character (`parameq()`).
    pub fn values<'s>(&'s self, param: &'s str) -> impl Iterator<Item = Option<&'a str>> + 's {
        self.kernel
            .iter()
            .filter(move |arg| param_eq(arg.param, param))
            .map(|arg| arg.value)
    }

    /// True when `param` appears among the kernel arguments (with or without a value).
    pub fn has(&self, param: &str) -> bool {
        self.kernel.iter().any(|arg| param_eq(arg.param, param))
    }
}

fn param_eq(a: &str, b: &str) -> bool {
    let dash_is_underscore = |c: u8| if c == b'-' { b'_' } else { c };
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| dash_is_underscore(x) == dash_is_underscore(y))
}

/// Linux's `isspace()` for the C locale: space, \t, \n, \v, \f, \r.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_spaces(s: &str) -> &str {
    let skipped = s.bytes().take_while(|b| is_space(*b)).count();
    &s[skipped..]
}

/// Split `cmdline` into tokens. Never fails: every byte string is some command line.
pub fn parse_command_line(cmdline: &str) -> CommandLine<'_> {
    let mut line = CommandLine::default();
    let mut rest = skip_spaces(cmdline);
    let mut after_double_dash = false;
    while !rest.is_empty() {
        let (arg, next) = next_arg(rest);
        rest = next;
        if !after_double_dash && arg.value.is_none() && arg.param == "--" {
            after_double_dash = true;
            continue;
        }
        if after_double_dash {
            line.init.push(arg);
        } else {
            line.kernel.push(arg);
        }
    }
    line
}

/// One token of `args` (which starts at a non-space) and the remainder after it, following
/// Linux's `next_arg()`. All byte positions used for slicing hold ASCII characters (quote,
/// `=`, white space), so every slice falls on a UTF-8 boundary.
fn next_arg(args: &str) -> (BootArg<'_>, &str) {
    let bytes = args.as_bytes();
    let mut start = 0;
    let mut in_quote = false;
    let mut quoted = false;
    if bytes.first() == Some(&b'"') {
        start = 1;
        in_quote = true;
        quoted = true;
    }
    let mut end = start;
    // Linux records the first '=' at a position > 0 of the (unquoted) token; an '=' at
    // position 0 leaves `equals` at 0, which means "none yet".
    let mut equals = 0;
    while end < bytes.len() {
        let b = bytes[end];
        if is_space(b) && !in_quote {
            break;
        }
        if equals == 0 && b == b'=' {
            equals = end - start;
        }
        if b == b'"' {
            in_quote = !in_quote;
        }
        end += 1;
    }
    let token_ends_in_quote = end > start && bytes[end - 1] == b'"';
    let (param, value) = if equals == 0 {
        let param_end = if quoted && token_ends_in_quote {
            end - 1
        } else {
            end
        };
        (&args[start..param_end], None)
    } else {
        let eq = start + equals;
        let mut value_start = eq + 1;
        let mut value_end = end;
        if bytes.get(value_start) == Some(&b'"') {
            value_start += 1;
            if token_ends_in_quote {
                value_end = end - 1;
            }
        } else if quoted && token_ends_in_quote {
            value_end = end - 1;
        }
        // `"a="` leaves the opening quote of the value as the last byte: empty value.
        let value_end = value_end.max(value_start);
        (&args[start..eq], Some(&args[value_start..value_end]))
    };
    let rest = if end < bytes.len() {
        &args[end + 1..]
    } else {
        &args[end..]
    };
    (BootArg { param, value }, skip_spaces(rest))
}

/// Why a size/address could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemparseError {
    /// No digit where a number must start.
    NoDigits,
    /// The number or its suffix shift does not fit in 64 bits.
    Overflow,
}

/// Linux's `memparse()`: a number with C radix prefix and an optional binary-size suffix.
/// Returns the value and the unparsed rest. Linux wraps on overflow; we report it, because
/// a wrapped size would silently describe a different region.
pub fn memparse(s: &str) -> Result<(u64, &str), MemparseError> {
    let bytes = s.as_bytes();
    let (radix, digits_start) = match bytes {
        [b'0', x, h, ..] if (*x == b'x' || *x == b'X') && h.is_ascii_hexdigit() => (16, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let mut value: u64 = 0;
    let mut pos = digits_start;
    while let Some(digit) = bytes.get(pos).and_then(|b| (*b as char).to_digit(radix)) {
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(MemparseError::Overflow)?;
        pos += 1;
    }
    if pos == digits_start {
        return Err(MemparseError::NoDigits);
    }
    let shift = match bytes.get(pos).map(|b| b.to_ascii_uppercase()) {
        Some(b'K') => 10,
        Some(b'M') => 20,
        Some(b'G') => 30,
        Some(b'T') => 40,
        Some(b'P') => 50,
        Some(b'E') => 60,
        _ => 0,
    };
    if shift != 0 {
        pos += 1;
        if value.leading_zeros() < shift {
            return Err(MemparseError::Overflow);
        }
        value <<= shift;
    }
    Ok((value, &s[pos..]))
}

/// The `cma=` request as `early_cma()` records it, before any rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmaRequest {
    /// Bytes asked for; 0 means "no default CMA area at all".
    pub size: u64,
    /// Lowest acceptable base (0: anywhere).
    pub base: u64,
    /// End of the window the area must fit below (0: no limit).
    pub limit: u64,
}

impl CmaRequest {
    /// `cma=size@base` without `-end` asks for exactly `base`, as in
    /// `dma_contiguous_reserve()` (`base_cmdline + size_cmdline == limit_cmdline`).
    pub fn is_fixed(&self) -> bool {
        self.base != 0 && self.base.checked_add(self.size) == Some(self.limit)
    }
}

/// Why one `cma=` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmaArgError {
    /// The size, start or end is not a number.
    Garbage { field: &'static str },
    /// A number does not fit in 64 bits.
    Overflow { field: &'static str },
}

/// The three fields of one `cma=` value; `None` for those it does not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmaValue {
    pub size: u64,
    pub base: Option<u64>,
    pub limit: Option<u64>,
    /// Characters after the last number that Linux silently ignores.
    pub has_trailing_text: bool,
}

/// Parse one `cma=` value exactly as `early_cma()` walks it.
pub fn parse_cma_value(value: &str) -> Result<CmaValue, CmaArgError> {
    let field_error = |field: &'static str| {
        move |e: MemparseError| match e {
            MemparseError::NoDigits => CmaArgError::Garbage { field },
            MemparseError::Overflow => CmaArgError::Overflow { field },
        }
    };
    let (size, rest) = memparse(value).map_err(field_error("size"))?;
    let Some(after_at) = rest.strip_prefix('@') else {
        return Ok(CmaValue {
            size,
            base: None,
            limit: None,
            has_trailing_text: !rest.is_empty(),
        });
    };
    let (base, rest) = memparse(after_at).map_err(field_error("start"))?;
    let Some(after_dash) = rest.strip_prefix('-') else {
        // early_cma(): no explicit end means "exactly at base".
        let limit = base
            .checked_add(size)
            .ok_or(CmaArgError::Overflow { field: "start" })?;
        return Ok(CmaValue {
            size,
            base: Some(base),
            limit: Some(limit),
            has_trailing_text: !rest.is_empty(),
        });
    };
    let (limit, rest) = memparse(after_dash).map_err(field_error("end"))?;
    Ok(CmaValue {
        size,
        base: Some(base),
        limit: Some(limit),
        has_trailing_text: !rest.is_empty(),
    })
}

/// Fold every kernel `cma=` of `line` into one request the way repeated `early_cma()`
/// calls do. Refused values leave the request as it was; each problem adds one message.
/// `None` when no usable `cma=` was given (the tree's default area then stands).
pub fn cma_request(line: &CommandLine<'_>, messages: &mut Vec<String>) -> Option<CmaRequest> {
    let mut request: Option<CmaRequest> = None;
    let mut seen = 0usize;
    for value in line.values("cma") {
        seen += 1;
        let Some(text) = value else {
            messages.push(String::from(
                "cma: no value given (expected cma=nn[KMG][@start[KMG][-end[KMG]]]); ignored",
            ));
            continue;
        };
        if text.is_empty() {
            // early_cma(): memparse("") reads 0, so `cma=` asks for no default area at
            // all and bypasses the tree's linux,cma-default pool too (the planner says so).
            let mut next = request.unwrap_or(CmaRequest {
                size: 0,
                base: 0,
                limit: 0,
            });
            next.size = 0;
            request = Some(next);
            continue;
        }
        match parse_cma_value(text) {
            Ok(parsed) => {
                if parsed.has_trailing_text {
                    messages.push(format!(
                        "cma={text}: trailing characters after the numbers ignored, as Linux does"
                    ));
                }
                let mut next = request.unwrap_or(CmaRequest { size: 0, base: 0, limit: 0 });
                next.size = parsed.size;
                if let Some(base) = parsed.base {
                    next.base = base;
                }
                if let Some(limit) = parsed.limit {
                    next.limit = limit;
                }
                request = Some(next);
            }
            Err(CmaArgError::Garbage { field }) => messages.push(format!(
                "cma={text}: {field} is not a number (expected cma=nn[KMG][@start[KMG][-end[KMG]]]); ignored"
            )),
            Err(CmaArgError::Overflow { field }) => {
                messages.push(format!("cma={text}: {field} does not fit in 64 bits; ignored"))
            }
        }
    }
    if seen > 1 && request.is_some() {
        messages.push(format!(
            "cma= given {seen} times: later values override earlier ones field by field, as Linux does"
        ));
    }
    request
}

/// Our boot argument choosing every CMA area's placement policy.
pub const CMA_FIT_PARAM: &str = "monolith.cma_fit";

/// `monolith.cma_fit=first-fit|best-fit`: the last occurrence wins, as with every
/// parameter. A bad value is a message and changes nothing (the areas keep their own
/// `monolith,cma-fit` or the default).
pub fn cma_fit_request(line: &CommandLine<'_>, messages: &mut Vec<String>) -> Option<CmaFit> {
    let value = line.values(CMA_FIT_PARAM).last()?;
    let fit = value.and_then(CmaFit::parse);
    if fit.is_none() {
        messages.push(format!(
            "{CMA_FIT_PARAM}={}: not first-fit or best-fit; ignored",
            value.unwrap_or("")
        ));
    }
    fit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_args(s: &str) -> Vec<(&str, Option<&str>)> {
        parse_command_line(s)
            .kernel
            .iter()
            .map(|a| (a.param, a.value))
            .collect()
    }

    #[test]
    fn splits_on_white_space_and_first_equals() {
        assert_eq!(
            kernel_args("  console=ttyAMA0,115200 \t quiet  root=/dev/vda1 a=b=c"),
            [
                ("console", Some("ttyAMA0,115200")),
                ("quiet", None),
                ("root", Some("/dev/vda1")),
                ("a", Some("b=c"))
            ]
        );
        assert!(kernel_args("").is_empty());
        assert!(kernel_args("   \n ").is_empty());
        assert_eq!(kernel_args("empty="), [("empty", Some(""))]);
    }

    #[test]
    fn quotes_follow_linux_next_arg() {
        assert_eq!(
            kernel_args(r#"dyndbg="file foo.c +p" x"#),
            [("dyndbg", Some("file foo.c +p")), ("x", None)]
        );
        assert_eq!(
            kernel_args(r#""name=a b" next"#),
            [("name", Some("a b")), ("next", None)]
        );
        assert_eq!(kernel_args(r#""just words""#), [("just words", None)]);
        // Quotes in the middle stay, but still protect the space.
        assert_eq!(kernel_args(r#"a"b c"d"#), [(r#"a"b c"d"#, None)]);
        // An unterminated quote swallows the rest of the line.
        assert_eq!(kernel_args(r#"p="open ended"#), [("p", Some("open ended"))]);
        assert_eq!(kernel_args(r#"p="" q"#), [("p", Some("")), ("q", None)]);
        assert_eq!(kernel_args(r#"""#), [("", None)]);
    }

    #[test]
    fn double_dash_hands_the_rest_to_init() {
        let line = parse_command_line("cma=64M -- cma=128M single");
        assert_eq!(
            line.kernel,
            [BootArg {
                param: "cma",
                value: Some("64M")
            }]
        );
        assert_eq!(line.init.len(), 2);
        let mut messages = Vec::new();
        assert_eq!(
            cma_request(&line, &mut messages).map(|r| r.size),
            Some(64 << 20)
        );
    }

    #[test]
    fn dash_and_underscore_are_the_same_in_names() {
        let line = parse_command_line("foo-bar=1");
        assert!(line.has("foo_bar"));
        assert!(!line.has("foo"));
    }

    #[test]
    fn memparse_matches_linux() {
        assert_eq!(memparse("64M"), Ok((64 << 20, "")));
        assert_eq!(memparse("64m@"), Ok((64 << 20, "@")));
        assert_eq!(memparse("0x50000000-"), Ok((0x5000_0000, "-")));
        assert_eq!(memparse("0X10k"), Ok((0x10 << 10, "")));
        assert_eq!(memparse("010"), Ok((8, "")), "leading zero is octal");
        assert_eq!(memparse("09"), Ok((0, "9")), "9 is not an octal digit");
        assert_eq!(
            memparse("0xg"),
            Ok((0, "xg")),
            "0x without hex digit is octal 0"
        );
        assert_eq!(memparse("1G"), Ok((1 << 30, "")));
        assert_eq!(memparse("2T"), Ok((2 << 40, "")));
        assert_eq!(memparse("1E"), Ok((1 << 60, "")));
        assert_eq!(memparse("123"), Ok((123, "")));
        assert_eq!(memparse("5Mi"), Ok((5 << 20, "i")));
        assert_eq!(memparse("abc"), Err(MemparseError::NoDigits));
        assert_eq!(memparse(""), Err(MemparseError::NoDigits));
        assert_eq!(memparse("-5M"), Err(MemparseError::NoDigits));
        assert_eq!(memparse("16E"), Err(MemparseError::Overflow));
        assert_eq!(
            memparse("99999999999999999999"),
            Err(MemparseError::Overflow)
        );
    }

    #[test]
    fn cma_forms() {
        assert_eq!(
            parse_cma_value("256M"),
            Ok(CmaValue {
                size: 256 << 20,
                base: None,
                limit: None,
                has_trailing_text: false
            })
        );
        let fixed = parse_cma_value("64M@0x50000000").unwrap();
        assert_eq!(
            (fixed.base, fixed.limit),
            (Some(0x5000_0000), Some(0x5400_0000))
        );
        let window = parse_cma_value("64M@1G-0x60000000").unwrap();
        assert_eq!(
            (window.base, window.limit),
            (Some(1 << 30), Some(0x6000_0000))
        );
        assert_eq!(
            parse_cma_value("xyz"),
            Err(CmaArgError::Garbage { field: "size" })
        );
        assert_eq!(
            parse_cma_value("64M@"),
            Err(CmaArgError::Garbage { field: "start" })
        );
        assert_eq!(
            parse_cma_value("64M@1G-"),
            Err(CmaArgError::Garbage { field: "end" })
        );
        assert!(parse_cma_value("64Mjunk").unwrap().has_trailing_text);
    }

    #[test]
    /// `early_cma()` hands `memparse` the empty string, which reads as 0: `cma=` asks for
    /// no default CMA area, exactly as `cma=0` does (and the tree's default is dropped).
    fn cma_with_an_empty_value_is_size_zero() {
        let mut messages = Vec::new();
        let empty = cma_request(&parse_command_line("cma="), &mut messages);
        assert_eq!(
            empty,
            Some(CmaRequest {
                size: 0,
                base: 0,
                limit: 0
            })
        );
        assert!(messages.is_empty(), "{messages:?}");
        // A later `cma=` overrides an earlier size, as repeated early_cma() calls do.
        let later = cma_request(&parse_command_line("cma=64M cma="), &mut Vec::new());
        assert_eq!(later.map(|r| r.size), Some(0));
    }

    #[test]
    fn cma_request_fixed_and_window() {
        let mut messages = Vec::new();
        let fixed = cma_request(&parse_command_line("cma=64M@0x50000000"), &mut messages).unwrap();
        assert!(fixed.is_fixed());
        let window = cma_request(
            &parse_command_line("cma=64M@0x50000000-0x60000000"),
            &mut messages,
        )
        .unwrap();
        assert!(!window.is_fixed());
        let anywhere = cma_request(&parse_command_line("cma=64M"), &mut messages).unwrap();
        assert_eq!(
            anywhere,
            CmaRequest {
                size: 64 << 20,
                base: 0,
                limit: 0
            }
        );
        assert!(!anywhere.is_fixed());
        assert!(messages.is_empty(), "{messages:?}");
    }

    #[test]
    fn cma_zero_is_a_request_garbage_is_not() {
        let mut messages = Vec::new();
        let zero = cma_request(&parse_command_line("cma=0"), &mut messages);
        assert_eq!(
            zero,
            Some(CmaRequest {
                size: 0,
                base: 0,
                limit: 0
            })
        );
        assert!(messages.is_empty());

        for bad in [
            "cma=banana",
            "cma",
            "cma=@0x40000000",
            "cma=99999999999999999999",
        ] {
            let mut messages = Vec::new();
            assert_eq!(
                cma_request(&parse_command_line(bad), &mut messages),
                None,
                "{bad}"
            );
            assert_eq!(messages.len(), 1, "{bad}: {messages:?}");
            assert!(messages[0].contains("ignored"), "{bad}: {messages:?}");
        }
    }

    #[test]
    fn repeated_cma_overrides_field_by_field() {
        let mut messages = Vec::new();
        let line = parse_command_line("cma=64M@0x50000000 cma=32M");
        let request = cma_request(&line, &mut messages).unwrap();
        assert_eq!(
            request,
            CmaRequest {
                size: 32 << 20,
                base: 0x5000_0000,
                limit: 0x5400_0000
            }
        );
        assert!(!request.is_fixed());
        assert_eq!(messages.len(), 1);

        // A refused later value leaves the earlier one standing.
        let mut messages = Vec::new();
        let line = parse_command_line("cma=64M cma=lots");
        assert_eq!(
            cma_request(&line, &mut messages).map(|r| r.size),
            Some(64 << 20)
        );
        assert_eq!(messages.len(), 2, "{messages:?}");
    }

    #[test]
    fn cma_fit_last_value_wins_and_bad_values_are_named() {
        let fit = |line: &str, messages: &mut Vec<String>| {
            cma_fit_request(&parse_command_line(line), messages)
        };
        let mut messages = Vec::new();
        assert_eq!(fit("cma=64M", &mut messages), None);
        assert_eq!(
            fit("monolith.cma_fit=best-fit", &mut messages),
            Some(CmaFit::BestFit)
        );
        assert_eq!(
            fit(
                "monolith.cma_fit=best-fit monolith.cma-fit=first-fit",
                &mut messages
            ),
            Some(CmaFit::FirstFit)
        );
        assert!(messages.is_empty(), "{messages:?}");
        assert_eq!(fit("monolith.cma_fit=worst-fit", &mut messages), None);
        assert_eq!(fit("monolith.cma_fit", &mut messages), None);
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].contains("monolith.cma_fit=worst-fit") && messages[0].contains("ignored")
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "\"",
            "\"\"",
            "=",
            "==",
            "\"=\"",
            "a=\"",
            "\"a=\"",
            "é=ü \"ß",
            "-- --",
            "--",
        ] {
            let line = parse_command_line(s);
            let mut messages = Vec::new();
            let _ = cma_request(&line, &mut messages);
        }
    }
}
