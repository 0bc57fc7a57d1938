//! The database side of the server: opening connections, the read pool, the schema holder
//! and the single writer.
//!
//! Reads never write: they run on read-only connections ([`read_pool`]); a large body streams
//! ([`stream`]). All writes go
//! through one writer connection owned by one thread ([`writer`]). [`Database`] ties them to
//! one DSN and one schema cache.

pub mod authorizer;
pub mod deadline;
pub mod open;
pub mod read_pool;
pub mod schema_holder;
pub mod stream;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use dialect::Exposure;
use parking_lot::Mutex;
use rusqlite::Connection;

pub use open::{OpenOptions, Synchronous, open};
pub use read_pool::ReadPool;
pub use schema_holder::SchemaHolder;
pub use writer::{Writer, WriterConfig};

/// One served database.
pub struct Database {
    pub reads: ReadPool,
    pub schema: Arc<SchemaHolder>,
    /// The read-write connection opened at start-up (creates the file, switches it to WAL and
    /// keeps the WAL index alive). The writer task of the write API takes it over.
    writer_conn: Mutex<Option<Connection>>,
}

impl Database {
    /// Opens the database: one read-write connection first (WAL), opened with `writer` (start-up
    /// passes the writer's durability and who checkpoints), then the read pool with a freshly
    /// loaded schema cache.
    pub fn open_with(
        dsn: &str,
        exposure: Exposure,
        request_budget: Duration,
        writer: &OpenOptions,
    ) -> anyhow::Result<Arc<Database>> {
        let writer = open(dsn, writer)?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(journal_mode = %mode, "could not switch the database to WAL");
        }
        let schema = Arc::new(SchemaHolder::new(exposure));
        let reads = ReadPool::new(dsn, schema.clone(), request_budget)?;
        Ok(Arc::new(Database {
            reads,
            schema,
            writer_conn: Mutex::new(Some(writer)),
        }))
    }

    /// Hands the read-write connection to the writer (once).
    pub fn take_writer_connection(&self) -> Option<Connection> {
        self.writer_conn.lock().take()
    }

    /// `page_count * page_size` of the main database.
    pub async fn size_bytes(&self) -> Result<i64, dialect::ApiError> {
        self.reads
            .run(|conn, _| {
                Ok(conn.query_row(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
    }
}
