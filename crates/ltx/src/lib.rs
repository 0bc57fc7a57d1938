//! Litestream's LTX file format, byte-compatible with Litestream v0.5.
//!
//! This crate owns the bytes of an LTX file and nothing else: it knows no SQLite connection, no
//! file system policy and no object store, so it can be fuzzed and reused. The format is described
//! in `docs/ltx-and-replica-format.md`; the rules that keep it Litestream-compatible in
//! `docs/replication.md#rules-that-keep-litestream-compatible`. All I/O goes through
//! `std::io::Read` / `std::io::Write`; nothing here opens a path, spawns a thread or blocks on
//! anything else.
//!
//! A file is `Header(100) | PageFrame* | EndMarker(6) | PageIndex | IndexLen(u64) |
//! Trailer(16)`:
//!
//! - [`Header`] ([`header`]): the 100-byte header and its validation rules; page-size helpers
//!   and [`lock_page`].
//! - [`Encoder`] writes a file page by page; [`Decoder`] reads one page by page and verifies
//!   it at the end ([`Decoded`]).
//! - [`PageIndex`] ([`index`]): the page index, also parsed from a file's tail with
//!   [`PageIndex::from_tail`] so that [`decode_frame`] can decode one page fetched by a range
//!   read.
//! - [`Trailer`] and the checksums ([`checksum`]): the file checksum (CRC-64/GO-ISO) and the
//!   database checksums.
//! - [`Compactor`] merges a contiguous run of files (oldest → newest) into one LTX file
//!   ([`Compactor::compact`], compaction) or into a database image ([`Compactor::restore`],
//!   restore).
//! - [`FileName`] / [`TxId`] ([`name`]): `<min hex16>-<max hex16>.ltx`.
//!
//! Every malformed input is a typed [`Error`] naming what is wrong; no input panics, and no
//! field of a file decides how much memory is allocated.

pub mod checksum;
pub mod compactor;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod frame;
pub mod header;
pub mod index;
pub mod name;
#[cfg(test)]
mod noise;
mod tally;
pub mod trailer;

pub use checksum::{Checksum, Crc64, DbChecksum, crc64, page_checksum};
pub use compactor::{Compactor, DatabaseWriter, PageSink, Restored, is_contiguous};
pub use decoder::{Decoded, Decoder};
pub use encoder::{Encoded, Encoder};
pub use error::{ChecksumRule, Error, Lz4Error, Result, Section};
pub use frame::{PageEncoding, PageHeader, decode_frame};
pub use header::{
    HEADER_FLAG_NO_CHECKSUM, HEADER_SIZE, Header, MAX_PAGE_SIZE, MIN_PAGE_SIZE, is_valid_page_size,
    lock_page,
};
pub use index::{IndexEntry, PageIndex, TAIL_FETCH_SIZE};
pub use name::{FileName, ParseNameError, TxId};
pub use trailer::{TRAILER_SIZE, Trailer};

#[cfg(test)]
mod tests {
    /// The replication engine moves encoders, decoders and merges onto blocking threads.
    #[test]
    fn codec_types_are_send() {
        fn send<T: Send>() {}
        send::<crate::Decoder<&[u8]>>();
        send::<crate::Decoder<Box<dyn std::io::Read + Send>>>();
        send::<crate::Encoder<Vec<u8>>>();
        send::<crate::Compactor<std::fs::File>>();
        send::<crate::Error>();
    }
}
