//! SQL functions the generated SQL relies on, registered on every connection that runs it.
//!
//! `regexp(pattern, text)` backs `match`/`imatch` with Rust's `regex` (linear time, size-capped);
//! the compiled pattern is cached per statement through SQLite's auxiliary data.
//! `pgrst_ins(n)` (write connections only, [`register_insert_counter`]) adds `n` to a counter
//! and returns it: upserts call it with 1 for every row they try to insert and with -1 for
//! every conflict they turn into an update, so the counter ends at the number of inserted
//! rows (201 vs 200), as PostgREST counts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use regex::Regex;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Error};

/// Registers the dialect's SQL functions on `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "regexp",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let re: Arc<Regex> = ctx.get_or_create_aux(0, |v| -> Result<Regex, Error> {
                let pattern = v.as_str().map_err(|e| Error::UserFunctionError(e.into()))?;
                regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| Error::UserFunctionError(e.into()))
            })?;
            Ok(match ctx.get_raw(1) {
                ValueRef::Null => None,
                ValueRef::Text(t) => Some(re.is_match(&String::from_utf8_lossy(t))),
                ValueRef::Integer(i) => Some(re.is_match(&i.to_string())),
                ValueRef::Real(f) => Some(re.is_match(&f.to_string())),
                ValueRef::Blob(_) => Some(false),
            })
        },
    )
}

/// The counter behind `pgrst_ins` on one connection.
#[derive(Debug, Clone, Default)]
pub struct InsertCounter(Arc<AtomicI64>);

impl InsertCounter {
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Registers `pgrst_ins(n)` on `conn` and returns its counter. Not deterministic, so SQLite
/// calls it once per row.
pub fn register_insert_counter(conn: &Connection) -> rusqlite::Result<InsertCounter> {
    let counter = InsertCounter::default();
    let c = counter.0.clone();
    conn.create_scalar_function("pgrst_ins", 1, FunctionFlags::SQLITE_UTF8, move |ctx| {
        let n: i64 = ctx.get(0)?;
        c.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    })?;
    Ok(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexp_matches() {
        let c = Connection::open_in_memory().unwrap();
        register(&c).unwrap();
        let hit: bool = c
            .query_row("SELECT regexp('^ab+c$', 'abbbc')", [], |r| r.get(0))
            .unwrap();
        assert!(hit);
        let miss: bool = c
            .query_row("SELECT regexp('(?i)^X', 'yx')", [], |r| r.get(0))
            .unwrap();
        assert!(!miss);
        assert!(
            c.query_row("SELECT regexp('(', 'x')", [], |r| r.get::<_, bool>(0))
                .is_err()
        );
    }

    #[test]
    fn insert_counter_counts_upserted_inserts() {
        let c = Connection::open_in_memory().unwrap();
        let n = register_insert_counter(&c).unwrap();
        c.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
        )
        .unwrap();
        n.reset();
        c.execute(
            "INSERT INTO t (k, v) SELECT value ->> '$.k', value ->> '$.v' FROM json_each(?1) \
             WHERE pgrst_ins(1) ON CONFLICT (k) DO UPDATE SET v = excluded.v WHERE pgrst_ins(-1)",
            [r#"[{"k":1,"v":"b"},{"k":2,"v":"c"},{"k":3,"v":"d"}]"#],
        )
        .unwrap();
        assert_eq!(n.get(), 2);
    }
}
