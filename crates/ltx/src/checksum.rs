//! Checksums: the CRC-64 (Go `hash/crc64`, ISO polynomial) every LTX checksum is built from,
//! the file checksum hasher, and the database checksums (per page and rolling over a database)
//! that files without the NoChecksum flag carry (`docs/ltx-and-replica-format.md#checksums`).

use std::fmt;

use crc_fast::{CrcAlgorithm, Digest};

use crate::header::lock_page;

/// The CRC is computed with carry-less multiplication (PCLMULQDQ / PMULL, chosen at run time
/// by `crc-fast`): tens of GB/s, so the file checksum costs little next to LZ4.
const ALGORITHM: CrcAlgorithm = CrcAlgorithm::Crc64GoIso;

/// A 64-bit LTX checksum. Stored checksums always have bit 63 ([`Checksum::FLAG`]) set so that
/// a present checksum is never zero; zero means "absent".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Checksum(pub u64);

impl Checksum {
    /// Bit 63, forced on in every stored checksum.
    pub const FLAG: Checksum = Checksum(1 << 63);
    /// The absent checksum.
    pub const ZERO: Checksum = Checksum(0);

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// True when bit 63 is set.
    pub fn has_flag(self) -> bool {
        self.0 & Self::FLAG.0 != 0
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// CRC-64/GO-ISO of `bytes` (check value of `"123456789"` is `0xb90956c775a41001`).
#[cfg(test)]
pub(crate) fn crc64(bytes: &[u8]) -> u64 {
    crc_fast::checksum(ALGORITHM, bytes)
}

/// A streaming CRC-64/GO-ISO, used for the file checksum.
#[derive(Clone)]
pub struct Crc64 {
    digest: Digest,
}

impl Crc64 {
    pub fn new() -> Self {
        Crc64 {
            digest: Digest::new(ALGORITHM),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// The CRC of everything passed to `update` so far.
    pub fn value(&self) -> u64 {
        self.digest.finalize()
    }

    /// The value as a stored checksum (bit 63 set).
    pub fn checksum(&self) -> Checksum {
        Checksum(Checksum::FLAG.0 | self.value())
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crc64({:016x})", self.value())
    }
}

/// The checksum of one database page: `FLAG | crc64(u32be(pgno) || data)`.
pub(crate) fn page_checksum(pgno: u32, data: &[u8]) -> Checksum {
    let mut d = Crc64::new();
    d.update(&pgno.to_be_bytes());
    d.update(data);
    d.checksum()
}

/// The rolling checksum of a whole database: starts at [`Checksum::FLAG`] and XORs in the
/// `page_checksum` of every page except the lock page (`c = FLAG | (c ^ page)`). Pages may
/// come in any order; each page must be added once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbChecksum {
    value: Checksum,
    lock_pgno: u32,
}

impl DbChecksum {
    /// The checksum of an empty database of this page size.
    pub fn new(page_size: u32) -> Self {
        DbChecksum {
            value: Checksum::FLAG,
            lock_pgno: lock_page(page_size),
        }
    }

    /// Adds one page (ignored if it is the lock page).
    pub fn add_page(&mut self, pgno: u32, data: &[u8]) {
        if pgno != self.lock_pgno {
            self.value = Checksum(Checksum::FLAG.0 | (self.value.0 ^ page_checksum(pgno, data).0));
        }
    }

    /// The checksum of the pages added so far.
    pub fn value(&self) -> Checksum {
        self.value
    }

    /// The checksum of a raw database image (`image.len()` a multiple of `page_size`; a partial
    /// last page is checksummed as it is).
    pub fn of_image(image: &[u8], page_size: u32) -> Checksum {
        let mut c = DbChecksum::new(page_size);
        for (i, page) in image.chunks(page_size.max(1) as usize).enumerate() {
            // A database never has more than u32::MAX pages; saturate rather than wrap.
            let pgno = u32::try_from(i + 1).unwrap_or(u32::MAX);
            c.add_page(pgno, page);
        }
        c.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::Noise;

    #[test]
    fn crc64_is_go_iso() {
        assert_eq!(crc64(b"123456789"), 0xb909_56c7_75a4_1001);
        let mut c = Crc64::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.value(), 0xb909_56c7_75a4_1001);
        assert_eq!(c.checksum().0, 0xb909_56c7_75a4_1001 | (1 << 63));
    }

    #[test]
    fn crc64_agrees_with_the_table_driven_crc_crate() {
        let table = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);
        let data = Noise::new(0x1234_5678_9abc_def1).bytes(70_000);
        for len in [
            0, 1, 6, 15, 16, 17, 63, 64, 65, 255, 256, 4096, 4097, 65536, 70_000,
        ] {
            assert_eq!(
                crc64(&data[..len]),
                table.checksum(&data[..len]),
                "len {len}"
            );
            // Streamed in uneven pieces, as the encoder and decoder feed it.
            let mut c = Crc64::new();
            let mut d = table.digest();
            for piece in data[..len].chunks(7 + len % 13) {
                c.update(piece);
                d.update(piece);
            }
            assert_eq!(c.value(), d.finalize(), "streamed len {len}");
        }
    }

    #[test]
    fn db_checksum_empty_and_order_independent() {
        assert_eq!(DbChecksum::new(4096).value(), Checksum::FLAG);
        let a = vec![1u8; 512];
        let b = vec![2u8; 512];
        let mut x = DbChecksum::new(512);
        x.add_page(1, &a);
        x.add_page(2, &b);
        let mut y = DbChecksum::new(512);
        y.add_page(2, &b);
        y.add_page(1, &a);
        assert_eq!(x, y);
        assert_eq!(x.value(), DbChecksum::of_image(&[a, b].concat(), 512));
        assert_ne!(page_checksum(1, &[0; 512]), page_checksum(2, &[0; 512]));
    }

    #[test]
    fn db_checksum_skips_lock_page() {
        let lock = lock_page(65536);
        let mut c = DbChecksum::new(65536);
        c.add_page(lock, &[7; 16]);
        assert_eq!(c.value(), Checksum::FLAG);
    }
}
