//! The request headers of the dialect: `Prefer`, `Accept`, `Range` and the schema profiles.
//!
//! `Prefer` may come as one comma-separated header or several; the first occurrence of a
//! preference wins and unknown ones are ignored unless `handling=strict` (PGRST122). Two
//! preferences are sqlite-rest's own: `durability=local|replicated` (writes) and
//! `min-txid=<16 hex digits>` (reads); an invalid value of either is 400 `SR002` whatever
//! `handling` says, since a client asking for a guarantee must never silently get less. `Accept`
//! is negotiated with q-values; the first producible media type wins (PGRST107 otherwise).
//! `Range: a-b` is parsed for GET. The only exposed schema is `public` (an alias of `main`).

use crate::error::{ApiError, ErrorCode};

/// `Prefer: count=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountMethod {
    Exact,
    Planned,
    Estimated,
}

/// A preference with a fixed set of values: its key and the name of each value, used both
/// to parse `Prefer` and to report `Preference-Applied`.
pub trait Choice: Copy + PartialEq + 'static {
    const KEY: &'static str;
    const VALUES: &'static [(&'static str, Self)];

    /// The value called `name`.
    fn named(name: &str) -> Option<Self> {
        Self::VALUES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }

    /// `key=value`, as `Preference-Applied` reports it.
    fn token(self) -> String {
        let name = Self::VALUES
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |&(n, _)| n);
        format!("{}={name}", Self::KEY)
    }
}

impl Choice for CountMethod {
    const KEY: &'static str = "count";
    const VALUES: &'static [(&'static str, Self)] = &[
        ("exact", CountMethod::Exact),
        ("planned", CountMethod::Planned),
        ("estimated", CountMethod::Estimated),
    ];
}

impl Choice for ReturnPref {
    const KEY: &'static str = "return";
    const VALUES: &'static [(&'static str, Self)] = &[
        ("minimal", ReturnPref::Minimal),
        ("headers-only", ReturnPref::HeadersOnly),
        ("representation", ReturnPref::Representation),
    ];
}

impl Choice for Resolution {
    const KEY: &'static str = "resolution";
    const VALUES: &'static [(&'static str, Self)] = &[
        ("merge-duplicates", Resolution::MergeDuplicates),
        ("ignore-duplicates", Resolution::IgnoreDuplicates),
    ];
}

impl Choice for Missing {
    const KEY: &'static str = "missing";
    const VALUES: &'static [(&'static str, Self)] =
        &[("default", Missing::Default), ("null", Missing::Null)];
}

impl Choice for Handling {
    const KEY: &'static str = "handling";
    const VALUES: &'static [(&'static str, Self)] =
        &[("strict", Handling::Strict), ("lenient", Handling::Lenient)];
}

impl Choice for Durability {
    const KEY: &'static str = "durability";
    const VALUES: &'static [(&'static str, Self)] = &[
        ("local", Durability::Local),
        ("replicated", Durability::Replicated),
    ];
}

/// `Prefer: durability=…`: when a write is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Once committed to the local database (and in a local LTX file when replicating).
    Local,
    /// Once the transaction is on the replica too.
    Replicated,
}

/// `Prefer: return=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnPref {
    Minimal,
    HeadersOnly,
    Representation,
}

/// `Prefer: resolution=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

/// `Prefer: missing=…`: what a column named by `columns` but absent from an object gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Default,
    Null,
}

/// `Prefer: handling=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Strict,
    Lenient,
}

/// The parsed `Prefer` header(s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    pub count: Option<CountMethod>,
    pub return_: Option<ReturnPref>,
    pub resolution: Option<Resolution>,
    pub missing: Option<Missing>,
    pub handling: Option<Handling>,
    /// `tx=rollback` (true) or `tx=commit` (false).
    pub tx_rollback: Option<bool>,
    pub max_affected: Option<i64>,
    pub timezone: Option<String>,
    /// `durability=local|replicated` (sqlite-rest's own; writes).
    pub durability: Option<Durability>,
    /// `min-txid=<16 hex digits>` (sqlite-rest's own; reads): the replication position the
    /// read must reflect.
    pub min_txid: Option<u64>,
}

/// Which preferences a response reports in `Preference-Applied` (each only when it was sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub resolution: bool,
    pub missing: bool,
    pub return_: bool,
    pub count: bool,
    pub tx: bool,
    pub handling: bool,
    pub timezone: bool,
    /// `max-affected` is reported only under `handling=strict`, as PostgREST does.
    pub max_affected: bool,
    pub durability: bool,
}

