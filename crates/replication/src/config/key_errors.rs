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
            .map(|k| (edit_distance(key, k), *k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| format!("did you mean `{}`?", join_path(container, k)))
    });
    ConfigError::UnknownKey {
        path: join_path(container, key),
        hint,
    }
}

/// Levenshtein distance, for "did you mean" hints.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
