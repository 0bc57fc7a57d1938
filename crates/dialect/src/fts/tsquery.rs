//! PostgreSQL's four full-text query syntaxes translated into FTS5 query strings.
//!
//! - `fts` (`to_tsquery`): `&` AND, `|` OR, `!` NOT, `<->` / `<N>` followed-by, parentheses,
//!   `'quoted phrases'`, `word:*` prefixes (weights such as `:AB` are accepted and ignored:
//!   FTS5 has none). Two words without an operator are a syntax error, as in PostgreSQL.
//! - `plfts` (`plainto_tsquery`): every word, ANDed. Words are split as PostgreSQL's parser
//!   splits them: at every character that is not a letter or a digit (`cats,dogs`,
//!   `Rats:C`). Stop words are kept (FTS5 has none).
//! - `phfts` (`phraseto_tsquery`): every word, as one phrase.
//! - `wfts` (`websearch_to_tsquery`): `"quoted phrases"`, `or` between alternatives, `-word`
//!   (or `-"phrase"`) excluded, everything else ANDed (words outside quotes split as for
//!   `plfts`); like PostgreSQL it never fails to parse.
//!
//! Every word or phrase of the input becomes one FTS5 string (`"…"`, inner quotes doubled), so
//! nothing a client sends reaches FTS5's own syntax (`*`, `:`, `^`, `+`, `NEAR`, `AND`,
//! parentheses, column filters); the only operators in the output are the translation's own.
//! FTS5's tokenizer then splits each string into tokens, so `"foo-bar"` is the phrase
//! `foo bar`.
//!
//! Where FTS5 cannot say what PostgreSQL can, the answer is a 400, never a guess:
//! - FTS5's NOT is binary (`a NOT b`), so a negated term needs a positive one beside it in
//!   its AND group: `!a`, `-a` alone, or `a | !b` are refused.
//! - `<->` (and `<1>`) becomes an FTS5 phrase (`"a" + "b"`), the exact equivalent; `<N>` for
//!   N > 1 becomes `NEAR(a b, N-1)` (the closest FTS5 has: unordered, *at most* N-1
//!   tokens apart); `<0>` (the same position) has no equivalent. Both only join words and
//!   phrases, not AND/OR/NOT groups.
//! - A NUL byte is refused as PostgreSQL refuses it (22021); more than 256 words stop the
//!   parse (54000), so no `<->` chain nests deeper than that.
//! - A word with no letter or digit carries no token (PostgreSQL drops it too); a query left
//!   without any word is a 400 (PostgreSQL would answer no rows with a notice).

use crate::error::{ApiError, ErrorCode};
use crate::ident::push_quoted;

/// Which PostgreSQL function the operator stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtsSyntax {
    /// `fts`: `to_tsquery`.
    Tsquery,
    /// `plfts`: `plainto_tsquery`.
    Plain,
    /// `phfts`: `phraseto_tsquery`.
    Phrase,
    /// `wfts`: `websearch_to_tsquery`.
    Websearch,
}

impl FtsSyntax {
    /// The syntax of a PostgREST operator (`fts`, `plfts`, `phfts`, `wfts`).
    pub fn from_operator(op: &str) -> Option<Self> {
        Some(match op {
            "fts" => FtsSyntax::Tsquery,
            "plfts" => FtsSyntax::Plain,
            "phfts" => FtsSyntax::Phrase,
            "wfts" => FtsSyntax::Websearch,
            _ => return None,
        })
    }

    /// The PostgREST operator.
    pub fn operator(self) -> &'static str {
        match self {
            FtsSyntax::Tsquery => "fts",
            FtsSyntax::Plain => "plfts",
            FtsSyntax::Phrase => "phfts",
            FtsSyntax::Websearch => "wfts",
        }
    }
}

