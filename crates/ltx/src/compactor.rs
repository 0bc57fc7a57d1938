//! Merging a contiguous sequence of LTX files into one, in a single streaming pass: the
//! engine of both compaction (output: one LTX file) and restore (output: a database image).
//!
//! The inputs are decoders ordered oldest → newest. Pages are merged by page number with a
//! k-way merge; for each page number the newest input wins, pages beyond the last input's
//! commit are dropped and the lock page is never passed on. Every input is read to its end, so
//! every input's file checksum and index are verified before the merge reports success.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{Read, Write};

use crate::TxId;
use crate::decoder::{Decoded, Decoder};
use crate::encoder::{Encoded, Encoder};
use crate::error::{Error, Result, Section};
use crate::header::{Header, lock_page};

/// Where merged pages go, in strictly ascending page order.
pub trait PageSink {
    fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<()>;
}

impl<W: Write> PageSink for Encoder<W> {
    fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        Encoder::write_page(self, pgno, data)
    }
}

/// Every input's image of one page number during [`Compactor::merge_versions`].
#[derive(Debug, Clone, Copy)]
pub struct PageVersions<'a> {
    /// Indices of the inputs holding the page, ascending (oldest first).
    holders: &'a [usize],
    bufs: &'a [Vec<u8>],
}

impl<'a> PageVersions<'a> {
    /// `(input index, image)` for each input holding the page, oldest input first.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &'a [u8])> + 'a {
        let bufs = self.bufs;
        self.holders.iter().map(move |&i| (i, bufs[i].as_slice()))
    }

    /// The newest input's image (the one a merge keeps).
    pub fn newest(&self) -> Option<(usize, &'a [u8])> {
        self.holders.last().map(|&i| (i, self.bufs[i].as_slice()))
    }
}

/// Writes a raw SQLite database image: exactly `commit × page_size` bytes, page after page,
/// zeros at the lock page. Every page `1..=commit` except the lock page must arrive, in order;
/// a gap is [`Error::MissingPage`].
#[derive(Debug)]
pub struct DatabaseWriter<W: Write> {
    w: W,
    page_size: u32,
    commit: u32,
    lock_pgno: u32,
    next: u32,
    zeros: Vec<u8>,
}

impl<W: Write> DatabaseWriter<W> {
    pub fn new(writer: W, page_size: u32, commit: u32) -> Self {
        DatabaseWriter {
            w: writer,
            page_size,
            commit,
            lock_pgno: lock_page(page_size),
            next: 1,
            zeros: Vec::new(),
        }
    }

    /// Writes the lock page's zeros if it is next.
    fn skip_lock_page(&mut self) -> Result<()> {
        if self.next == self.lock_pgno && self.next <= self.commit {
            if self.zeros.is_empty() {
                self.zeros = vec![0u8; self.page_size as usize];
            }
            self.w
                .write_all(&self.zeros)
                .map_err(|e| Error::io(Section::PageData, e))?;
            self.next += 1;
        }
        Ok(())
    }

    /// Checks that every page was written and returns the writer (not flushed or synced).
    pub fn finish(mut self) -> Result<W> {
        self.skip_lock_page()?;
        if self.next <= self.commit {
            return Err(Error::MissingPage {
                pgno: self.next,
                commit: self.commit,
            });
        }
        Ok(self.w)
    }
}

impl<W: Write> PageSink for DatabaseWriter<W> {
    fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        if data.len() != self.page_size as usize {
            return Err(Error::PageSizeMismatch {
                expected: self.page_size,
                actual: data.len(),
            });
        }
        if pgno > self.commit {
            return Err(Error::PageBeyondCommit {
                pgno,
                commit: self.commit,
            });
        }
        if pgno == self.lock_pgno {
            return Err(Error::LockPage { pgno });
        }
        self.skip_lock_page()?;
        if pgno < self.next {
            return Err(Error::PagesOutOfOrder {
                prev: self.next - 1,
                pgno,
            });
        }
        if pgno > self.next {
            return Err(Error::MissingPage {
                pgno: self.next,
                commit: self.commit,
            });
        }
        self.w
            .write_all(data)
            .map_err(|e| Error::io(Section::PageData, e))?;
        self.next += 1;
        Ok(())
    }
}

