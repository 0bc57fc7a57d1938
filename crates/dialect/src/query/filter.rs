//! The filter parser: `[not.]operator[(quantifier)].value` — comparisons, `in` lists,
//! `is`, pattern matching, containment and full-text operators.

use crate::error::ApiError;
use crate::fts::FtsSyntax;

use super::lexer::{Cursor, PErr, to_api};
use super::syntax::*;

const OPERATORS: &str = "\"not\" or operator (eq, gt, ...)";

fn cmp_op(word: &str) -> Option<CmpOp> {
    Some(match word {
        "eq" => CmpOp::Compare(Comparison::Eq),
        "neq" => CmpOp::Compare(Comparison::Neq),
        "gt" => CmpOp::Compare(Comparison::Gt),
        "gte" => CmpOp::Compare(Comparison::Gte),
        "lt" => CmpOp::Compare(Comparison::Lt),
        "lte" => CmpOp::Compare(Comparison::Lte),
        "like" => CmpOp::Like,
        "ilike" => CmpOp::Ilike,
        "match" => CmpOp::Match,
        "imatch" => CmpOp::Imatch,
        "isdistinct" => CmpOp::Compare(Comparison::IsDistinct),
        _ => return None,
    })
}

const UNSUPPORTED: [&str; 5] = ["sl", "sr", "nxr", "nxl", "adj"];

fn contain_op(word: &str) -> Option<ContainOp> {
    Some(match word {
        "cs" => ContainOp::Contains,
        "cd" => ContainOp::ContainedBy,
        "ov" => ContainOp::Overlaps,
        _ => return None,
    })
}

/// The operand of `cs`/`cd`/`ov` as JSON text: a JSON value as it is, or a PostgreSQL array
/// literal `{a,"b,c",1}` as a JSON array (unquoted items that read as JSON numbers or
/// booleans keep that type; everything else is a string). `None` for a range literal such as
/// `[1,10)` or `(1,10)`, which SQLite has no type for; any other operand is an error.
fn contain_operand(value: &str) -> Result<Option<String>, usize> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(value) {
        return Ok(Some(v.to_string()));
    }
    let trimmed = value.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('(') {
        return Ok(None);
    }
    if !trimmed.starts_with('{') {
        return Err(0);
    }
    let items = parse_array_literal(value)?;
    let array = items
        .into_iter()
        .map(|(item, quoted)| {
            let typed = (!quoted)
                .then(|| serde_json::from_str::<serde_json::Value>(&item).ok())
                .flatten()
                .filter(|v| v.is_number() || v.is_boolean());
            typed.unwrap_or(serde_json::Value::String(item))
        })
        .collect();
    Ok(Some(serde_json::Value::Array(array).to_string()))
}

/// Parses `[not.]op[(modifier)].` and returns (negated, op word, modifier); the cursor is then
/// at the value.
pub(super) fn operator_head(c: &mut Cursor) -> Result<(bool, String, Option<String>), PErr> {
    let start = c.pos;
    let mut negated = false;
    let mut w = c.word();
    if w == "not" && c.peek() == Some('.') {
        c.pos += 1;
        negated = true;
        w = c.word();
    }
    let known = w == "in"
        || w == "is"
        || cmp_op(&w).is_some()
        || contain_op(&w).is_some()
        || UNSUPPORTED.contains(&w.as_str())
        || FtsSyntax::from_operator(&w).is_some();
    if !known {
        c.pos = if negated {
            c.pos - w.chars().count()
        } else {
            start
        };
        return Err(c.err(OPERATORS));
    }
    let mut modifier = None;
    if c.eat('(') {
        let s = c.pos;
        while matches!(c.peek(), Some(ch) if ch != ')') {
            c.pos += 1;
        }
        let m: String = c.chars[s..c.pos].iter().collect();
        if !c.eat(')') {
            return Err(c.err("\")\""));
        }
        modifier = Some(m);
    }
    if !c.eat('.') {
        return Err(c.err("\".\""));
    }
    Ok((negated, w, modifier))
}

