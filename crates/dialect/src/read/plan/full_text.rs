//! Full-text filters planned: the column's FTS5 index found (or a 501 naming the index to
//! create), the query translated, and whether each filter may drive the scan or needs
//! PostgreSQL's three-valued logic under a NOT.

use crate::error::ApiError;
use crate::fts::{FtsSyntax, MatchScope, to_fts5};
use crate::ident::quoted;
use crate::query::Field;
use crate::schema_cache::{Affinity, RelKind, Relation, RowKey};

use super::tree::*;

/// A full-text filter on `field`: its FTS5 index and the query translated for FTS5. A column
/// without an FTS5 index is refused (no silent full scan), with a hint that creates one.
pub(super) fn full_text(
    rel: &Relation,
    field: &Field,
    syntax: FtsSyntax,
    query: &str,
) -> Result<Predicate, ApiError> {
    let index = rel
        .full_text
        .get(&field.name)
        .filter(|_| field.path.is_empty())
        .ok_or_else(|| no_full_text_index(rel, field))?;
    if index.scope == MatchScope::Unsearchable {
        return Err(ApiError::not_implemented(format!(
            "Column {}.{} is indexed by FTS5 table {} with detail=none, which cannot search one of its several columns alone",
            rel.name, field.name, index.table
        ))
        .with_hint(
            "Give the column an FTS5 index of its own, or recreate this one with detail=full or detail=column (https://sqlite.org/fts5.html#the_detail_option).",
        ));
    }
    Ok(Predicate::FullText {
        index: index.clone(),
        query: to_fts5(syntax, query)?,
        three_valued: true,
    })
}

/// Lets every full-text filter under an even number of NOTs (a top-level one, or one inside
/// non-negated `and`/`or` trees) drive the scan (see [`Predicate::FullText`]). There, NULL
/// and false are alike: AND and OR are monotone, so lowering NULL to false never changes
/// whether the whole condition is true. Under an odd number of NOTs they differ, so the
/// three-valued form stays.
pub(super) fn full_text_drives(c: &mut Condition, negated_above: bool) {
    match c {
        Condition::Pred {
            negated,
            pred: Predicate::FullText { three_valued, .. },
            ..
        } => *three_valued = negated_above != *negated,
        // Inside EXISTS only truth counts, whatever the NOTs around it.
        Condition::Pred { .. } | Condition::Exists { .. } => {}
        Condition::Tree {
            negated, children, ..
        } => {
            let negated = negated_above != *negated;
            for child in children {
                full_text_drives(child, negated);
            }
        }
    }
}

fn no_full_text_index(rel: &Relation, field: &Field) -> ApiError {
    let details = format!(
        "Full-text search needs an FTS5 index, and column {}.{} has none",
        rel.name, field.name
    );
    let hint = if !field.path.is_empty() {
        "Full-text filters apply to columns, not to JSON paths.".to_string()
    } else if rel.kind == RelKind::Virtual {
        "Only the indexed columns of an FTS5 table can be searched (not UNINDEXED ones)."
            .to_string()
    } else {
        // FTS5 links through an integer key: the table's INTEGER PRIMARY KEY, else its rowid
        // under a name no column shadows. A view, a WITHOUT ROWID table or one whose rowid
        // names are all columns has none: one of its integer columns must be named.
        let key = match (rel.primary_key.as_slice(), rel.row_key()) {
            ([pk], _)
                if rel
                    .column(pk)
                    .is_some_and(|c| c.affinity == Affinity::Integer) =>
            {
                Some(pk.as_str())
            }
            (_, RowKey::Rowid(alias)) => Some(alias),
            _ => None,
        };
        let (key, why) = match key {
            Some(k) => (sql_literal(k), ""),
            None => (
                "'<integer column>'".to_string(),
                " (it has no rowid: name an integer column that identifies its rows)",
            ),
        };
        let index = format!("{}_fts", rel.name);
        format!(
            "Create an external-content FTS5 index for it{why}: CREATE VIRTUAL TABLE {idx} USING fts5({col}, content={tbl}, content_rowid={key}); INSERT INTO {idx}({idx}) VALUES ('rebuild'); and keep it in step with triggers on {tbl} (https://sqlite.org/fts5.html#external_content_tables).",
            idx = quoted(&index),
            col = quoted(&field.name),
            tbl = sql_literal(&rel.name),
        )
    };
    ApiError::not_implemented(details).with_hint(hint)
}

/// `'text'` with inner quotes doubled.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
