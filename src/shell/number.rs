//! Number parsing for command arguments.
//!
//! # Theory of operation
//!
//! Three shapes are accepted: decimal (`4096`), hexadecimal (`0x1000`, either case) and,
//! where the number is a size, a binary suffix (`4K`, `2M`, `1G`, either case, with an
//! optional trailing `iB`/`B`). Underscores are allowed as digit separators, as in Rust.
//!
//! Page counts are the one place where both make sense: a bare number is a count of pages,
//! a suffixed one is a size in bytes that must be a whole number of pages. Overflow is an
//! error, never a wrap.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;

use crate::util::PAGE_SIZE;

/// A plain number: decimal or `0x` hex, no suffix.
pub fn parse_u64(text: &str) -> Result<u64, String> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    let mut seen_digit = false;
    let mut value: u64 = 0;
    for c in digits.chars() {
        if c == '_' && seen_digit {
            continue;
        }
        let digit = c.to_digit(radix).ok_or_else(|| bad_number(text))?;
        seen_digit = true;
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or_else(|| format!("number too large: {}", text))?;
    }
    if !seen_digit {
        return Err(bad_number(text));
    }
    Ok(value)
}

/// A size in bytes: a plain number or one with a K/M/G suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, shift) = split_suffix(text);
    let value = parse_u64(number).map_err(|_| bad_number(text))?;
    checked_shift(value, shift).ok_or_else(|| format!("size too large: {}", text))
}

/// A page count: a bare number counts pages, a K/M/G size must be a multiple of the page.
pub fn parse_pages(text: &str) -> Result<u64, String> {
    let (number, shift) = split_suffix(text);
    let value = parse_u64(number).map_err(|_| bad_number(text))?;
    if shift == 0 {
        return Ok(value);
    }
    let bytes = checked_shift(value, shift).ok_or_else(|| format!("size too large: {}", text))?;
    if bytes % PAGE_SIZE != 0 {
        return Err(format!(
            "{} is not a whole number of {}-byte pages",
            text, PAGE_SIZE
        ));
    }
    Ok(bytes / PAGE_SIZE)
}

fn bad_number(text: &str) -> String {
    format!("bad number: '{}' (decimal, 0x hex, or K/M/G size)", text)
}

fn checked_shift(value: u64, shift: u32) -> Option<u64> {
    if shift == 0 {
        return Some(value);
    }
    if value.leading_zeros() < shift {
        return None;
    }
    Some(value << shift)
}

/// Splits `16MiB` into (`16`, 20). Hex digits never end in K/M/G, but `0x1B` ends in B, so
/// a hex number only takes the suffix forms that cannot be digits.
fn split_suffix(text: &str) -> (&str, u32) {
    let lower_end = |s: &str, suffix: &str| {
        s.len() > suffix.len() && s.is_char_boundary(s.len() - suffix.len()) && {
            s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
    };
    let is_hex = text.starts_with("0x") || text.starts_with("0X");
    for (letter, shift) in [("k", 10), ("m", 20), ("g", 30)] {
        for tail in ["ib", "b", ""] {
            if is_hex && tail == "b" {
                continue;
            }
            let suffix = format!("{}{}", letter, tail);
            if lower_end(text, &suffix) {
                return (&text[..text.len() - suffix.len()], shift);
            }
        }
    }
    (text, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_hex() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("0x1000"), Ok(4096));
        assert_eq!(parse_u64("0XfF"), Ok(255));
        assert_eq!(parse_u64("1_000"), Ok(1000));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        for bad in ["", "0x", "-1", "+1", "12a", "_1", "1.5", "0x1g", "١"] {
            assert!(parse_u64(bad).is_err(), "{:?} accepted", bad);
        }
        assert!(parse_u64("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_u64("0x10000000000000000").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("0x10K"), Ok(16 << 10));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("K").is_err());
        assert!(parse_size("20000000000G")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn pages() {
        assert_eq!(parse_pages("16"), Ok(16));
        assert_eq!(parse_pages("4M"), Ok(1024));
        assert_eq!(parse_pages("8K"), Ok(2));
        assert!(parse_pages("6K").unwrap_err().contains("whole number"));
        assert!(parse_pages("x").unwrap_err().contains("bad number"));
    }
}
