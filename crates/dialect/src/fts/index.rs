//! Finding FTS5 indexes in the schema: every FTS5 table, its indexed columns, and — for an
//! external-content index (`content='tbl', content_rowid='id'`) — the relation it follows
//! and the column that links the two.
//!
//! FTS5 keeps these settings only in its `CREATE VIRTUAL TABLE` statement, so that statement
//! (as stored in `sqlite_schema`) is read here exactly as SQLite and FTS5 read it: SQLite's
//! tokenizer splits the module arguments (each the raw text from its first token to its last,
//! so a comment glued to a word ends it), then FTS5's own rules (`sqlite3Fts5ConfigParse`)
//! read each one: bare words of `[A-Za-z0-9_]`, 0x1A and non-ASCII bytes, quoted words, only
//! spaces between, and option names as any prefix of FTS5's ordered list (`c=''` is
//! `content`, `content_r` is `content_rowid`). Whatever FTS5 would refuse is not an FTS5
//! index: its columns simply have none.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::schema_cache::{RelKind, Relation, RowKey};

/// Where the full-text index of one column of a relation is, and how its rows link back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullTextIndex {
    /// The FTS5 table to search (the relation itself when it is an FTS5 table).
    pub table: String,
    /// The column's name in that FTS5 table.
    pub column: String,
    /// The relation's column (or `rowid`) whose values are the FTS5 table's rowids.
    pub key: String,
    /// False for a contentless FTS5 table (`content=''`), whose columns always read as NULL:
    /// a NULL there does not mean "no text".
    pub has_values: bool,
    /// How a `MATCH` reaches the column.
    pub scope: MatchScope,
}

/// How a query reaches one column of an FTS5 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchScope {
    /// `"<fts>"."<column>" MATCH ?`: a column filter.
    Column,
    /// `"<fts>" MATCH ?`: the table's only indexed column, under `detail=none` (which has no
    /// column filters).
    Table,
    /// `detail=none` with several indexed columns: FTS5 cannot search one of them alone.
    Unsearchable,
}

/// One FTS5 table, from its `CREATE VIRTUAL TABLE` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fts5Table {
    pub name: String,
    /// The indexed columns (`UNINDEXED` ones left out), as FTS5 names them.
    pub columns: Vec<String>,
    /// `content=`: `None` for an FTS5 table holding its own content, `Some("")` for a
    /// contentless one, else the relation it indexes.
    pub content: Option<String>,
    /// `content_rowid=` (`rowid` unless given).
    pub content_rowid: String,
    /// `detail=` (`full` unless given).
    pub detail: Detail,
}

/// Every FTS5 table of `main`, by name.
pub(crate) fn fts5_tables(conn: &Connection) -> rusqlite::Result<Vec<Fts5Table>> {
    let mut stmt = conn.prepare(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql IS NOT NULL \
         AND sql LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, sql) = row?;
        if let Some(t) = parse_fts5(name, &sql) {
            out.push(t);
        }
    }
    Ok(out)
}

/// The full-text indexes of `rel`'s columns, by column name: the relation's own when it is an
/// FTS5 table, else those of the external-content FTS5 tables over it (the first by name
/// when several index one column).
pub(crate) fn full_text_columns(
    rel: &Relation,
    tables: &[Fts5Table],
) -> HashMap<String, FullTextIndex> {
    let mut out = HashMap::new();
    let own = tables.iter().filter(|t| t.name == rel.name);
    let external = tables.iter().filter(|t| {
        t.name != rel.name
            && t.content
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(&rel.name))
    });
    for t in own.chain(external) {
        let Some(key) = link_column(rel, t) else {
            continue;
        };
        for col in &t.columns {
            if let Some(c) = rel
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(col))
            {
                out.entry(c.name.clone()).or_insert_with(|| FullTextIndex {
                    table: t.name.clone(),
                    column: col.clone(),
                    key: key.clone(),
                    has_values: !(t.name == rel.name && t.content.as_deref() == Some("")),
                    scope: match (t.detail, t.columns.len()) {
                        (Detail::None, 1) => MatchScope::Table,
                        (Detail::None, _) => MatchScope::Unsearchable,
                        _ => MatchScope::Column,
                    },
                });
            }
        }
    }
    out
}

