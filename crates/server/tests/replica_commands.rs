//! `sqlite-rest replica ls` and `sqlite-rest replica status` on file and S3 (moto) replicas
//! written by sqlite-rest and by the real Litestream 0.5.17: the listing is what
//! `litestream ltx -level all -json` lists (by URL and by config), the text form says the
//! same, and the status positions match the server's `Sqlite-Rest-Txid`, its `/health`, the
//! metadata directory and the replica's files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::replica::{BIN, Setup, create_db, insert};
use serde_json::Value;
use testkit::litestream::{Litestream, LtxEntry, Source};

/// `sqlite-rest replica <args>`, asserting success; returns stdout.
fn replica(args: &[&str]) -> String {
    let out = replica_output(args);
    assert!(
        out.status.success(),
        "replica {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn replica_output(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("replica")
        .args(args)
        .args(["--log-level", "warn"])
        .output()
        .unwrap()
}

/// `replica ls --json <args>`, parsed as Litestream's `ltx -json` rows.
fn ls_json(args: &[&str]) -> Vec<LtxEntry> {
    let mut all = vec!["ls", "--json"];
    all.extend_from_slice(args);
    let out = replica(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("replica ls --json: {e}\n{out}"))
}

/// `replica ls <args>` (text), parsed back into rows: a header, then one line per file.
fn ls_text(args: &[&str]) -> Vec<LtxEntry> {
    let mut all = vec!["ls"];
    all.extend_from_slice(args);
    let out = replica(&all);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["level", "min_txid", "max_txid", "size", "created"]);
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 5, "{l}");
            LtxEntry {
                level: f[0].parse().unwrap(),
                name: None,
                min_txid: f[1].to_string(),
                max_txid: f[2].to_string(),
                size: f[3].parse().unwrap(),
                timestamp: f[4].to_string(),
            }
        })
        .collect()
}

/// `replica status --json <args>`.
fn status_json(args: &[&str]) -> Value {
    let mut all = vec!["status", "--json"];
    all.extend_from_slice(args);
    let out = replica(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("replica status --json: {e}\n{out}"))
}

/// The highest max TXID of a listing.
fn max_txid(files: &[LtxEntry]) -> String {
    files.iter().map(|f| f.max_txid.clone()).max().unwrap()
}

/// The newest TXID among the L0 files of a metadata directory (`<meta>/ltx/0/<min>-<max>.ltx`),
/// if it has any.
fn newest_local_l0(meta: &Path) -> Option<String> {
    std::fs::read_dir(meta.join("ltx/0"))
        .ok()?
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let (_, max) = name.strip_suffix(".ltx")?.split_once('-')?;
            Some(max.to_string())
        })
        .max()
}

/// Asserts that our listing of the replica of `setup` is Litestream's, by URL and by
/// config, in JSON and text; and that `--level` filters it.
fn assert_listing_matches(ls: &Litestream, setup: &Setup) -> Vec<LtxEntry> {
    let url = setup.url.as_str();
    let (config, db) = (setup.config.to_str().unwrap(), setup.db.to_str().unwrap());
    let theirs = ls.ltx_list(url);
    assert!(!theirs.is_empty(), "the replica is empty");
    assert_eq!(ls_json(&[url]), theirs, "replica ls --json {url}");
    let by_config = ls.ltx_list_of(Source::Config {
        config: &setup.config,
        db: &setup.db,
    });
    assert_eq!(by_config, theirs);
    assert_eq!(ls_json(&["--config", config, db]), theirs);
    // The config lists one database: it need not be named.
    assert_eq!(ls_json(&["--replication-config", config]), theirs);
    assert_eq!(ls_text(&[url]), theirs, "replica ls {url}");
    let l0: Vec<LtxEntry> = theirs.iter().filter(|f| f.level == 0).cloned().collect();
    assert_eq!(ls_json(&["--level", "0", url]), l0);
    theirs
}

