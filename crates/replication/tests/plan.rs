//! The restore plan: equal to `litestream restore -dry-run -json` on replicas the real
//! Litestream wrote (latest, every MaxTXID boundary, timestamps, non-boundary TXIDs, gaps),
//! and Litestream's rules on small synthetic listings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use ltx::{FileName, TxId};
use replication::internals::FileClient;
use replication::restore::{
    PlanError, RestoreTarget, check_timestamp_in_bounds, plan_restore, time_bounds,
};
use replication::{Level, LtxFileInfo};
use replication::{ListOptions, ReplicaClient};
use testkit::litestream::{Litestream, LtxEntry};

fn f(level: u8, min: u64, max: u64, secs: i64) -> LtxFileInfo {
    LtxFileInfo {
        level: Level::new(level).unwrap(),
        name: FileName::new(TxId(min), TxId(max)),
        size: 1000,
        created_at: DateTime::<Utc>::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
    }
}

fn names(plan: &[LtxFileInfo]) -> Vec<(u8, u64, u64)> {
    plan.iter()
        .map(|f| (f.level.get(), f.name.min.get(), f.name.max.get()))
        .collect()
}

fn entries(files: &[LtxEntry]) -> Vec<(u8, u64, u64, u64)> {
    files
        .iter()
        .map(|e| {
            let k = entry_key(e);
            (k.0, k.1, k.2, k.3)
        })
        .collect()
}

fn infos(files: &[LtxFileInfo]) -> Vec<(u8, u64, u64, u64)> {
    files
        .iter()
        .map(|f| (f.level.get(), f.name.min.get(), f.name.max.get(), f.size))
        .collect()
}

