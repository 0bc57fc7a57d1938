//! Litestream 0.3 backups (`generations/`), written by the real Litestream 0.3.13 on file and
//! S3 (moto) replicas: our restore equals Litestream 0.3.13's own; start-up restores them
//! when there is no local database and then replicates in LTX under the same path; with a
//! local database they are left alone; damaged backups fail with clear errors; content that
//! is no Litestream replica is refused by name, while the files Litestream and sqlite-rest
//! leave beside a replica are not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use replication::MetaDir;
use replication::ReplicaClient;
use replication::internals::{InspectError, PrepareOptions, inspect, prepare};
use replication::restore::RestoreTarget;
use replication::restore::{self, AnyPlan, IntegrityCheck, RestoreError, RestoreOptions};
use replication::v03::{self, V03Plan};
use replication::{StartAction, StartupError};
use testkit::litestream_v03::{LitestreamV03, V03Backup, V03Replica};

use common::{file_url, open_url, tempdir};

/// Every row of the backups' table `t`, in order.
fn rows(path: &Path) -> Vec<(i64, i64, Vec<u8>)> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT id, phase, payload FROM t ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A backup on a file replica under `dir/replica`.
fn file_backup(test: &str, dir: &Path) -> Option<V03Backup> {
    let ls = LitestreamV03::require(test)?;
    Some(ls.write_backup(dir, &V03Replica::File(dir.join("replica")), 3))
}

/// A backup in a fresh bucket on the local S3 server.
fn s3_backup(test: &str, dir: &Path) -> Option<V03Backup> {
    let ls = LitestreamV03::require(test)?;
    let s3 = testkit::require_s3(test)?;
    let bucket = s3.create_bucket("v03");
    let replica = V03Replica::S3 {
        s3,
        bucket,
        path: "app".to_string(),
    };
    Some(ls.write_backup(dir, &replica, 3))
}

async fn v03_plan(client: &dyn ReplicaClient) -> V03Plan {
    match restore::plan_any(client, RestoreTarget::Latest, true)
        .await
        .unwrap()
    {
        AnyPlan::V03(p) => p,
        AnyPlan::Ltx(p) => panic!("expected a Litestream 0.3 plan, got LTX {p:?}"),
    }
}