/// The `Sqlite-Rest-Txid` of a read of `t`.
async fn read_txid(s: &common::replica::Running) -> String {
    let r = s
        .client
        .get(format!("{}/t?limit=1", s.base))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["sqlite-rest-txid"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Asserts the file-based status of `setup`'s database: positions from the metadata
/// directory and the replica's files, nothing behind, the last snapshot and level summaries
/// from the listing.
fn assert_status_from_files(setup: &Setup, listing: &[LtxEntry], local: &str) {
    let config = setup.config.to_str().unwrap();
    let st = status_json(&["--config", config, setup.db.to_str().unwrap()]);
    assert_eq!(st["positions_from"], "files", "{st}");
    assert_eq!(st["database"], setup.db.to_str().unwrap(), "{st}");
    assert_eq!(st["local_txid"], local, "{st}");
    assert_eq!(st["replica_txid"], max_txid(listing).as_str(), "{st}");
    assert_eq!(st["txids_behind"], 0, "{st}");
    assert_eq!(st["lag_ms"], 0, "{st}");
    let snapshot = listing
        .iter()
        .filter(|f| f.level == 9)
        .max_by_key(|f| f.max_txid.clone());
    match snapshot {
        Some(s) => {
            assert_eq!(st["last_snapshot"]["max_txid"], s.max_txid.as_str(), "{st}");
            assert_eq!(
                st["last_snapshot"]["timestamp"],
                s.timestamp.as_str(),
                "{st}"
            );
        }
        None => assert!(st["last_snapshot"].is_null(), "{st}"),
    }
    let levels: Vec<(u64, u64, u64)> = st["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["level"].as_u64().unwrap(),
                l["files"].as_u64().unwrap(),
                l["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(u64, u64, u64)> = Vec::new();
    for f in listing {
        match expected.iter_mut().find(|e| e.0 == u64::from(f.level)) {
            Some(e) => {
                e.1 += 1;
                e.2 += f.size;
            }
            None => expected.push((u64::from(f.level), 1, f.size)),
        }
    }
    expected.sort();
    assert_eq!(levels, expected, "{st}");
    // The text form says the same.
    let text = replica(&["status", "--config", config]);
    assert!(text.contains(&format!("local txid      {local}")), "{text}");
    assert!(text.contains("(0 transactions behind)"), "{text}");
}

/// A replica written by the sqlite-rest server: while it runs, `status --admin-addr` and
/// `status` from the files both name the TXID its reads carry; once it stopped, `ls` lists
/// what Litestream lists.
async fn written_by_us(ls: &Litestream, setup: Setup) {
    create_db(&setup.db, 5);
    let mut s = setup.serve_or_log().await;
    let first = s.replicated_txid("").await;
    // One transaction: the server's poll sees all seven rows or none. Seven commits could
    // be split across two syncs, and the wait below end after the first: the second would
    // then move the positions on under the comparisons with `txid`.
    let c = rusqlite::Connection::open(&setup.db).unwrap();
    c.execute_batch("BEGIN").unwrap();
    insert(&c, 7);
    c.execute_batch("COMMIT").unwrap();
    drop(c);
    s.wait_replicated(&first).await;
    let txid = read_txid(&s).await;
    let admin = s.admin.trim_start_matches("http://").to_string();

    // From the server: its positions, and the files' snapshot and levels beside them.
    let st = status_json(&["--admin-addr", &admin]);
    assert_eq!(st["positions_from"], "server", "{st}");
    assert_eq!(st["local_txid"], txid.as_str(), "{st}");
    assert_eq!(st["replica_txid"], txid.as_str(), "{st}");
    assert_eq!(st["txids_behind"], 0, "{st}");
    assert_eq!(st["healthy"], true, "{st}");
    assert!(st["lag_ms"].is_u64() && st["replica"].is_string(), "{st}");
    let st = status_json(&["--admin-addr", &s.admin, setup.url.as_str()]);
    assert_eq!(st["replica_txid"], txid.as_str(), "{st}");
    assert!(!st["levels"].as_array().unwrap().is_empty(), "{st}");
    let text = replica(&["status", "--admin-addr", &admin]);
    assert!(text.contains(&format!("local txid      {txid}")), "{text}");
    // From the files, while the server runs.
    let st = status_json(&["--config", setup.config.to_str().unwrap()]);
    assert_eq!(st["local_txid"], txid.as_str(), "{st}");
    assert_eq!(st["replica_txid"], txid.as_str(), "{st}");

    s.stop().await;
    let listing = assert_listing_matches(ls, &setup);
    assert_eq!(max_txid(&listing), txid);
    let meta = setup.dir.path().join(".app.db-litestream");
    assert_eq!(newest_local_l0(&meta).unwrap(), txid);
    assert_status_from_files(&setup, &listing, &txid);
}

/// A replica written by `litestream replicate` 0.5.17.
fn written_by_litestream(ls: &Litestream, setup: Setup) {
    create_db(&setup.db, 5);
    std::fs::write(
        &setup.config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: {}\n      sync-interval: 100ms\n",
            setup.db.display(),
            setup.url
        ),
    )
    .unwrap();
    let running = ls.spawn_replicate(&setup.config);
    let meta = setup.dir.path().join(".app.db-litestream");
    // Waits until Litestream has uploaded a TXID above `after` and everything it synced.
    let wait_uploaded = |after: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let local = newest_local_l0(&meta);
            let listed = ls.ltx_list(&setup.url);
            if let Some(local) = local
                && !listed.is_empty()
                && max_txid(&listed) == local
                && local.as_str() > after
            {
                return local;
            }
            assert!(
                Instant::now() < deadline,
                "litestream did not replicate past {after}: {}",
                running.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let first = wait_uploaded("");
    // Later commits: L0 files after the first snapshot.
    let c = rusqlite::Connection::open(&setup.db).unwrap();
    insert(&c, 9);
    wait_uploaded(&first);
    running.stop();
    drop(c);
    let listing = assert_listing_matches(ls, &setup);
    let local = newest_local_l0(&meta).unwrap();
    assert_eq!(max_txid(&listing), local);
    assert_status_from_files(&setup, &listing, &local);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_commands_on_replicas_written_by_us() {
    let test = "replica_commands_on_replicas_written_by_us";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    for setup in Setup::file_and_s3(test) {
        written_by_us(&ls, setup).await;
    }
}

#[test]
fn replica_commands_on_replicas_written_by_litestream() {
    let test = "replica_commands_on_replicas_written_by_litestream";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    for setup in Setup::file_and_s3(test) {
        written_by_litestream(&ls, setup);
    }
}

#[test]
fn replica_commands_refuse_what_they_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("two.yml");
    std::fs::write(
        &config,
        "dbs:\n  - path: /data/a.db\n    replica:\n      url: file:///backups/a\n  - path: /data/b.db\n    replica:\n      url: file:///backups/b\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["ls", "--config", config], "lists 2 databases"),
        (&["ls", "--config", config, "/data/c.db"], "/data/c.db"),
        (&["ls", "/data/a.db"], "needs --config"),
        (&["ls", "--level", "10", "file:///x"], "invalid --level"),
        (
            &["ls", "--config", config, "file:///x"],
            "cannot specify a replica URL",
        ),
        (&["status"], "--admin-addr"),
    ];
    for (args, needle) in cases {
        let out = replica_output(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // The right database of several: an empty replica lists nothing.
    let out = replica(&["ls", "--config", config, "/data/b.db"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    // A server that does not answer.
    let port = testkit::free_port().to_string();
    let out = replica_output(&["status", "--admin-addr", &format!("127.0.0.1:{port}")]);
    assert!(!out.status.success());
}

/// A replica URL on the command line wins over `SQLITEREST_REPLICATION_CONFIG` in the
/// environment (a deployment's setting for `serve`, there when an operator runs a command
/// beside it): `replica ls`, `replica status` and `restore` read the URL's replica, not the
/// config's; `--config` given on the command line together with a URL stays an error.
#[test]
fn a_replica_url_on_the_command_line_wins_over_the_environments_config() {
    let dir = tempfile::tempdir().unwrap();
    // The URL's replica: one L0 file (listed by name and size, never opened by `ls`).
    let replica = dir.path().join("replica");
    let l0 = replica.join("ltx/0");
    std::fs::create_dir_all(&l0).unwrap();
    std::fs::write(l0.join("0000000000000001-0000000000000002.ltx"), [0u8; 100]).unwrap();
    let url = format!("file://{}", replica.display());
    // The environment's config names another database and another, empty, replica.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let config = dir.path().join("env.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: file://{}\n",
            dir.path().join("app.db").display(),
            other.display()
        ),
    )
    .unwrap();
    let with_env = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--log-level", "warn"])
            .env("SQLITEREST_REPLICATION_CONFIG", &config)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = with_env(args);
        assert!(
            out.status.success(),
            "{args:?} with SQLITEREST_REPLICATION_CONFIG set failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listed: Vec<LtxEntry> =
        serde_json::from_str(&ok(&["replica", "ls", "--json", &url])).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].max_txid, "0000000000000002");
    let st: Value = serde_json::from_str(&ok(&["replica", "status", "--json", &url])).unwrap();
    assert_eq!(st["replica_txid"], "0000000000000002", "{st}");
    assert!(st["database"].is_null(), "{st}");
    // Without a URL the environment's config still names the replica (empty: no files).
    let from_env: Vec<LtxEntry> = serde_json::from_str(&ok(&["replica", "ls", "--json"])).unwrap();
    assert!(from_env.is_empty(), "{from_env:?}");
    // restore: the URL's replica is read (this one holds no backup; the flag makes that a
    // skip rather than an error).
    let out = dir.path().join("restored.db");
    let out = with_env(&[
        "restore",
        "--if-replica-exists",
        "-o",
        out.to_str().unwrap(),
        &format!("file://{}", other.display()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "restore with the env's config: {err}");
    assert!(err.contains("no matching backups"), "{err}");
    // --config on the command line with a URL: still refused, by every command.
    let config = config.to_str().unwrap();
    for args in [
        &["replica", "ls", "--config", config, &url][..],
        &["replica", "status", "--config", config, &url][..],
        &["restore", "--config", config, "-o", "/tmp/never.db", &url][..],
    ] {
        let out = with_env(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains("cannot specify a replica URL"),
            "{args:?}: {err}"
        );
    }
}
