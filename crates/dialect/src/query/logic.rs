//! The logic-tree parser: `and=(…)`/`or=(…)` with nested trees and filters, bounded in
//! depth and size.

use crate::error::ApiError;

use super::filter::{operation, operator_head};
use super::lexer::{Cursor, MAX_DEPTH, PErr, to_api};
use super::syntax::*;

const MAX_TREE_NODES: usize = 256;

/// Parses the value of `or=`/`and=`: `(item,item,…)`.
pub(super) fn parse_logic_value(input: &str) -> Result<Vec<LogicTree>, ApiError> {
    let mut c = Cursor::new(input);
    let mut nodes = 0;
    let r = (|| {
        c.skip_ws();
        if !c.eat('(') {
            return Err(c.err("\"(\""));
        }
        let items = logic_items(&mut c, 0, &mut nodes)?;
        c.skip_ws();
        if !c.at_end() {
            return Err(c.err("end of input"));
        }
        Ok(items)
    })();
    r.map_err(|e| to_api("logic tree", input, &c, e))
}

/// Items up to and including the closing `)`.
fn logic_items(c: &mut Cursor, depth: usize, nodes: &mut usize) -> Result<Vec<LogicTree>, PErr> {
    if depth > MAX_DEPTH {
        return Err(c.err("a shallower logic tree"));
    }
    let mut items = Vec::new();
    loop {
        *nodes += 1;
        if *nodes > MAX_TREE_NODES {
            return Err(c.err("a smaller logic tree"));
        }
        c.skip_ws();
        items.push(logic_item(c, depth, nodes)?);
        c.skip_ws();
        if c.eat(',') {
            continue;
        }
        if c.eat(')') {
            return Ok(items);
        }
        return Err(c.err("\",\" or \")\""));
    }
}

fn logic_item(c: &mut Cursor, depth: usize, nodes: &mut usize) -> Result<LogicTree, PErr> {
    let save = c.pos;
    let mut negated = false;
    if c.eat_str("not.") {
        negated = true;
    }
    for (kw, and) in [("and(", true), ("or(", false)] {
        if c.eat_str(kw) {
            let children = logic_items(c, depth + 1, nodes)?;
            return Ok(LogicTree::Node {
                negated,
                and,
                children,
            });
        }
    }
    c.pos = save;
    let field = c.field()?;
    if !c.eat('.') {
        return Err(c.err("\".\""));
    }
    let (negated, word, modifier) = operator_head(c)?;
    let value_pos = c.pos;
    let value = tree_value(c)?;
    let operation = operation(c, &word, modifier, value, value_pos)?;
    Ok(LogicTree::Leaf(Filter {
        field,
        negated,
        operation,
    }))
}

/// A value inside a tree: a double-quoted string, or raw text up to `,` or `)` at depth 0
/// (parentheses, braces and quotes nest, so `in.(1,2)` and `{a,b}` stay whole).
fn tree_value(c: &mut Cursor) -> Result<String, PErr> {
    if c.peek() == Some('"') {
        return c.quoted();
    }
    let start = c.pos;
    let mut depth = 0i32;
    let mut in_quotes = false;
    while let Some(ch) = c.peek() {
        if in_quotes {
            if ch == '\\' {
                c.pos += 1;
            } else if ch == '"' {
                in_quotes = false;
            }
        } else {
            match ch {
                '"' => in_quotes = true,
                '(' | '{' => depth += 1,
                ')' | '}' if depth > 0 => depth -= 1,
                ',' | ')' if depth == 0 => break,
                _ => {}
            }
        }
        c.pos += 1;
    }
    if in_quotes {
        return Err(c.err("'\"'"));
    }
    let raw: String = c.chars[start..c.pos].iter().collect();
    Ok(raw.trim_end().to_string())
}
