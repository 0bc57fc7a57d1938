//! The running account of one LTX file as its page frames go by, kept the same way by the
//! [`Encoder`](crate::Encoder) (writing) and the [`Decoder`](crate::Decoder) (reading): the
//! file checksum so far, the offset of the next frame, the page order, the page index
//! entries, and the post-apply database checksum of snapshots that carry one.
//!
//! The file checksum (`docs/ltx-and-replica-format.md#file-checksum`) covers the header, each page
//! header, the length prefix of a block-encoded frame and the page's *uncompressed* data (never the
//! compressed payload), then the end marker, page index, index length and post-apply checksum.

use crate::checksum::{Checksum, Crc64, DbChecksum};
use crate::error::{Error, Result};
use crate::frame::{LENGTH_PREFIX_SIZE, PAGE_HEADER_SIZE};
use crate::header::{HEADER_SIZE, Header};
use crate::index::{IndexEntry, PageIndex};

pub(crate) struct Tally {
    /// CRC-64 of every byte the file checksum covers, so far.
    pub(crate) hash: Crc64,
    /// Bytes of the file so far: where the next frame starts.
    pub(crate) offset: u64,
    prev_pgno: u32,
    entries: Vec<IndexEntry>,
    db_checksum: Option<DbChecksum>,
}

impl Tally {
    /// Starts a file after its header (`bytes` is `header` as stored).
    pub(crate) fn new(header: &Header, bytes: &[u8; HEADER_SIZE]) -> Tally {
        let mut hash = Crc64::new();
        hash.update(bytes);
        let db_checksum = (!header.no_checksum() && header.is_snapshot())
            .then(|| DbChecksum::new(header.page_size));
        Tally {
            hash,
            offset: HEADER_SIZE as u64,
            prev_pgno: 0,
            entries: Vec::new(),
            db_checksum,
        }
    }

    /// The last page number seen (0 before the first page).
    pub(crate) fn prev_pgno(&self) -> u32 {
        self.prev_pgno
    }

    /// Pages must come in strictly ascending order.
    pub(crate) fn check_order(&self, pgno: u32) -> Result<()> {
        if pgno <= self.prev_pgno {
            return Err(Error::PagesOutOfOrder {
                prev: self.prev_pgno,
                pgno,
            });
        }
        Ok(())
    }

    /// Accounts for one page frame of `size` bytes at the current offset: hashes its page
    /// header, its length prefix (block encoding only) and the page's data, records its index
    /// entry and adds the page to the database checksum.
    pub(crate) fn page(
        &mut self,
        pgno: u32,
        header: &[u8; PAGE_HEADER_SIZE],
        prefix: Option<&[u8; LENGTH_PREFIX_SIZE]>,
        data: &[u8],
        size: u64,
    ) {
        self.hash.update(header);
        if let Some(prefix) = prefix {
            self.hash.update(prefix);
        }
        self.hash.update(data);
        self.entries.push(IndexEntry {
            pgno,
            offset: self.offset,
            size,
        });
        self.offset += size;
        self.prev_pgno = pgno;
        if let Some(c) = &mut self.db_checksum {
            c.add_page(pgno, data);
        }
    }

    /// The index entries of the frames so far, in file order.
    pub(crate) fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Hands over the page index of the frames so far.
    pub(crate) fn take_index(&mut self) -> PageIndex {
        PageIndex::from_sorted(std::mem::take(&mut self.entries))
    }

    /// The database checksum after the pages so far, for files that carry one.
    pub(crate) fn db_checksum(&self) -> Option<Checksum> {
        self.db_checksum.as_ref().map(DbChecksum::value)
    }
}
