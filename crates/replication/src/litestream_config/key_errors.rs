//! Errors that name the key they are about: serde's errors turned into errors with the
//! key's full path (`dbs[0].replica.retention-interval`), and hints for unknown keys (the
//! Litestream version or place a key belongs to, or the closest valid key: "did you mean").

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::error::{ConfigError, invalid};

/// Deserializes one mapping into `T`, turning serde's errors into path-named ones.
pub(super) fn from_mapping<T: for<'de> Deserialize<'de>>(
    map: Mapping,
    prefix: &str,
) -> Result<T, ConfigError> {
    from_value(Value::Mapping(map), prefix)
}

pub(super) fn from_value<T: for<'de> Deserialize<'de>>(
    value: Value,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        let full = join_path(prefix, &path);
        if let Some(rest) = inner.strip_prefix("unknown field `")
            && let Some(end) = rest.find('`')
        {
            let key = &rest[..end];
            // serde_path_to_error may or may not have pushed the key itself.
            let container = full
                .strip_suffix(key)
                .map(|p| p.trim_end_matches('.').to_string())
                .unwrap_or(full.clone());
            // serde lists the expected fields as `a`, `b` or `c`.
            let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
            return unknown_key(&container, key, &expected);
        }
        invalid(full, inner)
    })
}

pub(super) fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// Hints for keys that were valid in older Litestream versions or are commonly misplaced.
pub(super) fn legacy_hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "retention" | "retention-interval" | "retention-check-interval" => {
            "Litestream 0.5 has no per-replica retention: use top-level `snapshot.retention` and `l0-retention`"
        }
        "snapshot-interval" => "use top-level `snapshot.interval`",
        "max-checkpoint-page-count" => "removed in Litestream 0.5; see `truncate-page-n`",
        "shadow-retention-count" | "generation" => "not part of Litestream 0.5",
        _ => return None,
    })
}

pub(super) fn unknown_key(container: &str, key: &str, allowed: &[&str]) -> ConfigError {
    let hint = legacy_hint(key).map(str::to_string).or_else(|| {
        allowed
            .iter()
            .filter_map(|k| hint_distance(key, k).map(|d| (d, *k)))
            .min()
            .map(|(_, k)| format!("did you mean `{}`?", join_path(container, k)))
    });
    ConfigError::UnknownKey {
        path: join_path(container, key),
        hint,
    }
}

/// The largest edit distance a "did you mean" hint may have.
const MAX_HINT_DISTANCE: usize = 2;

/// The Levenshtein distance of `key` to the valid key `valid` when it is at most
/// [`MAX_HINT_DISTANCE`]. The distance is at least the difference of the lengths, so a key
/// whose length alone rules it out (a long unknown key from a hostile or broken file) costs
/// no distance: the distance itself costs `key × valid` characters, and only keys of about a
/// valid key's length get that far.
fn hint_distance(key: &str, valid: &str) -> Option<usize> {
    let (a, b) = (key.chars().count(), valid.chars().count());
    if a.abs_diff(b) > MAX_HINT_DISTANCE {
        return None;
    }
    Some(strsim::levenshtein(key, valid)).filter(|d| *d <= MAX_HINT_DISTANCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_only_close_keys() {
        assert_eq!(hint_distance("sync-intervl", "sync-interval"), Some(1));
        assert_eq!(hint_distance("pth", "path"), Some(1));
        assert_eq!(hint_distance("bucket", "path"), None);
        let long = "x".repeat(1 << 20);
        assert_eq!(hint_distance(&long, "path"), None);
        let ConfigError::UnknownKey { hint, .. } = unknown_key("dbs[0]", &long, &["path"]) else {
            panic!("not an unknown-key error");
        };
        assert_eq!(hint, None);
    }
}
