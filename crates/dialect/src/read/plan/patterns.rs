//! Pattern filters: `like`/`ilike` patterns as SQLite GLOBs, and the bounds on `match`/
//! `imatch` regular expressions (length, count, compiled size) checked before any SQL runs.

use rusqlite::types::Value;

use crate::error::{ApiError, ErrorCode};
use crate::functions::compile_regex_set;

use super::tree::*;

/// The longest pattern of `match`/`imatch`.
pub(super) const MAX_REGEX_LEN: usize = 1024;
/// The most `match`/`imatch` filters one request may hold (each is compiled on its own when
/// the statement runs, with its own matching cache).
pub(super) const MAX_REGEX_FILTERS: usize = 32;

fn invalid_regex(details: String) -> ApiError {
    ApiError::new(400, ErrorCode::InvalidRegex, "invalid regular expression").with_details(details)
}

/// `pattern`, unless it is longer than [`MAX_REGEX_LEN`].
pub(super) fn regex_len(pattern: &str) -> Result<&str, ApiError> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(invalid_regex(format!(
            "pattern longer than {MAX_REGEX_LEN} bytes"
        )));
    }
    Ok(pattern)
}

/// The regular expressions of `conditions`: each `match`/`imatch` filter's patterns.
fn regex_filters<'a>(conditions: &'a [Condition], out: &mut Vec<&'a Predicate>) {
    for c in conditions {
        match c {
            Condition::Tree { children, .. } => regex_filters(children, out),
            // Checked when the embed's own conditions were planned.
            Condition::Exists { .. } => {}
            Condition::Pred { pred, .. } => {
                if matches!(
                    pred,
                    Predicate::Cmp(SqlCmp::Regexp, _)
                        | Predicate::Quantified {
                            op: SqlCmp::Regexp,
                            ..
                        }
                ) {
                    out.push(pred);
                }
            }
        }
    }
}

/// Checks every regular expression of a request at once, so that one request's patterns can
/// cost only so much: at most [`MAX_REGEX_FILTERS`] filters, patterns of at most
/// [`MAX_REGEX_LEN`] bytes, and all of them together within the compiled size limit (one
/// compilation; invalid patterns fail here too). 400 `2201B` otherwise.
pub(super) fn check_regexes(conditions: &[Condition]) -> Result<(), ApiError> {
    let mut filters = Vec::new();
    regex_filters(conditions, &mut filters);
    if filters.is_empty() {
        return Ok(());
    }
    if filters.len() > MAX_REGEX_FILTERS {
        return Err(ApiError::new(
            400,
            ErrorCode::StatementTooComplex,
            "too many regular expressions in one request",
        )
        .with_details(format!(
            "{} match/imatch filters; the limit is {MAX_REGEX_FILTERS}",
            filters.len()
        )));
    }
    let mut patterns: Vec<String> = Vec::new();
    for f in filters {
        match f {
            Predicate::Cmp(_, Value::Text(p)) => patterns.push(p.clone()),
            Predicate::Quantified { values, .. } => patterns.extend(
                serde_json::from_str::<Vec<String>>(values)
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            ),
            _ => {}
        }
    }
    compile_regex_set(&patterns).map_err(|e| invalid_regex(e.to_string()))?;
    Ok(())
}

/// PostgreSQL LIKE (with `*` for `%`, `\` escaping) as a case-sensitive GLOB pattern.
pub(super) fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    let literal = |out: &mut String, c: char| match c {
        '*' => out.push_str("[*]"),
        '?' => out.push_str("[?]"),
        '[' => out.push_str("[[]"),
        c => out.push(c),
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    literal(&mut out, n);
                }
            }
            '%' | '*' => out.push('*'),
            '_' => out.push('?'),
            c => literal(&mut out, c),
        }
    }
    out
}
