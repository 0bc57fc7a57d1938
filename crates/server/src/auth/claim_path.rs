//! Where in a token's claims the caller's role is (`--auth-role-claim-key`), in either of
//! PostgREST's `jwt-role-claim-key` syntaxes.
//!
//! The path syntax of PostgREST up to v14 (the default, `.role`): one or more steps, `.key`
//! (letters, digits, `_`, `$`, `@`), `."any key"` (quoted: dots, dashes, slashes, spaces; no
//! `"` inside), `[N]` (an array element), and, as the last step only, a filter that keeps an
//! array's strings that match: `[?(@ == "x")]` (equal), `!=` (not equal), `^==` (starts
//! with), `==^` (ends with), `*==` (contains).
//!
//! The JSONPath (RFC 9535) of later versions, a path that starts with `$`: `.name`,
//! `['any key']` (or double quotes), `[N]` (negative from the end), `[*]` or `.*` (every
//! element or member), and filters `[?@ == 'x']`, `[?@ != 'x']`, `[?search(@, 'regex')]`,
//! `[?match(@, 'regex')]` (whole string), each optionally in parentheses.
//!
//! Either way the path selects values in order and the first is the role; a path that leads
//! nowhere (a missing key, an index past the end, a step into something of another type)
//! finds nothing.

use serde_json::Value;

/// One step of a [`ClaimPath`]: from each value selected so far to the values it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    /// An array element; negative counts from the end.
    Index(i64),
    /// Every element of an array or member value of an object.
    Wildcard,
    /// The elements or member values the test keeps.
    Filter(Test),
}

/// What a filter step keeps.
#[derive(Debug, Clone)]
enum Test {
    /// Strings compared with an operand.
    Compare(Compare, String),
    /// Strings a regular expression matches: anywhere (`search`), or whole (`match`).
    Regex {
        source: String,
        whole: bool,
        re: regex::Regex,
    },
}

impl PartialEq for Test {
    fn eq(&self, other: &Test) -> bool {
        match (self, other) {
            (Test::Compare(a, x), Test::Compare(b, y)) => a == b && x == y,
            (
                Test::Regex {
                    source: a,
                    whole: x,
                    ..
                },
                Test::Regex {
                    source: b,
                    whole: y,
                    ..
                },
            ) => a == b && x == y,
            _ => false,
        }
    }
}

impl Eq for Test {}

impl Test {
    fn keeps(&self, v: &Value) -> bool {
        let Some(s) = v.as_str() else {
            return false;
        };
        match self {
            Test::Compare(c, operand) => c.holds(s, operand),
            Test::Regex { re, .. } => re.is_match(s),
        }
    }
}

/// How a filter compares a string with its operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Equals,
    NotEquals,
    StartsWith,
    EndsWith,
    Contains,
}

impl Compare {
    fn holds(self, s: &str, operand: &str) -> bool {
        match self {
            Compare::Equals => s == operand,
            Compare::NotEquals => s != operand,
            Compare::StartsWith => s.starts_with(operand),
            Compare::EndsWith => s.ends_with(operand),
            Compare::Contains => s.contains(operand),
        }
    }
}

/// A parsed role claim path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    text: String,
    steps: Vec<Step>,
}

impl Default for ClaimPath {
    fn default() -> Self {
        ClaimPath {
            text: ".role".to_string(),
            steps: vec![Step::Key("role".to_string())],
        }
    }
}

