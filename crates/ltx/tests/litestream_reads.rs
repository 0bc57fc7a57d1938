//! We write, Litestream reads (`docs/replication.md#interoperability-with-litestream`): replicas
//! made of files from our encoder and compactor, laid out as a file replica (`ltx/<level>/<name>`,
//! mtime = header timestamp), must restore byte-identically with the real Litestream 0.5.17 binary
//! and list with the right fields; and the binary must reject the broken ones as
//! `docs/ltx-and-replica-format.md#validation-rules` and `#restore-plan` say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};
use common::*;
use ltx::{Decoder, Error, Header, PageEncoding, TxId};
use testkit::litestream::Litestream;

/// Writes `bytes` as `<replica>/ltx/<level>/<name>` with its mtime set to the header timestamp.
fn put(replica: &Path, level: u32, bytes: &[u8]) -> Header {
    let header = *Decoder::new(bytes).unwrap().header();
    let dir = replica.join(format!("ltx/{level}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(header.file_name().to_string());
    std::fs::write(&path, bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(header.created_at().unwrap()).unwrap();
    header
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn url_of(p: &Path) -> String {
    format!("file://{}", p.display())
}

struct Fixture {
    states: [Vec<u8>; 3],
    ts: [i64; 3],
    dir: tempfile::TempDir,
}

const PS: u32 = 4096;

fn fixture() -> Fixture {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Whole seconds (plus a little) well in the past, 100 s apart.
    let base = (now - 1000) * 1000;
    Fixture {
        states: three_states(PS),
        ts: [base + 250, base + 100_000 + 250, base + 200_000 + 250],
        dir: tempfile::tempdir().unwrap(),
    }
}

/// Restores with the binary; returns the bytes, or the error output.
fn their_restore(
    ls: &Litestream,
    replica: &Path,
    out: &Path,
    extra: &[&str],
) -> Result<Vec<u8>, String> {
    let _ = std::fs::remove_file(out);
    let res = ls.restore(&url_of(replica), out, extra);
    if res.status.success() {
        Ok(std::fs::read(out).unwrap())
    } else {
        Err(String::from_utf8_lossy(&res.stderr).into_owned())
    }
}

#[test]
fn our_chain_restores_identically_in_litestream() {
    let Some(ls) = Litestream::require("our_chain_restores_identically_in_litestream") else {
        return;
    };
    let fx = fixture();
    for encoding in [PageEncoding::Block, PageEncoding::LegacyFrame] {
        let replica = fx.dir.path().join(format!("replica-{encoding:?}"));
        let [f1, f2, f3] = chain_at(&fx.states, PS, encoding, fx.ts);
        let mut written = vec![(9, put(&replica, 9, &f1), f1.len())];
        written.push((0, put(&replica, 0, &f1), f1.len()));
        written.push((0, put(&replica, 0, &f2), f2.len()));
        written.push((0, put(&replica, 0, &f3), f3.len()));

        // Every TXID restores to its state, byte for byte.
        let out = fx.dir.path().join("out.db");
        for t in 0..3 {
            let txid = TxId(t as u64 + 1).to_string();
            let got = their_restore(&ls, &replica, &out, &["-txid", &txid])
                .unwrap_or_else(|e| panic!("{encoding:?} txid {txid}: {e}"));
            assert!(got == fx.states[t], "{encoding:?}: state {} differs", t + 1);
        }
        // Latest, with Litestream's full integrity check.
        let got = their_restore(&ls, &replica, &out, &["-integrity-check", "full"]).unwrap();
        assert!(got == fx.states[2]);

        // The listing shows every file with its level, TXIDs, size and the header
        // timestamp (from the mtime we set).
        let listing = ls.ltx_list(&url_of(&replica));
        assert_eq!(listing.len(), written.len());
        for (level, h, size) in &written {
            let e = listing
                .iter()
                .find(|e| {
                    e.level == *level
                        && e.min_txid == h.min_txid.to_string()
                        && e.max_txid == h.max_txid.to_string()
                })
                .unwrap_or_else(|| panic!("{level}/{} missing: {listing:?}", h.file_name()));
            assert_eq!(e.size, *size as u64);
            assert_eq!(e.timestamp, rfc3339(h.timestamp));
        }
    }
}

#[test]
fn timestamps_l0_only_and_compacted_replicas() {
    let Some(ls) = Litestream::require("timestamps_l0_only_and_compacted_replicas") else {
        return;
    };
    let fx = fixture();
    let [f1, f2, f3] = chain_at(&fx.states, PS, PageEncoding::Block, fx.ts);
    let out = fx.dir.path().join("out.db");

    // A timestamp between files 2 and 3 restores state 2; one before the first fails.
    let replica = fx.dir.path().join("replica");
    put(&replica, 9, &f1);
    for f in [&f1, &f2, &f3] {
        put(&replica, 0, f);
    }
    let between = rfc3339(fx.ts[1] + 50_000);
    let got = their_restore(&ls, &replica, &out, &["-timestamp", &between]).unwrap();
    assert!(got == fx.states[1], "timestamp restore is not state 2");
    let before = rfc3339(fx.ts[0] - 60_000);
    let err = their_restore(&ls, &replica, &out, &["-timestamp", &before]).unwrap_err();
    assert!(err.contains("timestamp does not exist"), "{err}");

    // An L0-only replica (its first file is our snapshot at TXID 1).
    let l0_only = fx.dir.path().join("l0-only");
    for f in [&f1, &f2, &f3] {
        put(&l0_only, 0, f);
    }
    assert!(their_restore(&ls, &l0_only, &out, &[]).unwrap() == fx.states[2]);

    // Our compactor's output as an L1 file: 9/1-1 + 1/2-3, and an L9 snapshot 1-3.
    let compacted = fx.dir.path().join("compacted");
    put(&compacted, 9, &f1);
    let c23 = compact(&[&f2, &f3]).unwrap();
    let h = put(&compacted, 1, &c23);
    assert_eq!(
        (h.min_txid, h.max_txid, h.timestamp),
        (TxId(2), TxId(3), fx.ts[2])
    );
    assert!(their_restore(&ls, &compacted, &out, &[]).unwrap() == fx.states[2]);
    let snap13 = compact(&[&f1, &f2, &f3]).unwrap();
    let snap_only = fx.dir.path().join("snap13");
    put(&snap_only, 9, &snap13);
    assert!(their_restore(&ls, &snap_only, &out, &[]).unwrap() == fx.states[2]);
}

#[test]
fn litestream_rejects_broken_replicas_like_we_do() {
    let Some(ls) = Litestream::require("litestream_rejects_broken_replicas_like_we_do") else {
        return;
    };
    let fx = fixture();
    let [f1, f2, f3] = chain_at(&fx.states, PS, PageEncoding::Block, fx.ts);
    let out = fx.dir.path().join("out.db");

    // A gap (`docs/ltx-and-replica-format.md#restore-plan`): without 0/2-2, "latest" cannot be
    // reached.
    let gap = fx.dir.path().join("gap");
    put(&gap, 9, &f1);
    put(&gap, 0, &f1);
    put(&gap, 0, &f3);
    let err = their_restore(&ls, &gap, &out, &[]).unwrap_err();
    assert!(err.contains("non-contiguous ltx files"), "{err}");
    assert!(matches!(
        restore(&[&f1, &f3]),
        Err(Error::NonContiguous { .. })
    ));

    // A flipped byte (`docs/ltx-and-replica-format.md#file-checksum`): inside the literal run of
    // the largest (incompressible) frame, so the LZ4 block stays valid and only the file checksum
    // can notice.
    let done = Decoder::verify(&f2[..]).unwrap();
    let e = *done.index.entries().iter().max_by_key(|e| e.size).unwrap();
    assert!(e.size > u64::from(PS), "state 2 has a random page");
    let mut bad = f2.clone();
    bad[(e.offset + e.size / 2) as usize] ^= 0x40;
    assert!(matches!(
        Decoder::verify(&bad[..]),
        Err(Error::ChecksumMismatch { .. })
    ));
    let flipped = fx.dir.path().join("flipped");
    put(&flipped, 9, &f1);
    put(&flipped, 0, &bad);
    let err = their_restore(&ls, &flipped, &out, &[]).unwrap_err();
    assert!(err.contains("file checksum mismatch"), "{err}");

    // Flags = 0 with real database checksums: valid LTX (our decoder verifies the
    // database checksum) that Litestream's restore refuses — why NoChecksum is mandatory.
    let mut h = Header::new(PS, commit_of(&fx.states[0], PS), TxId(1), TxId(1), fx.ts[0]);
    h.flags = 0;
    let pages: Vec<u32> = (1..=h.commit).collect();
    let with_sums = encode(h, &fx.states[0], &pages, PageEncoding::Block);
    let d = Decoder::verify(&with_sums[..]).unwrap();
    assert_eq!(
        d.trailer.post_apply_checksum,
        ltx::DbChecksum::of_image(&fx.states[0], PS)
    );
    assert_eq!(restore(&[&with_sums]).unwrap(), fx.states[0]);
    let checksummed = fx.dir.path().join("checksummed");
    put(&checksummed, 9, &with_sums);
    let err = their_restore(&ls, &checksummed, &out, &[]).unwrap_err();
    assert!(err.contains("post-apply checksum not allowed"), "{err}");
}

#[test]
fn litestream_restores_our_64k_incompressible_snapshot() {
    let Some(ls) = Litestream::require("litestream_restores_our_64k_incompressible_snapshot")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = db_image(65536, 50, 3, 5);
    for encoding in [PageEncoding::Block, PageEncoding::LegacyFrame] {
        let file = snapshot(&image, 65536, 1, 1_700_000_000_000, encoding);
        let d = Decoder::verify(&file[..]).unwrap();
        if encoding == PageEncoding::Block {
            assert!(d.index.entries().iter().any(|e| e.size > 65536 + 10));
        }
        let replica = dir.path().join(format!("r-{encoding:?}"));
        put(&replica, 9, &file);
        let out = dir.path().join("out.db");
        let got = their_restore(&ls, &replica, &out, &["-integrity-check", "full"]).unwrap();
        assert!(got == image, "{encoding:?}");
    }
}
