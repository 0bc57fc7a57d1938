//! `sqlite-rest demo`: a bookstore database to try the API with, served with a demo token.
//!
//! On first run it creates the demo directory (owner only) with `bookstore.db` (built from the
//! SQL embedded in the binary, `examples/bookstore/bookstore.sql`) and a random HS256 secret
//! (mode 0600; a world-writable directory is refused); every run
//! prints a fresh demo JWT and a few curl lines, then serves the bookstore's tables and views
//! and its two RPC functions (written to `<dir>/rpc` on first run).
//!
//! Replication is on by default: `litestream.yml` in the demo directory (written on first
//! run) replicates the database to the local file replica `<dir>/replica`. Delete
//! `bookstore.db` and the next run restores it from there. `--no-replication` turns it off.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};

use crate::auth::{AuthConfig, KeySource};
use crate::cli::DemoArgs;
use crate::embedded_replication::{ReplicationSettings, replica_has_files};
use crate::http::{ConnLimits, HttpLimits};
use crate::serve_config::ServeConfig;

const BOOKSTORE_SQL: &str = include_str!("../../../examples/bookstore/bookstore.sql");

/// The demo's RPC functions (`examples/bookstore/rpc/`): one that reads, one that writes.
const BOOKSTORE_FUNCTIONS: &[(&str, &str)] = &[
    (
        "books_by_author.sql",
        include_str!("../../../examples/bookstore/rpc/books_by_author.sql"),
    ),
    (
        "add_review.sql",
        include_str!("../../../examples/bookstore/rpc/add_review.sql"),
    ),
];

/// Prepares the demo directory and returns the configuration to serve it with.
pub fn prepare(args: &DemoArgs) -> anyhow::Result<ServeConfig> {
    private_dir(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let db = dir.join("bookstore.db");
    let replica = dir.join("replica");
    // With replication on, a missing database whose replica has data is restored at start-up.
    let restore_pending = !args.no_replication && !db.exists() && replica_has_files(&replica);
    if !db.exists() && !restore_pending {
        let conn = rusqlite::Connection::open(&db)?;
        conn.execute_batch(BOOKSTORE_SQL)?;
        tracing::info!(path = %db.display(), "created the demo bookstore database");
    }
    // The functions are written once: a demo directory's own edits to them stay.
    let rpc_dir = dir.join("rpc");
    if !rpc_dir.exists() {
        std::fs::create_dir(&rpc_dir)?;
        for (name, sql) in BOOKSTORE_FUNCTIONS {
            std::fs::write(rpc_dir.join(name), sql)?;
        }
    }
    let secret_path = dir.join("jwt-secret");
    if !secret_path.exists() {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&secret_path)?
            .write_all(hex.as_bytes())?;
    }
    // Only the owner may read the secret (an older demo wrote it world-readable).
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600))?;
    let secret = std::fs::read(&secret_path)?;
    let token = demo_token(&secret)?;
    let tables = if restore_pending {
        relations_of_sql(BOOKSTORE_SQL)?
    } else {
        relations(&db)?
    };

    let replication = if args.no_replication {
        None
    } else {
        let config_path = dir.join("litestream.yml");
        if !config_path.exists() {
            std::fs::write(&config_path, demo_replication_config(&db, &replica))?;
        }
        Some(ReplicationSettings { config_path })
    };

    let port = args.http_addr.rsplit(':').next().unwrap_or("8080");
    let base = format!("http://localhost:{port}");
    // A closed stdout must not stop the demo server.
    let _ = writeln!(
        std::io::stdout().lock(),
        "\nsqlite-rest demo: serving {db} on {addr}\n\n\
         Demo token (valid 30 days):\n  export TOKEN={token}\n\n\
         Try:\n  curl -H \"Authorization: Bearer $TOKEN\" '{base}/books?select=title,price&price=lt.10&order=price.desc'\n  \
         curl -H \"Authorization: Bearer $TOKEN\" -H 'Accept: text/csv' '{base}/authors?country=eq.Russia'\n  \
         curl -H \"Authorization: Bearer $TOKEN\" -H 'Accept: application/vnd.pgrst.object+json' '{base}/books?id=eq.6'\n  \
         curl -H \"Authorization: Bearer $TOKEN\" '{base}/rpc/books_by_author?author=Austen&min_rating=0&select=title,rating'\n\n\
         Tables and views: {tables}\n{replicated}",
        db = db.display(),
        addr = args.http_addr,
        tables = tables.join(", "),
        replicated = match &replication {
            Some(r) => format!(
                "Replicated (Litestream-compatible) to {} — config {}\n",
                replica.display(),
                r.config_path.display()
            ),
            None => String::new(),
        },
    );
    Ok(ServeConfig {
        dsn: db.to_string_lossy().into_owned(),
        db_must_exist: false,
        http_addr: args.http_addr.clone(),
        auth: AuthConfig::jwt(KeySource::HmacSecretFile(secret_path)),
        allow_tables: tables,
        metrics_addr: (!args.metrics_addr.trim().is_empty()).then(|| args.metrics_addr.clone()),
        pprof_addr: None,
        cors_allowed_origins: Vec::new(),
        max_rows: Some(1000),
        aggregates: false,
        request_timeout: std::time::Duration::from_secs(10),
        http_limits: HttpLimits::default(),
        conn_limits: ConnLimits::default(),
        replication,
        follow: None,
        writes: crate::serve_config::WriteConfig::default(),
        rpc_dir: Some(rpc_dir),
        permissions: None,
    })
}

/// The demo's replication config: Litestream's YAML with one local file replica (the
/// README's file-replica example).
pub fn demo_replication_config(db: &Path, replica: &Path) -> String {
    format!(
        "# Litestream-compatible replication of the demo database (written by `sqlite-rest demo`).\n\
         # sqlite-rest reads Litestream's own config format; see the README's Replication section.\n\
         dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        replica.display()
    )
}

fn relations_of_sql(sql: &str) -> anyhow::Result<Vec<String>> {
    let conn = rusqlite::Connection::open_in_memory()?;
    conn.execute_batch(sql)?;
    let cache = dialect::SchemaCache::load(&conn, &dialect::Exposure::All)?;
    let mut names: Vec<String> = cache.relations().map(|r| r.name.clone()).collect();
    names.sort();
    Ok(names)
}

fn demo_token(secret: &[u8]) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = serde_json::json!({"role": "demo", "iat": now, "exp": now + 30 * 24 * 3600});
    Ok(encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

/// The relations of the demo database, read before replication starts. The connection is
/// read-only and does not checkpoint on close: as the last connection to close it would
/// otherwise checkpoint the WAL and delete it, so replication would find a new WAL and write
/// a full snapshot of the database at every start.
fn relations(db: &Path) -> anyhow::Result<Vec<String>> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    let cache = dialect::SchemaCache::load(&conn, &dialect::Exposure::All)?;
    let mut names: Vec<String> = cache.relations().map(|r| r.name.clone()).collect();
    names.sort();
    Ok(names)
}

/// Creates the demo directory for the owner only (0700), or checks that an existing one is
/// not world-writable: whoever can write there can replace the secret or the database.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    if meta.permissions().mode() & 0o002 != 0 {
        anyhow::bail!(
            "the demo directory {} is writable by every user; use a private one (chmod o-w)",
            dir.display()
        );
    }
    Ok(())
}