impl std::fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A parse failure: the character (counted from 1) where `expected` was expected.
struct Expected(usize, &'static str);

impl std::str::FromStr for ClaimPath {
    type Err = String;

    /// Parses a path; the error says where and what was expected.
    fn from_str(text: &str) -> Result<ClaimPath, String> {
        if text.is_empty() {
            return Err("the role claim key is empty: use a path such as .role".to_string());
        }
        let steps = match text.strip_prefix('$') {
            Some(rest) => json_path(rest, 1),
            None => legacy_path(text),
        }
        .map_err(|Expected(at, what)| {
            format!("invalid role claim key {text:?} at character {at}: expected {what}")
        })?;
        Ok(ClaimPath {
            text: text.to_string(),
            steps,
        })
    }
}

/// The path syntax of PostgREST up to v14.
fn legacy_path(text: &str) -> Result<Vec<Step>, Expected> {
    let mut steps = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let at = text.len() - rest.len() + 1;
        if let Some(after) = rest.strip_prefix('.') {
            if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"').ok_or(Expected(at + 1, "a closing '\"'"))?;
                steps.push(Step::Key(quoted[..end].to_string()));
                rest = &quoted[end + 1..];
            } else {
                let end = after
                    .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '$' | '@')))
                    .unwrap_or(after.len());
                if end == 0 {
                    return Err(Expected(
                        at + 1,
                        "a key (letters, digits, _, $, @) or a quoted key",
                    ));
                }
                steps.push(Step::Key(after[..end].to_string()));
                rest = &after[end..];
            }
        } else if let Some(after) = rest.strip_prefix("[?(") {
            let (test, after) = legacy_filter(after).ok_or(Expected(
                at + 3,
                "@ == \"…\" (or !=, ^==, ==^, *==) and a closing ')]'",
            ))?;
            if !after.is_empty() {
                return Err(Expected(
                    text.len() - after.len() + 1,
                    "the end: a filter is the last step",
                ));
            }
            steps.push(Step::Filter(test));
            rest = after;
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let index = after[..end]
                .parse::<i64>()
                .map_err(|_| Expected(at + 1, "an array index"))?;
            rest = after[end..]
                .strip_prefix(']')
                .ok_or(Expected(at + 1 + end, "']'"))?;
            steps.push(Step::Index(index));
        } else {
            return Err(Expected(at, "'.', '[' or '[?('"));
        }
    }
    Ok(steps)
}

/// `@ <op> "operand")]` after `[?(`: the test and what follows.
fn legacy_filter(s: &str) -> Option<(Test, &str)> {
    let s = s.strip_prefix('@')?.trim_start();
    // `==^` before `==`: the longer operator first.
    let (compare, s) = [
        ("==^", Compare::EndsWith),
        ("==", Compare::Equals),
        ("!=", Compare::NotEquals),
        ("^==", Compare::StartsWith),
        ("*==", Compare::Contains),
    ]
    .into_iter()
    .find_map(|(op, c)| s.strip_prefix(op).map(|rest| (c, rest)))?;
    let s = s.trim_start().strip_prefix('"')?;
    let end = s.find('"')?;
    let operand = s[..end].to_string();
    let rest = s[end + 1..].strip_prefix(")]")?;
    Some((Test::Compare(compare, operand), rest))
}

/// The JSONPath subset after the `$`; `offset` is the character number of `rest`'s first.
fn json_path(text: &str, offset: usize) -> Result<Vec<Step>, Expected> {
    let mut steps = Vec::new();
    let mut rest = text;
    let at = |rest: &str| offset + text.len() - rest.len() + 1;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(".*") {
            steps.push(Step::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after
                .char_indices()
                .find(|&(i, c)| {
                    !(c == '_'
                        || !c.is_ascii()
                        || c.is_ascii_alphabetic()
                        || (i > 0 && c.is_ascii_digit()))
                })
                .map_or(after.len(), |(i, _)| i);
            if end == 0 {
                return Err(Expected(at(after), "a member name or '*'"));
            }
            steps.push(Step::Key(after[..end].to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let inner = after.trim_start();
            let (step, after) = if let Some(filter) = inner.strip_prefix('?') {
                let (test, after) = json_filter(filter.trim_start()).ok_or(Expected(
                    at(filter),
                    "@ == '…', @ != '…', search(@, '…') or match(@, '…')",
                ))?;
                (Step::Filter(test), after)
            } else if let Some(after) = inner.strip_prefix('*') {
                (Step::Wildcard, after)
            } else if inner.starts_with(['\'', '"']) {
                let (key, after) =
                    string_literal(inner).ok_or(Expected(at(inner), "a closing quote"))?;
                (Step::Key(key), after)
            } else {
                let end = inner
                    .char_indices()
                    .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
                    .map_or(inner.len(), |(i, _)| i);
                let index = inner[..end]
                    .parse::<i64>()
                    .map_err(|_| Expected(at(inner), "an index, a quoted name, '*' or '?'"))?;
                (Step::Index(index), &inner[end..])
            };
            let after = after.trim_start();
            rest = after.strip_prefix(']').ok_or(Expected(at(after), "']'"))?;
            steps.push(step);
        } else {
            return Err(Expected(at(rest), "'.' or '['"));
        }
    }
    Ok(steps)
}

/// A filter's test after `?`, optionally in parentheses: the test and what follows it.
fn json_filter(s: &str) -> Option<(Test, &str)> {
    if let Some(inner) = s.strip_prefix('(') {
        let (test, after) = json_filter(inner.trim_start())?;
        return Some((test, after.trim_start().strip_prefix(')')?));
    }
    for (name, whole) in [("search", false), ("match", true)] {
        if let Some(args) = s.strip_prefix(name) {
            let args = args.trim_start().strip_prefix('(')?.trim_start();
            let args = args.strip_prefix('@')?.trim_start().strip_prefix(',')?;
            let (source, after) = string_literal(args.trim_start())?;
            let after = after.trim_start().strip_prefix(')')?;
            let pattern = if whole {
                format!("^(?:{source})$")
            } else {
                source.clone()
            };
            let re = regex::Regex::new(&pattern).ok()?;
            return Some((Test::Regex { source, whole, re }, after));
        }
    }
    let s = s.strip_prefix('@')?.trim_start();
    let (compare, s) = [("==", Compare::Equals), ("!=", Compare::NotEquals)]
        .into_iter()
        .find_map(|(op, c)| s.strip_prefix(op).map(|rest| (c, rest)))?;
    let (operand, after) = string_literal(s.trim_start())?;
    Some((Test::Compare(compare, operand), after))
}

/// A JSONPath string literal in single or double quotes, with its backslash escapes: its
/// value and what follows it.
fn string_literal(s: &str) -> Option<(String, &str)> {
    let quote = s.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    let mut out = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, e) = chars.next()?;
                out.push(match e {
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    '/' | '\\' | '\'' | '"' => e,
                    _ => return None,
                });
            }
            c if c == quote => return Some((out, &s[1 + i + 1..])),
            c => out.push(c),
        }
    }
    None
}