/// The column of `rel` holding `t`'s rowids: `rowid` for the FTS5 table itself, else
/// `content_rowid` — a column of `rel` (FTS5 reads `T.'<content_rowid>'`, so a real column
/// wins over the rowid), or the rowid of a rowid table under an alias no column shadows.
fn link_column(rel: &Relation, t: &Fts5Table) -> Option<String> {
    if t.name == rel.name {
        return Some("rowid".to_string());
    }
    if let Some(c) = rel
        .columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(&t.content_rowid))
    {
        return Some(c.name.clone());
    }
    let is_rowid = ["rowid", "_rowid_", "oid"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(&t.content_rowid));
    if !is_rowid || rel.kind != RelKind::Table {
        return None;
    }
    match rel.row_key() {
        RowKey::Rowid(alias) => Some(alias.to_string()),
        _ => None,
    }
}

/// How an FTS5 table stores token positions (`detail=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    Full,
    Columns,
    /// `detail=none`: no positions and no columns, so no column filters.
    None,
}

/// A token of a `CREATE VIRTUAL TABLE` statement, as SQLite's tokenizer splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    kind: Kind,
    /// A word's text (dequoted when quoted).
    text: String,
    /// Byte span in the statement.
    start: usize,
    end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word { quoted: bool },
    Punct(u8),
}

impl Token {
    fn is_keyword(&self, kw: &str) -> bool {
        self.kind == Kind::Word { quoted: false } && self.text.eq_ignore_ascii_case(kw)
    }
    fn is_word(&self) -> bool {
        matches!(self.kind, Kind::Word { .. })
    }
}

/// SQLite's blanks (not Unicode's).
fn is_sql_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

/// SQLite's identifier characters.
fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Splits SQL as SQLite's tokenizer does: words (quoted ones dequoted), punctuation one byte
/// at a time, blanks and comments skipped. `None` on an unterminated quote or a control
/// character outside quotes (both illegal to SQLite).
fn tokens(sql: &str) -> Option<Vec<Token>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let start = i;
        if is_sql_space(c) {
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while b.get(i).is_some_and(|&c| c != b'\n') {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // An unterminated comment runs to the end, as in SQLite.
            i = (i + 2..b.len().saturating_sub(1))
                .find(|&j| b[j] == b'*' && b[j + 1] == b'/')
                .map_or(b.len(), |j| j + 2);
        } else if let Some(close) = match c {
            b'\'' | b'"' | b'`' => Some(c),
            b'[' => Some(b']'),
            _ => None,
        } {
            let mut text = Vec::new();
            i += 1;
            loop {
                let ch = *b.get(i)?;
                i += 1;
                if ch == close {
                    // A doubled quote is a literal one (not inside […]).
                    if close != b']' && b.get(i) == Some(&close) {
                        text.push(close);
                        i += 1;
                        continue;
                    }
                    break;
                }
                text.push(ch);
            }
            out.push(Token {
                kind: Kind::Word { quoted: true },
                text: String::from_utf8(text).ok()?,
                start,
                end: i,
            });
        } else if c < 0x20 || c == 0x7f {
            // Control characters are illegal tokens to SQLite.
            return None;
        } else if is_id_char(c) {
            while b.get(i).copied().is_some_and(is_id_char) {
                i += 1;
            }
            out.push(Token {
                kind: Kind::Word { quoted: false },
                text: sql.get(start..i)?.to_string(),
                start,
                end: i,
            });
        } else {
            i += 1;
            out.push(Token {
                kind: Kind::Punct(c),
                text: String::new(),
                start,
                end: i,
            });
        }
    }
    Some(out)
}

