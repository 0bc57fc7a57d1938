//! PostgREST's query-string grammar: `select`, filters, `and`/`or` trees, `order`, `limit`,
//! `offset`, `columns` and `on_conflict`, parsed into a syntax tree.
//!
//! Nothing here knows the schema: names come out as written (decoded, unquoted) and the
//! planner resolves them. Whatever does not parse is rejected with PGRST100, in PostgREST's
//! message shape `"failed to parse <part> (<input>)" (line 1, column N)`, before any SQL exists.

use std::borrow::Cow;
use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

use crate::error::ApiError;
use crate::fts::FtsSyntax;

/// `->` (JSON result) or `->>` (SQL/text result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrow {
    Json,
    Text,
}

/// One key or index of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonKey {
    Key(String),
    Index(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonStep {
    pub arrow: Arrow,
    pub key: JsonKey,
}

/// A column reference with an optional JSON path: `data->a->>b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub path: Vec<JsonStep>,
}

/// One item of `select`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    Star,
    Column {
        alias: Option<String>,
        field: Field,
        cast: Option<String>,
    },
    /// `alias:relation!hint(items)` or `...relation(items)`: resource embedding.
    Embed {
        alias: Option<String>,
        relation: String,
        hints: Vec<String>,
        spread: bool,
        items: Vec<SelectItem>,
    },
}

/// A comparison that means the same in PostgREST and in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    IsDistinct,
}

/// A filter operator that takes one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Compare(Comparison),
    Like,
    Ilike,
    Match,
    Imatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

/// The operator part of a filter, with its value(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Compare {
        op: CmpOp,
        value: String,
    },
    Quantified {
        op: CmpOp,
        quantifier: Quantifier,
        values: Vec<String>,
    },
    In(Vec<String>),
    Is(IsValue),
    /// `cs`, `cd`, `ov` on JSON values; `json` is the operand as JSON text (a PostgreSQL
    /// array literal `{a,b}` becomes a JSON array).
    Contain {
        op: ContainOp,
        json: String,
    },
    /// `fts`, `plfts`, `phfts`, `wfts`: a full-text query (raw) in one of PostgreSQL's
    /// syntaxes. The language of `fts(english)` is kept but not used: an FTS5 index's
    /// tokenizer is fixed when the index is created.
    FullText {
        syntax: FtsSyntax,
        language: Option<String>,
        query: String,
    },
    /// Parsed but not mapped onto SQLite (range operators).
    Unsupported {
        op: String,
    },
}

/// The JSON containment operators (PostgreSQL's `@>`, `<@` and `&&`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainOp {
    /// `cs`: the column contains the operand.
    Contains,
    /// `cd`: the column is contained in the operand.
    ContainedBy,
    /// `ov`: the column and the operand share an element.
    Overlaps,
}

/// `field=[not.]op[(modifier)].value`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub negated: bool,
    pub operation: Operation,
}

/// An `and`/`or` tree, or one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicTree {
    Node {
        negated: bool,
        and: bool,
        children: Vec<LogicTree>,
    },
    Leaf(Filter),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    First,
    Last,
}

/// One term of `order`. `relation` is set for `rel(col)` (ordering by an embedded to-one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    pub relation: Option<String>,
    pub field: Field,
    pub direction: Option<Direction>,
    pub nulls: Option<Nulls>,
}

/// The embed path a scoped parameter applies to: empty for the root relation.
pub(crate) type EmbedPath = Vec<String>;

/// `limit` and `offset` of one scope; the last occurrence wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

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
                "PGRST100",
                "Query string is not valid UTF-8 after decoding",
            )
        })
}