impl Applied {
    /// Every preference.
    pub const ALL: Applied = Applied {
        resolution: true,
        missing: true,
        return_: true,
        count: true,
        tx: true,
        handling: true,
        timezone: true,
        max_affected: true,
        durability: true,
    };

    /// What every write reports: `return`, `count`, `tx`, `handling`, `timezone` and
    /// `durability`.
    pub const WRITE: Applied = Applied {
        resolution: false,
        missing: false,
        max_affected: false,
        ..Applied::ALL
    };
}

impl Preferences {
    /// Parses every `Prefer` header value (each may hold several comma-separated tokens).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, ApiError> {
        let mut p = Preferences::default();
        let mut seen: Vec<&str> = Vec::new();
        let mut invalid = Vec::new();
        for value in values {
            for token in value.split(',') {
                let token = token.trim();
                if token.is_empty() {
                    continue;
                }
                let (key, val) = token.split_once('=').unwrap_or((token, ""));
                let (key, val) = (key.trim(), val.trim());
                if seen.contains(&key) {
                    continue;
                }
                if key == Durability::KEY && p.durability.is_none() {
                    p.durability = Some(Durability::named(val).ok_or_else(|| {
                        invalid_value(
                            "durability",
                            val,
                            "durability=local or durability=replicated",
                        )
                    })?);
                    seen.push(key);
                    continue;
                }
                if key == "min-txid" && p.min_txid.is_none() {
                    p.min_txid = Some(parse_txid(val).ok_or_else(|| {
                        invalid_value(
                            "min-txid",
                            val,
                            "min-txid=<16 hex digits>, the Sqlite-Rest-Txid of an earlier response",
                        )
                    })?);
                    seen.push(key);
                    continue;
                }
                let ok = choose(&mut p.count, key, val)
                    || choose(&mut p.return_, key, val)
                    || choose(&mut p.resolution, key, val)
                    || choose(&mut p.missing, key, val)
                    || choose(&mut p.handling, key, val)
                    || match (key, val) {
                        ("tx", "commit") => set(&mut p.tx_rollback, false),
                        ("tx", "rollback") => set(&mut p.tx_rollback, true),
                        ("timezone", tz) if !tz.is_empty() => set(&mut p.timezone, tz.to_string()),
                        // PostgREST ignores a value that is not a number, even under strict handling.
                        ("max-affected", n) => {
                            if let Ok(n) = n.parse() {
                                set(&mut p.max_affected, n);
                            }
                            true
                        }
                        _ => false,
                    };
                if ok {
                    seen.push(key);
                } else {
                    invalid.push(token.to_string());
                }
            }
        }
        if p.strict() && !invalid.is_empty() {
            return Err(ApiError::new(
                400,
                ErrorCode::InvalidPreferences,
                "Invalid preferences given with handling=strict",
            )
            .with_details(format!("Invalid preferences: {}", invalid.join(", "))));
        }
        Ok(p)
    }
}

impl Preferences {
    /// `handling=strict` was asked for.
    pub fn strict(&self) -> bool {
        self.handling == Some(Handling::Strict)
    }

    /// `missing=default` was asked for.
    pub fn missing_default(&self) -> bool {
        self.missing == Some(Missing::Default)
    }

    /// The preferences `which` selects that were sent, in PostgREST's order.
    pub fn applied(&self, which: Applied) -> PreferenceApplied {
        use AppliedPreference as A;
        let tokens = [
            (which.resolution, self.resolution.map(A::Resolution)),
            (which.missing, self.missing.map(A::Missing)),
            (which.return_, self.return_.map(A::Return)),
            (which.count, self.count.map(A::Count)),
            (
                which.tx,
                self.tx_rollback.map(|rollback| A::Tx { rollback }),
            ),
            (which.handling, self.handling.map(A::Handling)),
            (which.timezone, self.timezone.clone().map(A::Timezone)),
            (
                which.max_affected && self.strict(),
                self.max_affected.map(A::MaxAffected),
            ),
            (which.durability, self.durability.map(A::Durability)),
        ];
        PreferenceApplied(
            tokens
                .into_iter()
                .filter_map(|(wanted, token)| token.filter(|_| wanted))
                .collect(),
        )
    }
}

