//! Property: corrupting any single byte of a valid LTX file is either detected (a typed error
//! from the decoder, the tail-index parser or the merge) or harmless (the same header and the
//! same pages come out). Every byte position of each generated file is tried.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ltx::{Header, PageEncoding, PageIndex, TxId, decode_frame};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    page_size: u32,
    snapshot: bool,
    encoding: PageEncoding,
    pages: Vec<(u32, Vec<u8>)>,
    commit: u32,
}

/// A page: runs of a repeated byte, text-like stretches and random bytes, so LZ4 blocks have
/// both matches and literals.
fn page_strategy(page_size: u32) -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), 0usize..4).prop_map(move |(seed, kind)| {
        let mut rng = Rng(seed | 1);
        let n = page_size as usize;
        match kind {
            0 => vec![(seed % 251) as u8; n],
            1 => rng.bytes(n),
            _ => (0..n)
                .map(|i| {
                    if i % 97 < 60 {
                        b"sqlite page text "[i % 17]
                    } else {
                        rng.next_u64() as u8
                    }
                })
                .collect(),
        }
    })
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(512u32), Just(1024u32), Just(4096u32)],
        any::<bool>(),
        prop_oneof![Just(PageEncoding::Block), Just(PageEncoding::LegacyFrame)],
        1usize..5,
    )
        .prop_flat_map(|(page_size, snapshot, encoding, n)| {
            proptest::collection::vec(page_strategy(page_size), n).prop_flat_map(move |datas| {
                let n = datas.len() as u32;
                // Snapshots hold 1..=n; incremental files a sparse ascending subset.
                let pgnos = if snapshot {
                    Just((1..=n).collect::<Vec<u32>>()).boxed()
                } else {
                    proptest::collection::btree_set(1u32..20, datas.len())
                        .prop_map(|s| s.into_iter().collect::<Vec<u32>>())
                        .boxed()
                };
                let datas = datas.clone();
                pgnos.prop_map(move |pgnos| {
                    let commit = *pgnos.last().unwrap_or(&1);
                    Case {
                        page_size,
                        snapshot,
                        encoding,
                        pages: pgnos.into_iter().zip(datas.clone()).collect(),
                        commit,
                    }
                })
            })
        })
}

fn encode_case(c: &Case) -> Vec<u8> {
    let min = if c.snapshot { 1 } else { 5 };
    let header = Header::new(c.page_size, c.commit, TxId(min), TxId(min + 2), 1_234_567);
    let mut enc = ltx::Encoder::with_encoding(Vec::new(), header, c.encoding).unwrap();
    for (p, d) in &c.pages {
        enc.write_page(*p, d).unwrap();
    }
    enc.finish().unwrap().writer
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_single_byte_corruption_is_detected_or_harmless(c in case_strategy(), mask in 1u8..=255) {
        let file = encode_case(&c);
        let (header, pages, done) = decode_all(&file).unwrap();
        prop_assert_eq!(&pages, &c.pages);
        let mut harmless = 0usize;
        for pos in 0..file.len() {
            let mut bad = file.clone();
            bad[pos] ^= mask;
            match decode_all(&bad) {
                Err(_) => {}
                Ok((h, p, d)) => {
                    // Accepted: it must mean exactly what the original meant.
                    prop_assert_eq!(h, header, "header changed by byte {}", pos);
                    prop_assert_eq!(&p, &pages, "pages changed by byte {}", pos);
                    prop_assert_eq!(d.trailer, done.trailer);
                    harmless += 1;
                }
            }
            // The tail parser and single-frame reads must not panic on it either (what they
            // decode is not checked: only the file checksum can vouch for page bytes).
            if let Ok(index) = PageIndex::from_tail(&bad, bad.len() as u64) {
                let mut buf = vec![0u8; c.page_size as usize];
                for e in index.entries() {
                    if let Some(frame) = bad.get(e.offset as usize..(e.offset + e.size) as usize) {
                        let _ = decode_frame(frame, &mut buf);
                    }
                }
            }
        }
        // Almost everything is covered by the checksum; only LZ4 encodings that decode to the
        // same bytes can be harmless.
        prop_assert!(harmless * 20 < file.len(), "{} of {} corruptions accepted", harmless, file.len());
    }
}
