//! The 100-byte LTX header (`docs/ltx-and-replica-format.md#header`): its fields, byte layout and
//! validation rules (the header rules of `docs/ltx-and-replica-format.md#validation-rules`), plus
//! the page-size helpers and the lock-page rule.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::checksum::Checksum;
use crate::error::{ChecksumRule, Error, Result};
use crate::name::{FileName, TxId};

/// The four magic bytes that open every LTX file (format version 3).
pub(crate) const MAGIC: [u8; 4] = *b"LTX1";
/// Size of the header, in bytes.
pub const HEADER_SIZE: usize = 100;
/// Header flag: the file carries no database checksums (both are zero). Every file written by
/// Litestream 0.5 has it, and so does every file this crate writes by default.
pub const HEADER_FLAG_NO_CHECKSUM: u32 = 0x2;
/// The header flags a valid file may have.
pub(crate) const HEADER_FLAG_MASK: u32 = HEADER_FLAG_NO_CHECKSUM;
/// Smallest valid page size.
pub(crate) const MIN_PAGE_SIZE: u32 = 512;
/// Largest valid page size (stored as 65536, not SQLite's 1).
pub(crate) const MAX_PAGE_SIZE: u32 = 65536;
/// The byte offset whose page SQLite reserves for locking (SQLite's `PENDING_BYTE`, 1 GiB).
pub(crate) const PENDING_BYTE: u64 = 0x4000_0000;

/// True for the page sizes SQLite and LTX allow: powers of two from 512 to 65536.
pub fn is_valid_page_size(page_size: u32) -> bool {
    (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) && page_size.is_power_of_two()
}

/// The lock page of a database with this page size: the page holding byte 1 GiB
/// (`0x40000000 / page_size + 1`; 262145 for 4 KiB pages). It is never stored in an LTX file
/// and a restore writes zeros there. For an invalid page size of 0 it returns `u32::MAX`.
pub fn lock_page(page_size: u32) -> u32 {
    match PENDING_BYTE.checked_div(u64::from(page_size)) {
        Some(q) => u32::try_from(q + 1).unwrap_or(u32::MAX),
        None => u32::MAX,
    }
}

/// An LTX header. Build one with [`Header::new`] (which sets the NoChecksum flag, as every
/// Litestream 0.5 writer does) and adjust the public fields; [`Header::validate`] checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Header flags; only [`HEADER_FLAG_NO_CHECKSUM`] is legal.
    pub flags: u32,
    /// Database page size in bytes.
    pub page_size: u32,
    /// Database size in pages after applying this file.
    pub commit: u32,
    /// First TXID covered (1 makes the file a snapshot holding every page).
    pub min_txid: TxId,
    /// Last TXID covered.
    pub max_txid: TxId,
    /// Milliseconds since the Unix epoch when the file was created (also the replica's
    /// CreatedAt: file replicas set the file's mtime to it).
    pub timestamp: i64,
    /// Database checksum before applying this file (zero for snapshots and NoChecksum files).
    pub pre_apply_checksum: Checksum,
    /// Offset in the source WAL where this file's frames start (0 for compactions).
    pub wal_offset: i64,
    /// Bytes of WAL covered.
    pub wal_size: i64,
    /// Salts of the source WAL.
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    /// Always 0 from Litestream.
    pub node_id: u64,
}

impl Header {
    /// A NoChecksum header for TXIDs `min..=max` with every WAL field and checksum zero.
    pub fn new(
        page_size: u32,
        commit: u32,
        min_txid: TxId,
        max_txid: TxId,
        timestamp: i64,
    ) -> Self {
        Header {
            flags: HEADER_FLAG_NO_CHECKSUM,
            page_size,
            commit,
            min_txid,
            max_txid,
            timestamp,
            pre_apply_checksum: Checksum::ZERO,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
        }
    }