impl ClaimPath {
    /// The first value this path selects in `claims`.
    pub fn find<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        let mut nodes = vec![claims];
        for step in &self.steps {
            let mut next = Vec::new();
            for node in nodes {
                match (step, node) {
                    (Step::Key(k), Value::Object(o)) => next.extend(o.get(k)),
                    (Step::Index(i), Value::Array(a)) => {
                        let i = if *i < 0 {
                            usize::try_from(i.unsigned_abs())
                                .ok()
                                .and_then(|back| a.len().checked_sub(back))
                        } else {
                            usize::try_from(*i).ok()
                        };
                        next.extend(i.and_then(|i| a.get(i)));
                    }
                    (Step::Wildcard, Value::Array(a)) => next.extend(a),
                    (Step::Wildcard, Value::Object(o)) => next.extend(o.values()),
                    (Step::Filter(t), Value::Array(a)) => {
                        next.extend(a.iter().filter(|v| t.keeps(v)));
                    }
                    (Step::Filter(t), Value::Object(o)) => {
                        next.extend(o.values().filter(|v| t.keeps(v)));
                    }
                    _ => {}
                }
            }
            nodes = next;
        }
        nodes.into_iter().next()
    }

    /// The role this path names in `claims`: a string as it is, any other JSON value (`null`
    /// included) as its JSON text, as PostgREST takes it; `None` when the path finds nothing.
    pub fn role(&self, claims: &Value) -> Option<String> {
        self.find(claims).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(s: &str) -> ClaimPath {
        s.parse().unwrap()
    }

    #[test]
    fn each_form_finds_its_value() {
        let claims = json!({
            "role": "author",
            "app_metadata": {"role": "editor", "roles": ["reader", "admin-x", "x-owner"]},
            "https://example.com/claims": {"role": "guest"},
            "with space": "spaced",
            "$weird@key_1": "weird",
            "nested": [[{"r": "deep"}]],
            "n": 5,
            "null": null,
        });
        for (p, want) in [
            (".role", Some("author")),
            (".app_metadata.role", Some("editor")),
            (".app_metadata.roles[0]", Some("reader")),
            (".app_metadata.roles[2]", Some("x-owner")),
            (".\"https://example.com/claims\".role", Some("guest")),
            (".\"with space\"", Some("spaced")),
            (".$weird@key_1", Some("weird")),
            (".nested[0][0].r", Some("deep")),
            (".app_metadata.roles[?(@ == \"admin-x\")]", Some("admin-x")),
            (".app_metadata.roles[?(@ != \"reader\")]", Some("admin-x")),
            (".app_metadata.roles[?(@ ^== \"x-\")]", Some("x-owner")),
            (".app_metadata.roles[?(@ ==^ \"-x\")]", Some("admin-x")),
            (".app_metadata.roles[?(@*==\"own\")]", Some("x-owner")),
            (".n", Some("5")),
            (".null", Some("null")),
            (
                ".app_metadata",
                Some(r#"{"role":"editor","roles":["reader","admin-x","x-owner"]}"#),
            ),
            // Leads nowhere.
            (".missing", None),
            (".app_metadata.roles[3]", None),
            (".role.x", None),
            (".role[0]", None),
            (".app_metadata[0]", None),
            (".app_metadata.roles[?(@ == \"nobody\")]", None),
        ] {
            assert_eq!(path(p).role(&claims).as_deref(), want, "{p}");
        }
    }

    #[test]
    fn each_json_path_form_finds_its_value() {
        let claims = json!({
            "role": "author",
            "postgrest": {"roles": ["other", "author", "auditor"]},
            "https://www.example.com/role": {"key": "guest"},
            "it's": "quoted",
            "nested": [[{"r": "deep"}]],
            "only": {"one": "member"},
            "n": 5,
        });
        for (p, want) in [
            ("$.role", Some("author")),
            ("$.postgrest.roles[1]", Some("author")),
            ("$.postgrest.roles[-1]", Some("auditor")),
            ("$['https://www.example.com/role'].key", Some("guest")),
            ("$[\"https://www.example.com/role\"]['key']", Some("guest")),
            ("$['it\\'s']", Some("quoted")),
            ("$.nested[0][0].r", Some("deep")),
            ("$.nested[*][*].r", Some("deep")),
            ("$.only.*", Some("member")),
            ("$.only[*]", Some("member")),
            ("$.postgrest.roles[?(@ == 'author')]", Some("author")),
            ("$.postgrest.roles[?@ == \"auditor\"]", Some("auditor")),
            ("$.postgrest.roles[?@ != 'other']", Some("author")),
            ("$.postgrest.roles[?search(@, '^au')]", Some("author")),
            ("$.postgrest.roles[?search(@, 'dit')]", Some("auditor")),
            ("$.postgrest.roles[?match(@, 'a.*r')]", Some("author")),
            ("$.postgrest.roles[?match(@, 'dit')]", None),
            ("$.postgrest.roles[?(@ == 'author')]", Some("author")),
            ("$.n", Some("5")),
            ("$.postgrest.roles[3]", None),
            ("$.postgrest.roles[-4]", None),
            ("$.missing", None),
            ("$.role.x", None),
        ] {
            assert_eq!(path(p).role(&claims).as_deref(), want, "{p}");
        }
    }

    #[test]
    fn malformed_json_paths_are_refused_saying_where() {
        for (p, at) in [
            ("$role", "character 2"),
            ("$.", "character 3"),
            ("$.1a", "character 3"),
            ("$['open", "character 3"),
            ("$[1", "character 4"),
            ("$[x]", "character 3"),
            ("$.a[?@ = 'x']", "character 6"),
            ("$.a[?search(@, '(')]", "character 6"),
            ("$.a[?@ == x]", "character 6"),
        ] {
            let e = p.parse::<ClaimPath>().unwrap_err();
            assert!(e.contains(at), "{p:?}: {e}");
        }
    }

    #[test]
    fn malformed_paths_are_refused_saying_where() {
        for (p, at) in [
            ("", ""),
            ("role", "character 1"),
            (".", "character 2"),
            (".a..b", "character 4"),
            (".\"open", "character 2"),
            (".a[", "character 4"),
            (".a[x]", "character 4"),
            (".a[-1]", "character 4"),
            (".a[1", "character 5"),
            (".a[?(@ = \"x\")]", "character 6"),
            (".a[?(@ == x)]", "character 6"),
            (".a[?(@ == \"x\")].b", "character 16"),
            (".a b", "character 3"),
        ] {
            let e = p.parse::<ClaimPath>().unwrap_err();
            assert!(e.contains(at), "{p:?}: {e}");
        }
        assert_eq!(ClaimPath::default(), path(".role"));
        assert_eq!(path(".a.\"b c\"").to_string(), ".a.\"b c\"");
    }
}