/// Builds the operation from its head and its (already extracted) value.
pub(super) fn operation(
    c: &Cursor,
    word: &str,
    modifier: Option<String>,
    value: String,
    value_pos: usize,
) -> Result<Operation, PErr> {
    let at = |expecting| PErr {
        pos: value_pos,
        expecting,
    };
    if let Some(syntax) = FtsSyntax::from_operator(word) {
        return full_text(syntax, modifier, value).ok_or_else(|| at("a language: fts(english)"));
    }
    if UNSUPPORTED.contains(&word) {
        return Ok(Operation::Unsupported {
            op: word.to_string(),
        });
    }
    if let Some(op) = contain_op(word) {
        if modifier.is_some() {
            return Err(at("\".\""));
        }
        return match contain_operand(&value) {
            Ok(Some(json)) => Ok(Operation::Contain { op, json }),
            Ok(None) => Ok(Operation::Unsupported {
                op: format!("{word} on a range value"),
            }),
            Err(p) => Err(PErr {
                pos: value_pos + p,
                expecting: "a JSON value or an array literal: {a,b,\"c,d\"}",
            }),
        };
    }
    if word == "in" {
        if modifier.is_some() {
            return Err(at("\".\""));
        }
        return parse_in_list(&value).map(Operation::In).map_err(|p| PErr {
            pos: value_pos + p,
            expecting: "a list in parentheses: (a,b,\"c,d\")",
        });
    }
    if word == "is" {
        let v = match value.to_ascii_lowercase().as_str() {
            "null" => IsValue::Null,
            "not_null" => IsValue::NotNull,
            "true" => IsValue::True,
            "false" => IsValue::False,
            "unknown" => IsValue::Unknown,
            _ => return Err(at("null, not_null, true, false or unknown")),
        };
        return Ok(Operation::Is(v));
    }
    let Some(op) = cmp_op(word) else {
        return Err(PErr {
            pos: c.pos,
            expecting: OPERATORS,
        });
    };
    match modifier.as_deref() {
        None => Ok(Operation::Compare { op, value }),
        Some(m @ ("any" | "all")) if op != CmpOp::Compare(Comparison::IsDistinct) => {
            let values = parse_array_literal(&value).map_err(|p| PErr {
                pos: value_pos + p,
                expecting: "a list in braces: {a,b,\"c,d\"}",
            })?;
            Ok(Operation::Quantified {
                op,
                quantifier: if m == "any" {
                    Quantifier::Any
                } else {
                    Quantifier::All
                },
                values: values.into_iter().map(|(v, _)| v).collect(),
            })
        }
        Some(_) => Err(at("(any) or (all)")),
    }
}

/// A full-text filter; the modifier, when given, is a language name (`english`,
/// `pg_catalog.french`).
fn full_text(syntax: FtsSyntax, language: Option<String>, query: String) -> Option<Operation> {
    let valid = |l: &String| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    if language.as_ref().is_some_and(|l| !valid(l)) {
        return None;
    }
    Some(Operation::FullText {
        syntax,
        language,
        query,
    })
}

/// `[not.]op[(modifier)].value` for a plain `key=value` filter: the value is the rest.
pub(crate) fn parse_filter_value(input: &str) -> Result<(bool, Operation), ApiError> {
    let mut c = Cursor::new(input);
    let r = operator_head(&mut c).and_then(|(negated, word, modifier)| {
        let pos = c.pos;
        let value = c.rest();
        operation(&c, &word, modifier, value, pos).map(|op| (negated, op))
    });
    r.map_err(|e| to_api("filter", input, &c, e))
}

/// Parses `(a,"b,c",d)`; `()` and blanks only mean an empty list. Returns the offending
/// position on error.
fn parse_in_list(value: &str) -> Result<Vec<String>, usize> {
    let mut c = Cursor::new(value);
    if !c.eat('(') {
        return Err(0);
    }
    c.skip_ws();
    if c.eat(')') {
        return if c.at_end() {
            Ok(Vec::new())
        } else {
            Err(c.pos)
        };
    }
    let items = delimited_items(&mut c, ')')?;
    if c.at_end() {
        Ok(items.into_iter().map(|(item, _)| item).collect())
    } else {
        Err(c.pos)
    }
}

/// Parses a PostgreSQL array literal `{a,"b,c"}` (unquoted items are trimmed).
fn parse_array_literal(value: &str) -> Result<Vec<(String, bool)>, usize> {
    let mut c = Cursor::new(value.trim());
    if !c.eat('{') {
        return Err(0);
    }
    c.skip_ws();
    if c.eat('}') {
        return if c.at_end() {
            Ok(Vec::new())
        } else {
            Err(c.pos)
        };
    }
    let items = delimited_items(&mut c, '}')?;
    if c.at_end() { Ok(items) } else { Err(c.pos) }
}

/// Items separated by `,` up to `close`; items may be double-quoted with `\` escapes. Each
/// item comes with whether it was quoted.
fn delimited_items(c: &mut Cursor, close: char) -> Result<Vec<(String, bool)>, usize> {
    let mut items = Vec::new();
    loop {
        c.skip_ws();
        if c.peek() == Some('"') {
            items.push((c.quoted().map_err(|e| e.pos)?, true));
            c.skip_ws();
        } else {
            let s = c.pos;
            while matches!(c.peek(), Some(ch) if ch != ',' && ch != close) {
                c.pos += 1;
            }
            let item: String = c.chars[s..c.pos].iter().collect();
            let item = if close == '}' {
                item.trim().to_string()
            } else {
                item
            };
            items.push((item, false));
        }
        match c.peek() {
            Some(',') => c.pos += 1,
            Some(ch) if ch == close => {
                c.pos += 1;
                return Ok(items);
            }
            _ => return Err(c.pos),
        }
    }
}
