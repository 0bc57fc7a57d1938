//! The page index (`docs/ltx-and-replica-format.md#page-index`): one `(pgno, frame offset, frame
//! size)` entry per stored page as unsigned LEB128 varints, a zero terminator and a big-endian u64
//! length. It lets a reader fetch a single page with a range read; [`PageIndex::from_tail`] parses
//! it from the last bytes of a file.

use crate::error::{Error, Result};
use crate::frame::{END_MARKER_SIZE, PAGE_HEADER_SIZE};
use crate::header::{HEADER_SIZE, be_u64};
use crate::trailer::TRAILER_SIZE;

/// Size of the index length field that follows the index entries.
pub(crate) const INDEX_LEN_SIZE: usize = 8;
/// How many bytes of a file's tail to fetch first when looking for its index (what Litestream
/// fetches); [`PageIndex::from_tail`] says how many more are needed when that is not enough.
pub const TAIL_FETCH_SIZE: u64 = 32 * 1024;
/// The smallest possible LTX file: header, end marker, empty index, index length, trailer.
pub(crate) const MIN_FILE_SIZE: u64 =
    (HEADER_SIZE + END_MARKER_SIZE + 1 + INDEX_LEN_SIZE + TRAILER_SIZE) as u64;

/// Where one page's frame sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    pub pgno: u32,
    /// Absolute file offset of the frame's page header.
    pub offset: u64,
    /// Frame size: page header, length prefix (block encoding) and payload.
    pub size: u64,
}

/// The page index of one file, sorted by page number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageIndex {
    entries: Vec<IndexEntry>,
}

impl PageIndex {
    pub(crate) fn from_sorted(entries: Vec<IndexEntry>) -> Self {
        PageIndex { entries }
    }

    /// All entries, ascending by page number.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The frame of page `pgno`, if the file holds it.
    pub fn get(&self, pgno: u32) -> Option<IndexEntry> {
        self.entries
            .binary_search_by_key(&pgno, |e| e.pgno)
            .ok()
            .map(|i| self.entries[i])
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the encoded entries and terminator (not the length field) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for e in &self.entries {
            put_uvarint(out, u64::from(e.pgno));
            put_uvarint(out, e.offset);
            put_uvarint(out, e.size);
        }
        put_uvarint(out, 0);
    }

    /// Parses the index from `tail`, the last `tail.len()` bytes of a file of `file_size`
    /// bytes. Fetch [`TAIL_FETCH_SIZE`] bytes (or the whole file if smaller) first; if the
    /// index is larger, this fails with [`Error::TailTooShort`] naming how many tail bytes
    /// are needed. Every entry is checked: page numbers strictly ascending and non-zero, frames
    /// inside the page block, in file order and not overlapping.
    pub fn from_tail(tail: &[u8], file_size: u64) -> Result<PageIndex> {
        let have = tail.len() as u64;
        if have > file_size {
            return Err(Error::TruncatedIndex("tail is longer than the file"));
        }
        if file_size < MIN_FILE_SIZE {
            return Err(Error::TruncatedIndex(
                "file is smaller than an empty LTX file",
            ));
        }
        let fixed = (INDEX_LEN_SIZE + TRAILER_SIZE) as u64;
        if have < fixed {
            return Err(Error::TailTooShort {
                needed: fixed,
                have,
            });
        }
        let len_at = tail.len() - INDEX_LEN_SIZE - TRAILER_SIZE;
        let index_len = be_u64(tail, len_at);
        let max_len = file_size - fixed - (HEADER_SIZE + END_MARKER_SIZE) as u64;
        if index_len == 0 || index_len > max_len {
            return Err(Error::TruncatedIndex(
                "index length field is zero or larger than the file allows",
            ));
        }
        let needed = index_len + fixed;
        if have < needed {
            return Err(Error::TailTooShort { needed, have });
        }
        // `needed <= have == tail.len()`, so these conversions are lossless.
        let start = tail.len() - needed as usize;
        let bytes = &tail[start..len_at];
        let index_start = file_size - needed;
        let frames_end = index_start - END_MARKER_SIZE as u64;
        parse_entries(bytes, frames_end)
    }
}

