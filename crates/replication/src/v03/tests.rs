//! Unit tests of the Litestream 0.3 format: names, the plan, LZ4 frames (valid, corrupt,
//! cut short, random bytes: errors in words, never a panic).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::apply::{decompress, describe_read_error};
use super::*;

#[test]
fn snapshot_names() {
    assert_eq!(parse_snapshot_name("00000000.snapshot.lz4"), Some(0));
    assert_eq!(parse_snapshot_name("0000002a.snapshot.lz4"), Some(42));
    assert_eq!(parse_snapshot_name("ffffffff.snapshot.lz4"), Some(u32::MAX));
    for bad in [
        "0000002A.snapshot.lz4",
        "000002a.snapshot.lz4",
        "000000002a.snapshot.lz4",
        "0000002a.snapshot",
        "0000002a.snapshot.lz4.tmp",
        "0000002g.snapshot.lz4",
        "+000002a.snapshot.lz4",
        "",
    ] {
        assert_eq!(parse_snapshot_name(bad), None, "{bad}");
    }
    assert_eq!(snapshot_name(42), "0000002a.snapshot.lz4");
}

#[test]
fn segment_names() {
    assert_eq!(
        parse_segment_name("00000000_00000000.wal.lz4"),
        Some((0, 0))
    );
    assert_eq!(
        parse_segment_name("00000003_00004080.wal.lz4"),
        Some((3, 0x4080))
    );
    // Offsets past 4 GiB take more digits.
    assert_eq!(
        parse_segment_name("00000001_0000000100000000.wal.lz4"),
        Some((1, 1 << 32))
    );
    assert_eq!(segment_name(1, 1 << 32), "00000001_100000000.wal.lz4");
    assert_eq!(segment_name(3, 0x4080), "00000003_00004080.wal.lz4");
    for bad in [
        "00000000_0000000.wal.lz4",
        "00000000_00000000000000000.wal.lz4",
        "80000000_00000000.wal.lz4",
        "00000000-00000000.wal.lz4",
        "00000000_00000000.wal",
        "00000000_0000000G.wal.lz4",
        "0000000_00000000.wal.lz4",
        "00000000_8000000000000000.wal.lz4",
    ] {
        assert_eq!(parse_segment_name(bad), None, "{bad}");
    }
}

#[test]
fn generation_names() {
    assert_eq!(
        "67aac6f0b20da181".parse::<Generation>(),
        Ok(Generation(0x67aa_c6f0_b20d_a181))
    );
    assert_eq!(Generation(0x2a).to_string(), "000000000000002a");
    for bad in [
        "67AAC6F0B20DA181",
        "67aac6f0b20da18",
        "67aac6f0b20da1811",
        "",
    ] {
        assert!(bad.parse::<Generation>().is_err(), "{bad}");
    }
}

fn at(s: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(1_800_000_000 + s)
}

fn snap(generation: u64, index: u32, t: i64) -> V03Snapshot {
    V03Snapshot {
        generation: Generation(generation),
        index,
        size: 100,
        created_at: at(t),
    }
}

fn seg(generation: u64, index: u32, offset: u64, t: i64) -> V03Segment {
    V03Segment {
        generation: Generation(generation),
        index,
        offset,
        size: 10,
        created_at: at(t),
    }
}

fn listing(snapshots: Vec<V03Snapshot>, segments: Vec<V03Segment>) -> V03Listing {
    let mut generations: Vec<Generation> = snapshots
        .iter()
        .map(|s| s.generation)
        .chain(segments.iter().map(|s| s.generation))
        .collect();
    generations.sort();
    generations.dedup();
    V03Listing {
        generations,
        snapshots,
        segments,
    }
}

