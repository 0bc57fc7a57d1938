//! Round trips over real SQLite databases (page sizes 512…65536, with incompressible pages):
//! encode → decode, tail index and single-frame reads, compaction and restore of chains with
//! growth and shrink, in both page encodings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ltx::{
    Compactor, Decoder, Header, PageEncoding, PageIndex, TAIL_FETCH_SIZE, TxId, decode_frame,
};

const PAGE_SIZES: [u32; 8] = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
const ENCODINGS: [PageEncoding; 2] = [PageEncoding::Block, PageEncoding::LegacyFrame];

#[test]
fn snapshot_round_trip_every_page_size() {
    for ps in PAGE_SIZES {
        let image = db_image(ps, 200, 3, u64::from(ps));
        let commit = commit_of(&image, ps);
        assert!(commit >= 4, "page size {ps}: only {commit} pages");
        for encoding in ENCODINGS {
            let file = snapshot(&image, ps, 7, 1_700_000_000_123, encoding);
            let (header, pages, done) = decode_all(&file).unwrap();
            assert_eq!(header.commit, commit);
            assert_eq!(header.max_txid, TxId(7));
            assert_eq!(pages.len(), commit as usize);
            for (pgno, data) in &pages {
                assert_eq!(&data[..], page(&image, ps, *pgno), "ps {ps} page {pgno}");
            }
            assert_eq!(done.size, file.len() as u64);
            assert_eq!(done.index.len(), commit as usize);

            // Tail index: from the last 32 KiB, or as many bytes as it says it needs.
            let size = file.len() as u64;
            let take = TAIL_FETCH_SIZE.min(size) as usize;
            let index = match PageIndex::from_tail(&file[file.len() - take..], size) {
                Ok(i) => i,
                Err(ltx::Error::TailTooShort { needed, .. }) => {
                    PageIndex::from_tail(&file[file.len() - needed as usize..], size).unwrap()
                }
                Err(e) => panic!("{e}"),
            };
            assert_eq!(index, done.index);
            // Every page by itself through its index entry.
            let mut one = vec![0u8; ps as usize];
            for e in index.entries() {
                let frame = &file[e.offset as usize..(e.offset + e.size) as usize];
                assert_eq!(decode_frame(frame, &mut one).unwrap(), e.pgno);
                assert_eq!(&one[..], page(&image, ps, e.pgno));
            }

            // Restore of the snapshot alone is the database, byte for byte.
            assert_eq!(restore(&[&file]).unwrap(), image, "ps {ps} {encoding:?}");
        }
    }
}

#[test]
fn incompressible_pages_grow_and_still_round_trip() {
    let ps = 65536;
    let mut rng = Rng(42);
    let image = rng.bytes(ps as usize * 3);
    let file = snapshot(&image, ps, 1, 0, PageEncoding::Block);
    let (_, _, done) = decode_all(&file).unwrap();
    // A random 64 KiB page compresses to more than 64 KiB
    // (`docs/ltx-and-replica-format.md#block-encoding`).
    assert!(
        done.index
            .entries()
            .iter()
            .all(|e| e.size > u64::from(ps) + 10)
    );
    assert_eq!(restore(&[&file]).unwrap(), image);
    let legacy = snapshot(&image, ps, 1, 0, PageEncoding::LegacyFrame);
    assert_eq!(restore(&[&legacy]).unwrap(), image);
}