    /// True if the file starts at TXID 1 and therefore holds every page of the database.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == TxId(1)
    }

    /// True if the file carries no database checksums.
    pub fn no_checksum(&self) -> bool {
        self.flags & HEADER_FLAG_NO_CHECKSUM != 0
    }

    /// The lock page for this header's page size.
    pub fn lock_page(&self) -> u32 {
        lock_page(self.page_size)
    }

    /// The file name for this TXID range.
    pub fn file_name(&self) -> FileName {
        FileName::new(self.min_txid, self.max_txid)
    }

    /// The header timestamp as a `SystemTime` (what a file replica's mtime must be set to);
    /// `None` if the platform's clock cannot represent it.
    pub fn created_at(&self) -> Option<SystemTime> {
        let ms = Duration::from_millis(self.timestamp.unsigned_abs());
        if self.timestamp >= 0 {
            UNIX_EPOCH.checked_add(ms)
        } else {
            UNIX_EPOCH.checked_sub(ms)
        }
    }

    /// Checks every header rule of `docs/ltx-and-replica-format.md#validation-rules`, in the order
    /// Litestream checks them.
    pub fn validate(&self) -> Result<()> {
        if self.flags & !HEADER_FLAG_MASK != 0 {
            return Err(Error::BadFlags(self.flags));
        }
        if !is_valid_page_size(self.page_size) {
            return Err(Error::BadPageSize(self.page_size));
        }
        if self.min_txid == TxId::ZERO {
            return Err(Error::ZeroTxId { field: "MinTXID" });
        }
        if self.max_txid == TxId::ZERO {
            return Err(Error::ZeroTxId { field: "MaxTXID" });
        }
        if self.min_txid > self.max_txid {
            return Err(Error::TxIdOrder {
                min: self.min_txid,
                max: self.max_txid,
            });
        }
        if self.wal_offset < 0 {
            return Err(Error::NegativeWalField {
                field: "WALOffset",
                value: self.wal_offset,
            });
        }
        if self.wal_size < 0 {
            return Err(Error::NegativeWalField {
                field: "WALSize",
                value: self.wal_size,
            });
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return Err(Error::WalSaltWithoutOffset);
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return Err(Error::WalSizeWithoutOffset(self.wal_size));
        }
        let pre = self.pre_apply_checksum;
        let rule = if self.is_snapshot() || self.no_checksum() {
            (!pre.is_zero()).then_some(ChecksumRule::NotAllowed)
        } else if pre.is_zero() {
            Some(ChecksumRule::Required)
        } else if !pre.has_flag() {
            Some(ChecksumRule::MissingFlag)
        } else {
            None
        };
        match rule {
            Some(rule) => Err(Error::BadPreApplyChecksum { value: pre, rule }),
            None => Ok(()),
        }
    }

    /// The 100 header bytes (reserved bytes 80..100 are zero).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.0.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }

    /// Parses the 100 header bytes. Only the magic is checked here (reserved bytes are
    /// ignored, as Litestream does); call [`Header::validate`] for the rest.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Result<Header> {
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        Ok(Header {
            flags: be_u32(b, 4),
            page_size: be_u32(b, 8),
            commit: be_u32(b, 12),
            min_txid: TxId(be_u64(b, 16)),
            max_txid: TxId(be_u64(b, 24)),
            timestamp: be_u64(b, 32) as i64,
            pre_apply_checksum: Checksum(be_u64(b, 40)),
            wal_offset: be_u64(b, 48) as i64,
            wal_size: be_u64(b, 56) as i64,
            wal_salt1: be_u32(b, 64),
            wal_salt2: be_u32(b, 68),
            node_id: be_u64(b, 72),
        })
    }
}

pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

