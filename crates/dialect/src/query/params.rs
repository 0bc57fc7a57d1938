//! The query string as a whole: splitting it into parameters, decoding them, and dispatching
//! each to its parser by key ([`QueryParams::parse`]); also the `columns`/`on_conflict` name
//! lists and filter keys (a field with a JSON path).

use std::borrow::Cow;
use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

use crate::error::{ApiError, ErrorCode};

use super::filter::parse_filter_value;
use super::lexer::{Cursor, PErr, to_api};
use super::logic::parse_logic_value;
use super::order::parse_order;
use super::select::parse_select;
use super::syntax::*;

/// The parsed query string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryParams {
    /// `None` means `*`.
    pub select: Option<Vec<SelectItem>>,
    pub filters: Vec<(EmbedPath, Filter)>,
    pub logic: Vec<(EmbedPath, LogicTree)>,
    pub order: Vec<(EmbedPath, Vec<OrderTerm>)>,
    pub ranges: BTreeMap<EmbedPath, Range>,
    pub columns: Option<Vec<String>>,
    pub on_conflict: Option<Vec<String>>,
}

/// Decodes one query-string component: `+` is a space, then percent-decoding. Borrows when
/// there is nothing to decode.
pub fn decode_component(s: &str) -> Result<Cow<'_, str>, ApiError> {
    if !s.contains(['+', '%']) {
        return Ok(Cow::Borrowed(s));
    }
    let plus;
    let s = if s.contains('+') {
        plus = s.replace('+', " ");
        plus.as_str()
    } else {
        s
    };
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| Cow::Owned(c.into_owned()))
        .map_err(|_| {
            ApiError::new(
                400,
                ErrorCode::QueryParse,
                "Query string is not valid UTF-8 after decoding",
            )
        })
}

/// The query string with its parameters sorted, for `Content-Location` (borrowed when it
/// already is: one parameter, or several in order).
pub fn canonical_query(raw: &str) -> std::borrow::Cow<'_, str> {
    // One parameter is in order (the loop below says so too, after a search).
    if !raw.is_empty() && !raw.as_bytes().contains(&b'&') {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut pieces = raw.split('&');
    let mut previous = pieces.next().unwrap_or("");
    let canonical = !previous.is_empty()
        && pieces.all(|p| {
            let in_order = !p.is_empty() && previous <= p;
            previous = p;
            in_order
        });
    if canonical {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut parts: Vec<&str> = raw.split('&').filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    std::borrow::Cow::Owned(parts.join("&"))
}

impl QueryParams {
    /// Parses a raw (still percent-encoded) query string.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let mut q = QueryParams::default();
        for piece in raw.split('&') {
            let Some((k, v)) = piece.split_once('=') else {
                continue; // PostgREST drops keys without '='
            };
            let key = decode_component(k)?;
            let value = decode_component(v)?;
            q.add(&key, &value)?;
        }
        Ok(q)
    }

    fn add(&mut self, key: &str, value: &str) -> Result<(), ApiError> {
        match key {
            "select" => {
                let items = parse_select(value)?;
                self.select = if items.is_empty() { None } else { Some(items) };
                return Ok(());
            }
            "columns" => {
                self.columns = Some(parse_name_list("columns", value)?);
                return Ok(());
            }
            "on_conflict" => {
                self.on_conflict = Some(parse_name_list("on_conflict", value)?);
                return Ok(());
            }
            _ => {}
        }
        let segments = split_key(key);
        let Some((last, path)) = segments.split_last() else {
            return Ok(());
        };
        let path: Vec<String> = path.to_vec();
        match last.as_str() {
            "order" => {
                let terms = parse_order(value)?;
                self.order.push((path, terms));
            }
            "limit" | "offset" => {
                let n: i64 = value.trim().parse().map_err(|_| {
                    ApiError::parse(
                        &format!("{last} parameter"),
                        value,
                        1,
                        format!("unexpected {} expecting an integer", describe_first(value)),
                    )
                })?;
                let r = self.ranges.entry(path).or_default();
                if last == "limit" {
                    r.limit = Some(n);
                } else {
                    r.offset = Some(n);
                }
            }
            "and" | "or" => {
                let (negated, path) = match path.split_last() {
                    Some((n, rest)) if n == "not" => (true, rest.to_vec()),
                    _ => (false, path),
                };
                let children = parse_logic_value(value)?;
                self.logic.push((
                    path,
                    LogicTree::Node {
                        negated,
                        and: last == "and",
                        children,
                    },
                ));
            }
            _ => {
                let field = parse_field_all(last, "filter")?;
                let (negated, operation) = parse_filter_value(value)?;
                self.filters.push((
                    path,
                    Filter {
                        field,
                        negated,
                        operation,
                    },
                ));
            }
        }
        Ok(())
    }
}

/// Splits a key on `.` outside double quotes; quoted segments keep their quotes (the field
/// parser removes them).
fn split_key(key: &str) -> Vec<String> {
    if !key.contains(['.', '"']) {
        return vec![key.to_string()];
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in key.chars() {
        if in_quotes {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                cur.push(c);
            }
            '.' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn describe_first(s: &str) -> String {
    match s.chars().next() {
        Some(c) => format!("{c:?}").replace('\'', "\""),
        None => "end of input".to_string(),
    }
}

/// Parses a whole key segment as a field (`name[json path]`).
fn parse_field_all(input: &str, part: &str) -> Result<Field, ApiError> {
    let mut c = Cursor::new(input);
    let r = c.field().and_then(|f| {
        if c.at_end() {
            Ok(f)
        } else {
            Err(c.err("\"->\", \"->>\" or end of input"))
        }
    });
    r.map_err(|e| to_api(part, input, &c, e))
}

/// `columns=a,"b"` / `on_conflict=a,b`.
fn parse_name_list(part: &str, input: &str) -> Result<Vec<String>, ApiError> {
    let mut c = Cursor::new(input);
    let mut out = Vec::new();
    let r: Result<(), PErr> = (|| {
        loop {
            out.push(c.name()?);
            if c.at_end() {
                return Ok(());
            }
            if !c.eat(',') {
                return Err(c.err("\",\" or end of input"));
            }
        }
    })();
    r.map_err(|e| to_api(part, input, &c, e))?;
    Ok(out)
}
