//! Writes a few small, valid LTX files into a directory, as the seed corpus of the `decode`
//! fuzz target (`scripts/fuzz` runs it): both page encodings, snapshots and incremental files,
//! files with database checksums, and a compacted file. `cargo run -p ltx --example fuzz_seeds
//! -- DIR`.

use std::path::PathBuf;

use ltx::{Compactor, Decoder, Encoder, Header, PageEncoding, TxId};

fn page(page_size: u32, pgno: u32, kind: u32) -> Vec<u8> {
    let mut x = u64::from(pgno).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..page_size as usize)
        .map(|i| match kind % 3 {
            0 => (pgno as u8).wrapping_add((i / 64) as u8),
            1 => b"ltx fuzz seed page "[i % 19],
            _ => {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

fn file(header: Header, pgnos: &[u32], encoding: PageEncoding) -> ltx::Result<Vec<u8>> {
    let mut enc = Encoder::with_encoding(Vec::new(), header, encoding)?;
    for &p in pgnos {
        enc.write_page(p, &page(header.page_size, p, p + header.max_txid.0 as u32))?;
    }
    Ok(enc.finish()?.writer)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: fuzz_seeds DIR")?);
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    for encoding in [PageEncoding::Block, PageEncoding::LegacyFrame] {
        let snap = file(
            Header::new(512, 3, TxId(1), TxId(1), 1),
            &[1, 2, 3],
            encoding,
        )?;
        let inc = file(Header::new(512, 4, TxId(2), TxId(2), 2), &[2, 4], encoding)?;
        let merged = Compactor::new(vec![Decoder::new(&snap[..])?, Decoder::new(&inc[..])?])?
            .compact(Vec::new())?
            .writer;
        files.extend([snap, inc, merged]);
    }
    let mut checksummed = Header::new(1024, 2, TxId(1), TxId(3), 3);
    checksummed.flags = 0;
    files.push(file(checksummed, &[1, 2], PageEncoding::Block)?);
    let mut wal = Header::new(512, 1, TxId(7), TxId(7), 4);
    (wal.wal_offset, wal.wal_size, wal.wal_salt1, wal.wal_salt2) = (32, 4120, 1, 2);
    files.push(file(wal, &[1], PageEncoding::Block)?);
    files.push(file(
        Header::new(512, 0, TxId(9), TxId(9), 5),
        &[],
        PageEncoding::Block,
    )?);
    for (i, f) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}.ltx")), f)?;
    }
    Ok(())
}
