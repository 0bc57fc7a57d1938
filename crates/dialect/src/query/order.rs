//! The `order` parser: fields with direction and null ordering.

use crate::error::ApiError;

use super::lexer::{Cursor, PErr, to_api};
use super::syntax::*;

/// Parses `order=a.desc.nullslast,b->>c,rel(col).asc`.
pub(super) fn parse_order(input: &str) -> Result<Vec<OrderTerm>, ApiError> {
    let mut c = Cursor::new(input);
    let r = (|| {
        let mut terms = Vec::new();
        loop {
            terms.push(order_term(&mut c)?);
            if c.at_end() {
                return Ok(terms);
            }
            if !c.eat(',') {
                return Err(c.err("\",\" or end of input"));
            }
        }
    })();
    r.map_err(|e| to_api("order", input, &c, e))
}

fn order_term(c: &mut Cursor) -> Result<OrderTerm, PErr> {
    let first = c.field()?;
    let (relation, field) = if first.path.is_empty() && c.eat('(') {
        let f = c.field()?;
        if !c.eat(')') {
            return Err(c.err("\")\""));
        }
        (Some(first.name), f)
    } else {
        (None, first)
    };
    let mut term = OrderTerm {
        relation,
        field,
        direction: None,
        nulls: None,
    };
    while c.peek() == Some('.') {
        c.pos += 1;
        if term.direction.is_none() && term.nulls.is_none() && c.eat_str("asc") {
            term.direction = Some(Direction::Asc);
        } else if term.direction.is_none() && term.nulls.is_none() && c.eat_str("desc") {
            term.direction = Some(Direction::Desc);
        } else if term.nulls.is_none() && c.eat_str("nullsfirst") {
            term.nulls = Some(Nulls::First);
        } else if term.nulls.is_none() && c.eat_str("nullslast") {
            term.nulls = Some(Nulls::Last);
        } else {
            return Err(c.err("\"asc\", \"desc\", \"nullsfirst\" or \"nullslast\""));
        }
        if !matches!(c.peek(), None | Some(',') | Some('.')) {
            return Err(c.err("\",\" or end of input"));
        }
    }
    Ok(term)
}
