//! The schema holder: the current schema cache, shared by every connection, and its refresh.
//!
//! Read connections compare the cache's stamp with `PRAGMA schema_version` (one cached
//! statement) at most every few milliseconds and whenever a request names something unknown
//! (see `read_pool`); only when the database's schema moved — a migration, another process —
//! is the cache rebuilt and swapped in. [`SchemaHolder::invalidate`] forces a rebuild on the
//! next request (SIGUSR1, or code that changed the schema in-process).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use dialect::{ApiError, ErrorCode, Exposure};
use dialect::{SchemaCache, schema_version};
use rusqlite::Connection;

pub struct SchemaHolder {
    current: ArcSwap<SchemaCache>,
    exposure: Exposure,
    forced: AtomicBool,
    loaded: AtomicBool,
}

impl SchemaHolder {
    pub fn new(exposure: Exposure) -> Self {
        SchemaHolder {
            current: ArcSwap::from_pointee(SchemaCache::default()),
            exposure,
            forced: AtomicBool::new(true),
            loaded: AtomicBool::new(false),
        }
    }

    /// The cache as last loaded (may be stale until the next [`Self::fresh`]).
    pub fn current(&self) -> Arc<SchemaCache> {
        self.current.load_full()
    }

    /// True once a cache has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// True while a rebuild has been asked for.
    pub fn is_forced(&self) -> bool {
        self.forced.load(Ordering::Acquire)
    }

    /// Forces a rebuild on the next request.
    pub fn invalidate(&self) {
        self.forced.store(true, Ordering::Release);
    }

    /// Warns about `--security-allow-table` names the database has no table or view for (a
    /// typo, or a table a migration has yet to create): they expose nothing. Checked at every
    /// load, so start-up and each schema change say it.
    fn warn_missing_allowed(&self, cache: &SchemaCache) {
        let Exposure::Only(allowed) = &self.exposure else {
            return;
        };
        let mut missing: Vec<&str> = allowed
            .iter()
            .filter(|name| cache.relation(name).is_none())
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return;
        }
        missing.sort_unstable();
        tracing::warn!(
            tables = %missing.join(","),
            "--security-allow-table names tables or views the database does not have; they expose nothing until they are created"
        );
    }

    /// The cache, rebuilt first if `conn` sees another `schema_version`. `load` must run the
    /// rebuild with pragma access (the caller lifts its authorizer restrictions).
    pub fn fresh(
        &self,
        conn: &Connection,
        load: impl FnOnce(&dyn Fn() -> rusqlite::Result<SchemaCache>) -> rusqlite::Result<SchemaCache>,
    ) -> Result<Arc<SchemaCache>, ApiError> {
        let version = schema_version(conn)?;
        let cur = self.current.load_full();
        if cur.version == version && !self.forced.load(Ordering::Acquire) {
            return Ok(cur);
        }
        self.forced.store(false, Ordering::Release);
        let cache = load(&|| SchemaCache::load(conn, &self.exposure)).map_err(|e| {
            tracing::error!(error = %e, "loading the schema cache failed");
            ApiError::new(
                503,
                ErrorCode::SchemaCacheLoad,
                "Could not query the database for the schema cache. Retrying.",
            )
            .with_header("Retry-After", "1")
        })?;
        let cache = Arc::new(cache);
        tracing::info!(
            version = cache.version,
            relations = cache.relations().count(),
            "schema cache loaded"
        );
        self.warn_missing_allowed(&cache);
        self.current.store(cache.clone());
        self.loaded.store(true, Ordering::Release);
        Ok(cache)
    }
}