/// One preference a response reports as honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppliedPreference {
    Resolution(Resolution),
    Missing(Missing),
    Return(ReturnPref),
    Count(CountMethod),
    Tx {
        rollback: bool,
    },
    Handling(Handling),
    Timezone(String),
    MaxAffected(i64),
    Durability(Durability),
    /// The read waited for this replication position (sqlite-rest's own).
    MinTxid(u64),
}

impl std::fmt::Display for AppliedPreference {
    /// `key=value`, as `Preference-Applied` carries it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppliedPreference::Resolution(v) => f.write_str(&v.token()),
            AppliedPreference::Missing(v) => f.write_str(&v.token()),
            AppliedPreference::Return(v) => f.write_str(&v.token()),
            AppliedPreference::Count(v) => f.write_str(&v.token()),
            AppliedPreference::Tx { rollback: true } => f.write_str("tx=rollback"),
            AppliedPreference::Tx { rollback: false } => f.write_str("tx=commit"),
            AppliedPreference::Handling(v) => f.write_str(&v.token()),
            AppliedPreference::Timezone(tz) => write!(f, "timezone={tz}"),
            AppliedPreference::MaxAffected(n) => write!(f, "max-affected={n}"),
            AppliedPreference::Durability(v) => f.write_str(&v.token()),
            AppliedPreference::MinTxid(t) => write!(f, "min-txid={t:016x}"),
        }
    }
}

/// The `Preference-Applied` header of a response: the preferences it honoured, in order.
/// Rendered only here ([`PreferenceApplied::header_value`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreferenceApplied(Vec<AppliedPreference>);

impl PreferenceApplied {
    /// Reports `p` after the ones already there.
    pub fn push(&mut self, p: AppliedPreference) {
        self.0.push(p);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &AppliedPreference> {
        self.0.iter()
    }

    /// The header's value: the tokens joined by ", "; `None` when there are none (and no
    /// header is sent).
    pub fn header_value(&self) -> Option<String> {
        use std::fmt::Write;
        let mut out = String::new();
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{p}");
        }
        (!out.is_empty()).then_some(out)
    }
}

impl From<Option<AppliedPreference>> for PreferenceApplied {
    fn from(p: Option<AppliedPreference>) -> Self {
        PreferenceApplied(p.into_iter().collect())
    }
}

/// 400 `SR002` for an invalid value of one of sqlite-rest's own preferences.
fn invalid_value(key: &str, val: &str, expected: &str) -> ApiError {
    ApiError::new(
        400,
        ErrorCode::InvalidOwnPreference,
        format!("Invalid value of the {key} preference"),
    )
    .with_details(format!("Prefer: {key}={val} is not valid"))
    .with_hint(format!("Send Prefer: {expected}"))
}

/// A TXID as `Sqlite-Rest-Txid` carries it: exactly 16 hex digits.
fn parse_txid(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Sets `slot` from `key=val` when `key` is `T`'s and `val` names one of its values.
fn choose<T: Choice>(slot: &mut Option<T>, key: &str, val: &str) -> bool {
    key == T::KEY && T::named(val).is_some_and(|v| set(slot, v))
}

fn set<T>(slot: &mut Option<T>, v: T) -> bool {
    if slot.is_none() {
        *slot = Some(v);
    }
    true
}

/// What the response body will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// A JSON array of objects.
    Json { strip_nulls: bool },
    /// One JSON object (`application/vnd.pgrst.object+json`); anything but one row is 406.
    Singular { strip_nulls: bool },
    /// `text/csv`.
    Csv,
}

impl MediaType {
    pub fn content_type(self) -> &'static str {
        match self {
            MediaType::Json { strip_nulls: false } => "application/json; charset=utf-8",
            MediaType::Json { strip_nulls: true } => {
                "application/vnd.pgrst.array+json; nulls=stripped; charset=utf-8"
            }
            MediaType::Singular { strip_nulls: false } => {
                "application/vnd.pgrst.object+json; charset=utf-8"
            }
            MediaType::Singular { strip_nulls: true } => {
                "application/vnd.pgrst.object+json; nulls=stripped; charset=utf-8"
            }
            MediaType::Csv => "text/csv; charset=utf-8",
        }
    }

    /// Negotiates the `Accept` header (absent or empty means `*/*`).
    pub fn negotiate(accept: Option<&str>) -> Result<Self, ApiError> {
        let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(MediaType::Json { strip_nulls: false });
        };
        negotiate_with(accept, |mt, strip| match mt {
            "*/*" | "application/*" | "application/json" => {
                Some(MediaType::Json { strip_nulls: strip })
            }
            "application/vnd.pgrst.array+json" | "application/vnd.pgrst.array" => {
                Some(MediaType::Json { strip_nulls: strip })
            }
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => {
                Some(MediaType::Singular { strip_nulls: strip })
            }
            "text/csv" | "text/*" => Some(MediaType::Csv),
            _ => None,
        })
    }
}

