//! The real 191-byte L0 file written by Litestream 0.5.17 that
//! `docs/ltx-and-replica-format.md#worked-example` dumps: our decoder must verify it (so our
//! checksum covers exactly the bytes Litestream's does), and re-encoding its page must give the
//! same file checksum.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ltx::{Checksum, Decoder, Encoder, Header, IndexEntry, PageIndex, TxId};

const HEXDUMP: &str = "
4c54 5831 0000 0002 0000 1000 0000 0026
0000 0000 0000 000c 0000 0000 0000 000c
0000 01a2 15aa 3029 0000 0000 0000 0000
0000 0000 0000 0020 0000 0000 0000 1018
cbd2 46d1 bcbf 21d0 0000 0000 0000 0000
0000 0000 0000 0000 0000 0000 0000 0000
0000 0000 0000 0003 0001 0000 002f cf0d
0000 0001 0ffa 000f fa00 0002 00ff ffff
ffff ffff ffff ffff ffff ffff e000 0200
c000 0000 0000 0004 0103 0001 0300 0000
0000 0003 6439 0000 0000 0000 0000 0400
0000 0000 0000 008a 40ba db72 4cb7 45";

fn file() -> Vec<u8> {
    let hex: String = HEXDUMP.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn decodes_real_litestream_l0_file() {
    let bytes = file();
    assert_eq!(bytes.len(), 191);
    let mut dec = Decoder::new(&bytes[..]).unwrap();
    let h = *dec.header();
    assert_eq!((h.page_size, h.commit), (4096, 38));
    assert_eq!((h.min_txid, h.max_txid), (TxId(12), TxId(12)));
    assert_eq!((h.wal_offset, h.wal_size), (32, 4120));
    let mut page = vec![0u8; 4096];
    assert_eq!(dec.next_page(&mut page).unwrap(), Some(3));
    assert_eq!(dec.next_page(&mut page).unwrap(), None);
    let done = dec.finish().unwrap();
    assert_eq!(done.trailer.file_checksum, Checksum(0x8a40_badb_724c_b745));
    assert_eq!(done.trailer.post_apply_checksum, Checksum::ZERO);
    let entry = IndexEntry {
        pgno: 3,
        offset: 100,
        size: 57,
    };
    assert_eq!(done.index.entries(), &[entry]);
    assert_eq!(done.size, 191);

    // The tail parser finds the same index.
    assert_eq!(
        PageIndex::from_tail(&bytes[150..], 191).unwrap().entries(),
        &[entry]
    );
    let mut one = vec![0u8; 4096];
    assert_eq!(ltx::decode_frame(&bytes[100..157], &mut one).unwrap(), 3);
    assert_eq!(one, page);

    // Re-encoded by us: the same layout. The checksum hashes the decompressed page but also
    // the compressed length prefix, so it matches exactly when our LZ4 block has the same
    // length as Litestream's.
    let header = Header::from_bytes(bytes[..100].try_into().unwrap()).unwrap();
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    enc.write_page(3, &page).unwrap();
    let ours = enc.finish().unwrap();
    Decoder::verify(&ours.writer[..]).unwrap();
    let our_len = ours.index.entries()[0].size - 10;
    eprintln!("our block: {our_len} bytes, Litestream's: 47");
    if our_len == 47 {
        assert_eq!(ours.trailer.file_checksum, Checksum(0x8a40_badb_724c_b745));
    }
    assert_eq!(&ours.writer[..100], &bytes[..100]);

    // `docs/ltx-and-replica-format.md#file-checksum` by hand: header, page header, length prefix,
    // decompressed page, end marker, index, index length, post-apply checksum; bit 63 set.
    let mut c = ltx::Crc64::new();
    c.update(&bytes[..110]);
    c.update(&page);
    c.update(&bytes[157..183]);
    assert_eq!(c.checksum(), Checksum(0x8a40_badb_724c_b745));
}
