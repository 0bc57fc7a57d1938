//! The lock page (the page holding byte 1 GiB) is never stored and restores as zeros: a
//! database just over 1 GiB with 64 KiB pages, through our encoder, compactor and restore, and
//! through the real Litestream binary's restore. Pages are mostly zeros, so files stay small;
//! the database image is checked as it streams, never held in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};

use ltx::{Compactor, Decoder, Encoder, Header, TxId, lock_page};
use testkit::litestream::Litestream;

const PS: u32 = 65536;

/// Page `pgno` at version `v`: zeros with a small stamp.
fn page(pgno: u32, v: u8) -> Vec<u8> {
    let mut p = vec![0u8; PS as usize];
    p[..4].copy_from_slice(&pgno.to_be_bytes());
    p[4] = v;
    p[PS as usize - 1] = 0xa5;
    p
}

/// A writer that checks a streamed database image page by page.
struct Check<F: Fn(u32) -> Vec<u8>> {
    expected: F,
    buf: Vec<u8>,
    pgno: u32,
}

impl<F: Fn(u32) -> Vec<u8>> Write for Check<F> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while self.buf.len() >= PS as usize {
            self.pgno += 1;
            let got: Vec<u8> = self.buf.drain(..PS as usize).collect();
            assert!(
                got == (self.expected)(self.pgno),
                "page {} differs",
                self.pgno
            );
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn check<F: Fn(u32) -> Vec<u8>>(expected: F) -> Check<F> {
    Check {
        expected,
        buf: Vec::new(),
        pgno: 0,
    }
}

/// Snapshot 1-1 of `lock + 1` pages, and 2-2 rewriting the pages around the lock page and
/// growing by one.
fn files() -> (Vec<u8>, Vec<u8>) {
    let lock = lock_page(PS);
    assert_eq!(lock, 16385);
    let mut snap =
        Encoder::new(Vec::new(), Header::new(PS, lock + 1, TxId(1), TxId(1), 0)).unwrap();
    for p in 1..=lock + 1 {
        if p != lock {
            snap.write_page(p, &page(p, 1)).unwrap();
        }
    }
    let snap = snap.finish().unwrap().writer;
    let mut inc = Encoder::new(Vec::new(), Header::new(PS, lock + 2, TxId(2), TxId(2), 0)).unwrap();
    for p in [lock - 1, lock + 1, lock + 2] {
        inc.write_page(p, &page(p, 2)).unwrap();
    }
    (snap, inc.finish().unwrap().writer)
}

fn expected_after_2(p: u32) -> Vec<u8> {
    let lock = lock_page(PS);
    match p {
        _ if p == lock => vec![0u8; PS as usize],
        _ if p == lock - 1 || p > lock => page(p, 2),
        _ => page(p, 1),
    }
}

#[test]
fn lock_page_is_skipped_and_restored_as_zeros() {
    let lock = lock_page(PS);
    let (snap, inc) = files();
    let d = Decoder::verify(&snap[..]).unwrap();
    assert!(d.index.get(lock).is_none());
    assert_eq!(d.index.len() as u32, lock);

    let decs = vec![
        Decoder::new(&snap[..]).unwrap(),
        Decoder::new(&inc[..]).unwrap(),
    ];
    let restored = Compactor::new(decs)
        .unwrap()
        .restore(check(expected_after_2))
        .unwrap();
    assert_eq!(restored.writer.pgno, lock + 2);
    assert!(restored.writer.buf.is_empty());

    // Compaction into one snapshot also skips it (the encoder would refuse it).
    let decs = vec![
        Decoder::new(&snap[..]).unwrap(),
        Decoder::new(&inc[..]).unwrap(),
    ];
    let merged = Compactor::new(decs).unwrap().compact(Vec::new()).unwrap();
    assert!(merged.index.get(lock).is_none());
    assert_eq!(merged.index.len() as u32, lock + 1);
    let decs = vec![Decoder::new(&merged.writer[..]).unwrap()];
    let again = Compactor::new(decs)
        .unwrap()
        .restore(check(expected_after_2))
        .unwrap();
    assert_eq!(again.writer.pgno, lock + 2);
}

#[test]
fn litestream_restores_across_the_lock_page() {
    let Some(ls) = Litestream::require("litestream_restores_across_the_lock_page") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let (snap, inc) = files();
    for (level, bytes) in [(9, &snap), (0, &snap), (0, &inc)] {
        let h = *Decoder::new(&bytes[..]).unwrap().header();
        let d = replica.join(format!("ltx/{level}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(h.file_name().to_string()), bytes).unwrap();
    }
    let out = dir.path().join("big.db");
    let res = ls.restore(&format!("file://{}", replica.display()), &out, &[]);
    testkit::assert_success(&res);
    let mut f = std::fs::File::open(&out).unwrap();
    assert_eq!(
        f.metadata().unwrap().len(),
        u64::from(lock_page(PS) + 2) * u64::from(PS)
    );
    let mut c = check(expected_after_2);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        c.write_all(&buf[..n]).unwrap();
    }
    assert_eq!(c.pgno, lock_page(PS) + 2);
}
