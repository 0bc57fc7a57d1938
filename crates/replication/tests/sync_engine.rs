//! The sync engine on a real database written by rusqlite: L0 files from the WAL (full,
//! incremental, growth, shrink, checkpoints of every kind), restored byte-identically by our
//! restore and by the real Litestream at every TXID.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use ltx::TxId;
use replication::ReplicaClient;
use replication::internals::CheckpointMode;
use replication::internals::FileClient;
use replication::internals::Policy;
use replication::internals::SyncSettings;
use replication::restore::IntegrityCheck;
use replication::restore::RestoreTarget;
use testkit::litestream::Litestream;

async fn our_restore(
    replica: &Path,
    out: &Path,
    txid: Option<u64>,
) -> replication::restore::Restored {
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(replica));
    let target = txid.map_or(RestoreTarget::Latest, |t| RestoreTarget::TxId(TxId(t)));
    restore_ours(&client, target, out, IntegrityCheck::Full)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l0_files_restore_at_every_txid_with_us_and_litestream() {
    let test = "l0_files_restore_at_every_txid_with_us_and_litestream";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let (_t, dir) = tempdir();
    let db = dir.join("src.db");
    let replica = dir.join("replica");
    let conn = wal_db(&db);
    insert(&conn, 10, 500);
    let mut s = syncer(
        &db,
        SyncSettings {
            checkpoints: Policy {
                min_checkpoint_page_count: 1_000_000,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let mut states = Vec::new();
    let r = s.sync().unwrap();
    assert_eq!(r.files.len(), 1);
    assert!(r.files[0].full.is_some(), "first file is full");
    states.push((s.position().txid, rows(&db)));
    // Incremental, growth (many rows), shrink (delete + vacuum), and a PASSIVE checkpoint.
    insert(&conn, 200, 900);
    let r = s.sync().unwrap();
    assert!(r.files[0].full.is_none());
    states.push((s.position().txid, rows(&db)));
    conn.execute("DELETE FROM t WHERE id % 3 = 0", []).unwrap();
    conn.execute_batch("VACUUM").unwrap();
    s.sync().unwrap();
    states.push((s.position().txid, rows(&db)));
    assert_eq!(s.sync().unwrap().files.len(), 0, "nothing new, no file");
    s.force_checkpoint(CheckpointMode::Passive).unwrap();
    states.push((s.position().txid, rows(&db)));
    insert(&conn, 5, 100);
    s.sync().unwrap();
    states.push((s.position().txid, rows(&db)));
    s.force_checkpoint(CheckpointMode::Truncate).unwrap();
    insert(&conn, 5, 100);
    s.sync().unwrap();
    states.push((s.position().txid, rows(&db)));
    publish(&s, &replica);

    let url = file_url(&replica);
    let last = s.position().txid.get();
    for txid in 1..=last {
        let ours = dir.join(format!("ours-{txid}.db"));
        let theirs = dir.join(format!("theirs-{txid}.db"));
        our_restore(&replica, &ours, Some(txid)).await;
        restore(&ls, &url, &theirs, &["-txid", &format!("{txid:016x}")]);
        assert_eq!(
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
            "txid {txid}"
        );
        if let Some((_, expected)) = states.iter().find(|(t, _)| t.get() == txid) {
            assert_eq!(&rows(&ours), expected, "content at txid {txid}");
        }
    }
    assert_eq!(rows(&dir.join(format!("ours-{last}.db"))), rows(&db));
}