#[test]
fn the_plan_takes_the_newest_snapshot_across_generations_by_time_not_by_name() {
    // Generation 0xff is older than 0x01: a newer generation can have a smaller id.
    let l = listing(
        vec![snap(0xff, 0, 0), snap(0xff, 2, 10), snap(0x01, 0, 20)],
        vec![
            seg(0xff, 2, 0, 11),
            seg(0x01, 0, 0, 21),
            seg(0x01, 0, 4152, 22),
            seg(0x01, 1, 0, 23),
        ],
    );
    let p = plan(&l, V03Target::Latest).unwrap();
    assert_eq!(p.snapshot, snap(0x01, 0, 20));
    assert_eq!(
        p.segments,
        vec![
            seg(0x01, 0, 0, 21),
            seg(0x01, 0, 4152, 22),
            seg(0x01, 1, 0, 23)
        ]
    );
    assert_eq!(p.last_index(), 1);
    assert_eq!(p.files(), 4);

    // At a timestamp: the newest snapshot at or before it, and only segments up to it.
    let p = plan(&l, V03Target::Timestamp(at(11))).unwrap();
    assert_eq!(p.snapshot, snap(0xff, 2, 10));
    assert_eq!(p.segments, vec![seg(0xff, 2, 0, 11)]);
    let p = plan(&l, V03Target::Timestamp(at(21))).unwrap();
    assert_eq!(p.segments, vec![seg(0x01, 0, 0, 21)]);
    assert!(matches!(
        plan(&l, V03Target::Timestamp(at(-1))),
        Err(V03Error::NoSnapshot {
            before: Some(_),
            ..
        })
    ));
}

#[test]
fn segments_before_the_snapshot_index_are_skipped() {
    let l = listing(
        vec![snap(1, 0, 0), snap(1, 2, 10)],
        vec![seg(1, 0, 0, 1), seg(1, 1, 0, 5), seg(1, 2, 0, 11)],
    );
    let p = plan(&l, V03Target::Latest).unwrap();
    assert_eq!(p.snapshot.index, 2);
    assert_eq!(p.segments, vec![seg(1, 2, 0, 11)]);
}

#[test]
fn gaps_between_indexes_and_indexes_not_starting_at_zero_are_errors() {
    let l = listing(vec![snap(1, 0, 0)], vec![seg(1, 0, 0, 1), seg(1, 2, 0, 2)]);
    let e = plan(&l, V03Target::Latest).unwrap_err();
    assert!(
        matches!(e, V03Error::MissingIndex { expected: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("misses WAL index 00000001"), "{e}");

    let l = listing(vec![snap(1, 0, 0)], vec![seg(1, 0, 4152, 1)]);
    let e = plan(&l, V03Target::Latest).unwrap_err();
    assert!(e.to_string().contains("00000000_00001038.wal.lz4"), "{e}");

    let l = listing(Vec::new(), vec![seg(1, 0, 0, 1)]);
    let e = plan(&l, V03Target::Latest).unwrap_err();
    assert!(
        e.to_string().contains("has no snapshot") && e.to_string().contains("0000000000000001"),
        "{e}"
    );
}

#[test]
fn time_bounds_and_emptiness() {
    assert!(V03Listing::default().is_empty());
    assert_eq!(V03Listing::default().time_bounds(), None);
    let l = listing(vec![snap(1, 0, 5)], vec![seg(1, 0, 0, 3), seg(1, 0, 10, 9)]);
    assert!(!l.is_empty());
    assert_eq!(l.time_bounds(), Some((at(3), at(9))));
}

fn lz4(data: &[u8]) -> Vec<u8> {
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn decompress_bytes(input: &[u8]) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let out = std::fs::File::create(&path).unwrap();
    match decompress(input, out) {
        Ok((_, n)) => {
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.len() as u64, n);
            Ok(bytes)
        }
        Err(e) => Err(describe_read_error(&e)),
    }
}

#[test]
fn lz4_frames_decompress_and_damage_is_described() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let frame = lz4(&data);
    assert_eq!(decompress_bytes(&frame).unwrap(), data);

    // Not a frame.
    let e = decompress_bytes(b"SQLite format 3\0 plain bytes").unwrap_err();
    assert!(e.contains("not a valid LZ4 frame"), "{e}");

    // Cut short.
    let e = decompress_bytes(&frame[..frame.len() / 2]).unwrap_err();
    assert!(e.contains("cut short") || e.contains("LZ4"), "{e}");

    // A flipped byte in the data: the content checksum (or the block) catches it.
    let mut bad = frame.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    assert!(decompress_bytes(&bad).is_err_and(|e| e.contains("LZ4") || e.contains("cut short")));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decompress_bytes(&input);
    }

    #[test]
    fn corrupted_frames_never_panic(at in 0usize..400, byte in any::<u8>()) {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 13) as u8).collect();
        let mut frame = lz4(&data);
        let i = at % frame.len();
        frame[i] = byte;
        let _ = decompress_bytes(&frame);
    }

    #[test]
    fn names_never_panic(s in "\\PC{0,40}") {
        let _ = parse_snapshot_name(&s);
        let _ = parse_segment_name(&s);
        let _ = s.parse::<Generation>();
    }
}
