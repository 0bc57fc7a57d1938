//! Where in a token's claims the caller's role is (`--auth-role-claim-key`), in PostgREST's
//! `jwt-role-claim-key` path syntax.
//!
//! A path is one or more steps: `.key` (letters, digits, `_`, `$`, `@`), `."any key"` (quoted:
//! dots, dashes, slashes, spaces; no `"` inside), `[N]` (an array element), and, as the last
//! step only, a filter that picks the first string element of an array that matches:
//! `[?(@ == "x")]` (equal), `!=` (not equal), `^==` (starts with), `==^` (ends with), `*==`
//! (contains). The default is `.role`. A path that does not lead anywhere (a missing key, an
//! index past the end, a step into something of another type) finds nothing.

use serde_json::Value;

/// One step of a [`ClaimPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    Filter(Filter, String),
}

/// How a filter step compares an array's strings with its operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Equals,
    NotEquals,
    StartsWith,
    EndsWith,
    Contains,
}

impl Filter {
    fn matches(self, s: &str, operand: &str) -> bool {
        match self {
            Filter::Equals => s == operand,
            Filter::NotEquals => s != operand,
            Filter::StartsWith => s.starts_with(operand),
            Filter::EndsWith => s.ends_with(operand),
            Filter::Contains => s.contains(operand),
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

impl std::str::FromStr for ClaimPath {
    type Err = String;

    /// Parses a path; the error says where and what was expected.
    fn from_str(text: &str) -> Result<ClaimPath, String> {
        let fail = |at: usize, what: &str| {
            Err(format!(
                "invalid role claim key {text:?} at character {}: expected {what}",
                at + 1
            ))
        };
        let mut steps = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let at = text.len() - rest.len();
            if let Some(after) = rest.strip_prefix('.') {
                if let Some(quoted) = after.strip_prefix('"') {
                    let Some(end) = quoted.find('"') else {
                        return fail(at + 2, "a closing '\"'");
                    };
                    steps.push(Step::Key(quoted[..end].to_string()));
                    rest = &quoted[end + 1..];
                } else {
                    let end = after
                        .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '$' | '@')))
                        .unwrap_or(after.len());
                    if end == 0 {
                        return fail(at + 1, "a key (letters, digits, _, $, @) or a quoted key");
                    }
                    steps.push(Step::Key(after[..end].to_string()));
                    rest = &after[end..];
                }
            } else if let Some(after) = rest.strip_prefix("[?(") {
                let (filter, operand, after) = match parse_filter(after) {
                    Some(parsed) => parsed,
                    None => {
                        return fail(
                            at + 3,
                            "@ == \"…\" (or !=, ^==, ==^, *==) and a closing ')]'",
                        );
                    }
                };
                if !after.is_empty() {
                    return fail(
                        text.len() - after.len(),
                        "the end: a filter is the last step",
                    );
                }
                steps.push(Step::Filter(filter, operand));
                rest = after;
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                let Ok(index) = after[..end].parse::<usize>() else {
                    return fail(at + 1, "an array index");
                };
                let Some(after) = after[end..].strip_prefix(']') else {
                    return fail(at + 1 + end, "']'");
                };
                steps.push(Step::Index(index));
                rest = after;
            } else {
                return fail(at, "'.', '[' or '[?('");
            }
        }
        if steps.is_empty() {
            return Err("the role claim key is empty: use a path such as .role".to_string());
        }
        Ok(ClaimPath {
            text: text.to_string(),
            steps,
        })
    }
}

/// `@ <op> "operand")]` after `[?(`: the filter, its operand and what follows.
fn parse_filter(s: &str) -> Option<(Filter, String, &str)> {
    let s = s.strip_prefix('@')?.trim_start();
    // `==^` before `==`: the longer operator first.
    let (filter, s) = [
        ("==^", Filter::EndsWith),
        ("==", Filter::Equals),
        ("!=", Filter::NotEquals),
        ("^==", Filter::StartsWith),
        ("*==", Filter::Contains),
    ]
    .into_iter()
    .find_map(|(op, f)| s.strip_prefix(op).map(|rest| (f, rest)))?;
    let s = s.trim_start().strip_prefix('"')?;
    let end = s.find('"')?;
    let operand = s[..end].to_string();
    let rest = s[end + 1..].strip_prefix(")]")?;
    Some((filter, operand, rest))
}

impl ClaimPath {
    /// The value at this path in `claims`, if the path leads to one.
    pub fn find<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        let mut at = claims;
        for step in &self.steps {
            at = match (step, at) {
                (Step::Key(k), Value::Object(o)) => o.get(k)?,
                (Step::Index(i), Value::Array(a)) => a.get(*i)?,
                (Step::Filter(f, operand), Value::Array(a)) => a
                    .iter()
                    .find(|v| v.as_str().is_some_and(|s| f.matches(s, operand)))?,
                _ => return None,
            };
        }
        Some(at)
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
    fn malformed_paths_are_refused_saying_where() {
        for (p, at) in [
            ("", ""),
            ("role", "character 1"),
            (".", "character 2"),
            (".a..b", "character 4"),
            (".\"open", "character 3"),
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
