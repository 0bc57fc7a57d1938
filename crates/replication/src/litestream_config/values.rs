//! Checks of single values the resolvers share: durations with defaults that must be
//! positive or non-negative, empty strings as absent, paths with `~` and variables expanded.

use std::path::PathBuf;
use std::time::Duration;

use super::error::{ConfigError, invalid};
use super::expand;
use super::units::GoDuration;

pub(super) fn dur(d: Option<GoDuration>, default: Duration) -> Option<Duration> {
    match d {
        None => Some(default),
        Some(d) => d.to_std(),
    }
}

/// A duration that must be > 0.
pub(super) fn positive(
    path: &str,
    d: Option<GoDuration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match dur(d, default) {
        Some(v) if !v.is_zero() => Ok(v),
        _ => Err(invalid(path, "must be greater than 0")),
    }
}

/// A duration that must be ≥ 0.
pub(super) fn non_negative(
    path: &str,
    d: Option<GoDuration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    dur(d, default).ok_or_else(|| invalid(path, "must not be negative"))
}

pub(super) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

pub(super) fn expand_path_at(path: &str, value: &str) -> Result<PathBuf, ConfigError> {
    expand::expand_path(value).map_err(|m| invalid(path, m))
}
