//! Full-text search on SQLite FTS5: PostgREST's `fts`, `plfts`, `phfts` and `wfts` filters.
//!
//! [`index`] finds which columns have an FTS5 index (an FTS5 table's own columns, or the
//! columns of a relation an external-content FTS5 table follows); [`tsquery`] translates
//! PostgreSQL's query syntaxes into FTS5 query strings. The planner joins the two; the SQL
//! builder writes `<key> IN (SELECT rowid FROM "<fts table>" WHERE "<fts table>"."<column>"
//! MATCH ?)`, which works under `not.` and inside `and`/`or` trees (a bare `MATCH` does not).
//! The language of `fts(english)` is accepted and ignored: an FTS5 index's tokenizer is
//! fixed when it is created.

pub(crate) mod index;
pub(crate) mod tsquery;

pub(crate) use index::{FullTextIndex, MatchScope};
pub(crate) use tsquery::{FtsSyntax, to_fts5};
