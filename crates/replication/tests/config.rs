//! The Litestream YAML config: defaults, validation, unknown keys, env expansion, the legacy
//! `replicas:` form, URL/path exclusivity and finding the served database's entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use replication::{AbsTarget, ReplicaKind, ReplicaTarget, Secret};
use replication::{Config, ConfigError, DbSource, LoadOptions};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, LoadOptions::default())
}

fn minimal() -> &'static str {
    "dbs:\n  - path: /data/app.db\n    replica:\n      path: /backup/app\n"
}

#[track_caller]
fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error for:\n{text}\ngot {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn unknown(text: &str, path: &str) {
    match parse(text) {
        Err(ConfigError::UnknownKey { path: p, .. }) => assert_eq!(p, path, "{text}"),
        other => panic!("expected unknown key {path} for:\n{text}\ngot {other:?}"),
    }
}

#[test]
fn defaults_are_litestreams() {
    let c = parse(minimal()).unwrap();
    assert_eq!(
        c.levels,
        vec![
            Duration::from_secs(30),
            Duration::from_secs(300),
            Duration::from_secs(3600)
        ]
    );
    assert_eq!(c.snapshot.interval, Duration::from_secs(86400));
    assert_eq!(c.snapshot.retention, Duration::from_secs(86400));
    assert_eq!(c.l0_retention, Some(Duration::from_secs(300)));
    assert_eq!(c.l0_retention_check_interval, Duration::from_secs(15));
    assert!(c.retention_enabled);
    assert_eq!(c.validation_interval, None);
    assert!(!c.verify_compaction);
    assert_eq!(c.shutdown_sync_timeout, Duration::from_secs(30));
    assert_eq!(c.shutdown_sync_interval, Duration::from_millis(500));
    assert_eq!(c.heartbeat_interval, Duration::from_secs(300));
    assert_eq!(c.heartbeat_url, None);
    assert!(c.ignored_settings().is_empty());
    assert_eq!(c.dbs.len(), 1);
    let db = &c.dbs[0];
    assert_eq!(db.source, DbSource::Path(PathBuf::from("/data/app.db")));
    assert_eq!(db.monitor_interval, Duration::from_secs(1));
    assert_eq!(db.checkpoint_interval, Duration::from_secs(60));
    assert_eq!(db.busy_timeout, Duration::from_secs(1));
    assert_eq!(db.min_checkpoint_page_count, 1000);
    assert_eq!(db.truncate_page_n, 121_359);
    assert_eq!(db.max_sync_wal_bytes, Some(64 << 20));
    assert!(!db.restore_if_db_not_exists);
    assert_eq!(
        db.meta_path(),
        Some(PathBuf::from("/data/.app.db-litestream"))
    );
    let r = &db.replica;
    assert_eq!(
        r.target,
        ReplicaTarget::File(replication::FileTarget {
            path: PathBuf::from("/backup/app")
        })
    );
    assert_eq!(r.sync_interval, Duration::from_secs(1));
    // No floor between uploads unless the file sets `sync-interval`.
    assert_eq!(r.upload_interval, None);
    assert_eq!(r.max_sync_ltx_files, Some(256));
    assert!(!r.auto_recover);
    c.ensure_supported().unwrap();
}

#[test]
fn every_knob_is_read() {
    let c = parse(
        "levels:\n  - interval: 10s\n  - interval: 1m30s\nsnapshot:\n  interval: 2h\n  retention: 72h\n\
         l0-retention: 0\nl0-retention-check-interval: 5s\nretention:\n  enabled: false\n\
         validation:\n  interval: 10m\nverify-compaction: true\nshutdown-sync-timeout: 0s\n\
         shutdown-sync-interval: 250ms\naddr: \":9090\"\nlogging:\n  level: debug\n\
         dbs:\n  - path: sqlite:///data/app.db\n    meta-path: /meta/app\n    monitor-interval: 2s\n\
         \x20   checkpoint-interval: 15s\n    busy-timeout: 5s\n    min-checkpoint-page-count: 10\n\
         \x20   truncate-page-n: 0\n    max-sync-wal-bytes: 0\n    restore-if-db-not-exists: true\n\
         \x20   replica:\n      url: file:///backup/app\n      sync-interval: 10s\n\
         \x20     max-sync-ltx-files: 0\n      auto-recover: true\n",
    )
    .unwrap();
    assert_eq!(
        c.levels,
        vec![Duration::from_secs(10), Duration::from_secs(90)]
    );
    assert_eq!(c.snapshot.interval, Duration::from_secs(7200));
    assert_eq!(c.snapshot.retention, Duration::from_secs(72 * 3600));
    assert_eq!(c.l0_retention, None, "l0-retention: 0 disables it");
    assert_eq!(c.l0_retention_check_interval, Duration::from_secs(5));
    assert!(!c.retention_enabled);
    assert_eq!(c.validation_interval, Some(Duration::from_secs(600)));
    assert!(c.verify_compaction);
    assert_eq!(c.shutdown_sync_timeout, Duration::ZERO);
    assert_eq!(c.shutdown_sync_interval, Duration::from_millis(250));
    assert_eq!(c.ignored_settings().len(), 2);
    let db = &c.dbs[0];
    assert_eq!(db.path(), Some(Path::new("/data/app.db")));
    assert_eq!(db.meta_path(), Some(PathBuf::from("/meta/app")));
    assert_eq!(db.monitor_interval, Duration::from_secs(2));
    assert_eq!(db.checkpoint_interval, Duration::from_secs(15));
    assert_eq!(db.busy_timeout, Duration::from_secs(5));
    assert_eq!(db.min_checkpoint_page_count, 10);
    assert_eq!(db.truncate_page_n, 121_359, "0 means the default");
    assert_eq!(db.max_sync_wal_bytes, None, "0 means no limit");
    assert!(db.restore_if_db_not_exists);
    assert_eq!(db.replica.sync_interval, Duration::from_secs(10));
    assert_eq!(db.replica.upload_interval, Some(Duration::from_secs(10)));
    assert_eq!(db.replica.max_sync_ltx_files, None);
    assert!(db.replica.auto_recover);
    assert_eq!(db.replica.target.describe(), "file:///backup/app");
}

#[test]
fn validation_errors() {
    let db = "dbs:\n  - path: /a.db\n    replica:\n      path: /r\n";
    let cases: &[(&str, &str)] = &[
        (
            "snapshot:\n  interval: 0s\n",
            "`snapshot.interval`: must be greater than 0",
        ),
        (
            "snapshot:\n  retention: -1h\n",
            "`snapshot.retention`: must be greater than 0",
        ),
        (
            "l0-retention: -1s\n",
            "`l0-retention`: must not be negative",
        ),
        (
            "l0-retention-check-interval: 0s\n",
            "`l0-retention-check-interval`: must be greater than 0",
        ),
        (
            "shutdown-sync-timeout: -1s\n",
            "`shutdown-sync-timeout`: must not be negative",
        ),
        (
            "shutdown-sync-interval: 0s\n",
            "`shutdown-sync-interval`: must be greater than 0",
        ),
        (
            "heartbeat-url: ftp://x\n",
            "`heartbeat-url`: heartbeat URL must be a valid HTTP or HTTPS URL",
        ),
        (
            "heartbeat-interval: 30s\n",
            "`heartbeat-interval`: must be at least 1 minute",
        ),
        (
            "levels:\n  - interval: 1s\n  - interval: 0s\n",
            "`levels[1].interval`: compaction interval must be greater than 0",
        ),
        (
            "levels:\n  - interval: 1s\n  - {}\n",
            "`levels[1].interval`",
        ),
        (
            "validation:\n  interval: 0s\n",
            "`validation.interval`: must be greater than 0",
        ),
        (
            "snapshot:\n  interval: -10\n",
            "`snapshot.interval`: must be greater than 0",
        ),
        (
            "snapshot:\n  interval: ten\n",
            "`snapshot.interval`: invalid duration \"ten\"",
        ),
        ("snapshot:\n  interval: [1]\n", "`snapshot.interval`"),
        (
            "verify-compaction: maybe\n",
            "`verify-compaction`: invalid value: string \"maybe\", expected a boolean",
        ),
    ];
    for (extra, want) in cases {
        let e = err(&format!("{extra}{db}"));
        assert!(e.contains(want), "{extra}: {e}");
    }
    let nine = (0..9).map(|_| "  - interval: 1s\n").collect::<String>();
    assert!(err(&format!("levels:\n{nine}{db}")).contains("at most 8 compaction levels"));

    let db_cases: &[(&str, &str)] = &[
        (
            "  - path: /a.db\n    dir: /d\n    replica: {path: /r}\n",
            "cannot specify both 'path' and 'dir'",
        ),
        (
            "  - replica: {path: /r}\n",
            "must specify either 'path' or 'dir'",
        ),
        (
            "  - dir: /d\n    replica: {path: /r}\n",
            "`dbs[0].pattern`: 'pattern' is required when using 'dir'",
        ),
        (
            "  - path: /a.db\n    watch: true\n    replica: {path: /r}\n",
            "`dbs[0].watch`",
        ),
        (
            "  - path: /a.db\n    meta-dir: /m\n    replica: {path: /r}\n",
            "`dbs[0].meta-dir`",
        ),
        (
            "  - dir: /d\n    pattern: '*.db'\n    meta-path: /m\n    meta-dir: /m\n    replica: {path: /r}\n",
            "cannot specify both 'meta-path' and 'meta-dir'",
        ),
        (
            "  - path: /a.db\n    snapshot: {interval: 0s}\n    replica: {path: /r}\n",
            "`dbs[0].snapshot.interval`",
        ),
        (
            "  - path: /a.db\n    replica: {path: /r, sync-interval: 0s}\n",
            "`dbs[0].replica.sync-interval`: must be greater than 0",
        ),
        (
            "  - path: /a.db\n    replica: {path: /r}\n    replicas: [{path: /r}]\n",
            "cannot specify 'replica' and 'replicas'",
        ),
        (
            "  - path: /a.db\n    replicas: [{path: /r}, {path: /s}]\n",
            "multiple replicas on a single database are no longer supported",
        ),
        (
            "  - path: /a.db\n",
            "`dbs[0]`: must specify replica for database",
        ),
        (
            "  - path: /a.db\n    replica: {url: 'file:///r', path: /r}\n",
            "cannot specify url & path for file replica",
        ),
        (
            "  - path: /a.db\n    replica: {url: 's3://b/p', path: /r}\n",
            "cannot specify url & path for s3 replica",
        ),
        (
            "  - path: /a.db\n    replica: {url: 's3://b/p', bucket: b}\n",
            "cannot specify url & bucket for s3 replica",
        ),
        (
            "  - path: /a.db\n    replica: {type: s3, path: p}\n",
            "bucket required for s3 replica",
        ),
        (
            "  - path: /a.db\n    replica: {type: s3, bucket: b}\n",
            "needs a non-empty path",
        ),
        (
            "  - path: /a.db\n    replica: {path: 's3://b/p'}\n",
            "replica path cannot be a url",
        ),
        (
            "  - path: /a.db\n    replica: {type: ftp, path: /r}\n",
            "unknown replica type in config: \"ftp\"",
        ),
        (
            "  - path: /a.db\n    replica: {type: s3, url: 'file:///r'}\n",
            "conflicts with the url's scheme file",
        ),
        (
            "  - path: /a.db\n    replica: {type: file}\n",
            "file replica path required",
        ),
        (
            "  - path: /a.db\n    replica: {path: /r, age: {recipients: [x]}}\n",
            "age encryption",
        ),
        (
            "  - path: /a.db\n    replica: {type: s3, bucket: b, path: p, part-size: 1MB}\n",
            "below the minimum of 5 MiB",
        ),
        (
            "  - path: /a.db\n    replica: {type: s3, bucket: b, path: p, part-size: lots}\n",
            "`dbs[0].replica.part-size`: invalid size",
        ),
        (
            "  - path: /a.db\n    replica: {type: s3, bucket: b, path: p, concurrency: 0}\n",
            "concurrency must be a positive integer",
        ),
        (
            "  - path: /a.db\n    replica: {url: 's3://b/p?bogus=1'}\n",
            "`dbs[0].replica.url`: unknown query parameter(s) bogus",
        ),
        (
            "  - path: /a.db\n    replica: {path: /r, max-sync-ltx-files: -1}\n",
            "`dbs[0].replica.max-sync-ltx-files`",
        ),
        (
            "  - path: /a.db\n    min-checkpoint-page-count: 0\n    replica: {path: /r}\n",
            "`dbs[0].min-checkpoint-page-count`",
        ),
        (
            "  - path: /a.db\n    truncate-page-n: -5\n    replica: {path: /r}\n",
            "`dbs[0].truncate-page-n`",
        ),
        (
            "  - path: /a.db\n    replica: {path: /r}\n  - path: /b.db\n    snapshot: {interval: 1h}\n    replica: {path: /s}\n  - path: /c.db\n    snapshot: {interval: 2h}\n    replica: {path: /t}\n",
            "conflicting database snapshot intervals",
        ),
        ("  - 5\n", "`dbs[0]`: each database entry must be a mapping"),
        // One metadata directory per database: two would mix their positions, and restoring
        // one would reset the other's.
        (
            "  - path: /a.db\n    meta-path: /m\n    replica: {path: /r}\n  - path: /b.db\n    meta-path: /m/\n    replica: {path: /s}\n",
            "`dbs[1].meta-path`: the metadata directory /m is also the one of /a.db",
        ),
        (
            "  - path: /a.db\n    replica: {path: /r}\n  - path: /b.db\n    meta-path: /.a.db-litestream\n    replica: {path: /s}\n",
            "`dbs[1].meta-path`: the metadata directory /.a.db-litestream is also the one of /a.db",
        ),
        (
            "  - path: /a.db\n    replica: {path: /r}\n  - path: /a.db\n    replica: {path: /s}\n",
            "`dbs[1].path`: the metadata directory /.a.db-litestream is also the one of /a.db",
        ),
    ];
    for (dbs, want) in db_cases {
        let e = err(&format!("dbs:\n{dbs}"));
        assert!(e.contains(want), "{dbs}: {e}");
    }
    assert!(err("dbs: [\n").contains("not valid YAML"));
    assert!(err("- 1\n- 2\n").contains("top level must be a mapping"));
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let r = "    replica:\n      path: /r\n";
    unknown(&format!("bogus: 1\ndbs:\n  - path: /a.db\n{r}"), "bogus");
    unknown(
        &format!("snapshot:\n  intervl: 1h\ndbs:\n  - path: /a.db\n{r}"),
        "snapshot.intervl",
    );
    unknown(
        &format!("levels:\n  - interval: 1s\n  - every: 2s\ndbs:\n  - path: /a.db\n{r}"),
        "levels[1].every",
    );
    unknown(
        &format!("logging:\n  colour: red\ndbs:\n  - path: /a.db\n{r}"),
        "logging.colour",
    );
    unknown(
        &format!("age:\n  keys: []\ndbs:\n  - path: /a.db\n{r}"),
        "age.keys",
    );
    unknown(
        &format!("retention:\n  keep: 1\ndbs:\n  - path: /a.db\n{r}"),
        "retention.keep",
    );
    unknown(
        &format!("dbs:\n  - path: /a.db\n    paht: x\n{r}"),
        "dbs[0].paht",
    );
    unknown(
        &format!("dbs:\n  - path: /b.db\n{r}  - path: /a.db\n    snapshot:\n      every: 1h\n{r}"),
        "dbs[1].snapshot.every",
    );
    unknown(
        "dbs:\n  - path: /a.db\n    replica:\n      path: /r\n      retention-interval: 1h\n",
        "dbs[0].replica.retention-interval",
    );
    unknown(
        "dbs:\n  - path: /a.db\n    replica:\n      path: /r\n      age:\n        key: x\n",
        "dbs[0].replica.age.key",
    );
    unknown(
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n        snapshot-interval: 1h\n",
        "dbs[0].replicas[0].snapshot-interval",
    );
    // The message names the key and points at Litestream 0.5's replacement.
    let e = err("dbs:\n  - path: /a.db\n    replica:\n      path: /r\n      retention: 24h\n");
    assert!(
        e.contains("`dbs[0].replica.retention`") && e.contains("snapshot.retention"),
        "{e}"
    );
    // Typos get a suggestion, at every level.
    let e = err(&format!("dbs:\n  - path: /a.db\n    paht: x\n{r}"));
    assert!(e.contains("did you mean `dbs[0].path`?"), "{e}");
    let e = err(&format!(
        "snapshot:\n  intervl: 1h\ndbs:\n  - path: /a.db\n{r}"
    ));
    assert!(e.contains("did you mean `snapshot.interval`?"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replica:\n      path: /r\n      sync-intreval: 1s\n");
    assert!(
        e.contains("did you mean `dbs[0].replica.sync-interval`?"),
        "{e}"
    );
}

#[test]
fn env_expansion() {
    let home = std::env::var("HOME").unwrap();
    let c = parse("dbs:\n  - path: $HOME/app.db\n    replica:\n      path: ${HOME}/replica$SQLITEREST_SURELY_UNSET_VAR\n").unwrap();
    assert_eq!(c.dbs[0].path(), Some(Path::new(&format!("{home}/app.db"))));
    assert_eq!(
        c.dbs[0].replica.target.describe(),
        format!("file://{home}/replica")
    );

    // `$PID` is the process id.
    let c = parse("dbs:\n  - path: /tmp/$PID.db\n    replica:\n      path: /r\n").unwrap();
    assert_eq!(
        c.dbs[0].path(),
        Some(Path::new(&format!("/tmp/{}.db", std::process::id())))
    );

    // A secret with `$` is eaten by expansion (as Litestream); opting out keeps it.
    let text = "dbs:\n  - path: /a.db\n    replica:\n      type: s3\n      bucket: b\n      path: p\n      secret-access-key: pa$$word\n";
    let secret = |c: &Config| match &c.dbs[0].replica.target {
        ReplicaTarget::S3(s) => s.secret_access_key.as_ref().unwrap().expose().to_string(),
        t => panic!("{t:?}"),
    };
    assert_eq!(secret(&parse(text).unwrap()), "paword");
    let raw = Config::parse(text, LoadOptions { expand_env: false }).unwrap();
    assert_eq!(secret(&raw), "pa$$word");
    // Secrets never show in Debug output.
    assert!(!format!("{raw:?}").contains("pa$$word"));
}

#[test]
fn yaml_1_1_booleans_as_go_reads_them() {
    let c = parse(&format!(
        "verify-compaction: yes\nretention:\n  enabled: off\n{}",
        minimal()
    ))
    .unwrap();
    assert!(c.verify_compaction);
    assert!(!c.retention_enabled);
    let c = parse("dbs:\n  - path: /a.db\n    restore-if-db-not-exists: Y\n    replica:\n      path: /r\n      auto-recover: ON\n").unwrap();
    assert!(c.dbs[0].restore_if_db_not_exists && c.dbs[0].replica.auto_recover);
    // An empty value leaves the default.
    let c = parse(&format!("verify-compaction:\n{}", minimal())).unwrap();
    assert!(!c.verify_compaction);
}

#[test]
fn legacy_replicas_list() {
    let c =
        parse("dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r\n        name: main\n")
            .unwrap();
    assert_eq!(c.dbs[0].replica.target.describe(), "file:///r");
    assert_eq!(c.dbs[0].replica.name.as_deref(), Some("main"));
}

#[test]
fn s3_replica_from_keys_url_and_global_settings() {
    let c = parse(
        "access-key-id: AKID\nsecret-access-key: SECRET\nregion: eu-west-1\nsync-interval: 5s\n\
         dbs:\n  - path: /a.db\n    replica:\n      type: s3\n      bucket: bkt\n      path: /a//b/\n\
         \x20     endpoint: 127.0.0.1:9000\n  - path: /b.db\n    replica:\n\
         \x20     url: s3://bkt2/x?endpoint=minio.example.com:9000&forcePathStyle=false\n      region: us-west-2\n",
    )
    .unwrap();
    let ReplicaTarget::S3(a) = &c.dbs[0].replica.target else {
        panic!()
    };
    assert_eq!(a.bucket, "bkt");
    assert_eq!(a.path, "a/b");
    assert_eq!(a.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(a.force_path_style);
    assert_eq!(a.region.as_deref(), Some("eu-west-1"));
    assert_eq!(a.access_key_id.as_deref(), Some("AKID"));
    assert_eq!(a.secret_access_key.as_ref().unwrap().expose(), "SECRET");
    assert_eq!(c.dbs[0].replica.sync_interval, Duration::from_secs(5));
    let ReplicaTarget::S3(b) = &c.dbs[1].replica.target else {
        panic!()
    };
    assert_eq!(b.bucket, "bkt2");
    assert_eq!(b.path, "x");
    assert_eq!(
        b.endpoint.as_deref(),
        Some("https://minio.example.com:9000")
    );
    // The endpoint host:port is MinIO-style, which forces path style back on (as Litestream).
    assert!(b.force_path_style);
    assert_eq!(
        b.region.as_deref(),
        Some("us-west-2"),
        "config keys beat the URL"
    );
}

#[test]
fn unsupported_features_are_rejected_by_name() {
    let gs = parse("dbs:\n  - path: /a.db\n    replica:\n      url: gs://bucket/db\n").unwrap();
    assert_eq!(gs.dbs[0].replica.target.kind(), ReplicaKind::Gs);
    let e = gs.ensure_supported().unwrap_err().to_string();
    assert!(
        e.contains("dbs[0].replica") && e.contains("gs replicas"),
        "{e}"
    );
    let sftp = parse(
        "dbs:\n  - path: /a.db\n    replica:\n      type: sftp\n      host: h:22\n      path: /x\n",
    )
    .unwrap();
    assert!(
        sftp.ensure_supported()
            .unwrap_err()
            .to_string()
            .contains("sftp")
    );
    for (extra, key) in [
        ("exec: ./app\n", "exec"),
        ("socket:\n  enabled: true\n", "socket.enabled"),
        ("mcp-addr: ':3001'\n", "mcp-addr"),
        ("heartbeat-url: https://hc.example/ping\n", "heartbeat-url"),
    ] {
        let c = parse(&format!("{extra}{}", minimal())).unwrap();
        let e = c.ensure_supported().unwrap_err();
        assert!(
            matches!(&e, ConfigError::Unsupported { path, .. } if path == key),
            "{e}"
        );
    }
    let dir =
        parse("dbs:\n  - dir: /data\n    pattern: '*.db'\n    replica:\n      path: /r\n").unwrap();
    assert!(
        dir.ensure_supported()
            .unwrap_err()
            .to_string()
            .contains("dbs[0].dir")
    );
}

#[test]
fn find_db_matches_canonical_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("app.db"), b"").unwrap();
    std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
    let text = format!(
        "dbs:\n  - path: {}/other.db\n    replica: {{path: /r1}}\n  - path: {}/link/app.db\n    replica: {{path: /r2}}\n",
        real.display(),
        tmp.path().display()
    );
    let c = parse(&text).unwrap();
    let db = c.find_db(&real.join("app.db")).unwrap();
    assert_eq!(db.index, 1);
    let db = c.find_db(&real.join("./sub/../app.db")).unwrap();
    assert_eq!(db.index, 1);
    // A database that does not exist yet is found by its spelling.
    assert_eq!(c.find_db(&real.join("other.db")).unwrap().index, 0);

    let e = c.find_db(Path::new("/nowhere/app.db")).unwrap_err();
    assert!(matches!(e, ConfigError::DatabaseNotInConfig { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("/nowhere/app.db") && msg.contains("other.db"),
        "{msg}"
    );
}

#[test]
fn load_reads_files_and_reports_missing_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("litestream.yml");
    std::fs::write(&file, minimal()).unwrap();
    let c = Config::load(&file, LoadOptions::default()).unwrap();
    assert_eq!(c.source.as_deref(), Some(file.as_path()));
    let e = c
        .find_db(Path::new("/elsewhere.db"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&file.display().to_string()), "{e}");
    let e = Config::load(&tmp.path().join("missing.yml"), LoadOptions::default()).unwrap_err();
    assert!(matches!(e, ConfigError::NotFound(_)), "{e}");
    std::fs::write(&file, format!("exec: x\n{}", minimal())).unwrap();
    assert!(matches!(
        Config::load(&file, LoadOptions::default()).unwrap_err(),
        ConfigError::Unsupported { .. }
    ));
}

#[track_caller]
fn abs_target(replica: &str) -> AbsTarget {
    let c = parse(&format!("dbs:\n  - path: /a.db\n    replica:\n{replica}")).unwrap();
    c.ensure_supported().unwrap();
    match c.dbs[0].replica.target.clone() {
        ReplicaTarget::Abs(t) => t,
        other => panic!("{other:?}"),
    }
}

#[test]
fn abs_replicas_from_keys_and_urls() {
    let t = abs_target(
        "      type: abs\n      account-name: acct\n      account-key: a2V5\n      sas-token: '?sv=1&sig=x'\n      bucket: backups\n      path: dbs//app/\n      endpoint: http://127.0.0.1:10000/acct\n",
    );
    assert_eq!(
        t,
        AbsTarget {
            account_name: Some("acct".into()),
            account_key: Some(Secret("a2V5".into())),
            sas_token: Some(Secret("?sv=1&sig=x".into())),
            container: "backups".into(),
            path: "dbs/app".into(),
            endpoint: Some("http://127.0.0.1:10000/acct".into()),
        }
    );
    // Secrets stay out of Debug output.
    assert!(!format!("{t:?}").contains("a2V5"));
    // The URL form; keys fill in what a URL cannot say; the type comes from the scheme.
    let t = abs_target("      url: abs://acct@backups/app\n      account-key: a2V5\n");
    assert_eq!(
        (
            t.account_name.as_deref(),
            t.container.as_str(),
            t.path.as_str()
        ),
        (Some("acct"), "backups", "app")
    );
    assert_eq!(t.account_key, Some(Secret("a2V5".into())));
    // Global settings are inherited, as for S3.
    let c = parse(
        "account-name: acct\naccount-key: a2V5\ndbs:\n  - path: /a.db\n    replica:\n      type: abs\n      bucket: b\n",
    )
    .unwrap();
    match &c.dbs[0].replica.target {
        ReplicaTarget::Abs(t) => {
            assert_eq!(t.account_name.as_deref(), Some("acct"));
            assert_eq!(t.path, "");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.dbs[0].replica.target.kind(), ReplicaKind::Abs);
}

#[test]
fn abs_replica_errors_name_the_key() {
    let db = "dbs:\n  - path: /a.db\n    replica:\n";
    unknown(
        &format!("{db}      type: abs\n      bucket: b\n      account_key: x\n"),
        "dbs[0].replica.account_key",
    );
    let e = err(&format!("{db}      type: abs\n      account-name: a\n"));
    assert!(
        e.contains("dbs[0].replica.bucket") && e.contains("container"),
        "{e}"
    );
    let e = err(&format!(
        "{db}      url: abs://a@c/db\n      bucket: other\n"
    ));
    assert!(
        e.contains("cannot specify url & bucket for abs replica"),
        "{e}"
    );
    let e = err(&format!("{db}      url: abs://a@c/db\n      path: db\n"));
    assert!(
        e.contains("cannot specify url & path for abs replica"),
        "{e}"
    );
    let e = err(&format!(
        "{db}      type: abs\n      bucket: b\n      endpoint: 127.0.0.1:10000\n"
    ));
    assert!(
        e.contains("dbs[0].replica.endpoint") && e.contains("127.0.0.1:10000"),
        "{e}"
    );
    let e = err(&format!("{db}      type: s3\n      url: abs://a@c/db\n"));
    assert!(e.contains("conflicts"), "{e}");
    let e = err(&format!("{db}      url: abs://a@c/db?sv=1\n"));
    assert!(e.contains("dbs[0].replica.url") && e.contains("sv"), "{e}");
}

#[test]
fn abs_path_with_a_leading_slash_or_dotdot_is_an_error() {
    let db = "dbs:\n  - path: /a.db\n    replica:\n";
    // Litestream 0.5 writes `/mydb/ltx/0/…` for this path; we cannot, so we say so.
    let e = err(&format!(
        "{db}      type: abs\n      account-name: a\n      bucket: b\n      path: /mydb/\n"
    ));
    assert!(
        e.contains("dbs[0].replica.path")
            && e.contains("\"/mydb/\" + \"ltx/<level>/<file>\"")
            && e.contains("Litestream")
            && e.contains("path: mydb/"),
        "{e}"
    );
    for bad in ["../up", "db/../../x", "db/.."] {
        let e = err(&format!(
            "{db}      type: abs\n      account-name: a\n      bucket: b\n      path: {bad}\n"
        ));
        assert!(e.contains("dbs[0].replica.path") && e.contains(".."), "{e}");
    }
    // Without a leading `/`, the path is cleaned as Litestream's path.Join does.
    let t = abs_target(
        "      type: abs\n      account-name: a\n      bucket: b\n      path: ./mydb/\n",
    );
    assert_eq!(t.path, "mydb");
    // The URL form keeps its trimming: Litestream trims the URL path too.
    let t = abs_target("      url: abs://a@b//mydb/\n");
    assert_eq!(t.path, "mydb");
}
