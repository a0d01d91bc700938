//! RAM sizes as QEMU's `-m` spells them: parsed from `--mem` and board files, printed back
//! for QEMU in whole MiB so no precision is lost.

use anyhow::{bail, Context, Result};

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
    let Ok(number) = digits.parse::<u64>() else {
        bail!(bad());
    };
    let shift = match suffix {
        "" | "m" => 20,
        "k" => 10,
        "g" => 30,
        "t" => 40,
        _ => bail!(bad()),
    };
    let bytes = number.checked_mul(1u64 << shift).with_context(bad)?;
    if bytes == 0 || bytes % (1 << 20) != 0 {
        bail!("bad size `{text}`: must be a non-zero whole number of MiB");
    }
    Ok(bytes)
}

/// Format bytes for QEMU's `-m`, in MiB so no precision is lost.
pub fn size_for_qemu(bytes: u64) -> String {
    format!("{}M", bytes >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