/// A query between parsing and rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// A word or a phrase: one FTS5 string, optionally a prefix (`"…"*`).
    Term {
        text: String,
        prefix: bool,
    },
    /// `left <distance> right`.
    Follow {
        left: Box<Node>,
        right: Box<Node>,
        distance: u16,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

/// Most words one query may hold, and deepest nesting of parentheses and `!`.
const MAX_TERMS: usize = 256;
const MAX_DEPTH: usize = 32;
/// PostgreSQL's largest `<N>`.
const MAX_DISTANCE: u16 = 16384;

/// Translates `input`, written in `syntax`, into an FTS5 query string (to be bound as one
/// parameter of `MATCH`).
pub(crate) fn to_fts5(syntax: FtsSyntax, input: &str) -> Result<String, ApiError> {
    if input.contains('\0') {
        // PostgreSQL's text cannot hold a NUL: its error for one.
        return Err(ApiError::new(
            400,
            ErrorCode::CharacterNotInRepertoire,
            "invalid byte sequence for encoding \"UTF8\": 0x00",
        )
        .with_hint("Remove the NUL byte (%00) from the text-search query."));
    }
    let node = match syntax {
        FtsSyntax::Tsquery => Tsquery::parse(input)?,
        FtsSyntax::Plain => all_of(words(input).map(term).collect()),
        FtsSyntax::Phrase => {
            let words: Vec<&str> = phrase_words(input).collect();
            (!words.is_empty()).then(|| term(&words.join(" ")))
        }
        FtsSyntax::Websearch => websearch(input),
    };
    let node = node.ok_or_else(|| no_lexemes(input))?;
    if count_terms(&node) > MAX_TERMS {
        return Err(too_many_terms());
    }
    let mut out = String::new();
    render(&node, &mut out)?;
    Ok(out)
}

/// True when `word` holds something a tokenizer keeps (a letter or a digit).
fn has_token(word: &str) -> bool {
    word.chars().any(char::is_alphanumeric)
}

/// The words of `input` as PostgreSQL's parser finds them: runs of letters and digits, split
/// at every other character (`cats,dogs` is `cats` and `dogs`).
fn words(input: &str) -> impl Iterator<Item = &str> {
    input
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// The blank-separated chunks of a phrase (FTS5's tokenizer splits each further).
fn phrase_words(input: &str) -> impl Iterator<Item = &str> {
    input.split_whitespace().filter(|w| has_token(w))
}

fn term(text: &str) -> Node {
    Node::Term {
        text: text.to_string(),
        prefix: false,
    }
}

/// AND of `nodes` (flattened); `None` when there are none.
fn all_of(nodes: Vec<Node>) -> Option<Node> {
    join(nodes, true)
}

fn join(nodes: Vec<Node>, and: bool) -> Option<Node> {
    let mut flat = Vec::with_capacity(nodes.len());
    for n in nodes {
        match n {
            Node::And(inner) if and => flat.extend(inner),
            Node::Or(inner) if !and => flat.extend(inner),
            n => flat.push(n),
        }
    }
    match flat.len() {
        0 => None,
        1 => flat.pop(),
        _ if and => Some(Node::And(flat)),
        _ => Some(Node::Or(flat)),
    }
}

fn negate(n: Node) -> Node {
    match n {
        Node::Not(inner) => *inner,
        n => Node::Not(Box::new(n)),
    }
}

fn count_terms(n: &Node) -> usize {
    match n {
        Node::Term { .. } => 1,
        Node::Follow { left, right, .. } => count_terms(left) + count_terms(right),
        Node::And(c) | Node::Or(c) => c.iter().map(count_terms).sum(),
        Node::Not(inner) => count_terms(inner),
    }
}

// ---------------------------------------------------------------- websearch_to_tsquery

/// `websearch_to_tsquery`: never a syntax error; OR binds looser than the implicit AND.
fn websearch(input: &str) -> Option<Node> {
    let chars: Vec<char> = input.chars().collect();
    let mut groups: Vec<Vec<Node>> = vec![Vec::new()];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let negated = c == '-';
        if negated {
            i += 1;
        }
        let (text, quoted) = if chars.get(i) == Some(&'"') {
            let start = i + 1;
            let end = chars[start..]
                .iter()
                .position(|&c| c == '"')
                .map_or(chars.len(), |p| start + p);
            i = end + 1;
            (chars[start..end].iter().collect::<String>(), true)
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '"' {
                i += 1;
            }
            (chars[start..i].iter().collect::<String>(), false)
        };
        if !negated && !quoted && text.eq_ignore_ascii_case("or") {
            if groups.last().is_some_and(|g| !g.is_empty()) {
                groups.push(Vec::new());
            }
            continue;
        }
        if !has_token(&text) {
            continue;
        }
        // A quoted phrase is one term; unquoted text is one term per word, of which only
        // the first is negated by a `-` before it.
        let nodes: Vec<Node> = if quoted {
            let words: Vec<&str> = text.split_whitespace().collect();
            vec![term(&words.join(" "))]
        } else {
            words(&text).map(term).collect()
        };
        if let Some(g) = groups.last_mut() {
            for (n, node) in nodes.into_iter().enumerate() {
                g.push(if negated && n == 0 {
                    negate(node)
                } else {
                    node
                });
            }
        }
    }
    join(groups.into_iter().filter_map(all_of).collect(), false)
}

// ---------------------------------------------------------------- to_tsquery

struct Tsquery<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    /// Words read so far: parsing stops past [`MAX_TERMS`], so no chain (`a <-> b <-> …`,
    /// which nests) grows deeper than that.
    terms: usize,
}

