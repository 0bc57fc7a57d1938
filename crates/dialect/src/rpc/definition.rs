//! RPC definitions: one SQL file per function, its header comment parsed and its statement
//! checked against the database.
//!
//! A file is a block of `--` comment lines (the header), then exactly one SQL statement with
//! named parameters (`:name`). Header lines that are directives:
//!
//! - `-- params: a integer, b text` (absent: no parameters). Types: `integer` (`int`,
//!   `bigint`), `real` (`float`, `double`, `numeric`), `text` (`varchar`), `boolean`
//!   (`bool`), `json` (`jsonb`), `blob` (`bytea`).
//! - `-- returns: setof` (or `rows`: a set of rows), `row` (one row, an object), `scalar` (the
//!   first column of the first row, a bare JSON value) or `void` (nothing: 204). Required.
//! - `-- writes` (or `volatile`): the statement writes; it runs through the single writer and
//!   only `POST` calls it. Without it the statement must be read-only.
//!
//! Every other header line is prose: it becomes the function's description. The checks: the
//! name is identifier-like; the statement prepares against the schema and is one statement;
//! every parameter is named `:name`, and the header's parameters are exactly the statement's;
//! a read-only function's statement is read-only (and usable as a subquery) and a writing
//! function's is not; a function that returns something has result columns with distinct
//! names (a scalar: exactly one).

use std::collections::HashSet;

use rusqlite::Connection;

use crate::openapi::{FunctionColumn, FunctionDoc, FunctionParam, FunctionReturns};

/// The declared type of a parameter: how an argument is converted before it is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Integer,
    Real,
    Text,
    Boolean,
    Json,
    Blob,
}

impl ParamType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "integer" | "int" | "bigint" => ParamType::Integer,
            "real" | "float" | "double" | "numeric" => ParamType::Real,
            "text" | "varchar" => ParamType::Text,
            "boolean" | "bool" => ParamType::Boolean,
            "json" | "jsonb" => ParamType::Json,
            "blob" | "bytea" => ParamType::Blob,
            _ => return None,
        })
    }

    /// The SQLite declared type a value of this type has (what a column of it would declare;
    /// documents describe parameters with it).
    pub fn decl_type(self) -> &'static str {
        match self {
            ParamType::Integer => "INTEGER",
            ParamType::Real => "REAL",
            ParamType::Text => "TEXT",
            ParamType::Boolean => "BOOLEAN",
            ParamType::Json => "JSON",
            ParamType::Blob => "BLOB",
        }
    }

    /// The type's name as PostgreSQL spells it in errors.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Integer => "integer",
            ParamType::Real => "double precision",
            ParamType::Text => "text",
            ParamType::Boolean => "boolean",
            ParamType::Json => "json",
            ParamType::Blob => "bytea",
        }
    }
}

/// What a function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    /// A set of rows: an array, filtered, ordered and paged like a table.
    Set,
    /// One row: an object (`null` without a row).
    Row,
    /// The first column of the first row as a bare JSON value (`null` without a row).
    Scalar,
    /// Nothing: 204.
    Void,
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub ty: ParamType,
}

/// A loaded, checked function.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    /// The header's prose lines, joined (`None` without any).
    pub description: Option<String>,
    pub params: Vec<Param>,
    pub returns: Returns,
    pub writes: bool,
    /// The result's columns: name and declared type (`None` for an expression).
    pub columns: Vec<(String, Option<String>)>,
    /// The statement, without its header, trailing comments and semicolons.
    pub(crate) sql: String,
    /// For each of the statement's parameters in SQLite's numbering, its index in `params`.
    pub(crate) order: Vec<usize>,
}

/// The parsed header and the statement after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) description: Option<String>,
    pub(crate) params: Vec<Param>,
    pub(crate) returns: Returns,
    pub(crate) writes: bool,
    pub(crate) body: String,
}

