//! The one decoder for property values: big-endian cells, `(address, size)` pairs, strings.
//!
//! Every reader of the tree (platform, reserved memory, the shell's views) decodes through
//! these, so "one cell", "a `reg` pair" and "a string list" mean the same everywhere. None
//! of them panics or indexes past the value: a value of the wrong length is `None`/`Err`.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

/// Big-endian word at byte offset `at`, if all four bytes are there.
pub fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

/// Big-endian double word at byte offset `at`.
pub fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    Some((u64::from(be32(bytes, at)?) << 32) | u64::from(be32(bytes, at.checked_add(4)?)?))
}

/// A property that is exactly one cell.
pub fn u32_value(value: &[u8]) -> Option<u32> {
    if value.len() == 4 {
        be32(value, 0)
    } else {
        None
    }
}

/// Every whole cell of a value, in order (a ragged tail is not a cell).
pub fn cell_list(value: &[u8]) -> impl Iterator<Item = u32> + '_ {
    value
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// A number `cells` cells wide (0, 1 or 2) from the front of `bytes`; `None` if the
/// bytes are too few or the number is wider than 64 bits.
pub fn read_cells(bytes: &[u8], cells: u32) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => be32(bytes, 0).map(u64::from),
        2 => be64(bytes, 0),
        _ => None,
    }
}

/// Why a `reg`-shaped property could not be split into pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairsError {
    /// `#address-cells` or `#size-cells` above 2: the numbers would not fit in 64 bits.
    TooManyCells,
    /// The length is not a whole number of `(address, size)` entries.
    NotWholeEntries,
}

impl PairsError {
    pub fn reason(self) -> &'static str {
        match self {
            PairsError::TooManyCells => "more than two address or size cells",
            PairsError::NotWholeEntries => "length is not a whole number of entries",
        }
    }
}

impl core::fmt::Display for PairsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())
    }
}

impl core::error::Error for PairsError {}

/// Split a `reg`-shaped value into `(address, size)` pairs of the given cell counts. An
/// empty value is zero pairs.
pub fn pairs(
    value: &[u8],
    address_cells: u32,
    size_cells: u32,
) -> Result<Vec<(u64, u64)>, PairsError> {
    if address_cells > 2 || size_cells > 2 {
        return Err(PairsError::TooManyCells);
    }
    let entry = ((address_cells + size_cells) * 4) as usize;
    if entry == 0 || !value.len().is_multiple_of(entry) {
        return Err(PairsError::NotWholeEntries);
    }
    let split = (address_cells * 4) as usize;
    Ok(value
        .chunks_exact(entry)
        .filter_map(|chunk| {
            Some((
                read_cells(chunk, address_cells)?,
                read_cells(&chunk[split..], size_cells)?,
            ))
        })
        .collect())
}

/// A string property: the bytes before the terminating NUL, if they are UTF-8. A value
/// without a NUL is read whole (QEMU and dtc always terminate; hand-built trees may not).
pub fn string(value: &[u8]) -> Option<&str> {
    let text = value.strip_suffix(&[0]).unwrap_or(value);
    core::str::from_utf8(text).ok()
}

/// The first string of a string list (`status`, `method`), up to its NUL.
pub fn first_string(value: &[u8]) -> Option<&str> {
    let text = value.split(|&b| b == 0).next().unwrap_or(&[]);
    core::str::from_utf8(text).ok()
}

/// The non-empty UTF-8 strings of a NUL-separated string list (`compatible`, `*-names`).
pub fn string_list(value: &[u8]) -> impl Iterator<Item = &str> {
    value
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| core::str::from_utf8(s).ok())
}

/// The strings of a value that `dtc` would decompile as a string list: NUL-terminated,
/// every string non-empty and printable ASCII. `None` for anything else (cells, bytes).
pub fn printable_string_list(value: &[u8]) -> Option<Vec<&str>> {
    let text = value.strip_suffix(&[0])?;
    if text.is_empty() {
        return None;
    }
    text.split(|&b| b == 0)
        .map(|part| {
            let printable = !part.is_empty() && part.iter().all(|&b| (0x20..0x7f).contains(&b));
            printable.then(|| core::str::from_utf8(part).ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn cells_of_each_width() {
        let bytes = [0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(read_cells(&bytes, 0), Some(0));
        assert_eq!(read_cells(&bytes, 1), Some(1));
        assert_eq!(read_cells(&bytes, 2), Some(0x1_0000_0002));
        assert_eq!(read_cells(&bytes, 3), None);
        assert_eq!(read_cells(&bytes[..6], 2), None);
        assert_eq!(u32_value(&bytes[..4]), Some(1));
        assert_eq!(u32_value(&bytes), None, "two cells are not one");
        assert_eq!(cell_list(&bytes[..7]).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn pairs_check_the_shape() {
        let reg = [0, 0, 0, 0x40, 0, 0, 0, 0x10, 0, 0, 0, 0x80, 0, 0, 0, 0x20];
        assert_eq!(pairs(&reg, 1, 1), Ok(vec![(0x40, 0x10), (0x80, 0x20)]));
        assert_eq!(
            pairs(&reg, 2, 2),
            Ok(vec![(0x40_0000_0010, 0x80_0000_0020)])
        );
        assert_eq!(pairs(&reg[..12], 1, 2), Ok(vec![(0x40, 0x10_0000_0080)]));
        assert_eq!(pairs(&reg[..12], 1, 1), Err(PairsError::NotWholeEntries));
        assert_eq!(pairs(&reg, 3, 1), Err(PairsError::TooManyCells));
        assert_eq!(pairs(&[], 2, 2), Ok(vec![]));
        assert_eq!(pairs(&reg, 0, 0), Err(PairsError::NotWholeEntries));
    }

    #[test]
    fn strings_and_lists() {
        assert_eq!(string(b"okay\0"), Some("okay"));
        assert_eq!(string(b"okay"), Some("okay"));
        assert_eq!(string(b"\xff\0"), None);
        assert_eq!(first_string(b"ok\0junk\0"), Some("ok"));
        let list: Vec<&str> = string_list(b"arm,pl011\0\0arm,primecell\0").collect();
        assert_eq!(list, vec!["arm,pl011", "arm,primecell"]);
        assert_eq!(printable_string_list(b"a\0bc\0"), Some(vec!["a", "bc"]));
        assert_eq!(
            printable_string_list(b"a\0\0b\0"),
            None,
            "an empty string: not a list"
        );
        assert_eq!(printable_string_list(b"\x01\0"), None);
        assert_eq!(printable_string_list(b"\0"), None);
    }
}
