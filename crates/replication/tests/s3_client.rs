//! The S3 client against a local S3-compatible server (moto) and the real Litestream:
//! Litestream's `%04x` layout is listed and read byte-exactly, objects we write carry
//! `litestream-timestamp` and Litestream lists and restores them, and the probe (and an
//! upload) fail fast, without a panic, against an unreachable endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use replication::Level;
use replication::ReplicaTarget;
use replication::internals::FileClient;
use replication::parse_replica_url;
use replication::{
    ClientError, ClientOptions, ListOptions, NetworkOptions, ReadRange, ReplicaClient,
    ReplicaMetrics, open_client,
};
use testkit::litestream::Litestream;

async fn client(url: &str, metrics: Option<ReplicaMetrics>) -> Arc<dyn ReplicaClient> {
    let target = parse_replica_url(url).unwrap();
    open_client(
        &target,
        &ClientOptions {
            metrics,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_what_litestream_wrote_and_litestream_reads_what_we_write() {
    let test = "reads_what_litestream_wrote_and_litestream_reads_what_we_write";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let Some(s3) = testkit::require_s3(test) else {
        return;
    };
    let bucket = s3.create_bucket("repl-s3");
    let (_t, dir) = tempdir();
    let db = dir.join("src.db");
    {
        let conn = wal_db(&db);
        insert(&conn, 40, 700);
    }
    let theirs_url = s3.replica_url(&bucket, "mydb");
    ls.replicate_once(&db, &theirs_url, true);

    let registry = prometheus::Registry::new();
    let metrics = ReplicaMetrics::register(&registry).unwrap();
    let theirs = client(&theirs_url, Some(metrics.clone())).await;
    assert_eq!(
        theirs.levels().await.unwrap(),
        vec![Level::L0, Level::SNAPSHOT]
    );
    let listed = theirs.list_all(ListOptions::default()).await.unwrap();
    let mut a: Vec<_> = ls.ltx_list(&theirs_url).iter().map(entry_key).collect();
    let mut b: Vec<_> = listed.iter().map(info_key).collect();
    a.sort();
    b.sort();
    // Names, levels and sizes agree; CreatedAt is LastModified here (second precision).
    let strip =
        |v: &[(u8, u64, u64, u64, i64)]| v.iter().map(|k| (k.0, k.1, k.2, k.3)).collect::<Vec<_>>();
    assert_eq!(strip(&a), strip(&b));

    // Copy every object, byte for byte, into a file replica: Litestream restores it to the
    // same database as from S3 (every file checksum is verified on the way).
    let copy = FileClient::new(dir.join("copy"));
    for f in &listed {
        let bytes = theirs.read(f.level, f.name, ReadRange::Full).await.unwrap();
        assert_eq!(bytes.len() as u64, f.size);
        assert_eq!(header_txids(&bytes), (f.name.min.get(), f.name.max.get()));
        let tail = theirs
            .read(f.level, f.name, ReadRange::Suffix(16))
            .await
            .unwrap();
        assert_eq!(tail, bytes[bytes.len() - 16..]);
        let mid = theirs
            .read(
                f.level,
                f.name,
                ReadRange::Bounded {
                    start: 100,
                    end: 164,
                },
            )
            .await
            .unwrap();
        assert_eq!(mid, bytes[100..164]);
        copy.write_bytes(f.level, f.name, bytes.clone(), header_timestamp(&bytes))
            .await
            .unwrap();
    }
    let from_s3 = dir.join("from-s3.db");
    let from_copy = dir.join("from-copy.db");
    restore(&ls, &theirs_url, &from_s3, &[]);
    restore(&ls, &file_url(&dir.join("copy")), &from_copy, &[]);
    assert_eq!(
        std::fs::read(&from_s3).unwrap(),
        std::fs::read(&from_copy).unwrap()
    );

    // Now we write: the snapshot with an old timestamp and the L0 file with a later one.
    // Litestream must read `litestream-timestamp` (LastModified is "now") to restore to a
    // point between them.
    let ours_url = s3.replica_url(&bucket, "ours/db");
    let ours = client(&ours_url, Some(metrics.clone())).await;
    ours.probe().await.unwrap();
    let t_snapshot = DateTime::<Utc>::from_timestamp_millis(1_600_000_000_250).unwrap();
    let t_l0 = DateTime::<Utc>::from_timestamp_millis(1_700_000_000_930).unwrap();
    for f in &listed {
        let bytes = theirs.read(f.level, f.name, ReadRange::Full).await.unwrap();
        let ts = if f.level.is_snapshot() {
            t_snapshot
        } else {
            t_l0
        };
        ours.write_bytes(f.level, f.name, bytes, ts).await.unwrap();
    }
    let precise = ours
        .list_all(ListOptions {
            precise_timestamps: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let stamps: Vec<_> = precise.iter().map(|f| (f.level, f.created_at)).collect();
    assert_eq!(
        stamps,
        vec![(Level::L0, t_l0), (Level::SNAPSHOT, t_snapshot)]
    );
    let cheap = ours.list_all(ListOptions::default()).await.unwrap();
    assert!(
        cheap.iter().all(|f| f.created_at > t_l0),
        "plain listings use LastModified"
    );

    // Config-form restores skip the URL form's time-bounds check (which, in Litestream,
    // uses LastModified) and plan with `litestream-timestamp`.
    let config = dir.join("ours.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: {ours_url}\n",
            db.display()
        ),
    )
    .unwrap();
    let restore_at = |ts: &str, out: &std::path::Path| {
        ls.run(&[
            "restore",
            "-config",
            config.to_str().unwrap(),
            "-timestamp",
            ts,
            "-o",
            out.to_str().unwrap(),
            db.to_str().unwrap(),
        ])
    };
    let at = dir.join("at-2022.db");
    let res = restore_at("2022-01-01T00:00:00Z", &at);
    testkit::assert_success(&res);
    assert_eq!(
        std::fs::read(&at).unwrap(),
        std::fs::read(&from_s3).unwrap()
    );
    let res = restore_at("2019-01-01T00:00:00Z", &dir.join("at-2019.db"));
    assert!(!res.status.success());
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("no matching backup files available"),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );

    // The probe left nothing behind, and deletes remove objects.
    let prefix_levels = ours.levels().await.unwrap();
    assert_eq!(prefix_levels, vec![Level::L0, Level::SNAPSHOT]);
    let l0: Vec<_> = cheap
        .iter()
        .filter(|f| f.level == Level::L0)
        .map(|f| f.name)
        .collect();
    ours.delete(Level::L0, &l0).await.unwrap();
    assert!(
        ours.list(Level::L0, ListOptions::default())
            .await
            .unwrap()
            .is_empty()
    );
    let e = ours
        .read(Level::L0, l0[0], ReadRange::Full)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");

    assert!(metrics.total("s3", "PUT") >= 2);
    assert!(metrics.total("s3", "GET") > 0);
    assert!(metrics.total("s3", "LIST") > 0);
    assert!(metrics.total("s3", "HEAD") >= 2);
    assert_eq!(metrics.total("s3", "DELETE"), 1 + l0.len() as u64);
    assert_eq!(metrics.errors("s3", "GET", "NotFound"), 1);
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    for n in [
        "litestream_replica_operation_total",
        "litestream_replica_operation_bytes",
        "litestream_replica_operation_duration_seconds",
        "litestream_replica_operation_errors_total",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
}

#[tokio::test]
async fn multipart_upload_keeps_bytes_and_metadata() {
    let test = "multipart_upload_keeps_bytes_and_metadata";
    let Some(url) = testkit::s3_replica_url(test, "repl-mp", "big") else {
        return;
    };
    let url = format!("{url}&partSize=5242880&concurrency=2");
    let c = client(&url, None).await;
    // Larger than one part: goes up as a multipart upload, streamed in chunks (seek
    // listings are part of s3_client_contract).
    common::contract::large_streamed_write(c.as_ref()).await;
}

/// A client of `s3://bucket/db` on a port where nothing listens.
async fn closed_port_client(network: NetworkOptions) -> Arc<dyn ReplicaClient> {
    let port = testkit::free_port();
    let target = parse_replica_url(&format!(
        "s3://bucket/db?endpoint=127.0.0.1:{port}&region=us-east-1"
    ))
    .unwrap();
    let ReplicaTarget::S3(mut s3) = target else {
        panic!()
    };
    s3.access_key_id = Some("id".into());
    s3.secret_access_key = Some(replication::Secret("secret".into()));
    let options = ClientOptions {
        network,
        ..Default::default()
    };
    open_client(&ReplicaTarget::S3(s3), &options).await.unwrap()
}

#[tokio::test]
async fn probe_fails_fast_against_a_closed_port() {
    let c = closed_port_client(NetworkOptions {
        probe_timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .await;
    let err = c.probe().await.unwrap_err();
    // Connection refused surfaces as a backend error (not the probe's own deadline).
    match &err {
        ClientError::Backend { message, .. } => {
            assert!(message.to_lowercase().contains("connect"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("s3://bucket/db"), "{err}");
}

#[tokio::test]
async fn an_upload_that_fails_when_it_completes_is_an_error_not_a_panic() {
    // The request that sends a small file (the upload's completion) cannot reach the
    // server: the write must fail like any other replica error, not panic in the uploading
    // task (which would end uploads without a word).
    let c = closed_port_client(NetworkOptions {
        max_retries: 1,
        ..Default::default()
    })
    .await;
    let name = "0000000000000001-0000000000000001.ltx".parse().unwrap();
    let write = tokio::spawn(async move {
        c.write_bytes(
            Level::L0,
            name,
            bytes::Bytes::from_static(b"ltx"),
            Utc::now(),
        )
        .await
    });
    let err = write
        .await
        .expect("the upload panicked")
        .expect_err("nothing listens on the endpoint");
    assert!(err.to_string().contains("s3://bucket/db"), "{err}");
}

#[tokio::test]
async fn probe_fails_on_a_missing_bucket() {
    let Some(s3) = testkit::require_s3("probe_fails_on_a_missing_bucket") else {
        return;
    };
    let c = client(
        &s3.replica_url("no-such-bucket-for-sqlite-rest", "db"),
        None,
    )
    .await;
    let e = c.probe().await.unwrap_err().to_string();
    assert!(
        e.contains("NoSuchBucket") || e.contains("404") || e.contains("not found"),
        "{e}"
    );
}

#[tokio::test]
async fn s3_client_contract() {
    let Some(url) = testkit::s3_replica_url("s3_client_contract", "repl-contract", "db") else {
        return;
    };
    common::contract::client_contract(client(&url, None).await.as_ref()).await;
}
