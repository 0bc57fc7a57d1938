//! The `select` parser: columns, aliases, casts, JSON paths and embedded resources, nested
//! to a bounded depth.

use crate::error::{ApiError, ErrorCode};

use super::lexer::{Cursor, MAX_DEPTH, PErr, to_api};
use super::syntax::*;

/// Parses the `select` parameter. An empty value means `*`.
pub(super) fn parse_select(input: &str) -> Result<Vec<SelectItem>, ApiError> {
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut c = Cursor::new(input);
    let r = select_list(&mut c, 0).and_then(|items| {
        if c.at_end() {
            Ok(items)
        } else {
            Err(c.err("\",\" or end of input").into())
        }
    });
    match r {
        Ok(items) => Ok(items),
        Err(SelectErr::Syntax(e)) => Err(to_api("select parameter", input, &c, e)),
        Err(SelectErr::Aggregate) => Err(ApiError::new(
            400,
            ErrorCode::AggregatesDisabled,
            "Use of aggregate functions is not allowed",
        )),
    }
}

enum SelectErr {
    Syntax(PErr),
    Aggregate,
}

impl From<PErr> for SelectErr {
    fn from(e: PErr) -> Self {
        SelectErr::Syntax(e)
    }
}

fn select_list(c: &mut Cursor, depth: usize) -> Result<Vec<SelectItem>, SelectErr> {
    if depth > MAX_DEPTH {
        return Err(c.err("a shallower select").into());
    }
    let mut items = Vec::new();
    loop {
        c.skip_ws();
        items.push(select_item(c, depth)?);
        c.skip_ws();
        if !c.eat(',') {
            return Ok(items);
        }
    }
}

const AGGREGATES: [&str; 5] = ["sum", "avg", "min", "max", "count"];

fn select_item(c: &mut Cursor, depth: usize) -> Result<SelectItem, SelectErr> {
    if c.eat('*') {
        return Ok(SelectItem::Star);
    }
    let spread = c.eat_str("...");
    let mut alias = None;
    let mut name = c.name()?;
    if c.peek() == Some(':') && c.peek_at(1) != Some(':') {
        c.pos += 1;
        alias = Some(name);
        name = c.name()?;
    }
    if name == "count" && c.starts_with("()") {
        return Err(SelectErr::Aggregate);
    }
    if spread || matches!(c.peek(), Some('(') | Some('!')) {
        let mut hints = Vec::new();
        while c.eat('!') {
            hints.push(c.name()?);
        }
        if !c.eat('(') {
            return Err(c.err("\"(\"").into());
        }
        c.skip_ws();
        let items = if c.peek() == Some(')') {
            Vec::new()
        } else {
            select_list(c, depth + 1)?
        };
        if !c.eat(')') {
            return Err(c.err("\")\" or \",\"").into());
        }
        return Ok(SelectItem::Embed {
            alias,
            relation: name,
            hints,
            spread,
            items,
        });
    }
    let path = c.json_path()?;
    c.skip_ws();
    if c.peek() == Some('.') {
        let save = c.pos;
        c.pos += 1;
        let w = c.word();
        if AGGREGATES.contains(&w.as_str()) && c.starts_with("()") {
            return Err(SelectErr::Aggregate);
        }
        c.pos = save;
        return Err(c.err("\"::\", \",\" or end of input").into());
    }
    let mut cast = None;
    if c.eat_str("::") {
        let start = c.pos;
        while matches!(c.peek(), Some(ch) if ch.is_ascii_alphanumeric() || ch == '_' || ch == ' ' || ch == '$')
        {
            c.pos += 1;
        }
        let t: String = c.chars[start..c.pos].iter().collect();
        let t = t.trim();
        if t.is_empty() {
            return Err(c.err("a type name").into());
        }
        cast = Some(t.to_string());
    }
    Ok(SelectItem::Column {
        alias,
        field: Field { name, path },
        cast,
    })
}
