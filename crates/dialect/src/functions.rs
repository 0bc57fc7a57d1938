//! SQL functions the generated SQL relies on, registered on every connection that runs it.
//!
//! `regexp(pattern, text)` backs `match`/`imatch` with Rust's `regex` (linear time, size-capped);
//! the compiled pattern is cached per statement through SQLite's auxiliary data.

use std::sync::Arc;

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
}
