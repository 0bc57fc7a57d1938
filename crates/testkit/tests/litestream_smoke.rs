//! The wrapper around the real Litestream binary works: a one-shot replication of a database
//! made by the sqlite3 CLI lists, plans and restores.

use testkit::litestream::Litestream;
use testkit::{Tool, require_tool};

#[test]
fn replicate_once_list_plan_restore() {
    let Some(ls) = Litestream::require("replicate_once_list_plan_restore") else {
        return;
    };
    let Some(sqlite3) = require_tool(Tool::Sqlite3, "replicate_once_list_plan_restore") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    testkit::sqlite3_exec(
        &sqlite3,
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);",
    );
    let url = format!("file://{}", dir.path().join("replica").display());
    ls.replicate_once(&db, &url, true);

    let files = ls.ltx_list(&url);
    let levels: Vec<u32> = files.iter().map(|f| f.level).collect();
    assert_eq!(levels, vec![0, 9], "{files:?}");
    assert!(files.iter().all(|f| f.min_txid == "0000000000000001"));

    let plan = ls.restore_plan(&url, None);
    assert_eq!(plan.max_txid, "0000000000000001");
    assert_eq!(plan.files.len(), 1);

    let out = dir.path().join("restored.db");
    let res = ls.restore(&url, &out, &[]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
}