/// The first media type of a non-empty `Accept` header (by q-value, then by order) that
/// `pick` produces, given the lowercased type and whether it asks `nulls=stripped`; 406
/// PGRST107 naming every type sent when none is.
pub(crate) fn negotiate_with<T>(
    accept: &str,
    pick: impl Fn(&str, bool) -> Option<T>,
) -> Result<T, ApiError> {
    let mut candidates: Vec<(f32, usize, &str, bool)> = Vec::new();
    let mut names = Vec::new();
    for (i, part) in accept.split(',').enumerate() {
        let mut params = part.split(';');
        let mt = params.next().unwrap_or("").trim();
        if mt.is_empty() {
            continue;
        }
        names.push(mt);
        let mut q = 1.0f32;
        let mut strip = false;
        for p in params {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'));
            if k == "q" {
                q = v.parse().unwrap_or(1.0);
            } else if k == "nulls" && v.eq_ignore_ascii_case("stripped") {
                strip = true;
            }
        }
        if q > 0.0 {
            candidates.push((q, i, mt, strip));
        }
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, mt, strip) in candidates {
        if let Some(found) = pick(mt.to_ascii_lowercase().as_str(), strip) {
            return Ok(found);
        }
    }
    Err(ApiError::new(
        406,
        ErrorCode::NotAcceptable,
        format!(
            "None of these media types are available: {}",
            names.join(", ")
        ),
    ))
}

/// `Range: lower-[upper]` (optionally `items=lower-upper`). Malformed values are ignored, as
/// PostgREST does; a lower bound above the upper one is 416 PGRST103.
pub fn parse_range(value: &str) -> Result<Option<(i64, Option<i64>)>, ApiError> {
    let v = value.trim();
    let v = v.strip_prefix("items=").unwrap_or(v);
    let Some((lo, hi)) = v.split_once('-') else {
        return Ok(None);
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(lo) || !(hi.is_empty() || digits(hi)) {
        return Ok(None);
    }
    let (Ok(lo), hi) = (lo.parse::<i64>(), hi.parse::<i64>().ok()) else {
        return Ok(None);
    };
    if let Some(hi) = hi
        && lo > hi
    {
        return Err(ApiError::range(
            "The lower boundary must be lower than or equal to the upper boundary in the Range header.",
        ));
    }
    Ok(Some((lo, hi)))
}

/// The exposed schema name; `main` is served as `public`, which postgrest-py always sends.
pub(crate) const SCHEMA: &str = "public";

/// Checks `Accept-Profile`/`Content-Profile`; returns whether a profile header was sent.
pub fn check_profile(value: Option<&str>) -> Result<bool, ApiError> {
    match value.map(str::trim) {
        None => Ok(false),
        Some(SCHEMA) => Ok(true),
        Some(other) => Err(ApiError::new(
            406,
            ErrorCode::InvalidSchema,
            format!("Invalid schema: {other}"),
        )
        .with_hint(format!("Only the following schemas are exposed: {SCHEMA}"))),
    }
}

/// Everything the read path takes from the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaders {
    pub media: MediaType,
    pub prefer: Preferences,
    pub range: Option<(i64, Option<i64>)>,
    pub profile_sent: bool,
}

