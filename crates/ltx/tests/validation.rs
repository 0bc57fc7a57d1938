//! Every validation rule of `docs/ltx-and-replica-format.md#validation-rules`, each on a whole
//! file, each failing with the typed error that names it; plus the encoder's rules, the merge
//! rules, and database checksums for files that carry them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ltx::{
    Checksum, ChecksumRule, Compactor, DatabaseWriter, DbChecksum, Decoder, Encoder, Error, Header,
    PageEncoding, PageSink, Section, TxId, lock_page,
};

const PS: u32 = 1024;

fn image(pages: usize) -> Vec<u8> {
    let mut rng = Rng(7);
    (0..pages)
        .flat_map(|i| {
            let mut p = vec![i as u8; PS as usize];
            p[100..300].copy_from_slice(&rng.bytes(200));
            p
        })
        .collect()
}

fn valid(encoding: PageEncoding) -> Vec<u8> {
    snapshot(&image(4), PS, 3, 1234, encoding)
}

fn err(bytes: &[u8]) -> Error {
    decode_all(bytes).expect_err("corrupt file must not decode")
}

fn patched(f: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = valid(PageEncoding::Block);
    f(&mut b);
    b
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn header_rules() {
    assert!(matches!(err(&patched(|b| b[0] = b'X')), Error::BadMagic(_)));
    assert!(matches!(
        err(&patched(|b| set_u32(b, 4, 3))),
        Error::BadFlags(3)
    ));
    assert!(matches!(
        err(&patched(|b| set_u32(b, 8, 1000))),
        Error::BadPageSize(1000)
    ));
    assert!(matches!(
        err(&patched(|b| set_u32(b, 8, 131072))),
        Error::BadPageSize(131072)
    ));
    assert!(matches!(
        err(&patched(|b| set_u64(b, 16, 0))),
        Error::ZeroTxId { field: "MinTXID" }
    ));
    assert!(matches!(
        err(&patched(|b| set_u64(b, 24, 0))),
        Error::ZeroTxId { field: "MaxTXID" }
    ));
    assert!(matches!(
        err(&patched(|b| set_u64(b, 16, 9))),
        Error::TxIdOrder { .. }
    ));
    assert!(matches!(
        err(&patched(|b| set_u64(b, 48, u64::MAX))),
        Error::NegativeWalField {
            field: "WALOffset",
            ..
        }
    ));
    assert!(matches!(
        err(&patched(|b| set_u32(b, 64, 5))),
        Error::WalSaltWithoutOffset
    ));
    assert!(matches!(
        err(&patched(|b| set_u64(b, 56, 5))),
        Error::WalSizeWithoutOffset(5)
    ));
    assert!(matches!(
        err(&patched(|b| set_u64(b, 40, 1 << 63))),
        Error::BadPreApplyChecksum {
            rule: ChecksumRule::NotAllowed,
            ..
        }
    ));
    // Reserved header bytes are not checked by rule, but they are covered by the checksum.
    assert!(matches!(
        err(&patched(|b| b[90] = 1)),
        Error::ChecksumMismatch { .. }
    ));
}

#[test]
fn page_frame_rules() {
    // First frame at offset 100: pgno(4) flags(2) len(4) block.
    assert!(matches!(
        err(&patched(|b| b[105] = 3)),
        Error::BadPageFlags { pgno: 1, flags: 3 }
    ));
    assert!(matches!(
        err(&patched(|b| set_u32(b, 100, 0))),
        Error::ZeroPageNumber { flags: 1 }
    ));
    assert!(matches!(
        err(&patched(|b| set_u32(b, 106, 0x7fff_ffff))),
        Error::CompressedTooLarge {
            pgno: 1,
            len: 0x7fff_ffff,
            ..
        }
    ));
    // The page size in the header disagrees with what the pages decompress to.
    assert!(matches!(
        err(&patched(|b| set_u32(b, 8, 2048))),
        Error::DecompressedSize {
            pgno: 1,
            expected: 2048,
            actual: 1024
        }
    ));
    assert!(matches!(
        err(&patched(|b| set_u32(b, 8, 512))),
        Error::DecompressedTooLarge {
            pgno: 1,
            expected: 512
        }
    ));
    // A legacy frame whose page header claims block encoding and vice versa.
    let mut legacy = valid(PageEncoding::LegacyFrame);
    legacy[105] = 1;
    assert!(decode_all(&legacy).is_err());
    let mut block = valid(PageEncoding::Block);
    block[105] = 0;
    assert!(matches!(
        decode_all(&block),
        Err(Error::Lz4 { pgno: 1, .. })
    ));
}

#[test]
fn pages_out_of_order() {
    // Frames of two files spliced together: page 3, then page 2.
    let img = image(4);
    let h = Header::new(PS, 4, TxId(2), TxId(2), 0);
    let a = encode(h, &img, &[3], PageEncoding::Block);
    let b = encode(h, &img, &[2], PageEncoding::Block);
    let ea = Decoder::verify(&a[..]).unwrap().index.entries()[0];
    let eb = Decoder::verify(&b[..]).unwrap().index.entries()[0];
    let mut f = a[..(ea.offset + ea.size) as usize].to_vec();
    f.extend_from_slice(&b[eb.offset as usize..]);
    assert!(matches!(
        err(&f),
        Error::PagesOutOfOrder { prev: 3, pgno: 2 }
    ));
}

#[test]
fn index_trailer_and_checksum_rules() {
    let good = valid(PageEncoding::Block);
    let n = good.len();
    let (_, _, done) = decode_all(&good).unwrap();
    let index_len = done.index.entries().len();
    assert_eq!(index_len, 4);

    // Flipping a byte of a stored page: LZ4 error or checksum mismatch, never success.
    let mut f = good.clone();
    f[150] ^= 0x55;
    assert!(matches!(
        err(&f),
        Error::ChecksumMismatch { .. }
            | Error::Lz4 { .. }
            | Error::DecompressedSize { .. }
            | Error::DecompressedTooLarge { .. }
    ));
    // The file checksum itself.
    let mut f = good.clone();
    f[n - 1] ^= 1;
    assert!(matches!(err(&f), Error::ChecksumMismatch { .. }));
    let mut f = good.clone();
    f[n - 8] &= 0x7f;
    assert!(matches!(err(&f), Error::BadFileChecksumFormat(_)));
    // The index length field.
    let mut f = good.clone();
    f[n - 17] ^= 1;
    assert!(matches!(err(&f), Error::IndexLengthMismatch { .. }));
    // An index entry that disagrees with the frames: the first entry's offset (100 = 0x64).
    let start = done.index.entries()[3].offset + done.index.entries()[3].size + 6;
    let mut f = good.clone();
    assert_eq!(f[start as usize + 1], 0x64);
    f[start as usize + 1] = 0x65;
    assert!(matches!(err(&f), Error::IndexMismatch { position: 0, .. }));
    // An index that stops early.
    let mut f = good.clone();
    f[start as usize] = 0;
    assert!(matches!(
        err(&f),
        Error::IndexMismatch {
            position: 0,
            found: None,
            ..
        }
    ));
    // A non-zero post-apply checksum in a NoChecksum file (checksum fixed up).
    let mut f = good.clone();
    set_u64(&mut f, n - 16, 1 << 63 | 5);
    fix_checksum(&mut f);
    assert!(matches!(
        err(&f),
        Error::BadPostApplyChecksum {
            rule: ChecksumRule::NotAllowed,
            ..
        }
    ));
    // Bytes after the trailer.
    let mut f = good.clone();
    f.push(0);
    assert!(matches!(err(&f), Error::TrailingData));
}

#[test]
fn truncation_anywhere_is_a_truncation_error() {
    for encoding in [PageEncoding::Block, PageEncoding::LegacyFrame] {
        let good = valid(encoding);
        for cut in 0..good.len() {
            match decode_all(&good[..cut]) {
                Err(Error::Truncated { section }) => {
                    if cut < 100 {
                        assert_eq!(section, Section::Header);
                    }
                    if cut >= good.len() - 16 {
                        assert_eq!(section, Section::Trailer);
                    }
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }
}

#[test]
fn decoder_refuses_wrong_buffer_and_going_on_after_an_error() {
    let good = valid(PageEncoding::Block);
    let mut dec = Decoder::new(&good[..]).unwrap();
    let mut small = vec![0u8; 512];
    assert!(matches!(
        dec.next_page(&mut small),
        Err(Error::PageSizeMismatch {
            expected: 1024,
            actual: 512
        })
    ));
    let mut f = good.clone();
    f[105] = 3;
    let mut dec = Decoder::new(&f[..]).unwrap();
    let mut buf = vec![0u8; 1024];
    assert!(dec.next_page(&mut buf).is_err());
    assert!(matches!(dec.next_page(&mut buf), Err(Error::DecoderFailed)));
}

#[test]
fn encoder_rules() {
    let img = image(4);
    let p = |n: u32| page(&img, PS, n).to_vec();
    let inc = Header::new(PS, 4, TxId(2), TxId(2), 0);
    let mut e = Encoder::new(Vec::new(), inc).unwrap();
    assert!(matches!(
        e.write_page(5, &p(1)),
        Err(Error::PageBeyondCommit { pgno: 5, commit: 4 })
    ));
    assert!(matches!(
        e.write_page(1, &[0u8; 10]),
        Err(Error::PageSizeMismatch { .. })
    ));
    assert!(matches!(
        e.write_page(0, &p(1)),
        Err(Error::ZeroPageNumber { .. })
    ));
    e.write_page(3, &p(3)).unwrap();
    assert!(matches!(
        e.write_page(3, &p(3)),
        Err(Error::PagesOutOfOrder { prev: 3, pgno: 3 })
    ));
    assert!(matches!(
        e.write_page(2, &p(2)),
        Err(Error::PagesOutOfOrder { prev: 3, pgno: 2 })
    ));

    let snap = Header::new(PS, 4, TxId(1), TxId(1), 0);
    let mut e = Encoder::new(Vec::new(), snap).unwrap();
    assert!(matches!(
        e.write_page(2, &p(2)),
        Err(Error::SnapshotIncomplete {
            expected: 1,
            found: Some(2),
            ..
        })
    ));
    e.write_page(1, &p(1)).unwrap();
    e.write_page(2, &p(2)).unwrap();
    assert!(matches!(
        e.finish(),
        Err(Error::SnapshotIncomplete {
            expected: 3,
            found: None,
            ..
        })
    ));

    // Invalid headers are refused before anything is written.
    let mut bad = inc;
    bad.page_size = 100;
    assert!(matches!(
        Encoder::new(Vec::new(), bad),
        Err(Error::BadPageSize(100))
    ));

    // The lock page is refused.
    let lock = lock_page(65536);
    let big = Header::new(65536, lock + 1, TxId(2), TxId(2), 0);
    let mut e = Encoder::new(Vec::new(), big).unwrap();
    assert!(matches!(
        e.write_page(lock, &vec![0u8; 65536]),
        Err(Error::LockPage { .. })
    ));
    e.write_page(lock + 1, &vec![1u8; 65536]).unwrap();
    e.finish().unwrap();
}

#[test]
fn merge_rules() {
    let img = image(4);
    let snap = snapshot(&img, PS, 1, 0, PageEncoding::Block);
    let f = |min, max, pages: &[u32]| {
        encode(
            Header::new(PS, 4, TxId(min), TxId(max), 0),
            &img,
            pages,
            PageEncoding::Block,
        )
    };
    let gap = f(3, 3, &[2]);
    assert!(matches!(
        restore(&[&snap, &gap]),
        Err(Error::NonContiguous {
            prev_max: TxId(1),
            next_min: TxId(3),
            ..
        })
    ));
    let no_progress = f(1, 1, &[1, 2, 3, 4]);
    assert!(matches!(
        restore(&[&snap, &no_progress]),
        Err(Error::NonContiguous { .. })
    ));
    let other_size = snapshot(&image(2)[..512 * 4], 512, 2, 0, PageEncoding::Block);
    assert!(matches!(
        restore(&[&snap, &other_size]),
        Err(Error::InputPageSizeMismatch {
            expected: 1024,
            found: 512
        })
    ));
    assert!(matches!(
        Compactor::<&[u8]>::new(Vec::new()),
        Err(Error::NoInputs)
    ));
    // Restore needs a snapshot first; compaction does not.
    let two = f(2, 2, &[2]);
    let three = f(3, 3, &[3]);
    assert!(matches!(
        restore(&[&two, &three]),
        Err(Error::RestoreNeedsSnapshot(TxId(2)))
    ));
    compact(&[&two, &three]).unwrap();
    // A corrupt input is reported with its position.
    let mut bad = three.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let e = restore(&[&snap, &two, &bad]).unwrap_err();
    assert!(matches!(e, Error::Input { index: 2, .. }), "{e}");
    assert!(matches!(e.innermost(), Error::ChecksumMismatch { .. }));
}

#[test]
fn restore_needs_every_page() {
    // An "L0-only" chain whose first file is not a full snapshot is caught by the encoder, so
    // build the gap at the sink: a database writer missing page 2.
    let mut w = DatabaseWriter::new(Vec::new(), 512, 3);
    w.write_page(1, &[1u8; 512]).unwrap();
    assert!(matches!(
        w.write_page(3, &[3u8; 512]),
        Err(Error::MissingPage { pgno: 2, commit: 3 })
    ));
    let mut w = DatabaseWriter::new(Vec::new(), 512, 3);
    w.write_page(1, &[1u8; 512]).unwrap();
    assert!(matches!(
        w.finish(),
        Err(Error::MissingPage { pgno: 2, .. })
    ));
    let mut w = DatabaseWriter::new(Vec::new(), 512, 1);
    assert!(matches!(
        w.write_page(2, &[0u8; 512]),
        Err(Error::PageBeyondCommit { .. })
    ));
}

#[test]
fn database_checksums_when_the_file_carries_them() {
    let img = image(4);
    let mut h = Header::new(PS, 4, TxId(1), TxId(1), 0);
    h.flags = 0;
    // Snapshot: the encoder computes the post-apply checksum, the decoder recomputes it.
    let file = encode(h, &img, &[1, 2, 3, 4], PageEncoding::Block);
    let (_, _, done) = decode_all(&file).unwrap();
    let expected = DbChecksum::of_image(&img, PS);
    assert_eq!(done.trailer.post_apply_checksum, expected);
    assert_ne!(expected, Checksum::FLAG);
    // A wrong one (checksum fixed up) is caught.
    let mut f = file.clone();
    let n = f.len();
    set_u64(&mut f, n - 16, expected.0 ^ 1);
    fix_checksum(&mut f);
    assert!(matches!(err(&f), Error::DatabaseChecksumMismatch { .. }));
    // The encoder refuses a supplied checksum that disagrees with the pages.
    let mut e = Encoder::new(Vec::new(), h).unwrap();
    for p in 1..=4 {
        e.write_page(p, page(&img, PS, p)).unwrap();
    }
    e.set_post_apply_checksum(Checksum(expected.0 ^ 2));
    assert!(matches!(
        e.finish(),
        Err(Error::DatabaseChecksumMismatch { .. })
    ));

    // Incremental file with checksums: pre and post must be supplied.
    let mut inc = Header::new(PS, 4, TxId(2), TxId(2), 0);
    inc.flags = 0;
    assert!(matches!(
        Encoder::new(Vec::new(), inc),
        Err(Error::BadPreApplyChecksum {
            rule: ChecksumRule::Required,
            ..
        })
    ));
    inc.pre_apply_checksum = expected;
    let e = Encoder::new(Vec::new(), inc).unwrap();
    assert!(matches!(
        e.finish(),
        Err(Error::BadPostApplyChecksum {
            rule: ChecksumRule::Required,
            ..
        })
    ));
    let mut e = Encoder::new(Vec::new(), inc).unwrap();
    let mut img2 = img.clone();
    img2[1024] = 0xee;
    e.write_page(2, page(&img2, PS, 2)).unwrap();
    e.set_post_apply_checksum(DbChecksum::of_image(&img2, PS));
    let f2 = e.finish().unwrap().writer;
    let (h2, _, d2) = decode_all(&f2).unwrap();
    assert_eq!(h2.pre_apply_checksum, done.trailer.post_apply_checksum);
    assert_eq!(
        d2.trailer.post_apply_checksum,
        DbChecksum::of_image(&img2, PS)
    );
    // Our restore accepts checksummed chains; compaction output is NoChecksum.
    assert_eq!(restore(&[&file, &f2]).unwrap(), img2);
    let (hc, _, dc) = decode_all(&compact(&[&file, &f2]).unwrap()).unwrap();
    assert!(hc.no_checksum());
    assert_eq!(dc.trailer.post_apply_checksum, Checksum::ZERO);
}
