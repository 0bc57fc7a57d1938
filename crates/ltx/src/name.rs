//! Transaction ids and LTX file names (`<min hex16>-<max hex16>.ltx`).

use std::fmt;
use std::str::FromStr;

/// A replication transaction id. TXID 0 means "nothing replicated"; the first real TXID is 1.
/// Rendered as 16 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId(pub u64);

impl TxId {
    pub const ZERO: TxId = TxId(0);

    pub fn get(self) -> u64 {
        self.0
    }

    /// The next TXID, or `None` on overflow.
    pub fn next(self) -> Option<TxId> {
        self.0.checked_add(1).map(TxId)
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The error for a string that is not exactly 16 lower-case hex digits, or not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LTX name or txid {0:?}: expected 16 lower-case hex digits")]
pub struct ParseNameError(pub String);

impl FromStr for TxId {
    type Err = ParseNameError;

    /// Strict: exactly 16 lower-case hex digits, as Litestream's `-txid` flag and file names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(ParseNameError(s.to_string()));
        }
        u64::from_str_radix(s, 16)
            .map(TxId)
            .map_err(|_| ParseNameError(s.to_string()))
    }
}

/// The name of an LTX file: the TXID range it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName {
    pub min: TxId,
    pub max: TxId,
}

impl FileName {
    pub fn new(min: TxId, max: TxId) -> Self {
        FileName { min, max }
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}.ltx", self.min, self.max)
    }
}

impl FromStr for FileName {
    type Err = ParseNameError;

    /// Matches `^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$` exactly; anything else (upper case,
    /// other widths, `.tmp` files) is not an LTX file name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseNameError(s.to_string());
        let stem = s.strip_suffix(".ltx").ok_or_else(err)?;
        let (min, max) = stem.split_once('-').ok_or_else(err)?;
        Ok(FileName {
            min: min.parse().map_err(|_| err())?,
            max: max.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_round_trip() {
        let n = FileName::new(TxId(1), TxId(0xc));
        assert_eq!(n.to_string(), "0000000000000001-000000000000000c.ltx");
        assert_eq!(n.to_string().parse::<FileName>(), Ok(n));
    }

    #[test]
    fn strict_parse() {
        for bad in [
            "0000000000000001-000000000000000C.ltx",
            "000000000000001-000000000000000c.ltx",
            "0000000000000001-000000000000000c.ltx.tmp",
            "0000000000000001_000000000000000c.ltx",
            "+000000000000001-000000000000000c.ltx",
        ] {
            assert!(bad.parse::<FileName>().is_err(), "{bad}");
        }
        assert!("9".parse::<TxId>().is_err());
    }
}
