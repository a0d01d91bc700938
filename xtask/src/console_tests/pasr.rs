//! Console scripts for PASR: the allocator empties banks before sleep, the controller model
//! (qemu/pasr-device) really overwrites every masked bank in guest RAM when self-refresh is
//! entered, and no live byte is lost.
//!
//! Theory of operation
//! -------------------
//! The anonymous workload (`mem grow`) fills pages with a pattern derived from each page's
//! identity, and `mem verify` checks every one (after any migration). A suspend masks the
//! banks that are (or were made) entirely free; the model then writes its poison over
//! them. So a suspend that masked memory reports `bytes_lost` equal to `masked_bytes`, and
//! `mem verify` afterwards proves none of it held a live page. The listing before and after
//! says which banks were free and which are masked; CMA `used` and MemFree prove the pass
//! leaked nothing.

use regex::Regex;

use super::shell::{boot, check, expect_output, meminfo, run};
use crate::expect::{Console, ExpectError};

type Result<T> = std::result::Result<T, ExpectError>;

/// One `key: value` line of the suspend report.
fn field(text: &str, key: &str) -> Option<String> {
    let re = Regex::new(&format!(r"(?m)^{}: (.+)$", regex::escape(key))).ok()?;
    re.captures(text).map(|c| c[1].trim().to_string())
}

/// The leading number of a field (`12345`, `6 of 16 banks (...)`).
fn number(text: &str, key: &str) -> Option<u64> {
    field(text, key)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Banks per state in a `pasr` listing.
fn states(listing: &str) -> (usize, usize, usize) {
    let count = |state: &str| {
        // Unit lines start with the die number; the header names the columns.
        listing
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<u32>().is_ok())
            })
            .filter(|l| l.split_whitespace().any(|w| w == state))
            .count()
    };
    (count("masked"), count("free"), count("busy"))
}

fn suspend(console: &mut Console) -> Result<(String, u64, u64)> {
    let text = run(console, "suspend 1")?;
    let masked =
        number(&text, "masked").ok_or_else(|| console.error(format!("no masked: {text:?}")))?;
    let (masked_bytes, lost) = (number(&text, "masked_bytes"), number(&text, "bytes_lost"));
    check(
        console,
        masked_bytes.is_some() && masked_bytes == lost,
        || format!("the model must overwrite exactly the masked bytes: {text:?}"),
    )?;
    Ok((text, masked, lost.unwrap_or(0)))
}

/// A workload in low banks, a suspend, every page intact; then the workload is freed and
/// the next suspend masks more.
pub fn suspend_loses_nothing(console: &mut Console) -> Result<()> {
    boot(console)?;
    let listing = expect_output(console, "pasr", r"(?m)^self-refresh now: ")?;
    let (_, free_at_boot, busy_at_boot) = states(&listing);
    check(console, free_at_boot + busy_at_boot == 16, || {
        format!("16 banks, each free or busy at boot: {listing:?}")
    })?;
    expect_output(console, "mem start", r"^workload: running")?;
    expect_output(console, "mem grow 40000", r"^grew by 40000 pages")?;
    let before = meminfo(console)?["MemFree"];
    let (first, masked, lost) = suspend(console)?;
    check(console, masked > 0 && lost > 0, || {
        format!("a 1 GiB board with 160 MiB in use must mask something: {first:?}")
    })?;
    expect_output(
        console,
        "mem verify",
        r"^verified 40000 pages: all intact\n$",
    )?;
    let after = meminfo(console)?["MemFree"];
    check(console, after == before, || {
        format!("the pass must leak nothing: MemFree {before} -> {after} kB")
    })?;
    let listing = run(console, "pasr")?;
    let (masked_now, _, _) = states(&listing);
    check(console, masked_now as u64 == masked, || {
        format!("the listing must show the {masked} masked banks: {listing}")
    })?;
    expect_output(
        console,
        "cat /sys/kernel/debug/pasr/last_suspend",
        &format!(r"(?m)^masked: {masked} of 16 banks"),
    )?;
    expect_output(console, "mem shrink 40000", r"^shrank by 40000 pages")?;
    let (second, masked_later, _) = suspend(console)?;
    check(console, masked_later > masked, || {
        format!("with the workload gone more banks must be masked ({masked} then): {second:?}")
    })?;
    // Using memory again unmasks what it touches before handing it out.
    expect_output(console, "mem grow 40000", r"^grew by 40000 pages")?;
    expect_output(
        console,
        "mem verify",
        r"^verified 40000 pages: all intact\n$",
    )?;
    let (_, _, _) = suspend(console)?;
    expect_output(
        console,
        "mem verify",
        r"^verified 40000 pages: all intact\n$",
    )?;
    Ok(())
}

/// The interleaved board: each bank is paired with the other die's, and a suspend masks
/// pairs only.
pub fn interleaved_pairs(console: &mut Console) -> Result<()> {
    boot(console)?;
    expect_output(console, "mem start", r"^workload: running")?;
    expect_output(console, "mem grow 20000", r"^grew by 20000 pages")?;
    let (text, masked, _) = suspend(console)?;
    check(console, masked > 0 && masked % 2 == 0, || {
        format!("interleaved banks are masked in pairs: {text:?}")
    })?;
    let units = field(&text, "masked").unwrap_or_default();
    for die in 0..8 {
        let (a, b) = (format!("0/{die}"), format!("1/{die}"));
        check(console, units.contains(&a) == units.contains(&b), || {
            format!("bank {die} of die 0 and of die 1 must be masked together: {units}")
        })?;
    }
    expect_output(
        console,
        "mem verify",
        r"^verified 20000 pages: all intact\n$",
    )?;
    Ok(())
}

/// A board without the binding: the commands say why, nothing changes.
pub fn without_banks(console: &mut Console) -> Result<()> {
    boot(console)?;
    expect_output(console, "pasr", r"(?m)no PASR on this board")?;
    expect_output(console, "suspend 1", r"(?m)no PASR on this board")?;
    expect_output(
        console,
        "suspend 0",
        r"(?m)^suspend: SECONDS must be a whole number from 1 to 3600",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_fields_and_listing_states_parse() {
        let text =
            "masked: 6 of 16 banks (0/4 0/5)\nmasked_bytes: 402653184\nbytes_lost: 402653184\n";
        assert_eq!(number(text, "masked"), Some(6));
        assert_eq!(number(text, "bytes_lost"), Some(402_653_184));
        assert_eq!(field(text, "masked").unwrap(), "6 of 16 banks (0/4 0/5)");
        assert_eq!(number(text, "energy"), None);
        let listing = "die bank range free state pair\n0 0 r 1 MiB busy -\n0 1 r 64 MiB free -\n0 2 r 64 MiB masked -\n";
        assert_eq!(states(listing), (1, 1, 1));
    }
}