/// True for a name made of ASCII letters, digits and `_`, not starting with a digit.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses the header comment of a function file and cuts the statement out of the rest.
pub(crate) fn parse_header(text: &str) -> Result<Header, String> {
    let mut description: Vec<&str> = Vec::new();
    let mut params: Option<Vec<Param>> = None;
    let mut returns: Option<Returns> = None;
    let mut writes = false;
    let mut rest = text;
    while !rest.is_empty() {
        let (line, next) = rest.split_once('\n').unwrap_or((rest, ""));
        let trimmed = line.trim();
        if trimmed.is_empty() {
            rest = next;
            continue;
        }
        let Some(comment) = trimmed.strip_prefix("--") else {
            break;
        };
        rest = next;
        let comment = comment.trim();
        let (key, value) = match comment.split_once(':') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (comment.to_ascii_lowercase(), None),
        };
        match (key.as_str(), value) {
            ("params", Some(v)) => {
                if params.is_some() {
                    return Err("the header declares `params:` twice".into());
                }
                params = Some(parse_params(v)?);
            }
            ("returns", Some(v)) => {
                if returns.is_some() {
                    return Err("the header declares `returns:` twice".into());
                }
                returns = Some(match v.to_ascii_lowercase().as_str() {
                    "setof" | "rows" => Returns::Set,
                    "row" => Returns::Row,
                    "scalar" => Returns::Scalar,
                    "void" => Returns::Void,
                    other => {
                        return Err(format!(
                            "`returns: {other}`: expected setof, rows, row, scalar or void"
                        ));
                    }
                });
            }
            ("writes" | "volatile", None) => writes = true,
            _ if !comment.is_empty() => description.push(comment),
            _ => {}
        }
    }
    let returns =
        returns.ok_or("the header declares no `returns:` (setof, rows, row, scalar or void)")?;
    let body = statement_text(rest);
    if body.is_empty() {
        return Err("no SQL statement after the header".into());
    }
    Ok(Header {
        description: (!description.is_empty()).then(|| description.join(" ")),
        params: params.unwrap_or_default(),
        returns,
        writes,
        body,
    })
}

/// `a integer, b text` → the parameters, each named once.
fn parse_params(v: &str) -> Result<Vec<Param>, String> {
    let mut out: Vec<Param> = Vec::new();
    if v.trim().is_empty() {
        return Ok(out);
    }
    for item in v.split(',') {
        let mut words = item.split_whitespace();
        let (Some(name), Some(ty), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("parameter `{}`: expected `name type`", item.trim()));
        };
        if !is_identifier(name) {
            return Err(format!("parameter name `{name}` is not an identifier"));
        }
        let Some(ty) = ParamType::parse(ty) else {
            return Err(format!(
                "parameter `{name}`: unknown type `{ty}` (integer, real, text, boolean, json or blob)"
            ));
        };
        if out.iter().any(|p| p.name == name) {
            return Err(format!("parameter `{name}` is declared twice"));
        }
        out.push(Param {
            name: name.to_string(),
            ty,
        });
    }
    Ok(out)
}