#[cfg(test)]
impl RequestHeaders {
    /// A plain JSON request: no preferences, no range (for tests).
    pub(crate) fn plain_json() -> RequestHeaders {
        RequestHeaders {
            media: MediaType::Json { strip_nulls: false },
            prefer: Preferences::default(),
            range: None,
            profile_sent: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_first_wins_and_both_separators() {
        let p = Preferences::parse(["count=exact, return=representation", "count=planned,foo"])
            .unwrap();
        assert_eq!(p.count, Some(CountMethod::Exact));
        assert_eq!(p.return_, Some(ReturnPref::Representation));
        let e = Preferences::parse(["handling=strict, foo, count=exact"]).unwrap_err();
        assert_eq!(e.code.as_str(), "PGRST122");
        assert_eq!(e.details.unwrap(), "Invalid preferences: foo");
    }

    #[test]
    fn preference_applied_follows_postgrest_order() {
        let p = Preferences::parse([
            "return=representation,resolution=merge-duplicates",
            "missing=default, count=exact, tx=rollback, handling=strict, max-affected=3",
        ])
        .unwrap();
        let all = Applied::ALL;
        assert_eq!(
            p.applied(all).header_value().unwrap(),
            "resolution=merge-duplicates, missing=default, return=representation, count=exact, tx=rollback, handling=strict, max-affected=3"
        );
        let lenient = Preferences::parse(["handling=lenient, max-affected=3"]).unwrap();
        assert_eq!(
            lenient.applied(all).header_value().unwrap(),
            "handling=lenient"
        );
        assert_eq!(lenient.max_affected, Some(3));
        assert_eq!(Preferences::default().applied(all).header_value(), None);
        // A max-affected that is no number is ignored, even under strict handling.
        let p = Preferences::parse(["handling=strict, max-affected=abc"]).unwrap();
        assert_eq!(p.max_affected, None);
    }

    #[test]
    fn durability_and_min_txid_are_parsed_and_invalid_values_refused() {
        let p = Preferences::parse([
            "durability=replicated, min-txid=000000000000002a",
            "durability=local",
        ])
        .unwrap();
        assert_eq!(p.durability, Some(Durability::Replicated));
        assert_eq!(p.min_txid, Some(42));
        assert_eq!(
            p.applied(Applied::WRITE).header_value().unwrap(),
            "durability=replicated"
        );
        let mut read = PreferenceApplied::from(Some(AppliedPreference::Count(CountMethod::Exact)));
        read.push(AppliedPreference::MinTxid(p.min_txid.unwrap()));
        assert_eq!(
            read.header_value().unwrap(),
            "count=exact, min-txid=000000000000002a"
        );
        let p = Preferences::parse(["return=minimal, durability=local"]).unwrap();
        assert_eq!(
            p.applied(Applied::WRITE).header_value().unwrap(),
            "return=minimal, durability=local"
        );
        // Refused whatever `handling` says: a guarantee asked for is never silently dropped.
        for bad in [
            "durability=sync",
            "durability",
            "handling=lenient, durability=REPLICATED",
            "min-txid=2a",
            "min-txid=000000000000002g",
            "min-txid=0000000000000000002a",
            "min-txid=",
        ] {
            let e = Preferences::parse([bad]).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, "SR002"), "{bad}: {e:?}");
            assert!(e.hint.is_some(), "{bad}");
        }
        // The first occurrence wins, as for every preference: a later invalid one is ignored.
        assert!(Preferences::parse(["durability=local, durability=x"]).is_ok());
    }

    #[test]
    fn accept_negotiation() {
        use MediaType::*;
        assert_eq!(
            MediaType::negotiate(None).unwrap(),
            Json { strip_nulls: false }
        );
        assert_eq!(
            MediaType::negotiate(Some("text/csv, application/json")).unwrap(),
            Csv
        );
        assert_eq!(
            MediaType::negotiate(Some("text/unknowntype, */*")).unwrap(),
            Json { strip_nulls: false }
        );
        assert_eq!(
            MediaType::negotiate(Some("text/csv;q=0.5, application/vnd.pgrst.object+json"))
                .unwrap(),
            Singular { strip_nulls: false }
        );
        assert_eq!(
            MediaType::negotiate(Some("application/vnd.pgrst.array+json;nulls=stripped")).unwrap(),
            Json { strip_nulls: true }
        );
        let e = MediaType::negotiate(Some("text/unknowntype")).unwrap_err();
        assert_eq!(e.status, 406);
        assert_eq!(
            e.message,
            "None of these media types are available: text/unknowntype"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0-19").unwrap(), Some((0, Some(19))));
        assert_eq!(parse_range("10-").unwrap(), Some((10, None)));
        assert_eq!(parse_range("abc").unwrap(), None);
        assert_eq!(parse_range("1-0").unwrap_err().status, 416);
    }

    #[test]
    fn profiles() {
        assert!(check_profile(Some("public")).unwrap());
        assert!(!check_profile(None).unwrap());
        assert_eq!(
            check_profile(Some("other")).unwrap_err().code.as_str(),
            "PGRST106"
        );
    }
}