/// What [`Compactor::restore`] hands back.
#[derive(Debug)]
pub struct Restored<W> {
    /// The writer after the last byte (not flushed or synced).
    pub writer: W,
    /// The TXID the database is at (MaxTXID of the last input).
    pub txid: TxId,
    pub page_size: u32,
    /// Database size in pages; the image is `commit × page_size` bytes.
    pub commit: u32,
    /// Every input, verified.
    pub inputs: Vec<Decoded>,
}

/// Merges decoders of a contiguous TXID range. See the module docs.
///
/// Compaction: `Compactor::new(decoders)?.compact(writer)` writes one LTX file whose header is
/// [`Compactor::output_header`] (`docs/ltx-and-replica-format.md#compaction-output`: Min of the
/// first, Max/Commit/Timestamp of the last, NoChecksum, WAL fields zero). Restore:
/// `Compactor::new(decoders)?.restore(writer)` writes the database image at the last input's
/// MaxTXID; the first input must be a snapshot (MinTXID 1). [`Compactor::merge`] drives any other
/// [`PageSink`].
pub struct Compactor<R: Read> {
    inputs: Vec<Decoder<R>>,
    header: Header,
}

impl<R: Read> std::fmt::Debug for Compactor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor")
            .field("inputs", &self.inputs.len())
            .field("header", &self.header)
            .finish()
    }
}

