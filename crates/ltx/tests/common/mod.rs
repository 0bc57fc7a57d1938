//! Helpers shared by the integration tests: real SQLite databases made with rusqlite, LTX
//! files built from database images, and a decoder that collects every page.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;

use ltx::{Decoded, Decoder, Encoder, Error, Header, PageEncoding, TxId, lock_page};

/// A deterministic pseudo-random byte stream (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Creates a real SQLite database at `path` with this page size: a table of repetitive text
/// rows (compressible pages) and a table of random blobs (incompressible overflow pages).
/// `journal_mode` is `DELETE` so the file alone is the database image.
pub fn make_db(path: &Path, page_size: u32, rows: usize, blobs: usize, seed: u64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA page_size = {page_size}; PRAGMA journal_mode = DELETE;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, name TEXT, n INTEGER);
         CREATE TABLE IF NOT EXISTS b(id INTEGER PRIMARY KEY, data BLOB);"
    ))
    .unwrap();
    let mut rng = Rng(seed | 1);
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO t(name, n) VALUES (?1, ?2)",
            (
                format!("row {i} of a table with fairly repetitive text {}", i % 7),
                i as i64,
            ),
        )
        .unwrap();
    }
    for _ in 0..blobs {
        let len = (page_size as usize) * 2 + (rng.next_u64() % 1000) as usize;
        tx.execute("INSERT INTO b(data) VALUES (?1)", [rng.bytes(len)])
            .unwrap();
    }
    tx.commit().unwrap();
}

/// The database image (file bytes) of a freshly made database.
pub fn db_image(page_size: u32, rows: usize, blobs: usize, seed: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gen.db");
    make_db(&path, page_size, rows, blobs, seed);
    std::fs::read(&path).unwrap()
}

pub fn page(image: &[u8], page_size: u32, pgno: u32) -> &[u8] {
    let ps = page_size as usize;
    let start = (pgno as usize - 1) * ps;
    &image[start..start + ps]
}

pub fn commit_of(image: &[u8], page_size: u32) -> u32 {
    assert_eq!(image.len() % page_size as usize, 0);
    (image.len() / page_size as usize) as u32
}

/// Pages of `new` that a file moving the database from `old` to `new` must hold: the pages
/// that changed, plus every page past the old size (never the lock page).
pub fn changed_pages(old: &[u8], new: &[u8], page_size: u32) -> Vec<u32> {
    let old_commit = commit_of(old, page_size);
    let lock = lock_page(page_size);
    (1..=commit_of(new, page_size))
        .filter(|&p| p != lock)
        .filter(|&p| p > old_commit || page(old, page_size, p) != page(new, page_size, p))
        .collect()
}

/// Encodes the listed pages of `image` into an LTX file.
pub fn encode(header: Header, image: &[u8], pages: &[u32], encoding: PageEncoding) -> Vec<u8> {
    let mut enc = Encoder::with_encoding(Vec::new(), header, encoding).unwrap();
    for &p in pages {
        enc.write_page(p, page(image, header.page_size, p)).unwrap();
    }
    enc.finish().unwrap().writer
}

/// A snapshot (MinTXID 1) of `image` at `max`.
pub fn snapshot(
    image: &[u8],
    page_size: u32,
    max: u64,
    ts: i64,
    encoding: PageEncoding,
) -> Vec<u8> {
    let commit = commit_of(image, page_size);
    let lock = lock_page(page_size);
    let pages: Vec<u32> = (1..=commit).filter(|&p| p != lock).collect();
    let header = Header::new(page_size, commit, TxId(1), TxId(max), ts);
    encode(header, image, &pages, encoding)
}

/// A decoded file: its header, every page, and the verified summary.
pub type DecodedFile = (Header, Vec<(u32, Vec<u8>)>, Decoded);

/// Decodes a whole file: header, every page, and the verified summary.
pub fn decode_all(bytes: &[u8]) -> Result<DecodedFile, Error> {
    let mut dec = Decoder::new(bytes)?;
    let header = *dec.header();
    let mut buf = vec![0u8; header.page_size as usize];
    let mut pages = Vec::new();
    while let Some(p) = dec.next_page(&mut buf)? {
        pages.push((p, buf.clone()));
    }
    Ok((header, pages, dec.finish()?))
}

/// Restores a database image from files (oldest first) with our compactor.
pub fn restore(files: &[&[u8]]) -> Result<Vec<u8>, Error> {
    let decs = files
        .iter()
        .map(|f| Decoder::new(*f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ltx::Compactor::new(decs)?.restore(Vec::new())?.writer)
}

/// Compacts files (oldest first) into one LTX file with our compactor.
pub fn compact(files: &[&[u8]]) -> Result<Vec<u8>, Error> {
    let decs = files
        .iter()
        .map(|f| Decoder::new(*f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ltx::Compactor::new(decs)?.compact(Vec::new())?.writer)
}

/// Makes the trailer's file checksum match a file we patched on purpose (the decoder reports
/// what the contents hash to).
pub fn fix_checksum(bytes: &mut [u8]) {
    match decode_all(bytes) {
        Err(Error::ChecksumMismatch { computed, .. }) => {
            let n = bytes.len();
            bytes[n - 8..].copy_from_slice(&computed.0.to_be_bytes());
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
}

/// Three states of one database: as made, after growth, after DELETE + VACUUM (shrink).
pub fn three_states(ps: u32) -> [Vec<u8>; 3] {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    make_db(&path, ps, 100, 2, 1);
    let s1 = std::fs::read(&path).unwrap();
    make_db(&path, ps, 300, 4, 2);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE t SET name = 'changed' WHERE id = 3", [])
        .unwrap();
    drop(conn);
    let s2 = std::fs::read(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DELETE FROM b WHERE id > 1; DELETE FROM t WHERE id > 50; VACUUM;")
        .unwrap();
    drop(conn);
    let s3 = std::fs::read(&path).unwrap();
    assert!(s2.len() > s1.len() && s3.len() < s2.len());
    [s1, s2, s3]
}

/// L0-style files: snapshot 1-1, then 2-2 and 3-3 with the changed pages.
pub fn chain(states: &[Vec<u8>; 3], ps: u32, encoding: PageEncoding) -> [Vec<u8>; 3] {
    chain_at(states, ps, encoding, [1000, 1001, 1002])
}

/// [`chain`] with the given header timestamps (ms).
pub fn chain_at(
    states: &[Vec<u8>; 3],
    ps: u32,
    encoding: PageEncoding,
    ts: [i64; 3],
) -> [Vec<u8>; 3] {
    let f1 = snapshot(&states[0], ps, 1, ts[0], encoding);
    let mut files = vec![f1];
    for t in 1..3 {
        let pages = changed_pages(&states[t - 1], &states[t], ps);
        let h = Header::new(
            ps,
            commit_of(&states[t], ps),
            TxId(t as u64 + 1),
            TxId(t as u64 + 1),
            ts[t],
        );
        files.push(encode(h, &states[t], &pages, encoding));
    }
    files.try_into().unwrap()
}