/// The query string with its parameters sorted, for `Content-Location`.
pub fn canonical_query(raw: &str) -> String {
    let mut parts: Vec<&str> = raw.split('&').filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    parts.join("&")
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

/// A syntax error inside one parameter, before it is given its PostgREST message.
struct PErr {
    /// 0-based character position.
    pos: usize,
    expecting: &'static str,
}

struct Cursor {
    chars: Vec<char>,
    pos: usize,
}

impl Cursor {
    fn new(s: &str) -> Self {
        Cursor {
            chars: s.chars().collect(),
            pos: 0,
        }
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }
    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_str(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.pos += 1;
        }
    }
    fn err(&self, expecting: &'static str) -> PErr {
        PErr {
            pos: self.pos,
            expecting,
        }
    }
    fn rest(&self) -> String {
        self.chars[self.pos.min(self.chars.len())..]
            .iter()
            .collect()
    }

    /// A double-quoted string with `\` escapes; the cursor is on the opening quote.
    fn quoted(&mut self) -> Result<String, PErr> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("'\"'")),
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        None => return Err(self.err("an escaped character")),
                    }
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A field name: quoted, or unquoted up to a delimiter (`.,:()"!` or `->`), trimmed.
    fn name(&mut self) -> Result<String, PErr> {
        self.skip_ws();
        if self.peek() == Some('"') {
            let n = self.quoted()?;
            self.skip_ws();
            return Ok(n);
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if matches!(c, '.' | ',' | ':' | '(' | ')' | '"' | '!' | '{' | '}') {
                break;
            }
            if c == '-' && self.peek_at(1) == Some('>') {
                break;
            }
            self.pos += 1;
        }
        let s: String = self.chars[start..self.pos].iter().collect();
        let s = s.trim();
        if s.is_empty() {
            self.pos = start;
            return Err(self.err("field name"));
        }
        Ok(s.to_string())
    }

    /// A JSON path after a name: `(->|->>)(key|index)…`.
    fn json_path(&mut self) -> Result<Vec<JsonStep>, PErr> {
        let mut path = Vec::new();
        loop {
            let arrow = if self.eat_str("->>") {
                Arrow::Text
            } else if self.eat_str("->") {
                Arrow::Json
            } else {
                break;
            };
            let key = self.name().map_err(|e| PErr {
                expecting: "a JSON key or index",
                ..e
            })?;
            let is_index = {
                let digits = key.strip_prefix('-').unwrap_or(&key);
                !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
            };
            let key = match (is_index, key.parse::<i64>()) {
                (true, Ok(i)) => JsonKey::Index(i),
                _ => JsonKey::Key(key),
            };
            path.push(JsonStep { arrow, key });
        }
        Ok(path)
    }

    fn field(&mut self) -> Result<Field, PErr> {
        let name = self.name()?;
        let path = self.json_path()?;
        self.skip_ws();
        Ok(Field { name, path })
    }

    /// A bare lowercase word (operators, keywords).
    fn word(&mut self) -> String {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
}

fn unexpected(chars: &[char], pos: usize) -> String {
    match chars.get(pos) {
        Some(c) => format!("unexpected \"{c}\""),
        None => "unexpected end of input".to_string(),
    }
}