impl<R: Read> Compactor<R> {
    /// Checks the inputs (oldest first; headers already read by [`Decoder::new`]): at least
    /// one, equal page sizes, and each next file contiguous with the one before
    /// (`next.min <= prev.max + 1 && next.max > prev.max`: overlap is allowed, gaps are not).
    pub fn new(inputs: Vec<Decoder<R>>) -> Result<Self> {
        let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
            return Err(Error::NoInputs);
        };
        let (first, last) = (*first.header(), *last.header());
        for pair in inputs.windows(2) {
            let (prev, next) = (pair[0].header(), pair[1].header());
            if next.page_size != prev.page_size {
                return Err(Error::InputPageSizeMismatch {
                    expected: prev.page_size,
                    found: next.page_size,
                });
            }
            if !is_contiguous(prev.max_txid, next.min_txid, next.max_txid) {
                return Err(Error::NonContiguous {
                    prev_min: prev.min_txid,
                    prev_max: prev.max_txid,
                    next_min: next.min_txid,
                    next_max: next.max_txid,
                });
            }
        }
        let header = Header::new(
            first.page_size,
            last.commit,
            first.min_txid,
            last.max_txid,
            last.timestamp,
        );
        Ok(Compactor { inputs, header })
    }

    /// The header of the merged file (`docs/ltx-and-replica-format.md#compaction-output`).
    pub fn output_header(&self) -> &Header {
        &self.header
    }

    /// Names the output from `min` on instead of the first input's MinTXID: for a merge whose
    /// first input also holds TXIDs before `min` that the state the output applies to
    /// already has (each page's newest image is the same whichever of those TXIDs it came
    /// from). `min` must not be beyond the last input's MaxTXID; below the first input's
    /// MinTXID it changes nothing.
    pub fn start_output_at(&mut self, min: TxId) -> Result<()> {
        if min > self.header.max_txid {
            return Err(Error::TxIdOrder {
                min,
                max: self.header.max_txid,
            });
        }
        self.header.min_txid = self.header.min_txid.max(min);
        Ok(())
    }

    /// Headers of the inputs, oldest first.
    pub fn input_headers(&self) -> impl Iterator<Item = &Header> {
        self.inputs.iter().map(|d| d.header())
    }

    /// Runs the merge into `sink`; returns every input's verified summary.
    pub fn merge<S: PageSink>(self, sink: &mut S) -> Result<Vec<Decoded>> {
        let commit = self.header.commit;
        let lock_pgno = self.header.lock_page();
        self.merge_versions(|pgno, versions| match versions.newest() {
            Some((_, data)) if pgno <= commit && pgno != lock_pgno => sink.write_page(pgno, data),
            _ => Ok(()),
        })
    }

    /// The merge itself: calls `each` once per page number any input holds, in ascending
    /// order, with every input's image of that page ([`PageVersions`], oldest input first),
    /// including pages beyond the last input's commit (the caller decides what they mean;
    /// [`Compactor::merge`] drops them). Memory is one page buffer per input. Every input is
    /// read to its end and verified before this returns success.
    pub fn merge_versions<E: From<Error>>(
        mut self,
        mut each: impl FnMut(u32, PageVersions<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<Vec<Decoded>, E> {
        let page_size = self.header.page_size as usize;
        let mut bufs: Vec<Vec<u8>> = (0..self.inputs.len())
            .map(|_| vec![0u8; page_size])
            .collect();
        // Min-heap on page number, then input index (oldest first).
        let mut heap: BinaryHeap<Reverse<(u32, usize)>> = BinaryHeap::new();
        for (i, (dec, buf)) in self.inputs.iter_mut().zip(bufs.iter_mut()).enumerate() {
            if let Some(pgno) = dec.next_page(buf).map_err(|e| Error::input(i, e))? {
                heap.push(Reverse((pgno, i)));
            }
        }
        let mut holders: Vec<usize> = Vec::with_capacity(self.inputs.len());
        while let Some(Reverse((pgno, first))) = heap.pop() {
            holders.clear();
            holders.push(first);
            while let Some(&Reverse((p, i))) = heap.peek() {
                if p != pgno {
                    break;
                }
                heap.pop();
                holders.push(i);
            }
            each(
                pgno,
                PageVersions {
                    holders: &holders,
                    bufs: &bufs,
                },
            )?;
            // Every input that held this page moves on (older images were read, so their
            // bytes count towards their file's checksum, and dropped).
            for &i in &holders {
                if let Some(p) = self.inputs[i]
                    .next_page(&mut bufs[i])
                    .map_err(|e| Error::input(i, e))?
                {
                    heap.push(Reverse((p, i)));
                }
            }
        }
        self.inputs
            .into_iter()
            .enumerate()
            .map(|(i, d)| d.finish().map_err(|e| E::from(Error::input(i, e))))
            .collect()
    }

    /// Compaction: merges into one LTX file written to `writer`.
    pub fn compact<W: Write>(self, writer: W) -> Result<Encoded<W>> {
        let mut enc = Encoder::new(writer, self.header)?;
        self.merge(&mut enc)?;
        enc.finish()
    }

    /// Restore: writes the database image (`commit × page_size` bytes) to `writer`. The first
    /// input must be a snapshot and the merge must supply every page.
    pub fn restore<W: Write>(self, writer: W) -> Result<Restored<W>> {
        if !self.header.is_snapshot() {
            return Err(Error::RestoreNeedsSnapshot(self.header.min_txid));
        }
        let header = self.header;
        let mut db = DatabaseWriter::new(writer, header.page_size, header.commit);
        let inputs = self.merge(&mut db)?;
        Ok(Restored {
            writer: db.finish()?,
            txid: header.max_txid,
            page_size: header.page_size,
            commit: header.commit,
            inputs,
        })
    }
}

/// Litestream's contiguity rule for consecutive files of a merge.
pub(crate) fn is_contiguous(prev_max: TxId, next_min: TxId, next_max: TxId) -> bool {
    next_min.0 <= prev_max.0.saturating_add(1) && next_max > prev_max
}