/// `litestream restore -dry-run -json <extra> <url>`: Ok(plan files) or Err(stderr).
fn dry_run(ls: &Litestream, url: &str, extra: &[&str]) -> Result<Vec<LtxEntry>, String> {
    let mut args = vec!["restore", "-dry-run", "-json"];
    args.extend_from_slice(extra);
    args.extend(["-o", "/nonexistent/dry-run.db", url]);
    let out = ls.run(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let plan: testkit::litestream::RestorePlan = serde_json::from_slice(&out.stdout).unwrap();
    Ok(plan.files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_equal_litestream_dry_runs() {
    let Some(ls) = Litestream::require("plans_equal_litestream_dry_runs") else {
        return;
    };
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let url = file_url(&replica);
    replicate_with_levels(&ls, &dir, &db, &url);
    let client = FileClient::new(&replica);
    let files = client.list_all(ListOptions::default()).await.unwrap();

    // Latest.
    let ours = plan_restore(&files, RestoreTarget::Latest).unwrap();
    let theirs = ls.restore_plan(&url, None);
    assert_eq!(infos(&ours.files), entries(&theirs.files));
    assert_eq!(ours.max_txid().to_string(), theirs.max_txid);
    assert_eq!(ours.min_txid().to_string(), theirs.min_txid);
    ours.check_sizes().unwrap();

    // Every MaxTXID boundary.
    let mut boundaries: Vec<TxId> = files.iter().map(|f| f.name.max).collect();
    boundaries.sort();
    boundaries.dedup();
    assert!(boundaries.len() > 3, "{boundaries:?}");
    for b in &boundaries {
        let ours = plan_restore(&files, RestoreTarget::TxId(*b)).unwrap();
        let theirs = ls.restore_plan(&url, Some(&b.to_string()));
        assert_eq!(infos(&ours.files), entries(&theirs.files), "txid {b}");
        assert_eq!(ours.max_txid(), *b);
    }
    // Beyond the newest TXID: both refuse.
    let beyond = TxId(boundaries.last().unwrap().get() + 1);
    assert_eq!(
        plan_restore(&files, RestoreTarget::TxId(beyond)).unwrap_err(),
        PlanError::NotAvailable
    );
    let e = dry_run(&ls, &url, &["-txid", &beyond.to_string()]).unwrap_err();
    assert!(e.contains("no matching backup files available"), "{e}");

    // Timestamps (file replica: CreatedAt is the ms-precise mtime).
    let mut stamps: Vec<DateTime<Utc>> = files.iter().map(|f| f.created_at).collect();
    stamps.sort();
    stamps.dedup();
    let last = *stamps.last().unwrap();
    for at in [
        stamps[stamps.len() / 3] + Duration::milliseconds(1),
        stamps[stamps.len() / 2] + Duration::milliseconds(1),
        last,
        last + Duration::milliseconds(1),
    ] {
        let rfc = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let theirs = dry_run(&ls, &url, &["-timestamp", &rfc]);
        // URL-form restores check the time bounds first, then plan.
        let ours = check_timestamp_in_bounds(&files, at)
            .and_then(|()| plan_restore(&files, RestoreTarget::Timestamp(at)));
        match ours {
            Ok(ours) => assert_eq!(infos(&ours.files), entries(&theirs.unwrap()), "{rfc}"),
            Err(e) => assert!(theirs.unwrap_err().contains(&e.to_string()), "{rfc}: {e}"),
        }
    }
    let (earliest, latest) = time_bounds(&files).unwrap();
    for outside in [
        earliest - Duration::seconds(1),
        latest + Duration::seconds(1),
    ] {
        assert_eq!(
            check_timestamp_in_bounds(&files, outside).unwrap_err(),
            PlanError::TimestampNotInRange
        );
        let rfc = outside.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let e = dry_run(&ls, &url, &["-timestamp", &rfc]).unwrap_err();
        assert!(e.contains("timestamp does not exist"), "{e}");
    }

    // Remove the L0 files an L1 file covers (except its last): TXIDs inside that L1 file
    // stop being boundaries, and both planners refuse them.
    let l1: Vec<_> = files.iter().filter(|f| f.level.get() == 1).collect();
    let wide = l1
        .iter()
        .find(|f| f.name.max.get() > f.name.min.get() + 1)
        .expect("an L1 file spanning several TXIDs");
    let inner: Vec<FileName> = files
        .iter()
        .filter(|f| {
            f.level == Level::L0 && f.name.max < wide.name.max && f.name.min >= wide.name.min
        })
        .map(|f| f.name)
        .collect();
    client.delete(Level::L0, &inner).await.unwrap();
    let files = client.list_all(ListOptions::default()).await.unwrap();
    let mut maxes: Vec<TxId> = files.iter().map(|f| f.name.max).collect();
    maxes.sort();
    let non_boundary = (wide.name.min.get()..wide.name.max.get())
        .map(TxId)
        .find(|t| !maxes.contains(t))
        .expect("a TXID that is no longer a file boundary");
    assert_eq!(
        plan_restore(&files, RestoreTarget::TxId(non_boundary)).unwrap_err(),
        PlanError::NotAvailable
    );
    let e = dry_run(&ls, &url, &["-txid", &non_boundary.to_string()]).unwrap_err();
    assert!(e.contains("no matching backup files available"), "{e}");
    let ours = plan_restore(&files, RestoreTarget::Latest).unwrap();
    assert_eq!(
        infos(&ours.files),
        entries(&ls.restore_plan(&url, None).files)
    );

    // A gap: remove every file (in any level) holding TXID k, where an L0 file starts at
    // k+1. The latest plan fails with the same message as Litestream's.
    let l0 = client
        .list(Level::L0, ListOptions::default())
        .await
        .unwrap();
    let k = l0[l0.len() - 2].name.max;
    for f in &files {
        if f.name.min <= k && k <= f.name.max {
            client.delete(f.level, &[f.name]).await.unwrap();
        }
    }
    let files = client.list_all(ListOptions::default()).await.unwrap();
    let ours = plan_restore(&files, RestoreTarget::Latest).unwrap_err();
    assert!(matches!(ours, PlanError::NonContiguous { .. }));
    let theirs = dry_run(&ls, &url, &[]).unwrap_err();
    assert!(
        theirs.contains(&ours.to_string()),
        "ours: {ours}\ntheirs: {theirs}"
    );
}

#[test]
fn best_candidate_across_levels() {
    // Snapshot 1-6; L1 7-10 beats L0 7-7 (larger MaxTXID); then L0 11, 12.
    let files = vec![
        f(9, 1, 1, 0),
        f(9, 1, 6, 10),
        f(1, 1, 5, 5),
        f(1, 7, 10, 20),
        f(0, 7, 7, 12),
        f(0, 8, 8, 13),
        f(0, 11, 11, 30),
        f(0, 12, 12, 31),
        f(2, 1, 6, 10),
    ];
    let plan = plan_restore(&files, RestoreTarget::Latest).unwrap();
    assert_eq!(
        names(&plan.files),
        vec![(9, 1, 6), (1, 7, 10), (0, 11, 11), (0, 12, 12)]
    );
    let plan = plan_restore(&files, RestoreTarget::TxId(TxId(5))).unwrap();
    assert_eq!(names(&plan.files), vec![(9, 1, 1), (1, 1, 5)]);
    // Equal ranges: the higher level wins.
    let plan = plan_restore(
        &[f(0, 1, 3, 0), f(2, 1, 3, 0), f(1, 1, 3, 0)],
        RestoreTarget::Latest,
    )
    .unwrap();
    assert_eq!(names(&plan.files), vec![(2, 1, 3)]);
    // Timestamps are strict: a file created exactly at the target is excluded.
    let plan = plan_restore(
        &files,
        RestoreTarget::Timestamp(DateTime::<Utc>::from_timestamp(1_700_000_013, 0).unwrap()),
    )
    .unwrap();
    assert_eq!(names(&plan.files), vec![(9, 1, 6), (0, 7, 7)]);
}

#[test]
fn errors() {
    assert_eq!(
        plan_restore(&[], RestoreTarget::Latest).unwrap_err(),
        PlanError::NotAvailable
    );
    let gap = [f(0, 1, 1, 0), f(0, 2, 2, 1), f(0, 4, 4, 2)];
    let e = plan_restore(&gap, RestoreTarget::Latest).unwrap_err();
    assert_eq!(
        e.to_string(),
        "non-contiguous ltx files: have up to 0000000000000002 but next file starts at 0000000000000004"
    );
    // A TXID restore below the gap still works; the one past it does not.
    assert!(plan_restore(&gap, RestoreTarget::TxId(TxId(2))).is_ok());
    assert_eq!(
        plan_restore(&gap, RestoreTarget::TxId(TxId(4))).unwrap_err(),
        PlanError::NotAvailable
    );
    // A chain that does not start at 1 has nothing to start from.
    assert_eq!(
        plan_restore(&[f(0, 2, 2, 0)], RestoreTarget::Latest).unwrap_err(),
        PlanError::NotAvailable
    );
    assert_eq!(
        check_timestamp_in_bounds(&[], Utc::now()).unwrap_err(),
        PlanError::NoBackups
    );
    let mut tiny = f(0, 1, 1, 0);
    tiny.size = 50;
    let plan = plan_restore(&[tiny], RestoreTarget::Latest).unwrap();
    assert!(matches!(
        plan.check_sizes(),
        Err(PlanError::FileTooSmall { size: 50, .. })
    ));
}