/// The statement without trailing comment lines, whitespace and semicolons (so that it can
/// stand inside parentheses).
fn statement_text(rest: &str) -> String {
    let mut lines: Vec<&str> = rest.lines().collect();
    while lines
        .last()
        .is_some_and(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
    {
        lines.pop();
    }
    let joined = lines.join("\n");
    joined
        .trim_end_matches(|c: char| c.is_whitespace() || c == ';')
        .trim()
        .to_string()
}

impl Function {
    /// Parses `text` (a function file's contents) as the function `name` and checks it on
    /// `conn` (see the module docs). The error says why the file is refused.
    pub fn define(conn: &Connection, name: &str, text: &str) -> Result<Function, String> {
        if !is_identifier(name) {
            return Err(format!(
                "`{name}` is not a function name (letters, digits and _, not starting with a digit)"
            ));
        }
        let h = parse_header(text)?;
        let stmt = conn.prepare(&h.body).map_err(|e| match e {
            rusqlite::Error::MultipleStatement => "more than one SQL statement".to_string(),
            e => format!("the statement does not prepare: {e}"),
        })?;
        // Transaction control would leave a pooled connection inside a transaction (a frozen
        // snapshot that also pins the WAL), or end the writer's batch.
        let first_word: String = h
            .body
            .trim_start()
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect::<String>()
            .to_ascii_uppercase();
        if matches!(
            first_word.as_str(),
            "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE"
        ) {
            return Err(format!(
                "`{first_word}`: transaction control is not allowed in a function (each call runs in its own transaction)"
            ));
        }
        let mut order = Vec::with_capacity(stmt.parameter_count());
        let mut seen = HashSet::new();
        for i in 1..=stmt.parameter_count() {
            let Some(pname) = stmt.parameter_name(i) else {
                return Err(
                    "the statement has an unnamed parameter (`?`): name every parameter `:name`"
                        .into(),
                );
            };
            let Some(bare) = pname.strip_prefix(':').filter(|b| is_identifier(b)) else {
                return Err(format!(
                    "parameter `{pname}`: name every parameter `:name` (letters, digits and _)"
                ));
            };
            let Some(idx) = h.params.iter().position(|p| p.name == bare) else {
                return Err(format!(
                    "the statement uses `:{bare}`, which the header's `params:` does not declare"
                ));
            };
            seen.insert(idx);
            order.push(idx);
        }
        if let Some(p) = h.params.iter().enumerate().find(|(i, _)| !seen.contains(i)) {
            return Err(format!(
                "the header declares `{}`, which the statement does not use",
                p.1.name
            ));
        }
        match (h.writes, stmt.readonly()) {
            (false, false) => {
                return Err(
                    "the statement writes, but the header does not declare `-- writes`".into(),
                );
            }
            (true, true) => {
                return Err(
                    "the header declares `-- writes`, but the statement is read-only".into(),
                );
            }
            _ => {}
        }
        let columns: Vec<(String, Option<String>)> = stmt
            .columns()
            .map(|c| (c.name().to_string(), c.decl_type().map(str::to_string)))
            .collect();
        match h.returns {
            Returns::Void => {}
            _ if columns.is_empty() => {
                return Err(
                    "the statement returns no columns: declare `returns: void` (or add RETURNING)"
                        .into(),
                );
            }
            Returns::Scalar if columns.len() != 1 => {
                return Err(format!(
                    "`returns: scalar` needs exactly one result column, the statement has {}",
                    columns.len()
                ));
            }
            _ => {
                let mut names = HashSet::new();
                if let Some((dup, _)) = columns.iter().find(|(n, _)| !names.insert(n.as_str())) {
                    return Err(format!(
                        "the result has two columns named `{dup}`: give them distinct names"
                    ));
                }
            }
        }
        drop(stmt);
        if !h.writes && matches!(h.returns, Returns::Set | Returns::Row) {
            // Filters, order and paging read it as a subquery.
            conn.prepare(&format!("SELECT 1 FROM (\n{}\n)", h.body))
                .map_err(|e| format!("the statement cannot be read as a subquery: {e}"))?;
        }
        Ok(Function {
            name: name.to_string(),
            description: h.description,
            params: h.params,
            returns: h.returns,
            writes: h.writes,
            columns,
            sql: h.body,
            order,
        })
    }

    /// The statement as it runs (header, trailing comments and semicolons removed).
    pub fn statement(&self) -> &str {
        &self.sql
    }

    /// `name(a, b)`: the signature PostgREST's hints name (parameters sorted).
    pub fn signature(&self) -> String {
        let mut names: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        format!("public.{}({})", self.name, names.join(", "))
    }

    /// How the OpenAPI document describes this function.
    pub fn doc(&self) -> FunctionDoc {
        let columns = || {
            self.columns
                .iter()
                .map(|(name, decl)| FunctionColumn {
                    name: name.clone(),
                    decl_type: decl.clone().unwrap_or_default(),
                })
                .collect()
        };
        FunctionDoc {
            name: self.name.clone(),
            description: self.description.clone(),
            params: self
                .params
                .iter()
                .map(|p| FunctionParam {
                    name: p.name.clone(),
                    decl_type: p.ty.decl_type().to_string(),
                    required: true,
                })
                .collect(),
            returns: match self.returns {
                Returns::Set => FunctionReturns::Set(columns()),
                Returns::Row => FunctionReturns::One(columns()),
                Returns::Scalar => FunctionReturns::Scalar(
                    self.columns
                        .first()
                        .and_then(|(_, decl)| decl.clone())
                        .unwrap_or_default(),
                ),
                Returns::Void => FunctionReturns::Void,
            },
            writes: self.writes,
        }
    }

    /// The `Allow` header of `OPTIONS /rpc/<name>`.
    pub fn allow_header(&self) -> &'static str {
        if self.writes {
            "OPTIONS,POST"
        } else {
            "OPTIONS,GET,HEAD,POST"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, rating REAL, author TEXT);",
        )
        .unwrap();
        c
    }

    #[test]
    fn header_directives_and_prose() {
        let h = parse_header(
            "-- Books by an author.\n--   params: author text,min_rating  REAL\n-- Returns: SETOF\n\n\
             SELECT * FROM books WHERE author = :author AND rating >= :min_rating;\n-- trailing\n",
        )
        .unwrap();
        assert_eq!(h.description.as_deref(), Some("Books by an author."));
        assert_eq!(
            h.params,
            vec![
                Param {
                    name: "author".into(),
                    ty: ParamType::Text
                },
                Param {
                    name: "min_rating".into(),
                    ty: ParamType::Real
                }
            ]
        );
        assert_eq!((h.returns, h.writes), (Returns::Set, false));
        assert_eq!(
            h.body,
            "SELECT * FROM books WHERE author = :author AND rating >= :min_rating"
        );
        let h = parse_header("-- returns: row\n-- writes\nDELETE FROM books RETURNING *").unwrap();
        assert_eq!(
            (h.returns, h.writes, h.params.len()),
            (Returns::Row, true, 0)
        );
        assert!(
            parse_header("-- volatile\n-- returns: void\nDELETE FROM books")
                .unwrap()
                .writes
        );
    }

    #[test]
    fn header_errors_say_what_is_wrong() {
        for (text, want) in [
            ("SELECT 1", "no `returns:`"),
            ("-- returns: table\nSELECT 1", "expected setof"),
            ("-- returns: row\n-- returns: row\nSELECT 1", "twice"),
            (
                "-- params: a\n-- returns: row\nSELECT :a",
                "expected `name type`",
            ),
            (
                "-- params: a date\n-- returns: row\nSELECT :a",
                "unknown type `date`",
            ),
            (
                "-- params: 1a int\n-- returns: row\nSELECT 1",
                "not an identifier",
            ),
            (
                "-- params: a int, a text\n-- returns: row\nSELECT :a",
                "declared twice",
            ),
            ("-- returns: row\n;\n-- nothing", "no SQL statement"),
        ] {
            let e = parse_header(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn definitions_are_checked_against_the_database() {
        let c = db();
        let f = Function::define(
            &c,
            "by_author",
            "-- params: min int, author text\n-- returns: setof\n\
             SELECT id, title FROM books WHERE author = :author AND rating >= :min AND :author IS NOT NULL",
        )
        .unwrap();
        // SQLite numbers `:author` first: it appears first.
        assert_eq!(f.order, vec![1, 0]);
        assert_eq!(
            f.columns,
            vec![
                ("id".into(), Some("INTEGER".into())),
                ("title".into(), Some("TEXT".into()))
            ]
        );
        assert_eq!(f.signature(), "public.by_author(author, min)");
        let w = Function::define(
            &c,
            "add",
            "-- params: t text\n-- returns: row\n-- writes\nINSERT INTO books (title) VALUES (:t) RETURNING id, title",
        )
        .unwrap();
        assert_eq!((w.writes, w.allow_header()), (true, "OPTIONS,POST"));
        for (name, text, want) in [
            (
                "bad-name",
                "-- returns: row\nSELECT 1",
                "not a function name",
            ),
            (
                "f",
                "-- returns: row\nSELECT * FROM nope",
                "does not prepare",
            ),
            ("f", "-- returns: row\nSELECT 1; SELECT 2", "more than one"),
            ("f", "-- returns: void\nBEGIN", "transaction control"),
            (
                "f",
                "-- returns: void\n  savepoint s",
                "transaction control",
            ),
            (
                "f",
                "-- returns: void\n-- writes\nCOMMIT",
                "transaction control",
            ),
            ("f", "-- returns: row\nSELECT ?", "unnamed parameter"),
            ("f", "-- returns: row\nSELECT @a", "name every parameter"),
            ("f", "-- returns: row\nSELECT :a", "does not declare"),
            (
                "f",
                "-- params: a int, b int\n-- returns: row\nSELECT :a",
                "`b`",
            ),
            (
                "f",
                "-- returns: row\nDELETE FROM books RETURNING id",
                "does not declare `-- writes`",
            ),
            ("f", "-- returns: row\n-- writes\nSELECT 1", "read-only"),
            ("f", "-- returns: scalar\nSELECT 1, 2", "exactly one"),
            (
                "f",
                "-- returns: setof\nSELECT 1 AS a, 2 AS a",
                "two columns named `a`",
            ),
            (
                "f",
                "-- returns: row\n-- writes\nDELETE FROM books",
                "returns no columns",
            ),
            (
                "f",
                "-- returns: setof\nPRAGMA table_info(books)",
                "subquery",
            ),
        ] {
            let e = Function::define(&c, name, text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