/// Restores with our library, checks the result against the oracle byte for byte and the
/// backup's shape (several generations, snapshots and WAL indexes).
async fn restore_and_compare(backup: &V03Backup, dir: &Path) {
    let client = open_url(&backup.url).await;
    let listing = v03::list(client.as_ref()).await.unwrap();
    assert!(
        listing.generations.len() >= 2,
        "expected several generations: {listing:?}"
    );
    let plan = v03_plan(client.as_ref()).await;
    let newest_gen: Vec<_> = listing
        .snapshots
        .iter()
        .filter(|s| s.generation == plan.snapshot.generation)
        .collect();
    assert!(
        newest_gen.len() >= 2,
        "expected several snapshots in the newest generation: {listing:?}"
    );
    let indexes: std::collections::BTreeSet<u32> = listing
        .segments
        .iter()
        .filter(|s| s.generation == plan.snapshot.generation)
        .map(|s| s.index)
        .collect();
    assert!(
        indexes.len() >= 2,
        "expected several WAL indexes: {listing:?}"
    );

    let out = dir.join("ours.db");
    let mut options = RestoreOptions::new(&out);
    options.integrity_check = IntegrityCheck::Full;
    let restored = v03::restore(&client, &plan, &options).await.unwrap();
    assert_eq!(restored.generation, plan.snapshot.generation);
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&backup.oracle).unwrap(),
        "our restore differs from Litestream 0.3.13's"
    );
    assert_eq!(rows(&out).len() as i64, backup.rows);
    assert_eq!(rows(&out), rows(&backup.source));
    // Litestream 0.5.17 restores the same bytes from the same backup.
    let theirs = dir.join("litestream-05.db");
    if litestream_05_restore(&backup.url, &theirs).is_some() {
        assert!(std::fs::read(&out).unwrap() == std::fs::read(&theirs).unwrap());
    }
    assert!(!dir.join("ours.db.tmp").exists() && !dir.join("ours.db.tmp-wal").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_real_litestream_03_backup_on_a_file_replica() {
    let (_t, dir) = tempdir();
    let Some(backup) = file_backup("restores_a_real_litestream_03_file_backup", &dir) else {
        return;
    };
    restore_and_compare(&backup, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_real_litestream_03_backup_on_s3() {
    let (_t, dir) = tempdir();
    let Some(backup) = s3_backup("restores_a_real_litestream_03_backup_on_s3", &dir) else {
        return;
    };
    restore_and_compare(&backup, &dir).await;
}

/// The replica's newest state restored by the real Litestream 0.5.17.
fn litestream_05_restore(url: &str, out: &Path) -> Option<()> {
    let ls = testkit::litestream::Litestream::require("litestream_05_restore")?;
    common::restore(&ls, url, out, &["-integrity-check", "full"]);
    Some(())
}

/// Start-up with no local database restores the newest Litestream 0.3 generation, then
/// replicates in LTX under the same path: our restore and Litestream 0.5.17's give the 0.3
/// data plus the new writes, and the 0.3 backup is untouched.
async fn starts_from_v03_and_continues(backup: &V03Backup, dir: &Path) {
    let before = v03::list(open_url(&backup.url).await.as_ref())
        .await
        .unwrap();
    let db = dir.join("app.db");
    let yaml = common::fast_config(&db, &backup.url, "");
    let replicator = common::start_replicator(&yaml, &db).await.unwrap();
    let generation = before.best_snapshot(None).unwrap().generation;
    assert!(
        matches!(replicator.handle().start_action(), StartAction::RestoredV03 { generation: g, .. } if g == generation),
        "{:?}",
        replicator.handle().start_action()
    );
    assert_eq!(rows(&db), rows(&backup.oracle));
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        for i in 0..5 {
            conn.execute(
                "INSERT INTO t(phase, payload) VALUES (100, ?1)",
                [vec![i as u8; 5000]],
            )
            .unwrap();
        }
        conn.execute("UPDATE t SET phase = 101 WHERE id = 1", [])
            .unwrap();
    }
    replicator
        .handle()
        .notify_commit(replication::CommitNotice { seq: 1 });
    replicator.shutdown().await.unwrap();
    let expected = rows(&db);
    assert_eq!(expected.len() as i64, backup.rows + 5);

    let client = open_url(&backup.url).await;
    let after = v03::list(client.as_ref()).await.unwrap();
    assert_eq!(
        after, before,
        "the Litestream 0.3 backup must be left as it was"
    );
    let contents = inspect(client.as_ref(), false).await.unwrap();
    assert!(contents.ltx.iter().any(|f| f.name.min.get() == 1));

    let ours = dir.join("ours-after.db");
    match restore::plan_any(client.as_ref(), RestoreTarget::Latest, true)
        .await
        .unwrap()
    {
        AnyPlan::Ltx(plan) => {
            let mut options = RestoreOptions::new(&ours);
            options.integrity_check = IntegrityCheck::Full;
            restore::restore(&client, &plan, &options).await.unwrap();
        }
        AnyPlan::V03(p) => panic!("the LTX continuation is newer, got a 0.3 plan {p:?}"),
    }
    assert_eq!(rows(&ours), expected);
    let theirs = dir.join("litestream-05.db");
    if litestream_05_restore(&backup.url, &theirs).is_some() {
        assert_eq!(rows(&theirs), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_restores_a_v03_file_backup_and_continues_in_ltx() {
    let (_t, dir) = tempdir();
    let Some(backup) = file_backup("start_up_restores_a_v03_file_backup", &dir) else {
        return;
    };
    starts_from_v03_and_continues(&backup, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_restores_a_v03_s3_backup_and_continues_in_ltx() {
    let (_t, dir) = tempdir();
    let Some(backup) = s3_backup("start_up_restores_a_v03_s3_backup", &dir) else {
        return;
    };
    starts_from_v03_and_continues(&backup, &dir).await;
}

/// With a local database present and only a Litestream 0.3 backup on the replica, start-up
/// replicates the local database in LTX beside the untouched 0.3 backup (as Litestream 0.5
/// does); the LTX state is newer, so a restore returns the local database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_database_is_replicated_beside_a_v03_backup() {
    let (_t, dir) = tempdir();
    let Some(backup) = file_backup("a_local_database_is_replicated_beside_a_v03_backup", &dir)
    else {
        return;
    };
    let client = open_url(&backup.url).await;
    let before = v03::list(client.as_ref()).await.unwrap();
    // The pod's volume survived the upgrade: the database is the 0.3 source, newer than
    // (or equal to) its backup, with the old sidecar's metadata beside it.
    let db = dir.join("app.db");
    std::fs::copy(&backup.source, &db).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("INSERT INTO t(phase, payload) VALUES (200, x'00')", [])
            .unwrap();
    }
    let yaml = common::fast_config(&db, &backup.url, "");
    let replicator = common::start_replicator(&yaml, &db).await.unwrap();
    assert_eq!(replicator.handle().start_action(), StartAction::NewReplica);
    replicator.shutdown().await.unwrap();
    assert_eq!(v03::list(client.as_ref()).await.unwrap(), before);
    let out = dir.join("restored.db");
    let plan = restore::plan_any(client.as_ref(), RestoreTarget::Latest, true)
        .await
        .unwrap();
    let AnyPlan::Ltx(plan) = plan else {
        panic!("expected the newer LTX backup, got {plan:?}");
    };
    restore::restore(&client, &plan, &RestoreOptions::new(&out))
        .await
        .unwrap();
    assert_eq!(rows(&out), rows(&db));
    assert_eq!(rows(&out).len() as i64, backup.rows + 1);
}

/// A timestamp restore reads the Litestream 0.3 snapshot and segments created at or before
/// it, as Litestream 0.3.13's own `restore -timestamp` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_v03_backup_at_a_timestamp() {
    let (_t, dir) = tempdir();
    let Some(backup) = file_backup("restores_a_v03_backup_at_a_timestamp", &dir) else {
        return;
    };
    let ts = chrono::DateTime::parse_from_rfc3339(&backup.first_generation_done)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let client = open_url(&backup.url).await;
    let plan = match restore::plan_any(client.as_ref(), RestoreTarget::Timestamp(ts), true)
        .await
        .unwrap()
    {
        AnyPlan::V03(p) => p,
        AnyPlan::Ltx(p) => panic!("{p:?}"),
    };
    let out = dir.join("at-ts.db");
    let mut options = RestoreOptions::new(&out);
    options.integrity_check = IntegrityCheck::Full;
    v03::restore(&client, &plan, &options).await.unwrap();
    assert_eq!(rows(&out).len() as i64, backup.first_generation_rows);
    assert!(rows(&out).iter().all(|r| r.1 == 1));
    // Litestream 0.5.17 restores a 0.3 backup at a timestamp the same way (0.3.13 itself
    // only looks inside the generation whose time span holds the timestamp).
    if let Some(ls05) =
        testkit::litestream::Litestream::require("restores_a_v03_backup_at_a_timestamp")
    {
        let theirs = dir.join("theirs-at-ts.db");
        common::restore(
            &ls05,
            &backup.url,
            &theirs,
            &["-timestamp", &backup.first_generation_done],
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&theirs).unwrap()
        );
    }
}

/// Copies a file replica, keeping every file's mtime (its CreatedAt).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            let mtime = e.metadata().unwrap().modified().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&target)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
}

/// The newest generation's WAL directory of a file replica.
fn newest_wal_dir(replica: &Path, plan: &V03Plan) -> std::path::PathBuf {
    replica
        .join("generations")
        .join(plan.snapshot.generation.to_string())
        .join("wal")
}

async fn restore_error(replica: &Path, out: &Path) -> String {
    let client = open_url(&file_url(replica)).await;
    let err = match restore::plan_any(client.as_ref(), RestoreTarget::Latest, true).await {
        Ok(AnyPlan::V03(plan)) => {
            let mut options = RestoreOptions::new(out);
            options.integrity_check = IntegrityCheck::Full;
            v03::restore(&client, &plan, &options).await.unwrap_err()
        }
        Ok(other) => panic!("{other:?}"),
        Err(e) => e,
    };
    assert!(!out.exists(), "a failed restore must leave no output");
    assert!(!out.with_extension("db.tmp").exists());
    err.to_string()
}

/// Damaged Litestream 0.3 backups fail with errors that name what is wrong, never a panic
/// or a silently shorter database; start-up then serves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_v03_backup_fails_clearly() {
    let (_t, dir) = tempdir();
    let Some(backup) = file_backup("a_damaged_v03_backup_fails_clearly", &dir) else {
        return;
    };
    // Only the newest generation's first snapshot is kept, so the plan spans all of its
    // WAL indexes.
    let replica = dir.join("replica");
    let base = dir.join("base");
    copy_dir(&replica, &base);
    let plan = v03_plan(open_url(&backup.url).await.as_ref()).await;
    let snapshots = base
        .join("generations")
        .join(plan.snapshot.generation.to_string())
        .join("snapshots");
    let mut names: Vec<String> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names[1..] {
        std::fs::remove_file(snapshots.join(n)).unwrap();
    }
    let plan = v03_plan(open_url(&file_url(&base)).await.as_ref()).await;
    let mut indexes = std::collections::BTreeMap::<u32, Vec<u64>>::new();
    for s in &plan.segments {
        indexes.entry(s.index).or_default().push(s.offset);
    }
    let replica = base;

    // A segment missing inside an index (one with segments after it).
    let damaged = dir.join("missing-segment");
    copy_dir(&replica, &damaged);
    let (&index, offsets) = indexes
        .iter()
        .find(|(_, o)| o.len() >= 3)
        .unwrap_or_else(|| panic!("no WAL index with three segments: {indexes:?}"));
    std::fs::remove_file(
        newest_wal_dir(&damaged, &plan).join(v03::segment_name(index, offsets[1])),
    )
    .unwrap();
    let e = restore_error(&damaged, &dir.join("o1.db")).await;
    assert!(
        e.contains("is incomplete") && e.contains(&format!("{index:08x}")),
        "{e}"
    );

    // A whole WAL index missing.
    let damaged = dir.join("missing-index");
    copy_dir(&replica, &damaged);
    let (&second, second_offsets) = indexes
        .iter()
        .nth(1)
        .unwrap_or_else(|| panic!("one WAL index only: {indexes:?}"));
    for o in second_offsets {
        std::fs::remove_file(newest_wal_dir(&damaged, &plan).join(v03::segment_name(second, *o)))
            .unwrap();
    }
    let e = restore_error(&damaged, &dir.join("o2.db")).await;
    assert!(e.contains(&format!("misses WAL index {second:08x}")), "{e}");
    let (&first, _) = indexes.iter().next().unwrap();

    // Bytes flipped inside a compressed segment.
    let damaged = dir.join("corrupt-segment");
    copy_dir(&replica, &damaged);
    let seg = newest_wal_dir(&damaged, &plan).join(v03::segment_name(first, 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&seg, &bytes).unwrap();
    let e = restore_error(&damaged, &dir.join("o3.db")).await;
    assert!(e.contains(&v03::segment_name(first, 0)), "{e}");

    // A segment cut short.
    let damaged = dir.join("short-segment");
    copy_dir(&replica, &damaged);
    let seg = newest_wal_dir(&damaged, &plan).join(v03::segment_name(first, 0));
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() / 3]).unwrap();
    let e = restore_error(&damaged, &dir.join("o4.db")).await;
    assert!(e.contains("cut short") || e.contains("LZ4"), "{e}");

    // A generation without snapshots.
    let damaged = dir.join("no-snapshot");
    copy_dir(&replica, &damaged);
    for g in std::fs::read_dir(damaged.join("generations")).unwrap() {
        std::fs::remove_dir_all(g.unwrap().path().join("snapshots")).unwrap();
    }
    let e = restore_error(&damaged, &dir.join("o5.db")).await;
    assert!(e.contains("has no snapshot"), "{e}");

    // Start-up on the damaged replica refuses and creates no database.
    let db = dir.join("served.db");
    let yaml = common::fast_config(&db, &file_url(&damaged), "");
    let err = common::start_replicator(&yaml, &db).await.unwrap_err();
    assert!(err.to_string().contains("has no snapshot"), "{err}");
    assert!(!db.exists());
}

