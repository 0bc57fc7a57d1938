//! Environment and path expansion, as Litestream applies them to its config.
//!
//! [`expand_env`] has the semantics of Go's `os.Expand` over the whole file text: `$VAR` and
//! `${VAR}` are replaced, unset variables become empty, `$PID` is the process id, shell
//! special names (`$1`, `$$`, `$@`, …) are looked up like any other name (and are normally
//! empty), `${}` and an unclosed `${` are removed, and a `$` followed by anything else is kept.
//! There is no escape for a literal `$`; configs holding secrets with `$` disable expansion.
//!
//! [`expand_path`] turns a configured path into an absolute one: `sqlite://` and `sqlite3://`
//! prefixes are stripped, `~` and `~/…` become the home directory, relative paths are joined
//! to the current directory (lexically, like Go's `filepath.Abs`).

use std::path::{Path, PathBuf};

/// Go `os.Expand` with Litestream's mapping (`PID` → process id, else the environment).
pub(crate) fn expand_env(text: &str) -> String {
    expand_with(text, |name| {
        if name == "PID" {
            std::process::id().to_string()
        } else {
            std::env::var(name).unwrap_or_default()
        }
    })
}

/// Go `os.Expand` with an arbitrary mapping (for tests and callers with their own lookup).
pub fn expand_with(text: &str, mut lookup: impl FnMut(&str) -> String) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // bytes of `text` already handled
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&text[copied..j]);
            let (name, width) = shell_name(&text[j + 1..]);
            match name {
                Some(name) => out.push_str(&lookup(name)),
                // `$` not followed by a name: keep it.
                None if width == 0 => out.push('$'),
                // Bad syntax (`${}` or an unclosed `${`): drop it.
                None => {}
            }
            j += width;
            copied = j + 1;
        }
        j += 1;
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

fn is_special(b: u8) -> bool {
    matches!(
        b,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn is_name_byte(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// The variable name after a `$` and how many bytes it spans (`None` with width > 0 means
/// bad syntax to be dropped; `None` with width 0 means "no name").
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        for i in 1..b.len() {
            if b[i] == b'}' {
                if i == 1 {
                    return (None, 2);
                }
                return (Some(&s[1..i]), i + 1);
            }
        }
        return (None, 1);
    }
    if is_special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let n = b.iter().take_while(|&&c| is_name_byte(c)).count();
    if n == 0 {
        (None, 0)
    } else {
        (Some(&s[..n]), n)
    }
}

/// Strips `sqlite://` / `sqlite3://` from a database path.
pub(crate) fn strip_sqlite_prefix(s: &str) -> &str {
    s.strip_prefix("sqlite3://")
        .or_else(|| s.strip_prefix("sqlite://"))
        .unwrap_or(s)
}

/// The home directory for `~` expansion.
fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// An absolute, lexically cleaned path for a configured path (see the module docs).
pub(crate) fn expand_path(s: &str) -> Result<PathBuf, String> {
    let s = strip_sqlite_prefix(s);
    let path = if s == "~" || s.starts_with("~/") {
        let home = home_dir()
            .ok_or_else(|| format!("cannot expand path {s}, no home directory available"))?;
        match s.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => home,
        }
    } else {
        PathBuf::from(s)
    };
    absolute(&path)
}

/// Joins a relative path to the current directory and cleans it lexically.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, String> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?
            .join(path)
    };
    Ok(crate::url::clean_path(&joined))
}

/// The path with symlinks resolved as far as it exists: the canonical form of the longest
/// existing ancestor, joined with the rest. Two spellings of one database compare equal.
pub(crate) fn canonical(path: &Path) -> PathBuf {
    let abs = absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> String {
        match name {
            "A" => "alpha".into(),
            "B_2" => "beta".into(),
            "1" => "one".into(),
            _ => String::new(),
        }
    }

    #[test]
    fn go_expand_cases() {
        let cases = [
            ("plain", "plain"),
            ("$A", "alpha"),
            ("${A}", "alpha"),
            ("x${A}y", "xalphay"),
            ("$A$B_2", "alphabeta"),
            ("$A-suffix", "alpha-suffix"),
            ("$UNSET", ""),
            ("pa$$word", "paword"),
            ("$1x", "onex"),
            ("${1}", "one"),
            ("cost: 5$", "cost: 5$"),
            ("a $ b", "a $ b"),
            ("a${}b", "ab"),
            ("a${A", "aA"),
            ("${A B}", ""),
            ("$", "$"),
            ("100%$", "100%$"),
            ("é$A€", "éalpha€"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_with(input, env), want, "{input}");
        }
    }

    #[test]
    fn pid_is_the_process_id() {
        assert_eq!(expand_env("$PID"), std::process::id().to_string());
        assert_eq!(expand_env("${PID}"), std::process::id().to_string());
    }

    #[test]
    fn paths() {
        assert_eq!(
            expand_path("sqlite:///data/app.db").unwrap(),
            PathBuf::from("/data/app.db")
        );
        assert_eq!(
            expand_path("sqlite3:///data/./x/../app.db").unwrap(),
            PathBuf::from("/data/app.db")
        );
        let home = home_dir().unwrap();
        assert_eq!(expand_path("~/db/app.db").unwrap(), home.join("db/app.db"));
        assert_eq!(expand_path("~").unwrap(), home);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(expand_path("rel/app.db").unwrap(), cwd.join("rel/app.db"));
        // `~user` is not expanded (as Litestream).
        assert_eq!(expand_path("~other").unwrap(), cwd.join("~other"));
    }
}
