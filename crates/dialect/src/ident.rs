//! Quoting identifiers for SQL.
//!
//! Every identifier that reaches SQL has first been resolved against the schema cache; it is
//! then written as `"name"` with inner `"` doubled. Names containing NUL are never resolved.

/// Appends `"name"` (inner quotes doubled) to `out`.
pub(crate) fn push_quoted(out: &mut String, name: &str) {
    out.push('"');
    if name.as_bytes().contains(&b'"') {
        out.push_str(&name.replace('"', "\"\""));
    } else {
        out.push_str(name);
    }
    out.push('"');
}

/// `"name"` as a new string.
pub(crate) fn quoted(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    push_quoted(&mut s, name);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_inner_quotes() {
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
        assert_eq!(quoted("x; DROP TABLE y"), "\"x; DROP TABLE y\"");
    }
}