/// The module arguments of `CREATE VIRTUAL TABLE [IF NOT EXISTS] [schema.]name USING
/// module(args)` when the module is `fts5`: each the statement's text from the argument's
/// first token to its last (comments between them kept, around them dropped; empty arguments
/// dropped), as SQLite hands them to the module.
fn fts5_arguments(sql: &str) -> Option<Vec<&str>> {
    if sql.contains('\0') {
        return None;
    }
    let toks = tokens(sql)?;
    let mut it = toks.iter().peekable();
    for kw in ["CREATE", "VIRTUAL", "TABLE"] {
        if !it.next()?.is_keyword(kw) {
            return None;
        }
    }
    if it.peek().is_some_and(|t| t.is_keyword("IF")) {
        for kw in ["IF", "NOT", "EXISTS"] {
            if !it.next()?.is_keyword(kw) {
                return None;
            }
        }
    }
    if !it.next()?.is_word() {
        return None;
    }
    if it.peek().is_some_and(|t| t.kind == Kind::Punct(b'.')) {
        it.next();
        if !it.next()?.is_word() {
            return None;
        }
    }
    if !it.next()?.is_keyword("USING") {
        return None;
    }
    let module = it.next()?;
    if !module.is_word() || !module.text.eq_ignore_ascii_case("fts5") {
        return None;
    }
    if it.next()?.kind != Kind::Punct(b'(') {
        return None;
    }
    let mut args = Vec::new();
    let mut span: Option<(usize, usize)> = None;
    let mut depth = 0usize;
    loop {
        let t = it.next()?;
        match t.kind {
            Kind::Punct(b')') if depth == 0 => break,
            Kind::Punct(b',') if depth == 0 => {
                args.extend(span.take());
                continue;
            }
            Kind::Punct(b'(') => depth += 1,
            Kind::Punct(b')') => depth -= 1,
            _ => {}
        }
        span = Some((span.map_or(t.start, |s| s.0), t.end));
    }
    args.extend(span);
    if it.next().is_some() {
        return None;
    }
    args.into_iter().map(|(s, e)| sql.get(s..e)).collect()
}

/// `sqlite3Fts5IsBareword`: ASCII letters and digits, `_`, 0x1A, and every non-ASCII byte.
fn is_fts5_bareword(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == 0x1A || b >= 0x80
}

/// FTS5's `fts5ConfigGobbleWord`: a quoted word (dequoted; an unclosed quote runs to the end)
/// or a bare word, and the rest. `None` when there is no word.
fn gobble_word(s: &str) -> Option<(String, bool, &str)> {
    let b = s.as_bytes();
    let open = *b.first()?;
    if let Some(close) = match open {
        b'\'' | b'"' | b'`' => Some(open),
        b'[' => Some(b']'),
        _ => None,
    } {
        let mut text = Vec::new();
        let mut i = 1;
        while let Some(&c) = b.get(i) {
            if c == close {
                if b.get(i + 1) != Some(&close) {
                    i += 1;
                    break;
                }
                i += 2;
                text.push(close);
            } else {
                text.push(c);
                i += 1;
            }
        }
        return Some((String::from_utf8(text).ok()?, true, s.get(i..)?));
    }
    let n = b.iter().take_while(|&&c| is_fts5_bareword(c)).count();
    (n > 0).then(|| (s[..n].to_string(), false, &s[n..]))
}

/// FTS5 skips only spaces inside an argument.
fn skip_spaces(s: &str) -> &str {
    s.trim_start_matches(' ')
}

/// FTS5's options in the order `fts5ConfigParseSpecial` tries them: the first of which the
/// given name is a prefix (any case) is meant.
const OPTIONS: [&str; 10] = [
    "prefix",
    "tokenize",
    "content",
    "contentless_delete",
    "contentless_unindexed",
    "content_rowid",
    "columnsize",
    "locale",
    "detail",
    "tokendata",
];

fn is_prefix_of(name: &str, full: &str) -> bool {
    full.len() >= name.len() && full.as_bytes()[..name.len()].eq_ignore_ascii_case(name.as_bytes())
}

/// `prefix=`: numbers 1..=999, separated by spaces or commas; at most 31 over all `prefix=`
/// options (`count` carries over).
fn valid_prefix(arg: &str, count: &mut usize) -> bool {
    let mut rest = arg.as_bytes();
    let mut first = true;
    loop {
        while let [b' ', tail @ ..] = rest {
            rest = tail;
        }
        if let (false, [b',', tail @ ..]) = (first, rest) {
            rest = tail;
            while let [b' ', tail @ ..] = rest {
                rest = tail;
            }
        } else if rest.is_empty() {
            return true;
        }
        if !rest.first().is_some_and(u8::is_ascii_digit) || *count == 31 {
            return false;
        }
        let mut n = 0u32;
        while let [d @ b'0'..=b'9', tail @ ..] = rest {
            if n >= 1000 {
                break;
            }
            n = n * 10 + u32::from(d - b'0');
            rest = tail;
        }
        if n == 0 || n >= 1000 {
            return false;
        }
        *count += 1;
        first = false;
    }
}