/// Parses `bytes` (entries + terminator, nothing else) checking each entry against the page
/// block `[HEADER_SIZE, frames_end)`.
fn parse_entries(bytes: &[u8], frames_end: u64) -> Result<PageIndex> {
    let mut pos = 0usize;
    let mut entries = Vec::new();
    let mut next_offset = HEADER_SIZE as u64;
    let mut prev_pgno = 0u32;
    loop {
        let pgno = get_uvarint(bytes, &mut pos)?;
        if pgno == 0 {
            break;
        }
        let offset = get_uvarint(bytes, &mut pos)?;
        let size = get_uvarint(bytes, &mut pos)?;
        let pgno = u32::try_from(pgno).map_err(|_| Error::BadIndexEntry {
            pgno,
            reason: "page number exceeds u32",
        })?;
        let bad = |reason| Error::BadIndexEntry {
            pgno: u64::from(pgno),
            reason,
        };
        if pgno <= prev_pgno {
            return Err(Error::PagesOutOfOrder {
                prev: prev_pgno,
                pgno,
            });
        }
        if offset < next_offset {
            return Err(bad("frame overlaps the header or the previous frame"));
        }
        if size < (PAGE_HEADER_SIZE + 1) as u64 {
            return Err(bad("frame is smaller than a page header"));
        }
        match offset.checked_add(size) {
            Some(end) if end <= frames_end => next_offset = end,
            _ => return Err(bad("frame extends past the page block")),
        }
        prev_pgno = pgno;
        entries.push(IndexEntry { pgno, offset, size });
    }
    if pos != bytes.len() {
        return Err(Error::IndexLengthMismatch {
            stored: bytes.len() as u64,
            actual: pos as u64,
        });
    }
    Ok(PageIndex { entries })
}

/// Appends `v` as an unsigned LEB128 varint (Go `binary.AppendUvarint`).
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint at `*pos`, rejecting overflow (more than 64 bits) like Go's
/// `binary.Uvarint`; a varint cut off by the end of `bytes` is a truncated index.
pub(crate) fn get_uvarint(bytes: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let Some(&b) = bytes.get(*pos) else {
            return Err(Error::TruncatedIndex("page index ends inside a varint"));
        };
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(Error::BadVarint);
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(Error::BadVarint)
}

/// Incremental varint reader over a byte stream (used by the streaming decoder).
#[derive(Debug, Default)]
pub(crate) struct VarintState {
    value: u64,
    shift: u32,
}

impl VarintState {
    /// Feeds one byte; returns the value when complete.
    pub(crate) fn push(&mut self, b: u8) -> Result<Option<u64>> {
        if self.shift == 63 && b > 1 {
            return Err(Error::BadVarint);
        }
        self.value |= u64::from(b & 0x7f) << self.shift;
        if b < 0x80 {
            let v = self.value;
            *self = VarintState::default();
            return Ok(Some(v));
        }
        self.shift += 7;
        if self.shift > 63 {
            return Err(Error::BadVarint);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_go() {
        for v in [0u64, 1, 127, 128, 300, 1 << 32, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_uvarint(&b, &mut pos).unwrap(), v);
            assert_eq!(pos, b.len());
            let mut st = VarintState::default();
            let mut out = None;
            for &x in &b {
                assert!(out.is_none());
                out = st.push(x).unwrap();
            }
            assert_eq!(out, Some(v));
        }
        let mut b = Vec::new();
        put_uvarint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        // 11 bytes, or a 10th byte > 1, overflow.
        let over = [0xff; 9].iter().copied().chain([0x02]).collect::<Vec<_>>();
        assert!(matches!(get_uvarint(&over, &mut 0), Err(Error::BadVarint)));
        let mut st = VarintState::default();
        let r: Result<Vec<_>> = over.iter().map(|&x| st.push(x)).collect();
        assert!(matches!(r, Err(Error::BadVarint)));
        assert!(matches!(
            get_uvarint(&[0x80], &mut 0),
            Err(Error::TruncatedIndex(_))
        ));
    }

    #[test]
    fn spec_example_index() {
        // `docs/ltx-and-replica-format.md#worked-example`: index of the real L0 file: pgno 3,
        // offset 100, size 57; terminator; length 4.
        let idx = PageIndex::from_sorted(vec![IndexEntry {
            pgno: 3,
            offset: 100,
            size: 57,
        }]);
        let mut b = Vec::new();
        idx.encode(&mut b);
        assert_eq!(b, [0x03, 0x64, 0x39, 0x00]);
        let mut tail = b.clone();
        tail.extend_from_slice(&4u64.to_be_bytes());
        tail.extend_from_slice(&[0u8; 16]);
        assert_eq!(PageIndex::from_tail(&tail, 191).unwrap(), idx);
        assert!(matches!(
            PageIndex::from_tail(&tail[1..], 191),
            Err(Error::TailTooShort {
                needed: 28,
                have: 27
            })
        ));
        assert!(matches!(
            PageIndex::from_tail(&tail, 150),
            Err(Error::BadIndexEntry { pgno: 3, .. })
        ));
    }
}