/// A syntax error of `to_tsquery`, in PostgreSQL's words.
fn syntax_error(input: &str) -> ApiError {
    ApiError::new(
        400,
        ErrorCode::SyntaxError,
        format!("syntax error in tsquery: \"{input}\""),
    )
}

fn too_many_terms() -> ApiError {
    ApiError::new(
        400,
        ErrorCode::ProgramLimitExceeded,
        format!("text-search query has more than {MAX_TERMS} words"),
    )
}

fn no_lexemes(input: &str) -> ApiError {
    ApiError::new(
        400,
        ErrorCode::InvalidParameterValue,
        format!("text-search query doesn't contain lexemes: \"{input}\""),
    )
    .with_hint("Search for at least one word made of letters or digits.")
}

fn unsupported(details: &str) -> ApiError {
    ApiError::not_implemented(details.to_string())
        .with_hint("FTS5 cannot express this query; rewrite it with a positive word in each AND group, and <-> only between words or phrases.")
}

impl<'a> Tsquery<'a> {
    fn parse(input: &'a str) -> Result<Option<Node>, ApiError> {
        if input.trim().is_empty() {
            return Ok(None);
        }
        let mut p = Tsquery {
            input,
            chars: input.chars().collect(),
            pos: 0,
            depth: 0,
            terms: 0,
        };
        let node = p.or()?;
        p.skip_ws();
        if p.pos < p.chars.len() {
            return Err(p.error());
        }
        Ok(node)
    }

