//! The file replica client against replicas the real Litestream 0.5.17 wrote, and files we
//! write that Litestream lists (with the right timestamps) and restores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use ltx::{FileName, TxId};
use replication::Level;
use replication::internals::FileClient;
use replication::{ListOptions, ReadRange, ReplicaClient, ReplicaMetrics};
use testkit::litestream::Litestream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_equals_litestream_ltx() {
    let Some(ls) = Litestream::require("listing_equals_litestream_ltx") else {
        return;
    };
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    replicate_with_levels(&ls, &dir, &db, &file_url(&replica));

    let theirs = ls.ltx_list(&file_url(&replica));
    let client = FileClient::new(&replica);
    let levels: Vec<u8> = client
        .levels()
        .await
        .unwrap()
        .iter()
        .map(|l| l.get())
        .collect();
    for want in [0, 1, 9] {
        assert!(levels.contains(&want), "levels {levels:?}");
    }
    let ours = client.list_all(ListOptions::default()).await.unwrap();
    let mut a: Vec<_> = theirs.iter().map(entry_key).collect();
    let mut b: Vec<_> = ours.iter().map(info_key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // File mtimes are the header timestamps, to the millisecond.
    for f in &ours {
        let bytes = client.read(f.level, f.name, ReadRange::Full).await.unwrap();
        assert_eq!(bytes.len() as u64, f.size);
        assert_eq!(header_timestamp(&bytes), f.created_at, "{f:?}");
        assert_eq!(header_txids(&bytes), (f.name.min.get(), f.name.max.get()));
    }

    // Seek skips files whose MinTXID is lower.
    let l0 = client
        .list(Level::L0, ListOptions::default())
        .await
        .unwrap();
    let mid = l0[l0.len() / 2].name.min;
    let tail = client
        .list(
            Level::L0,
            ListOptions {
                seek: Some(mid),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail, l0[l0.len() / 2..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_writes_are_listed_and_restored_by_litestream() {
    let Some(ls) = Litestream::require("our_writes_are_listed_and_restored_by_litestream") else {
        return;
    };
    let (_t, dir) = tempdir();
    let db = dir.join("src.db");
    {
        let conn = wal_db(&db);
        insert(&conn, 50, 500);
        ls.replicate_once(&db, &file_url(&dir.join("theirs")), true);
    }
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o710)).unwrap();
    let theirs = FileClient::new(dir.join("theirs"));
    let registry = prometheus::Registry::new();
    let metrics = ReplicaMetrics::register(&registry).unwrap();
    // Through open_client, as the server opens it: counted by the metrics wrapper.
    let client = replication::open_client(
        &replication::ReplicaTarget::File(replication::FileTarget {
            path: dir.join("ours"),
        }),
        &replication::ClientOptions {
            metrics: Some(metrics.clone()),
            db_path: Some(db.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    client.probe().await.unwrap();
    let ours = FileClient::new(dir.join("ours"));

    let mut written = Vec::new();
    for f in theirs.list_all(ListOptions::default()).await.unwrap() {
        let bytes = theirs.read(f.level, f.name, ReadRange::Full).await.unwrap();
        let ts = header_timestamp(&bytes);
        let info = client
            .write_bytes(f.level, f.name, bytes.clone(), ts)
            .await
            .unwrap();
        assert_eq!(info.size, f.size);
        written.push(info);
        // Atomic write: no temp file left; the file has the DB file's mode.
        let path = ours.file_path(f.level, f.name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert!(!path.with_extension("ltx.tmp").exists());
        let dir_mode = std::fs::metadata(ours.level_dir(f.level))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            dir_mode & 0o777,
            0o710,
            "directories copy the DB directory's mode"
        );
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(chrono::DateTime::<chrono::Utc>::from(mtime), ts);
    }
    assert_eq!(metrics.total("file", "PUT"), written.len() as u64);
    assert!(metrics.bytes("file", "PUT") > 0);
    // Reads: one GET each, the bytes as the body streams; a missing file is `NotFound`.
    let first = &written[0];
    let read = client
        .read(first.level, first.name, ReadRange::Full)
        .await
        .unwrap();
    assert_eq!(metrics.total("file", "GET"), 1);
    assert_eq!(metrics.bytes("file", "GET"), read.len() as u64);
    let missing = FileName::new(TxId(1 << 40), TxId(1 << 40));
    assert!(
        client
            .open(Level::L0, missing, ReadRange::Full)
            .await
            .is_err()
    );
    assert_eq!(metrics.errors("file", "GET", "NotFound"), 1);
    let families = registry.gather();
    assert!(
        families
            .iter()
            .any(|f| f.name() == "litestream_replica_operation_duration_seconds")
    );

    // Litestream sees the same files, with our timestamps (mtime set).
    let listed = ls.ltx_list(&file_url(&dir.join("ours")));
    let mut a: Vec<_> = listed.iter().map(entry_key).collect();
    let mut b: Vec<_> = written.iter().map(info_key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // And restores them to the same database as from its own replica.
    let from_ours = dir.join("from-ours.db");
    let from_theirs = dir.join("from-theirs.db");
    restore(&ls, &file_url(&dir.join("ours")), &from_ours, &[]);
    restore(&ls, &file_url(&dir.join("theirs")), &from_theirs, &[]);
    assert_eq!(
        std::fs::read(&from_ours).unwrap(),
        std::fs::read(&from_theirs).unwrap()
    );
}

#[tokio::test]
async fn ranges_deletes_and_odd_names() {
    let (_t, dir) = tempdir();
    let client = FileClient::new(dir.join("r"));
    let name = FileName::new(TxId(1), TxId(3));
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let ts = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(1_700_000_000_123).unwrap();
    client
        .write_bytes(Level::new(1).unwrap(), name, data.clone().into(), ts)
        .await
        .unwrap();
    let l1 = Level::new(1).unwrap();
    let read = |r| client.read(l1, name, r);
    assert_eq!(read(ReadRange::Full).await.unwrap(), data);
    assert_eq!(read(ReadRange::From(9000)).await.unwrap(), data[9000..]);
    assert_eq!(
        read(ReadRange::Suffix(32)).await.unwrap(),
        data[data.len() - 32..]
    );
    assert_eq!(
        read(ReadRange::Bounded {
            start: 100,
            end: 200
        })
        .await
        .unwrap(),
        data[100..200]
    );
    assert!(read(ReadRange::From(20_000)).await.is_err());

    // Names that are not LTX names are ignored, as Litestream does.
    let level_dir = client.level_dir(l1);
    for junk in [
        "0000000000000004-0000000000000004.ltx.tmp",
        "0000000000000004-000000000000000A.ltx",
        "notes.txt",
    ] {
        std::fs::write(level_dir.join(junk), b"x").unwrap();
    }
    std::fs::create_dir_all(client.root().join("ltx/10")).unwrap();
    let files = client.list(l1, ListOptions::default()).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].created_at, ts);
    assert_eq!(client.levels().await.unwrap(), vec![l1]);

    let missing = FileName::new(TxId(9), TxId(9));
    let e = client.read(l1, missing, ReadRange::Full).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    client.delete(l1, &[name, missing]).await.unwrap();
    assert!(
        client
            .list(l1, ListOptions::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        client
            .list(Level::L0, ListOptions::default())
            .await
            .unwrap()
            .is_empty()
    );

    // A replica under a regular file cannot be created: the probe says so.
    std::fs::write(dir.join("file"), b"x").unwrap();
    let bad = FileClient::new(dir.join("file/replica"));
    let e = bad.probe().await.unwrap_err().to_string();
    assert!(e.contains("probe"), "{e}");
}

#[tokio::test]
async fn file_client_contract() {
    let (_t, dir) = tempdir();
    common::contract::client_contract(&FileClient::new(dir.join("replica"))).await;
}
