//! Encode and decode (+ file checksum) throughput of 4 KiB-page LTX files, against a memcpy of
//! the same page bytes measured in the same run.
//!
//! Two data sets: a real SQLite database made with rusqlite (text and integer rows, indexes,
//! some random blobs) and incompressible random pages. Throughput is page bytes per second.
//! After criterion's own report, a summary prints MB/s and the ratio to memcpy.
//!
//! `cargo bench -p ltx --bench codec`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use ltx::{Decoder, Encoder, Header, PageEncoding, TxId};

const PS: u32 = 4096;

fn rng_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// A real database of about 16 MiB with 4 KiB pages.
fn sqlite_image() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = DELETE;
         CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT, name TEXT, created INTEGER, score REAL);
         CREATE INDEX users_email ON users(email);
         CREATE TABLE events(id INTEGER PRIMARY KEY, user_id INTEGER, kind TEXT, payload BLOB);",
    )
    .expect("schema");
    let tx = conn.unchecked_transaction().expect("tx");
    for i in 0..60_000i64 {
        tx.execute(
            "INSERT INTO users(email, name, created, score) VALUES (?1, ?2, ?3, ?4)",
            (
                format!("user{i}@example.com"),
                format!("User Number {i} of the benchmark"),
                1_700_000_000 + i * 37,
                (i % 1000) as f64 / 7.0,
            ),
        )
        .expect("insert");
    }
    for i in 0..20_000i64 {
        let payload = if i % 10 == 0 {
            rng_bytes(i as u64, 200)
        } else {
            format!("{{\"event\":{i},\"ok\":true,\"tags\":[\"a\",\"b\"]}}").into_bytes()
        };
        tx.execute(
            "INSERT INTO events(user_id, kind, payload) VALUES (?1, ?2, ?3)",
            (
                i % 60_000,
                ["click", "view", "buy"][(i % 3) as usize],
                payload,
            ),
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    drop(conn);
    std::fs::read(&path).expect("read")
}

fn encode(image: &[u8], out: &mut Vec<u8>) -> u64 {
    out.clear();
    let commit = (image.len() / PS as usize) as u32;
    let header = Header::new(PS, commit, TxId(1), TxId(1), 0);
    let mut enc = Encoder::with_encoding(out, header, PageEncoding::Block).expect("header");
    for (i, page) in image.chunks(PS as usize).enumerate() {
        enc.write_page(i as u32 + 1, page).expect("page");
    }
    enc.finish().expect("finish").size
}

fn decode(file: &[u8], page: &mut [u8]) -> u64 {
    let mut dec = Decoder::new(file).expect("header");
    let mut sum = 0u64;
    while let Some(p) = dec.next_page(page).expect("page") {
        sum += u64::from(p) + u64::from(page[100]);
    }
    dec.finish().expect("verify");
    sum
}

const DATASETS: [&str; 2] = ["sqlite", "random"];
const BENCHES: [&str; 3] = ["memcpy", "encode", "decode+checksum"];

fn bench(c: &mut Criterion, images: &[(&str, Vec<u8>)]) {
    for (name, image) in images {
        let mut g = c.benchmark_group(format!("ltx-4k-{name}"));
        g.throughput(Throughput::Bytes(image.len() as u64));
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(4));
        g.warm_up_time(Duration::from_secs(1));
        let mut dst = vec![0u8; image.len()];
        g.bench_function("memcpy", |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(image));
                black_box(&dst);
            })
        });
        let mut out = Vec::with_capacity(image.len() * 2);
        g.bench_function("encode", |b| {
            b.iter(|| black_box(encode(black_box(image), &mut out)))
        });
        let mut file = Vec::new();
        let size = encode(image, &mut file);
        eprintln!(
            "{name}: {} pages, LTX file {size} bytes ({:.1} % of the pages)",
            image.len() / PS as usize,
            100.0 * size as f64 / image.len() as f64
        );
        let mut page = vec![0u8; PS as usize];
        g.bench_function("decode+checksum", |b| {
            b.iter(|| black_box(decode(black_box(&file), &mut page)))
        });
        g.finish();
    }
}

fn output_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion")
}

/// Mean time per iteration (ns) of one benchmark, from criterion's estimates.
fn mean_ns(group: &str, bench: &str) -> Option<f64> {
    let path = output_dir()
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn summary(images: &[(&str, Vec<u8>)]) {
    println!("\nltx codec summary (4 KiB pages; MB/s of page data, ratio to memcpy in this run)");
    for (name, image) in images {
        let group = format!("ltx-4k-{name}");
        let bytes = image.len() as f64;
        let Some(base) = mean_ns(&group, "memcpy") else {
            continue;
        };
        for b in BENCHES {
            if let Some(ns) = mean_ns(&group, &b.replace('+', "_")).or_else(|| mean_ns(&group, b)) {
                let mbs = bytes / ns * 1e3;
                println!(
                    "  {name:7} {b:16} {mbs:9.0} MB/s   {:6.3} × memcpy",
                    base / ns
                );
            }
        }
    }
}

fn main() {
    let images: Vec<(&str, Vec<u8>)> = DATASETS
        .iter()
        .map(|&n| {
            let image = if n == "sqlite" {
                sqlite_image()
            } else {
                rng_bytes(99, 4096 * 1024)
            };
            (n, image)
        })
        .collect();
    let mut c = Criterion::default()
        .output_directory(&output_dir())
        .configure_from_args();
    bench(&mut c, &images);
    c.final_summary();
    summary(&images);
}