fn to_api(part: &str, input: &str, c: &Cursor, e: PErr) -> ApiError {
    ApiError::parse(
        part,
        input,
        e.pos + 1,
        format!("{} expecting {}", unexpected(&c.chars, e.pos), e.expecting),
    )
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

// ---------------------------------------------------------------- select

/// Parses the `select` parameter. An empty value means `*`.
pub(crate) fn parse_select(input: &str) -> Result<Vec<SelectItem>, ApiError> {
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
            "PGRST123",
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

const MAX_DEPTH: usize = 32;

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

// ---------------------------------------------------------------- filters

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
fn operator_head(c: &mut Cursor) -> Result<(bool, String, Option<String>), PErr> {
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
fn operation(
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

// ---------------------------------------------------------------- logic trees

const MAX_TREE_NODES: usize = 256;

/// Parses the value of `or=`/`and=`: `(item,item,…)`.
pub(crate) fn parse_logic_value(input: &str) -> Result<Vec<LogicTree>, ApiError> {
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

// ---------------------------------------------------------------- order

/// Parses `order=a.desc.nullslast,b->>c,rel(col).asc`.
pub(crate) fn parse_order(input: &str) -> Result<Vec<OrderTerm>, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> Field {
        Field {
            name: name.into(),
            path: vec![],
        }
    }

    #[test]
    fn plain_filters_and_decoding() {
        let q = QueryParams::parse("id=eq.5&name=like.*a+b*&x=in.(1,%222,3%22)").unwrap();
        assert_eq!(q.filters.len(), 3);
        assert_eq!(
            q.filters[1].1.operation,
            Operation::Compare {
                op: CmpOp::Like,
                value: "*a b*".into()
            }
        );
        assert_eq!(
            q.filters[2].1.operation,
            Operation::In(vec!["1".into(), "2,3".into()])
        );
    }

    #[test]
    fn containment_operands_become_json() {
        let op = |v: &str| parse_filter_value(v).map(|(_, o)| o);
        let contain = |op, json: &str| Operation::Contain {
            op,
            json: json.into(),
        };
        assert_eq!(
            op(r#"cs.{a, "b,c" ,1,true,"2",2.5e1}"#).unwrap(),
            contain(ContainOp::Contains, r#"["a","b,c",1,true,"2",25.0]"#)
        );
        assert_eq!(
            op(r#"cd.{"k": [1, 2]}"#).unwrap(),
            contain(ContainOp::ContainedBy, r#"{"k":[1,2]}"#)
        );
        assert_eq!(op("ov.{}").unwrap(), contain(ContainOp::Overlaps, "{}"));
        assert_eq!(
            op("ov.[1,2]").unwrap(),
            contain(ContainOp::Overlaps, "[1,2]")
        );
        // Ranges have no SQLite type.
        assert!(matches!(
            op("ov.[1,10)").unwrap(),
            Operation::Unsupported { .. }
        ));
        assert!(matches!(
            op("cs.(1,10)").unwrap(),
            Operation::Unsupported { .. }
        ));
        for bad in ["cs.{a", "cs.{a}}", "cs(any).{a}", "ov.{\"a}"] {
            assert_eq!(op(bad).unwrap_err().code, "PGRST100", "{bad}");
        }
    }

    #[test]
    fn empty_value_is_a_parse_error() {
        let e = QueryParams::parse("a=").unwrap_err();
        assert_eq!(e.code, "PGRST100");
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "\"failed to parse filter ()\" (line 1, column 1)"
        );
    }

    #[test]
    fn bad_operator_is_reported_at_column_one() {
        let e = QueryParams::parse("id=0").unwrap_err();
        assert_eq!(
            e.message,
            "\"failed to parse filter (0)\" (line 1, column 1)"
        );
        assert_eq!(
            e.details.unwrap(),
            "unexpected \"0\" expecting \"not\" or operator (eq, gt, ...)"
        );
    }

    #[test]
    fn key_without_equals_is_dropped() {
        let q = QueryParams::parse("flag&id=eq.1").unwrap();
        assert_eq!(q.filters.len(), 1);
    }

    #[test]
    fn not_is_and_quantifiers() {
        let (neg, op) = parse_filter_value("not.is.NULL").unwrap();
        assert!(neg);
        assert_eq!(op, Operation::Is(IsValue::Null));
        let (_, op) = parse_filter_value("like(all).{O*, \"*n,\"}").unwrap();
        assert_eq!(
            op,
            Operation::Quantified {
                op: CmpOp::Like,
                quantifier: Quantifier::All,
                values: vec!["O*".into(), "*n,".into()]
            }
        );
        assert!(parse_filter_value("is.maybe").is_err());
        assert!(parse_filter_value("in.(1,2").is_err());
        assert_eq!(
            parse_filter_value("in.()").unwrap().1,
            Operation::In(vec![])
        );
        assert_eq!(
            parse_filter_value("in.(   )").unwrap().1,
            Operation::In(vec![])
        );
    }

    #[test]
    fn select_with_alias_cast_path_and_embed() {
        let s = parse_select("id,n:name::text,settings->foo->>bar,c:clients!inner(id,*),...x(y)")
            .unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(
            s[1],
            SelectItem::Column {
                alias: Some("n".into()),
                field: col("name"),
                cast: Some("text".into())
            }
        );
        match &s[2] {
            SelectItem::Column { field, .. } => {
                assert_eq!(field.path.len(), 2);
                assert_eq!(field.path[1].arrow, Arrow::Text);
            }
            other => panic!("{other:?}"),
        }
        match &s[3] {
            SelectItem::Embed {
                alias,
                relation,
                hints,
                items,
                ..
            } => {
                assert_eq!(alias.as_deref(), Some("c"));
                assert_eq!(relation, "clients");
                assert_eq!(hints, &vec!["inner".to_string()]);
                assert_eq!(items.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&s[4], SelectItem::Embed { spread: true, .. }));
    }

    #[test]
    fn select_quoted_names_and_negative_index() {
        let s = parse_select("\"a.b\",\"x,y\":data->-1").unwrap();
        assert_eq!(
            s[0],
            SelectItem::Column {
                alias: None,
                field: col("a.b"),
                cast: None
            }
        );
        match &s[1] {
            SelectItem::Column { alias, field, .. } => {
                assert_eq!(alias.as_deref(), Some("x,y"));
                assert_eq!(field.path[0].key, JsonKey::Index(-1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aggregates_are_refused() {
        assert_eq!(parse_select("amount.sum()").unwrap_err().code, "PGRST123");
        assert_eq!(parse_select("count()").unwrap_err().code, "PGRST123");
    }

    #[test]
    fn select_syntax_errors() {
        for bad in ["id,", "a(b", "a::", "(x)", "a.b"] {
            let e = parse_select(bad).unwrap_err();
            assert_eq!(e.code, "PGRST100", "{bad}");
        }
    }

    #[test]
    fn logic_trees_nest_and_keep_values_whole() {
        let q = QueryParams::parse(
            "or=(a.eq.14,not.and(a.gte.11,a.lte.17),name.eq.%22x,y%22,id.in.(1,2))&not.and=(b.is.null)",
        )
        .unwrap();
        assert_eq!(q.logic.len(), 2);
        let LogicTree::Node {
            children,
            and,
            negated,
        } = &q.logic[0].1
        else {
            panic!()
        };
        assert!(!and && !negated);
        assert_eq!(children.len(), 4);
        assert!(matches!(
            &children[1],
            LogicTree::Node {
                negated: true,
                and: true,
                ..
            }
        ));
        let LogicTree::Leaf(f) = &children[2] else {
            panic!()
        };
        assert_eq!(
            f.operation,
            Operation::Compare {
                op: CmpOp::Compare(Comparison::Eq),
                value: "x,y".into()
            }
        );
        let LogicTree::Leaf(f) = &children[3] else {
            panic!()
        };
        assert_eq!(f.operation, Operation::In(vec!["1".into(), "2".into()]));
        assert!(matches!(
            &q.logic[1].1,
            LogicTree::Node {
                negated: true,
                and: true,
                ..
            }
        ));
        assert!(q.logic[1].0.is_empty());
    }

    #[test]
    fn empty_or_is_an_error() {
        assert_eq!(QueryParams::parse("or=()").unwrap_err().code, "PGRST100");
        assert_eq!(
            QueryParams::parse("or=(a.eq.1").unwrap_err().code,
            "PGRST100"
        );
    }

    #[test]
    fn order_terms() {
        let t = parse_order("age.desc,height.asc.nullslast,data->>x,rel(col).desc").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].direction, Some(Direction::Desc));
        assert_eq!(t[1].nulls, Some(Nulls::Last));
        assert_eq!(t[2].field.path.len(), 1);
        assert_eq!(t[3].relation.as_deref(), Some("rel"));
        let e = parse_order("id.asc.nullslasttt").unwrap_err();
        assert_eq!(
            e.message,
            "\"failed to parse order (id.asc.nullslasttt)\" (line 1, column 17)"
        );
        assert_eq!(
            e.details.unwrap(),
            "unexpected \"t\" expecting \",\" or end of input"
        );
    }

    #[test]
    fn scoped_params_and_limits() {
        let q =
            QueryParams::parse("limit=5&limit=7&offset=2&tasks.limit=1&tasks.name=eq.x").unwrap();
        assert_eq!(q.ranges[&vec![]].limit, Some(7));
        assert_eq!(q.ranges[&vec![]].offset, Some(2));
        assert_eq!(q.ranges[&vec!["tasks".to_string()]].limit, Some(1));
        assert_eq!(q.filters[0].0, vec!["tasks".to_string()]);
        assert_eq!(QueryParams::parse("limit=x").unwrap_err().code, "PGRST100");
    }

    #[test]
    fn quoted_filter_keys() {
        let q = QueryParams::parse("%22a:b%22=eq.1&%22information.cpe%22=like.*MS*").unwrap();
        assert_eq!(q.filters[0].1.field.name, "a:b");
        assert_eq!(q.filters[1].1.field.name, "information.cpe");
        assert!(q.filters[1].0.is_empty());
    }

    #[test]
    fn full_text_filters_keep_their_syntax_language_and_raw_query() {
        let q = QueryParams::parse(
            "body=fts(english).fat%20%26%20!rat&title=not.plfts.a+b&or=(body.wfts.%22x,y%22,body.phfts(simple).a)",
        )
        .unwrap();
        assert_eq!(
            q.filters[0].1.operation,
            Operation::FullText {
                syntax: FtsSyntax::Tsquery,
                language: Some("english".into()),
                query: "fat & !rat".into()
            }
        );
        assert!(q.filters[1].1.negated);
        assert_eq!(
            q.filters[1].1.operation,
            Operation::FullText {
                syntax: FtsSyntax::Plain,
                language: None,
                query: "a b".into()
            }
        );
        let LogicTree::Node { children, .. } = &q.logic[0].1 else {
            panic!()
        };
        let ops: Vec<_> = children
            .iter()
            .map(|c| match c {
                LogicTree::Leaf(f) => f.operation.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            ops,
            [
                Operation::FullText {
                    syntax: FtsSyntax::Websearch,
                    language: None,
                    query: "x,y".into()
                },
                Operation::FullText {
                    syntax: FtsSyntax::Phrase,
                    language: Some("simple".into()),
                    query: "a".into()
                }
            ]
        );
        for bad in [
            "fts().a",
            "fts(en glish).a",
            "fts(a'b).x",
            "wfts",
            "phfts(x",
        ] {
            assert_eq!(
                parse_filter_value(bad).unwrap_err().code,
                "PGRST100",
                "{bad}"
            );
        }
        assert!(parse_filter_value("fts(pg_catalog.english).x").is_ok());
    }

    #[test]
    fn canonical_sorts_params() {
        assert_eq!(canonical_query("select=id&a=eq.1"), "a=eq.1&select=id");
    }
}
