//! Finding FTS5 indexes in the schema: every FTS5 table, its indexed columns, and — for an
//! external-content index (`content='tbl', content_rowid='id'`) — the relation it follows
//! and the column that links the two.
//!
//! FTS5 keeps these settings only in its `CREATE VIRTUAL TABLE` statement, so that statement
//! (as stored in `sqlite_schema`) is parsed here the way SQLite splits module arguments and
//! FTS5 reads them: identifiers and values in any quotes (`'…'`, `"…"`, `` `…` ``, `[…]`),
//! any spacing, keywords and option names in any case, comments. Whatever does not parse is
//! not an FTS5 index: its columns simply have none.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::schema::{RelKind, Relation};

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
}

/// One FTS5 table, from its `CREATE VIRTUAL TABLE` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fts5Table {
    pub name: String,
    /// The indexed columns (`UNINDEXED` ones left out), as FTS5 names them.
    pub columns: Vec<String>,
    /// `content=`: `None` for an FTS5 table holding its own content, `Some("")` for a
    /// contentless one, else the relation it indexes.
    pub content: Option<String>,
    /// `content_rowid=` (`rowid` unless given).
    pub content_rowid: String,
}

/// Every FTS5 table of `main`, by name.
pub fn fts5_tables(conn: &Connection) -> rusqlite::Result<Vec<Fts5Table>> {
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
pub fn full_text_columns(rel: &Relation, tables: &[Fts5Table]) -> HashMap<String, FullTextIndex> {
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
                });
            }
        }
    }
    out
}

/// The column of `rel` holding `t`'s rowids: `rowid` for the FTS5 table itself, else
/// `content_rowid` (a column of `rel`, or the rowid of a rowid table).
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
    (is_rowid && rel.kind == RelKind::Table && !rel.without_rowid).then(|| "rowid".to_string())
}

/// A token of a `CREATE VIRTUAL TABLE` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, or a quoted one (dequoted).
    Word {
        text: String,
        quoted: bool,
    },
    Punct(char),
}

impl Token {
    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self, Token::Word { text, quoted: false } if text.eq_ignore_ascii_case(kw))
    }
    fn text(&self) -> Option<&str> {
        match self {
            Token::Word { text, .. } => Some(text),
            Token::Punct(_) => None,
        }
    }
}

/// Splits SQL into words (dequoted), `( ) , = .`, skipping blanks and comments. `None` on an
/// unterminated quote or comment.
fn tokens(sql: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while chars.get(i).is_some_and(|&c| c != '\n') {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')?;
            i = end + 2;
        } else if "(),=.".contains(c) {
            out.push(Token::Punct(c));
            i += 1;
        } else if let Some(close) = match c {
            '\'' | '"' | '`' => Some(c),
            '[' => Some(']'),
            _ => None,
        } {
            let mut text = String::new();
            i += 1;
            loop {
                let ch = *chars.get(i)?;
                i += 1;
                if ch == close {
                    // A doubled quote is a literal one (not inside […]).
                    if close != ']' && chars.get(i) == Some(&close) {
                        text.push(close);
                        i += 1;
                        continue;
                    }
                    break;
                }
                text.push(ch);
            }
            out.push(Token::Word { text, quoted: true });
        } else {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|&c| !c.is_whitespace() && !"(),=.'\"`[".contains(c))
            {
                i += 1;
            }
            out.push(Token::Word {
                text: chars[start..i].iter().collect(),
                quoted: false,
            });
        }
    }
    Some(out)
}

/// Parses `CREATE VIRTUAL TABLE [IF NOT EXISTS] [schema.]name USING fts5(args)`; `None` for
/// another module or anything malformed.
pub fn parse_fts5(name: String, sql: &str) -> Option<Fts5Table> {
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
    it.next()?.text()?;
    if it.peek() == Some(&&Token::Punct('.')) {
        it.next();
        it.next()?.text()?;
    }
    if !it.next()?.is_keyword("USING") || !it.next()?.text()?.eq_ignore_ascii_case("fts5") {
        return None;
    }
    if it.next()? != &Token::Punct('(') {
        return None;
    }
    // Arguments: split at top-level commas up to the closing parenthesis.
    let mut args: Vec<Vec<&Token>> = vec![Vec::new()];
    let mut depth = 0usize;
    loop {
        let t = it.next()?;
        match t {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') if depth == 0 => break,
            Token::Punct(')') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                args.push(Vec::new());
                continue;
            }
            _ => {}
        }
        args.last_mut()?.push(t);
    }
    if it.next().is_some() {
        return None;
    }
    let mut table = Fts5Table {
        name,
        columns: Vec::new(),
        content: None,
        content_rowid: "rowid".to_string(),
    };
    for arg in args {
        match arg.as_slice() {
            [] => return None,
            [key, Token::Punct('='), value, ..] => {
                let key = key.text()?.to_ascii_lowercase();
                let value = value.text()?.to_string();
                match key.as_str() {
                    "content" => table.content = Some(value),
                    "content_rowid" => table.content_rowid = value,
                    _ => {}
                }
            }
            [col, rest @ ..] => {
                let unindexed = rest.iter().any(|t| t.is_keyword("UNINDEXED"));
                if !unindexed {
                    table.columns.push(col.text()?.to_string());
                }
            }
        }
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Exposure, SchemaCache};

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
            "CREATE VIRTUAL TABLE x USING fts5(a,,b)",
            "CREATE VIRTUAL TABLE x USING fts5('a)",
            "CREATE VIRTUAL TABLE x USING fts5(a) junk",
            "CREATE TABLE x (a)",
            "",
        ] {
            assert_eq!(parse(sql), None, "{sql}");
        }
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
