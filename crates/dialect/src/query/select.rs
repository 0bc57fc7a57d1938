//! The `select` parser: columns, aliases, casts, JSON paths, aggregates (`col.sum()`,
//! `count()`) and embedded resources, nested to a bounded depth.

use crate::error::ApiError;

use super::lexer::{Cursor, MAX_DEPTH, PErr, to_api};
use super::syntax::*;

/// Parses the `select` parameter. An empty value means `*`. Aggregates are parsed whether or
/// not the server allows them: the planner refuses them (PGRST123) when it does not.
pub(super) fn parse_select(input: &str) -> Result<Vec<SelectItem>, ApiError> {
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut c = Cursor::new(input);
    let r = select_list(&mut c, 0).and_then(|items| {
        if c.at_end() {
            Ok(items)
        } else {
            Err(c.err("\",\" or end of input"))
        }
    });
    r.map_err(|e| to_api("select parameter", input, &c, e))
}

fn select_list(c: &mut Cursor, depth: usize) -> Result<Vec<SelectItem>, PErr> {
    if depth > MAX_DEPTH {
        return Err(c.err("a shallower select"));
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

/// `::type` (a cast), if one follows.
fn type_cast(c: &mut Cursor) -> Result<Option<String>, PErr> {
    if !c.eat_str("::") {
        return Ok(None);
    }
    let start = c.pos;
    while matches!(c.peek(), Some(ch) if ch.is_ascii_alphanumeric() || ch == '_' || ch == ' ' || ch == '$')
    {
        c.pos += 1;
    }
    let t: String = c.chars[start..c.pos].iter().collect();
    let t = t.trim();
    if t.is_empty() {
        return Err(c.err("a type name"));
    }
    Ok(Some(t.to_string()))
}

fn select_item(c: &mut Cursor, depth: usize) -> Result<SelectItem, PErr> {
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
    if name == "count" && c.eat_str("()") {
        return Ok(SelectItem::Aggregate {
            alias,
            function: AggregateFn::Count,
            field: None,
            cast: None,
            aggregate_cast: type_cast(c)?,
        });
    }
    if spread || matches!(c.peek(), Some('(') | Some('!')) {
        let mut hints = Vec::new();
        while c.eat('!') {
            hints.push(c.name()?);
        }
        if !c.eat('(') {
            return Err(c.err("\"(\""));
        }
        c.skip_ws();
        let items = if c.peek() == Some(')') {
            Vec::new()
        } else {
            select_list(c, depth + 1)?
        };
        if !c.eat(')') {
            return Err(c.err("\")\" or \",\""));
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
    let field = Field { name, path };
    let cast = type_cast(c)?;
    // `.function()` after the field (and its cast), then the aggregate's own cast.
    if c.peek() == Some('.') {
        let save = c.pos;
        c.pos += 1;
        let w = c.word();
        if let Some(function) = AggregateFn::from_name(&w)
            && c.eat_str("()")
        {
            return Ok(SelectItem::Aggregate {
                alias,
                function,
                field: Some(field),
                cast,
                aggregate_cast: type_cast(c)?,
            });
        }
        c.pos = save;
        return Err(c.err("\"::\", \",\" or end of input"));
    }
    Ok(SelectItem::Column { alias, field, cast })
}