/// Parses `CREATE VIRTUAL TABLE … USING fts5(args)` the way SQLite splits module arguments
/// and FTS5 reads them (`sqlite3Fts5ConfigParse`); `None` for another module, or for anything
/// FTS5 itself would refuse.
pub(crate) fn parse_fts5(name: String, sql: &str) -> Option<Fts5Table> {
    let mut table = Fts5Table {
        name,
        columns: Vec::new(),
        content: None,
        content_rowid: "rowid".to_string(),
        detail: Detail::Full,
    };
    let mut content_rowid = None;
    let mut tokenize = false;
    let mut prefixes = 0;
    // Every column, UNINDEXED ones too, plus the hidden one named as the table.
    let mut names = vec![table.name.clone()];
    for arg in fts5_arguments(sql)? {
        let (one, quoted, rest) = gobble_word(arg)?;
        let mut rest = skip_spaces(rest);
        let option = rest.starts_with('=');
        if option {
            if quoted {
                return None;
            }
            rest = skip_spaces(&rest[1..]);
        }
        let two = if rest.is_empty() {
            None
        } else {
            let (two, _, after) = gobble_word(rest)?;
            if !after.is_empty() {
                return None;
            }
            Some(two)
        };
        if !option {
            if one.eq_ignore_ascii_case("rank")
                || one.eq_ignore_ascii_case("rowid")
                || names.iter().any(|n| n.eq_ignore_ascii_case(&one))
            {
                return None;
            }
            names.push(one.clone());
            match two {
                None => table.columns.push(one),
                Some(o) if o.eq_ignore_ascii_case("unindexed") => {}
                Some(_) => return None,
            }
            continue;
        }
        let value = two.unwrap_or_default();
        let is_bool = value == "0" || value == "1";
        match OPTIONS.into_iter().find(|o| is_prefix_of(&one, o))? {
            "prefix" if !valid_prefix(&value, &mut prefixes) => return None,
            "tokenize" if std::mem::replace(&mut tokenize, true) => return None,
            "content" if table.content.is_some() => return None,
            "content" => table.content = Some(value),
            "content_rowid" if content_rowid.is_some() => return None,
            "content_rowid" => content_rowid = Some(value),
            "detail" => {
                let matches: Vec<Detail> = [
                    ("none", Detail::None),
                    ("full", Detail::Full),
                    ("columns", Detail::Columns),
                ]
                .into_iter()
                .filter(|(n, _)| is_prefix_of(&value, n))
                .map(|(_, d)| d)
                .collect();
                match matches.as_slice() {
                    [d] => table.detail = *d,
                    _ => return None,
                }
            }
            "contentless_delete"
            | "contentless_unindexed"
            | "columnsize"
            | "locale"
            | "tokendata"
                if !is_bool =>
            {
                return None;
            }
            _ => {}
        }
    }
    if let Some(r) = content_rowid {
        table.content_rowid = r;
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_cache::{Exposure, SchemaCache};

    fn parse(sql: &str) -> Option<Fts5Table> {
        parse_fts5("t".into(), sql)
    }

    #[test]
    fn parses_columns_and_options_in_any_spelling() {
        let t = parse(
            "CREATE VIRTUAL TABLE \"we ird\" USING FtS5 ( \"Title\" , [body text] unindexed,\n\
             `au``thor`, -- a comment, with a comma\n /* and ( another ) */ tags,\
             CONTENT = 'My ''Docs''' , Content_RowId=\"doc id\", tokenize = 'porter unicode61', prefix='2 3')",
        )
        .unwrap();
        assert_eq!(t.columns, ["Title", "au`thor", "tags"]);
        assert_eq!(t.content.as_deref(), Some("My 'Docs'"));
        assert_eq!(t.content_rowid, "doc id");
        let t = parse("create virtual table if not exists main.x using fts5(a,b)").unwrap();
        assert_eq!(t.columns, ["a", "b"]);
        assert_eq!((t.content, t.content_rowid.as_str()), (None, "rowid"));
        let t = parse("CREATE VIRTUAL TABLE x USING fts5(a, content='')").unwrap();
        assert_eq!(t.content.as_deref(), Some(""));
    }

    #[test]
    fn other_modules_and_junk_are_not_fts5() {
        for sql in [
            "CREATE VIRTUAL TABLE x USING rtree(id, a, b)",
            "CREATE VIRTUAL TABLE x USING fts5vocab(t, 'row')",
            "CREATE VIRTUAL TABLE x USING fts5",
            "CREATE VIRTUAL TABLE x USING fts5(a",
            "CREATE VIRTUAL TABLE x USING fts5(a,,b",
            "CREATE VIRTUAL TABLE x USING fts5('a)",
            "CREATE VIRTUAL TABLE x USING fts5(a) junk",
            "CREATE TABLE x (a)",
            "",
        ] {
            assert_eq!(parse(sql), None, "{sql}");
        }
    }

    /// `(content, content_rowid, detail, columns)` of an `fts5(args)` statement, after
    /// checking that the real FTS5 accepts exactly the statements parsed.
    fn options(args: &str) -> Option<(Option<String>, String, Detail, Vec<String>)> {
        let sql = format!("CREATE VIRTUAL TABLE ft USING fts5({args})");
        let t = parse_fts5("ft".into(), &sql);
        let real = Connection::open_in_memory().unwrap().execute_batch(&sql);
        assert_eq!(t.is_some(), real.is_ok(), "{sql}: {real:?}");
        let t = t?;
        Some((t.content, t.content_rowid, t.detail, t.columns))
    }

    #[test]
    fn option_names_are_any_prefix_in_fts5s_order() {
        let some = |s: &str| Some(s.to_string());
        let o = options("body, content='docs', content_r='id'").unwrap();
        assert_eq!((o.0, o.1.as_str()), (some("docs"), "id"));
        // `c`, `co`, `CONT` and `content` all mean content (the first of FTS5's list).
        for args in [
            "x, c=''",
            "x, co=''",
            "x, CONT=''",
            "x, content=",
            "x, content = ",
        ] {
            assert_eq!(options(args).unwrap().0, some(""), "{args}");
        }
        assert_eq!(options("x, content_ROWID=k").unwrap().1, "k");
        // `col` is columnsize, `t` tokenize, `p` prefix, `d` detail: not content.
        for args in [
            "x, col=0",
            "x, t='porter'",
            "x, p='2 3'",
            "x, pre=2,prefix=3",
        ] {
            assert_eq!(options(args).unwrap().0, None, "{args}");
        }
        assert_eq!(options("x, d=n").unwrap().2, Detail::None);
        assert_eq!(options("x, DETAIL='Col'").unwrap().2, Detail::Columns);
        assert_eq!(options("x, det=c").unwrap().2, Detail::Columns);
        assert_eq!(options("x, detail=full").unwrap().2, Detail::Full);
        assert_eq!(options("x").unwrap().2, Detail::Full);
        // A comment glued to a bare word ends it, as SQLite's tokenizer ends it.
        assert_eq!(options("x, content=docs/*x*/").unwrap().0, some("docs"));
        assert_eq!(options("x, content=docs--c\n").unwrap().0, some("docs"));
        assert_eq!(
            options("x, content='a,b' /* c, d */, e").unwrap(),
            (
                some("a,b"),
                "rowid".into(),
                Detail::Full,
                vec!["x".into(), "e".into()]
            )
        );
        // Non-ASCII bytes and 0x1A are bare-word characters too.
        assert_eq!(options("x, content=dócs").unwrap().0, some("dócs"));
        assert_eq!(options("x, content='d\u{1a}'").unwrap().0, some("d\u{1a}"));
        // Empty arguments are dropped by SQLite.
        assert_eq!(options("a,,b").unwrap().3, ["a", "b"]);
    }

    #[test]
    fn what_fts5_refuses_is_no_index() {
        for args in [
            // Bare words hold only FTS5's bare-word characters.
            "x, content=t-x",
            "x, content=t.x",
            "x, content=$x",
            // 0x1A is an FTS5 bare-word byte, but SQLite's tokenizer refuses it unquoted.
            "x, content=d\u{1a}",
            "x, content=docs /* c */ x",
            // FTS5 skips only spaces inside an argument.
            "x, content =\n docs",
            "x, content=\tdocs",
            // Option names: unknown, quoted, or too long.
            "x, foo=1",
            "x, \"content\"='docs'",
            "x, contentx='docs'",
            // Duplicates, bad values, reserved or optioned columns.
            "x, content='a', c='b'",
            "x, content_rowid=a, content_rowid=b",
            "x, detail=",
            "x, detail=nothing",
            "x, columnsize=2",
            "x, prefix=0",
            "x, prefix=1000",
            "x, prefix='1 x'",
            "x, tokenize=a, tokenize=b",
            "rank",
            "x, RowId",
            "a b",
            "a unindexed b",
            // SQLite refuses the declared table: duplicate columns, or one named as the table.
            "a, b, A",
            "a, ft UNINDEXED",
        ] {
            assert_eq!(options(args), None, "{args}");
        }
        assert!(options("x, prefix='1,2 3', a UNINDEXED, columnsize=0").is_some());
    }

    #[test]
    fn the_cache_links_columns_to_their_index() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT, note TEXT);
             CREATE VIRTUAL TABLE \"docs fts\" USING fts5(TITLE, body, content=docs, content_rowid=id);
             CREATE VIRTUAL TABLE notes USING fts5(subject, n UNINDEXED);
             CREATE TABLE plain (id INTEGER PRIMARY KEY, txt TEXT);
             CREATE VIRTUAL TABLE by_rowid USING fts5(txt, content='plain');
             CREATE TABLE wr (k TEXT PRIMARY KEY, txt TEXT) WITHOUT ROWID;
             CREATE VIRTUAL TABLE wr_fts USING fts5(txt, content='wr');
             CREATE VIEW v AS SELECT id AS vid, title FROM docs;
             CREATE VIRTUAL TABLE v_fts USING fts5(title, content='V', content_rowid='vid');
             CREATE VIRTUAL TABLE cl USING fts5(x, content='');
             CREATE VIEW w AS SELECT title FROM docs;
             CREATE VIRTUAL TABLE w_fts USING fts5(title, content='w');",
        )
        .unwrap();
        let cache = SchemaCache::load(&c, &Exposure::All).unwrap();
        let docs = cache.relation("docs").unwrap();
        let want = FullTextIndex {
            table: "docs fts".into(),
            column: "TITLE".into(),
            key: "id".into(),
            has_values: true,
            scope: MatchScope::Column,
        };
        assert_eq!(docs.full_text.get("title"), Some(&want));
        assert!(docs.full_text.contains_key("body"));
        assert!(!docs.full_text.contains_key("note"));
        let notes = cache.relation("notes").unwrap();
        assert_eq!(notes.full_text["subject"].key, "rowid");
        assert_eq!(notes.full_text["subject"].table, "notes");
        assert!(!notes.full_text.contains_key("n"));
        // The FTS5 table itself searches its own columns.
        assert_eq!(
            cache.relation("docs fts").unwrap().full_text["TITLE"].table,
            "docs fts"
        );
        assert_eq!(
            cache.relation("plain").unwrap().full_text["txt"].key,
            "rowid"
        );
        // A view with an external-content index links through one of its columns.
        assert_eq!(cache.relation("v").unwrap().full_text["title"].key, "vid");
        assert!(!cache.relation("cl").unwrap().full_text["x"].has_values);
        assert!(notes.full_text["subject"].has_values);
        // No rowid to link through.
        assert!(cache.relation("wr").unwrap().full_text.is_empty());
        assert!(cache.relation("w").unwrap().full_text.is_empty());
        // Shadow tables are not relations.
        for shadow in ["_data", "_idx", "_content", "_docsize", "_config"] {
            assert!(
                cache.relation(&format!("notes{shadow}")).is_none(),
                "{shadow}"
            );
        }
        assert!(cache.relation("docs fts_data").is_none());
    }
}
