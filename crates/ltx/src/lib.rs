//! Litestream's LTX file format, byte-compatible with Litestream v0.5.
//!
//! This crate owns the bytes of an LTX file and nothing else: it knows no SQLite connection, no
//! file system policy and no object store, so it can be fuzzed and reused. The format is described
//! in `docs/ltx-and-replica-format.md`, and what keeps it readable by Litestream in
//! `docs/replication.md#interoperability-with-litestream`. All I/O goes through
//! `std::io::Read` / `std::io::Write`; nothing here opens a path, spawns a thread or blocks on
//! anything else.
//!
//! A file is `Header(100) | PageFrame* | EndMarker(6) | PageIndex | IndexLen(u64) |
//! Trailer(16)`. Every malformed input is a typed [`Error`] naming what is wrong; no input
//! panics, and no field of a file decides how much memory is allocated.
//!
//! # Layout
//!
//! The modules are private; everything a caller needs is re-exported here.
//!
//! - `header.rs`: [`Header`], the 100-byte header and its validation rules; page-size helpers
//!   ([`is_valid_page_size`]) and [`lock_page`].
//! - `frame.rs` (and `frame/legacy.rs`): page frames — the page header, the two payload
//!   encodings ([`PageEncoding`]) and [`decode_frame`], which decodes one frame fetched by a
//!   range read.
//! - `index.rs`: [`PageIndex`], written after the frames and parsed from a file's tail with
//!   [`PageIndex::from_tail`].
//! - `trailer.rs`: [`Trailer`]; `checksum.rs`: the CRC-64/GO-ISO file checksum ([`Crc64`]) and
//!   the database checksums ([`DbChecksum`]).
//! - `encoder.rs`: [`Encoder`] writes a file page by page; `decoder.rs`: [`Decoder`] reads one
//!   page by page and verifies it at the end ([`Decoded`]); `tally.rs`: the running account
//!   (checksum, offsets, page order, index) both keep the same way.
//! - `compactor.rs`: [`Compactor`] merges a contiguous run of files (oldest → newest) into one
//!   LTX file ([`Compactor::compact`], compaction) or into a database image
//!   ([`Compactor::restore`], restore); [`PageSink`] is any other destination, and
//!   [`Compactor::merge_versions`] hands every input's image of each page to a caller.
//! - `name.rs`: [`FileName`] / [`TxId`], `<min hex16>-<max hex16>.ltx`.
//! - `error.rs`: [`Error`], grouped by the section of the file it is about ([`Section`]).

#![warn(unreachable_pub)] // items are `pub` only when the re-exports below name them

mod checksum;
mod compactor;
mod decoder;
mod encoder;
mod error;
mod frame;
mod header;
mod index;
mod name;
#[cfg(test)]
mod noise;
mod tally;
mod trailer;

pub use checksum::{Checksum, Crc64, DbChecksum};
pub use compactor::{Compactor, DatabaseWriter, PageSink, PageVersions, Restored};
pub use decoder::{Decoded, Decoder};
pub use encoder::{Encoded, Encoder};
pub use error::{ChecksumRule, Error, Lz4Error, Result, Section};
pub use frame::{PageEncoding, decode_frame};
pub use header::{HEADER_FLAG_NO_CHECKSUM, HEADER_SIZE, Header, is_valid_page_size, lock_page};
pub use index::{IndexEntry, PageIndex, TAIL_FETCH_SIZE};
pub use name::{FileName, ParseNameError, TxId};
pub use trailer::Trailer;

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
