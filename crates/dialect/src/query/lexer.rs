//! The lexer every parser of the grammar shares: a [`Cursor`] over the characters of one
//! parameter (names, quoted names, JSON paths, casts, punctuation), and syntax errors
//! ([`PErr`]) turned into PostgREST's PGRST100 message with their column.

use crate::error::ApiError;

use super::syntax::*;

/// How deeply embedded selects and logic trees may nest.
pub(super) const MAX_DEPTH: usize = 32;

/// A syntax error inside one parameter, before it is given its PostgREST message.
pub(super) struct PErr {
    /// 0-based character position.
    pub(super) pos: usize,
    pub(super) expecting: &'static str,
}

pub(super) struct Cursor {
    pub(super) chars: Vec<char>,
    pub(super) pos: usize,
}

impl Cursor {
    pub(super) fn new(s: &str) -> Self {
        Cursor {
            chars: s.chars().collect(),
            pos: 0,
        }
    }
    pub(super) fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    pub(super) fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }
    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }
    pub(super) fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }
    pub(super) fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn eat_str(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }
    pub(super) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.pos += 1;
        }
    }
    pub(super) fn err(&self, expecting: &'static str) -> PErr {
        PErr {
            pos: self.pos,
            expecting,
        }
    }
    pub(super) fn rest(&self) -> String {
        self.chars[self.pos.min(self.chars.len())..]
            .iter()
            .collect()
    }

    /// A double-quoted string with `\` escapes; the cursor is on the opening quote.
    pub(super) fn quoted(&mut self) -> Result<String, PErr> {
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
    pub(super) fn name(&mut self) -> Result<String, PErr> {
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
    pub(super) fn json_path(&mut self) -> Result<Vec<JsonStep>, PErr> {
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

    pub(super) fn field(&mut self) -> Result<Field, PErr> {
        let name = self.name()?;
        let path = self.json_path()?;
        self.skip_ws();
        Ok(Field { name, path })
    }

    /// A bare lowercase word (operators, keywords).
    pub(super) fn word(&mut self) -> String {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
}

pub(super) fn unexpected(chars: &[char], pos: usize) -> String {
    match chars.get(pos) {
        Some(c) => format!("unexpected \"{c}\""),
        None => "unexpected end of input".to_string(),
    }
}

pub(super) fn to_api(part: &str, input: &str, c: &Cursor, e: PErr) -> ApiError {
    ApiError::parse(
        part,
        input,
        e.pos + 1,
        format!("{} expecting {}", unexpected(&c.chars, e.pos), e.expecting),
    )
}