    fn error(&self) -> ApiError {
        syntax_error(self.input)
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.chars.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Option<Node>, ApiError> {
        let mut items = vec![self.and()?];
        while self.eat('|') {
            items.push(self.and()?);
        }
        Ok(join(items.into_iter().flatten().collect(), false))
    }

    fn and(&mut self) -> Result<Option<Node>, ApiError> {
        let mut items = vec![self.follow()?];
        while self.eat('&') {
            items.push(self.follow()?);
        }
        Ok(all_of(items.into_iter().flatten().collect()))
    }

    fn follow(&mut self) -> Result<Option<Node>, ApiError> {
        let mut left = self.unary()?;
        while let Some(distance) = self.follow_operator()? {
            let right = self.unary()?;
            left = match (left, right) {
                (Some(l), Some(r)) => Some(Node::Follow {
                    left: Box::new(l),
                    right: Box::new(r),
                    distance,
                }),
                (l, r) => l.or(r),
            };
        }
        Ok(left)
    }

    /// `<->` (distance 1) or `<N>`.
    fn follow_operator(&mut self) -> Result<Option<u16>, ApiError> {
        if !self.eat('<') {
            return Ok(None);
        }
        if self.chars.get(self.pos) == Some(&'-') && self.chars.get(self.pos + 1) == Some(&'>') {
            self.pos += 2;
            return Ok(Some(1));
        }
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(char::is_ascii_digit) {
            self.pos += 1;
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        let distance = digits
            .parse::<u16>()
            .ok()
            .filter(|d| *d <= MAX_DISTANCE)
            .ok_or_else(|| self.error())?;
        if self.chars.get(self.pos) != Some(&'>') {
            return Err(self.error());
        }
        self.pos += 1;
        Ok(Some(distance))
    }

    fn unary(&mut self) -> Result<Option<Node>, ApiError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ApiError::new(
                400,
                ErrorCode::StatementTooComplex,
                format!("text-search query nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let r = if self.eat('!') {
            self.unary().map(|n| n.map(negate))
        } else if self.eat('(') {
            let inner = self.or()?;
            if !self.eat(')') {
                return Err(self.error());
            }
            Ok(inner)
        } else {
            self.operand()
        };
        self.depth -= 1;
        r
    }

    /// A word or a `'quoted phrase'`, with an optional `:*`/weights suffix. `None` when it
    /// holds no token.
    fn operand(&mut self) -> Result<Option<Node>, ApiError> {
        self.skip_ws();
        let mut text = String::new();
        if self.chars.get(self.pos) == Some(&'\'') {
            self.pos += 1;
            loop {
                match self.chars.get(self.pos) {
                    None => return Err(self.error()),
                    Some('\\') => {
                        self.pos += 1;
                        let c = self.chars.get(self.pos).ok_or_else(|| self.error())?;
                        text.push(*c);
                    }
                    Some('\'') if self.chars.get(self.pos + 1) == Some(&'\'') => {
                        self.pos += 1;
                        text.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => text.push(*c),
                }
                self.pos += 1;
            }
            self.pos += 1;
        } else {
            while let Some(&c) = self.chars.get(self.pos) {
                if c.is_whitespace() || "!&|()<:'".contains(c) {
                    break;
                }
                if c == '\\' {
                    self.pos += 1;
                    let c = self.chars.get(self.pos).ok_or_else(|| self.error())?;
                    text.push(*c);
                } else {
                    text.push(c);
                }
                self.pos += 1;
            }
            if text.is_empty() {
                return Err(self.error());
            }
        }
        let mut prefix = false;
        if self.chars.get(self.pos) == Some(&':') {
            self.pos += 1;
            let start = self.pos;
            while let Some(&c) = self.chars.get(self.pos) {
                match c {
                    '*' => prefix = true,
                    'a'..='d' | 'A'..='D' => {}
                    _ => break,
                }
                self.pos += 1;
            }
            if self.pos == start {
                return Err(self.error());
            }
        }
        if !has_token(&text) {
            return Ok(None);
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(too_many_terms());
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        Ok(Some(Node::Term {
            text: words.join(" "),
            prefix,
        }))
    }
}

// ---------------------------------------------------------------- rendering

/// True for what FTS5 accepts inside a phrase or `NEAR(…)`: words and `<->` chains.
fn is_phrase(n: &Node) -> bool {
    match n {
        Node::Term { .. } => true,
        Node::Follow {
            left,
            right,
            distance: 1,
        } => is_phrase(left) && is_phrase(right),
        _ => false,
    }
}

fn render(n: &Node, out: &mut String) -> Result<(), ApiError> {
    match n {
        Node::Term { text, prefix } => {
            push_quoted(out, text);
            if *prefix {
                out.push('*');
            }
        }
        Node::Follow {
            left,
            right,
            distance,
        } => {
            if !is_phrase(left) || !is_phrase(right) {
                return Err(unsupported(
                    "FTS5 can only put words and phrases next to each other (<->, <N>)",
                ));
            }
            if *distance == 0 {
                return Err(unsupported(
                    "FTS5 cannot match two words at the same position (<0>)",
                ));
            }
            if *distance == 1 {
                render(left, out)?;
                out.push_str(" + ");
                render(right, out)?;
            } else {
                out.push_str("NEAR(");
                render(left, out)?;
                out.push(' ');
                render(right, out)?;
                out.push_str(", ");
                out.push_str(itoa::Buffer::new().format(distance.saturating_sub(1)));
                out.push(')');
            }
        }
        Node::And(children) => {
            let (negated, positive): (Vec<&Node>, Vec<&Node>) =
                children.iter().partition(|c| matches!(c, Node::Not(_)));
            if positive.is_empty() {
                return Err(only_negated());
            }
            let mut s = String::from("(");
            for (i, c) in positive.iter().enumerate() {
                if i > 0 {
                    s.push_str(" AND ");
                }
                render(c, &mut s)?;
            }
            s.push(')');
            for c in negated {
                if let Node::Not(inner) = c {
                    let mut next = String::from("(");
                    next.push_str(&s);
                    next.push_str(" NOT ");
                    render(inner, &mut next)?;
                    next.push(')');
                    s = next;
                }
            }
            out.push_str(&s);
        }
        Node::Or(children) => {
            out.push('(');
            for (i, c) in children.iter().enumerate() {
                if i > 0 {
                    out.push_str(" OR ");
                }
                render(c, out)?;
            }
            out.push(')');
        }
        Node::Not(_) => return Err(only_negated()),
    }
    Ok(())
}

fn only_negated() -> ApiError {
    unsupported(
        "FTS5 can only exclude words from a match (a NOT b): a negated word needs a word that is not negated beside it, joined by AND",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The translation, after checking that FTS5 itself accepts it.
    fn ok(syntax: FtsSyntax, input: &str) -> String {
        let q = to_fts5(syntax, input).unwrap_or_else(|e| panic!("{input}: {e:?}"));
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE VIRTUAL TABLE ft USING fts5(x); INSERT INTO ft VALUES ('a b c')")
            .unwrap();
        c.query_row("SELECT count(*) FROM ft WHERE ft MATCH ?", [&q], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_or_else(|e| panic!("{input} -> {q}: {e}"));
        q
    }

    fn err(syntax: FtsSyntax, input: &str) -> ApiError {
        to_fts5(syntax, input).expect_err(input)
    }

    use FtsSyntax::{Phrase, Plain, Tsquery as Ts, Websearch as Web};

    /// Each input and its translation (which FTS5 must accept).
    fn translates(cases: &[(FtsSyntax, &str, &str)]) {
        for (syntax, input, want) in cases {
            assert_eq!(ok(*syntax, input), *want, "{syntax:?} {input}");
        }
    }

    #[test]
    fn to_tsquery_operators() {
        translates(&[
            (Ts, "fat", "\"fat\""),
            (Ts, "fat & rat", "(\"fat\" AND \"rat\")"),
            (Ts, "fat | rat", "(\"fat\" OR \"rat\")"),
            (Ts, "fat & !rat", "((\"fat\") NOT \"rat\")"),
            (
                Ts,
                "fat & (rat | cat) & !dog & !bird",
                "(((\"fat\" AND (\"rat\" OR \"cat\")) NOT \"dog\") NOT \"bird\")",
            ),
            (Ts, "a & b | c", "((\"a\" AND \"b\") OR \"c\")"),
            (Ts, "fat <-> cat", "\"fat\" + \"cat\""),
            (Ts, "a <-> b <-> c", "\"a\" + \"b\" + \"c\""),
            (Ts, "fat <3> cat", "NEAR(\"fat\" \"cat\", 2)"),
            (Ts, "fat <1> cat", "\"fat\" + \"cat\""),
            (Ts, "super:*", "\"super\"*"),
            (Ts, "super:*AB & nova:a", "(\"super\"* AND \"nova\")"),
            (Ts, "'fat cats' & rat", "(\"fat cats\" AND \"rat\")"),
            (Ts, "!!fat", "\"fat\""),
            // `&` binds tighter than `|`, `<->` tighter than `&`, `!` tightest.
            (
                Ts,
                "a <-> b & c | d",
                "((\"a\" + \"b\" AND \"c\") OR \"d\")",
            ),
        ]);
    }

    #[test]
    fn to_tsquery_drops_words_without_tokens() {
        assert_eq!(ok(Ts, "fat & ..."), "\"fat\"");
        assert_eq!(ok(Ts, "- | fat"), "\"fat\"");
        assert_eq!(err(Ts, "...").code.as_str(), "22023");
        assert_eq!(err(Ts, "").code.as_str(), "22023");
        assert_eq!(err(Ts, "   ").code.as_str(), "22023");
    }

    #[test]
    fn to_tsquery_syntax_errors() {
        for bad in [
            "fat cat",
            "fat &",
            "& fat",
            "(fat",
            "fat)",
            "fat <",
            "fat <x> cat",
            "fat <-",
            "a:",
            "a:x",
            "'open",
            "a\\",
            "fat | | cat",
            "a <99999> b",
            "()",
            "!",
        ] {
            let e = err(Ts, bad);
            assert_eq!((e.status, e.code.as_str()), (400, "42601"), "{bad}: {e:?}");
            assert_eq!(e.message, format!("syntax error in tsquery: \"{bad}\""));
        }
    }

    #[test]
    fn what_fts5_cannot_say_is_refused() {
        for bad in [
            "!fat",
            "fat | !rat",
            "!(a & b)",
            "(a | b) <-> c",
            "!a <-> b",
            "a <2> b <-> c",
            "fat <0> cat",
        ] {
            let e = err(Ts, bad);
            assert_eq!((e.status, e.code.as_str()), (400, "PGRST127"), "{bad}");
            assert!(e.hint.is_some());
        }
        assert_eq!(err(Web, "-fat").code.as_str(), "PGRST127");
        assert_eq!(err(Web, "fat or -rat").code.as_str(), "PGRST127");
    }

    #[test]
    fn hostile_words_stay_inside_strings() {
        // FTS5 operators, column filters, quotes, stars and parentheses are only text.
        assert_eq!(
            ok(Ts, "NEAR & AND & title\\:x & \"q\""),
            "(\"NEAR\" AND \"AND\" AND \"title:x\" AND \"\"\"q\"\"\")"
        );
        assert_eq!(ok(Ts, "a\\&b"), "\"a&b\"");
        assert_eq!(ok(Ts, "x*^y"), "\"x*^y\"");
        assert_eq!(
            ok(Plain, "NEAR(a b) \"x\" * {c}: ^d OR"),
            "(\"NEAR\" AND \"a\" AND \"b\" AND \"x\" AND \"c\" AND \"d\" AND \"OR\")"
        );
        assert_eq!(ok(Phrase, "a\" OR \"b *"), "\"a\"\" OR \"\"b\"");
        assert_eq!(
            ok(Web, "\"a\"\" b\" NEAR(x) -\"*\" -AND"),
            "((\"a\" AND \"b\" AND \"NEAR\" AND \"x\") NOT \"AND\")"
        );
    }

    #[test]
    fn plain_phrase_and_websearch() {
        translates(&[
            (Plain, "The Fat  Cats", "(\"The\" AND \"Fat\" AND \"Cats\")"),
            (Plain, "  cats  ", "\"cats\""),
            (Plain, "fat & !rat", "(\"fat\" AND \"rat\")"),
            (Plain, "cats,dogs", "(\"cats\" AND \"dogs\")"),
            (
                Plain,
                "The Fat & Rats:C",
                "(\"The\" AND \"Fat\" AND \"Rats\" AND \"C\")",
            ),
            (
                Plain,
                "Größe_très-bien",
                "(\"Größe\" AND \"très\" AND \"bien\")",
            ),
            (
                Web,
                "cats,dogs -rats:c",
                "((\"cats\" AND \"dogs\" AND \"c\") NOT \"rats\")",
            ),
            (Web, "\"a,b c\" d.e", "(\"a,b c\" AND \"d\" AND \"e\")"),
            (Phrase, "The Fat  Cats", "\"The Fat Cats\""),
            (Phrase, "fat - cats", "\"fat cats\""),
            (Web, "fat rat", "(\"fat\" AND \"rat\")"),
            (
                Web,
                "\"supernovae stars\" -crab",
                "((\"supernovae stars\") NOT \"crab\")",
            ),
            (Web, "fat rat or cat", "((\"fat\" AND \"rat\") OR \"cat\")"),
            (Web, "or fat OR or cat or", "(\"fat\" OR \"cat\")"),
            (Web, "\"unclosed phrase", "\"unclosed phrase\""),
            (Web, "fat - rat", "(\"fat\" AND \"rat\")"),
            (Web, "-or fat", "((\"fat\") NOT \"or\")"),
        ]);
        for (syntax, input) in [
            (Plain, ""),
            (Phrase, " ; & "),
            (Web, "or"),
            (Web, "\"\" - \"...\""),
        ] {
            assert_eq!(err(syntax, input).code.as_str(), "22023", "{input}");
        }
    }

    #[test]
    fn limits() {
        let many = vec!["w"; MAX_TERMS + 1].join(" & ");
        assert_eq!(err(Ts, &many).code.as_str(), "54000");
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(err(Ts, &deep).code.as_str(), "54001");
        let nots = format!("a & {}b", "!".repeat(100));
        assert_eq!(err(Ts, &nots).code.as_str(), "54001");
        // A long `<->` chain stops at MAX_TERMS words while parsing (it would nest deeply).
        let chain = vec!["w"; 200_000].join(" <-> ");
        assert_eq!(err(Ts, &chain).code.as_str(), "54000");
        let chain = vec!["w"; MAX_TERMS].join(" <-> ");
        assert!(ok(Ts, &chain).starts_with("\"w\" + \"w\""));
        // A NUL byte is PostgreSQL's 22021, whatever the syntax.
        for syntax in [Ts, Plain, Phrase, Web] {
            let e = err(syntax, "fat\0cat");
            assert_eq!((e.status, e.code.as_str()), (400, "22021"), "{syntax:?}");
        }
    }

    #[test]
    fn operators_map_to_syntaxes() {
        for op in ["fts", "plfts", "phfts", "wfts"] {
            assert_eq!(FtsSyntax::from_operator(op).unwrap().operator(), op);
        }
        assert_eq!(FtsSyntax::from_operator("cs"), None);
    }
}