#[test]
fn chain_restore_and_compaction() {
    for ps in [1024, 4096] {
        let states = three_states(ps);
        for encoding in ENCODINGS {
            let [f1, f2, f3] = chain(&states, ps, encoding);
            assert_eq!(restore(&[&f1]).unwrap(), states[0]);
            assert_eq!(restore(&[&f1, &f2]).unwrap(), states[1]);
            // The shrink drops pages past the new commit.
            assert_eq!(restore(&[&f1, &f2, &f3]).unwrap(), states[2]);

            // L1-style compaction of 2..3, then restore through it.
            let c23 = compact(&[&f2, &f3]).unwrap();
            let (h, pages, _) = decode_all(&c23).unwrap();
            assert_eq!((h.min_txid, h.max_txid), (TxId(2), TxId(3)));
            assert_eq!(h.commit, commit_of(&states[2], ps));
            assert_eq!(h.timestamp, 1002);
            assert_eq!(
                (h.wal_offset, h.wal_size, h.wal_salt1, h.wal_salt2),
                (0, 0, 0, 0)
            );
            assert!(h.no_checksum());
            assert!(pages.iter().all(|(p, _)| *p <= h.commit));
            assert_eq!(restore(&[&f1, &c23]).unwrap(), states[2]);

            // A snapshot by compaction (what Litestream's L9 is) is the whole database.
            let c13 = compact(&[&f1, &f2, &f3]).unwrap();
            assert!(decode_all(&c13).unwrap().0.is_snapshot());
            assert_eq!(restore(&[&c13]).unwrap(), states[2]);

            // Overlapping inputs are allowed (1-1 then 1-2), a file that adds nothing is not.
            let c12 = compact(&[&f1, &f2]).unwrap();
            assert_eq!(restore(&[&c12, &f3]).unwrap(), states[2]);
            assert_eq!(restore(&[&f1, &c12, &f3]).unwrap(), states[2]);
            assert!(matches!(
                restore(&[&c12, &f2, &f3]),
                Err(ltx::Error::NonContiguous { .. })
            ));
        }
    }
}

#[test]
fn newest_page_wins_and_pages_beyond_commit_are_dropped() {
    let ps = 512;
    let img = |fill: u8, n: usize| vec![fill; ps as usize * n];
    let snap = snapshot(&img(1, 4), ps, 1, 0, PageEncoding::Block);
    // TXID 2 rewrites page 2 and grows to 6 pages.
    let grow = encode(
        Header::new(ps, 6, TxId(2), TxId(2), 0),
        &img(2, 6),
        &[2, 5, 6],
        PageEncoding::Block,
    );
    // TXID 3 rewrites page 2 again and shrinks to 5 pages (page 6 must vanish).
    let shrink = encode(
        Header::new(ps, 5, TxId(3), TxId(3), 0),
        &img(3, 5),
        &[2],
        PageEncoding::Block,
    );
    let out = restore(&[&snap, &grow, &shrink]).unwrap();
    let pages: Vec<u8> = out.chunks(ps as usize).map(|p| p[0]).collect();
    assert_eq!(pages, vec![1, 3, 1, 1, 2]);
    let merged = compact(&[&grow, &shrink]).unwrap();
    let (h, pages, _) = decode_all(&merged).unwrap();
    assert_eq!(h.commit, 5);
    let got: Vec<(u32, u8)> = pages.iter().map(|(p, d)| (*p, d[0])).collect();
    assert_eq!(got, vec![(2, 3), (5, 2)]);
}

#[test]
fn decoder_exposes_pages_one_by_one_with_reused_buffer() {
    let ps = 4096;
    let image = db_image(ps, 100, 1, 9);
    let file = snapshot(&image, ps, 1, 0, PageEncoding::Block);
    let mut dec = Decoder::new(&file[..]).unwrap();
    let mut buf = vec![0u8; ps as usize];
    let mut seen = 0;
    while let Some(p) = dec.next_page(&mut buf).unwrap() {
        seen += 1;
        assert_eq!(p, seen);
        assert_eq!(&buf[..], page(&image, ps, p));
    }
    // After the end, more calls keep returning None; finish returns the summary.
    assert_eq!(dec.next_page(&mut buf).unwrap(), None);
    assert_eq!(dec.bytes_read(), file.len() as u64);
    let done = dec.finish().unwrap();
    assert_eq!(done.header.commit, seen);
    // finish() without reading pages first drains and verifies them.
    assert_eq!(Decoder::verify(&file[..]).unwrap(), done);
}

#[test]
fn compactor_reports_every_input() {
    let ps = 1024;
    let states = three_states(ps);
    let [f1, f2, f3] = chain(&states, ps, PageEncoding::Block);
    let decs = [&f1, &f2, &f3].map(|f| Decoder::new(&f[..]).unwrap());
    let c = Compactor::new(decs.into()).unwrap();
    assert_eq!(c.input_headers().count(), 3);
    let restored = c.restore(Vec::new()).unwrap();
    assert_eq!(restored.txid, TxId(3));
    assert_eq!(restored.commit, commit_of(&states[2], ps));
    assert_eq!(restored.inputs.len(), 3);
    assert_eq!(restored.inputs[1].size, f2.len() as u64);
}