pub(crate) fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Header {
        Header::new(4096, 3, TxId(2), TxId(5), 1_795_659_804_713)
    }

    #[test]
    fn page_sizes_and_lock_page() {
        let valid: Vec<u32> = (0..=17)
            .map(|s| 1u32 << s)
            .filter(|&p| is_valid_page_size(p))
            .collect();
        assert_eq!(
            valid,
            vec![512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
        );
        assert!(!is_valid_page_size(0));
        assert!(!is_valid_page_size(4095));
        assert!(!is_valid_page_size(131072));
        assert_eq!(lock_page(4096), 262_145);
        assert_eq!(lock_page(65536), 16_385);
        assert_eq!(lock_page(512), 2_097_153);
        assert_eq!(lock_page(0), u32::MAX);
    }

    #[test]
    fn round_trip_matches_spec_hexdump() {
        // The header of the real L0 file in `docs/ltx-and-replica-format.md#worked-example`.
        let h = Header {
            flags: 2,
            page_size: 4096,
            commit: 0x26,
            min_txid: TxId(0xc),
            max_txid: TxId(0xc),
            timestamp: 0x0000_01a2_15aa_3029,
            pre_apply_checksum: Checksum::ZERO,
            wal_offset: 0x20,
            wal_size: 0x1018,
            wal_salt1: 0xcbd2_46d1,
            wal_salt2: 0xbcbf_21d0,
            node_id: 0,
        };
        let b = h.to_bytes();
        assert_eq!(&b[..16], b"LTX1\0\0\0\x02\0\0\x10\0\0\0\0\x26");
        assert_eq!(
            &b[0x40..0x48],
            &[0xcb, 0xd2, 0x46, 0xd1, 0xbc, 0xbf, 0x21, 0xd0]
        );
        assert_eq!(Header::from_bytes(&b).unwrap(), h);
        h.validate().unwrap();
    }

    #[test]
    fn every_header_rule_has_its_error() {
        let mut b = ok().to_bytes();
        b[3] = b'2';
        assert!(matches!(Header::from_bytes(&b), Err(Error::BadMagic(m)) if &m == b"LTX2"));

        let check = |f: &dyn Fn(&mut Header)| {
            let mut h = ok();
            f(&mut h);
            h.validate().unwrap_err()
        };
        assert!(matches!(check(&|h| h.flags = 1), Error::BadFlags(1)));
        assert!(matches!(
            check(&|h| h.flags = 0x8002),
            Error::BadFlags(0x8002)
        ));
        assert!(matches!(
            check(&|h| h.page_size = 1000),
            Error::BadPageSize(1000)
        ));
        assert!(matches!(
            check(&|h| h.min_txid = TxId(0)),
            Error::ZeroTxId { field: "MinTXID" }
        ));
        assert!(matches!(
            check(&|h| h.max_txid = TxId(0)),
            Error::ZeroTxId { field: "MaxTXID" }
        ));
        assert!(matches!(
            check(&|h| h.min_txid = TxId(6)),
            Error::TxIdOrder { .. }
        ));
        assert!(matches!(
            check(&|h| h.wal_offset = -1),
            Error::NegativeWalField {
                field: "WALOffset",
                value: -1
            }
        ));
        assert!(matches!(
            check(&|h| {
                h.wal_offset = 32;
                h.wal_size = -5
            }),
            Error::NegativeWalField {
                field: "WALSize",
                ..
            }
        ));
        assert!(matches!(
            check(&|h| h.wal_salt2 = 9),
            Error::WalSaltWithoutOffset
        ));
        assert!(matches!(
            check(&|h| h.wal_size = 9),
            Error::WalSizeWithoutOffset(9)
        ));
        assert!(matches!(
            check(&|h| h.pre_apply_checksum = Checksum::FLAG),
            Error::BadPreApplyChecksum {
                rule: ChecksumRule::NotAllowed,
                ..
            }
        ));
        assert!(matches!(
            check(&|h| {
                h.min_txid = TxId(1);
                h.flags = 0;
                h.pre_apply_checksum = Checksum(9 | 1 << 63)
            }),
            Error::BadPreApplyChecksum {
                rule: ChecksumRule::NotAllowed,
                ..
            }
        ));
        assert!(matches!(
            check(&|h| h.flags = 0),
            Error::BadPreApplyChecksum {
                rule: ChecksumRule::Required,
                ..
            }
        ));
        assert!(matches!(
            check(&|h| {
                h.flags = 0;
                h.pre_apply_checksum = Checksum(5)
            }),
            Error::BadPreApplyChecksum {
                rule: ChecksumRule::MissingFlag,
                ..
            }
        ));
        let mut h = ok();
        h.flags = 0;
        h.pre_apply_checksum = Checksum(5 | 1 << 63);
        h.validate().unwrap();
        h.wal_offset = 32;
        h.wal_salt1 = 1;
        h.validate().unwrap();
    }

    #[test]
    fn created_at_is_the_timestamp() {
        let h = ok();
        let d = h.created_at().unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(d.as_millis(), 1_795_659_804_713);
        assert_eq!(
            h.file_name().to_string(),
            "0000000000000002-0000000000000005.ltx"
        );
    }
}