/// Content that neither Litestream nor sqlite-rest writes is refused by name — at start-up
/// (with or without a local database) and by restore — and never taken for an empty replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_content_under_a_file_replica_is_refused_by_name() {
    let (_t, dir) = tempdir();
    let replica = dir.join("replica");
    std::fs::create_dir_all(replica.join("backups")).unwrap();
    std::fs::write(replica.join("notes.txt"), b"hello").unwrap();
    let client = open_url(&file_url(&replica)).await;
    match inspect(client.as_ref(), false).await {
        Err(InspectError::Foreign(f)) => {
            assert_eq!(
                f.found,
                vec!["backups/".to_string(), "notes.txt".to_string()]
            );
            let text = f.to_string();
            assert!(
                text.contains("`backups/`, `notes.txt`")
                    && text.contains("not a Litestream replica"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = restore::plan_any(client.as_ref(), RestoreTarget::Latest, true)
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::Foreign(_)), "{err}");

    let db = dir.join("app.db");
    let yaml = common::fast_config(&db, &file_url(&replica), "");
    let err = common::start_replicator(&yaml, &db).await.unwrap_err();
    assert!(err.to_string().contains("`notes.txt`"), "{err}");
    assert!(!db.exists(), "no new database next to foreign content");

    // With a local database too.
    let conn = common::wal_db(&db);
    drop(conn);
    let meta = MetaDir::new(dir.join(".app.db-litestream"));
    let err = prepare(&client, &db, &meta, &PrepareOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartupError::Restore(RestoreError::Foreign(_))),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_content_under_an_s3_replica_is_refused_by_name() {
    let Some(s3) = testkit::require_s3("foreign_content_under_an_s3_replica") else {
        return;
    };
    let bucket = s3.create_bucket("foreign");
    let url = s3.replica_url(&bucket, "app");
    let client = open_url(&url).await;
    // Put an object the way another tool would, through a client of the parent prefix.
    let parent = open_url(&s3.replica_url(&bucket, "app/stuff")).await;
    parent
        .write_bytes(
            replication::Level::L0,
            ltx::FileName::new(ltx::TxId(1), ltx::TxId(1)),
            bytes::Bytes::from_static(b"x"),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let err = inspect(client.as_ref(), false).await.unwrap_err();
    assert!(err.to_string().contains("`stuff/`"), "{err}");
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let err = common::start_replicator(&common::fast_config(&db, &url, ""), &db)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a Litestream replica"),
        "{err}"
    );
    assert!(!db.exists());
}

/// What Litestream and sqlite-rest leave beside a replica is recognised: a new database
/// starts on a replica path holding only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidental_files_are_not_foreign() {
    let (_t, dir) = tempdir();
    let replica = dir.join("replica");
    std::fs::create_dir_all(replica.join("lost+found")).unwrap();
    std::fs::create_dir_all(replica.join("generations")).unwrap();
    std::fs::create_dir_all(replica.join("ltx/0")).unwrap();
    std::fs::write(replica.join("lock.json"), b"{}").unwrap();
    std::fs::write(replica.join(".sqlite-rest-probe-4242"), b"probe").unwrap();
    let db = dir.join("app.db");
    let replicator =
        common::start_replicator(&common::fast_config(&db, &file_url(&replica), ""), &db)
            .await
            .unwrap();
    assert_eq!(replicator.handle().start_action(), StartAction::NewDatabase);
    replicator.shutdown().await.unwrap();

    // S3: Litestream's level directories and its lease object.
    let Some(s3) = testkit::require_s3("incidental_files_are_not_foreign") else {
        return;
    };
    let bucket = s3.create_bucket("incidental");
    let url = s3.replica_url(&bucket, "app");
    let ls = testkit::litestream::Litestream::require("incidental_files_are_not_foreign").unwrap();
    let src = dir.join("src.db");
    common::insert(&common::wal_db(&src), 10, 100);
    ls.replicate_once(&src, &url, true);
    let client = open_url(&url).await;
    let contents = inspect(client.as_ref(), false).await.unwrap();
    assert!(!contents.ltx.is_empty() && contents.v03.is_empty());
}

/// A replica path with older LTX files and a newer Litestream 0.3 backup (a 0.3 sidecar
/// wrote to it after an earlier LTX replica): start-up restores the newer 0.3 backup, as
/// Litestream 0.5's restore would pick it, and continues the LTX history with a full file
/// at the next TXID, so the LTX restore (ours and Litestream 0.5.17's) then returns the 0.3
/// data plus the new writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v03_backup_newer_than_the_ltx_files_is_restored_and_continued() {
    let test = "a_v03_backup_newer_than_the_ltx_files";
    let (_t, dir) = tempdir();
    let Some(ls05) = testkit::litestream::Litestream::require(test) else {
        return;
    };
    let Some(v03) = LitestreamV03::require(test) else {
        return;
    };
    let replica = dir.join("replica");
    let url = file_url(&replica);
    let other = dir.join("other.db");
    common::insert(&common::wal_db(&other), 20, 100);
    ls05.replicate_once(&other, &url, true);
    let client = open_url(&url).await;
    let old_ltx = inspect(client.as_ref(), false).await.unwrap().ltx;
    let old_max = old_ltx.iter().map(|f| f.name.max).max().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let backup = v03.write_backup(&dir, &V03Replica::File(replica.clone()), 2);

    let db = dir.join("app.db");
    let replicator = common::start_replicator(&common::fast_config(&db, &url, ""), &db)
        .await
        .unwrap();
    assert!(
        matches!(
            replicator.handle().start_action(),
            StartAction::RestoredV03 { .. }
        ),
        "{:?}",
        replicator.handle().start_action()
    );
    assert_eq!(rows(&db), rows(&backup.oracle));
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        conn.execute("INSERT INTO t(phase, payload) VALUES (500, x'01')", [])
            .unwrap();
    }
    replicator.shutdown().await.unwrap();
    let expected = rows(&db);
    let contents = inspect(client.as_ref(), false).await.unwrap();
    assert!(contents.ltx.iter().any(|f| f.name.min > old_max));
    let out = dir.join("after.db");
    match restore::plan_any(client.as_ref(), RestoreTarget::Latest, true)
        .await
        .unwrap()
    {
        AnyPlan::Ltx(plan) => {
            let mut options = RestoreOptions::new(&out);
            options.integrity_check = IntegrityCheck::Full;
            restore::restore(&client, &plan, &options).await.unwrap();
        }
        AnyPlan::V03(p) => panic!("{p:?}"),
    }
    assert_eq!(rows(&out), expected);
    let theirs = dir.join("theirs-after.db");
    common::restore(&ls05, &url, &theirs, &["-integrity-check", "full"]);
    assert_eq!(rows(&theirs), expected);
}
